"""The function against its bare engine, side by side in one run: `python -m bench.perf --help`.

Kept free of imports: `python -m bench.perf.coldbare` times a fresh process's imports.
"""
