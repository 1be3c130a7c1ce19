"""Serverless OCR function: documents in, structured Markdown + JSON out."""
