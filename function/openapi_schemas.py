"""The schemas of the HTTP contract (function/openapi.py), and the helpers that write them.

What the code defines is taken from it: the error codes (function/errors.py, with the description
of each here), the media types read (function/pages.py), the input types (function/sources.py),
the document fields (function/intake.py) and the option patterns (function/options.py).
"""

from __future__ import annotations

from typing import Any

from function import errors, intake
from function.options import LANG_RE, PAGES_RE
from function.pages import MEDIA_TYPES
from function.sources import INPUT_TYPES

Schema = dict[str, Any]

# What each error means to a client, by code; a new error class without a line here fails at import.
ERROR_DESCRIPTIONS = {
    "bad_request": "Malformed request: no document or two, bad base64, an unknown option value, ...",
    "unauthorized": "Missing or wrong API key (only when OCR_API_KEYS is set)",
    "not_found": "Unknown route, result file or S3 object",
    "method_not_allowed": "The route does not take this method",
    "too_large": "Bytes over OCR_MAX_BYTES, a page over OCR_MAX_PIXELS, pages over OCR_MAX_PAGES",
    "unsupported_media_type": "Not a PDF or one of the image formats read",
    "undecodable_document": "A truncated image, a corrupt or encrypted PDF, a PDF page that will not "
    "load or passes the renderer's memory or time limit",
    "busy": "Every slot (OCR_CONCURRENCY) is taken and the queue is full; retry after Retry-After",
    "internal_error": "A bug: logged with its traceback, the client sees no trace",
    "upstream_failed": "image_url could not be fetched, or S3 failed (a missing result bucket too)",
    "insufficient_storage": "The local result store's disk is full; retry after Retry-After",
    "not_ready": "The engine is still loading or failed to load; retry after Retry-After",
    "deadline_exceeded": "The document ran past OCR_DEADLINE_SEC; nothing was stored",
}
# Each error status with the one code the function answers it with.
ERROR_CODES = {
    cls.status: (cls.code, ERROR_DESCRIPTIONS[cls.code])
    for cls in sorted(errors.ERRORS, key=lambda c: c.status)
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: list[str] | None = None, *, strict: bool = True) -> Schema:
    """An object; `required` defaults to every property; `strict` forbids other keys."""
    schema: Schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if not schema["required"]:
        del schema["required"]
    if strict:
        schema["additionalProperties"] = False
    return schema


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def integer(minimum: int | None = 0) -> Schema:
    return {"type": "integer"} if minimum is None else {"type": "integer", "minimum": minimum}


def number(minimum: float | None = 0) -> Schema:
    return {"type": "number"} if minimum is None else {"type": "number", "minimum": minimum}


BOOLEAN: Schema = {"type": "boolean"}


PAGES_PATTERN = f"^(all|{PAGES_RE.pattern})$"
LANG_PATTERN = f"^{LANG_RE.pattern}$"
OPTIONS: dict[str, Schema] = {
    "return_content": {
        **BOOLEAN,
        "default": False,
        "description": "Include content.markdown and content.json",
    },
    "pages": string(
        pattern=PAGES_PATTERN,
        description="PDF / multi-page TIFF pages, 1-based: '1-3,7', '2-' (to the end) or 'all' (default)",
    ),
    "lang": string(
        pattern=LANG_PATTERN,
        description="Language hint: rapidocr reads 'en', 'ch'; tesseract 'ru', 'en' or codes like 'rus+eng'",
    ),
    "force": {**BOOLEAN, "default": False, "description": "Run OCR even if results for this content exist"},
    "visualize": {**BOOLEAN, "default": False, "description": "Also store a layout picture per page"},
    "callback_url": string(
        format="uri",
        pattern="^https?://",
        maxLength=2048,
        description="With Prefer: respond-async, the job's final state is POSTed here (X-OCR-Signature: "
        "sha256=HMAC of '<X-OCR-Timestamp>.<body>' when OCR_CALLBACK_SECRET is set)",
    ),
}
DOCUMENT_FIELDS: dict[str, Schema] = {
    "image_base64": string(format="byte", description="The document, base64 (a data: URL prefix is allowed)"),
    "image_url": string(
        format="uri", pattern="^https?://", description="An http(s) URL the function fetches"
    ),
    "s3_uri": string(
        pattern="^s3://[^/]+/.+",
        description="s3://bucket/key at the S3 store's endpoint (OCR_STORE=s3://...)",
    ),
}
FILENAME: Schema = string(description="The document's file name (names the result prefix)")
# Exactly one document per request.
ONE_DOCUMENT_OF = intake.DOCUMENT_FIELDS


def one_of_documents(names: tuple[str, ...]) -> Schema:
    return {"oneOf": [{"required": [name]} for name in names]}


def schemas() -> dict[str, Schema]:
    link = obj({"uri": string(), "url": string()})
    bbox = {"type": "array", "items": integer(None), "minItems": 4, "maxItems": 4}
    return {
        "Error": obj(
            {
                "status": enum("error"),
                "request_id": string(),
                "error": obj(
                    {"code": enum(*(code for code, _ in ERROR_CODES.values())), "message": string()}
                ),
            }
        ),
        "Link": link,
        "Results": obj(
            {
                "markdown": ref("Link"),
                "json": ref("Link"),
                "manifest": ref("Link"),
                "images": {"type": "object", "additionalProperties": ref("Link")},
                "layout": {
                    "type": "array",
                    "items": obj({"page": integer(1), "uri": string(), "url": string()}),
                },
            },
            ["markdown", "json", "manifest"],
        ),
        "DocumentInfo": obj(
            {
                "filename": string(minLength=1),
                "media_type": enum(*MEDIA_TYPES),
                "sha256": string(pattern="^[0-9a-f]{64}$"),
                "pages": integer(),
                "pages_processed": integer(),
            }
        ),
        "OCRResult": obj(
            {
                "status": enum("success"),
                "request_id": string(),
                "input_type": enum(*INPUT_TYPES),
                "document": ref("DocumentInfo"),
                "engine": obj({"name": string(), "fingerprint": string()}),
                "cached": BOOLEAN,
                "results": ref("Results"),
                "timestamp": string(format="date-time", pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"),
                "elapsed_sec": number(),
                "timings": {"type": "object", "additionalProperties": number()},
                "content": obj({"markdown": string(), "json": ref("DocumentJSON")}),
            },
            [
                "status",
                "request_id",
                "input_type",
                "document",
                "engine",
                "cached",
                "results",
                "timestamp",
                "elapsed_sec",
                "timings",
            ],
        ),
        # document.json, schema_version 1 (function/render.py).
        "DocumentJSON": obj(
            {
                "schema_version": {"type": "integer", "enum": [1]},
                "source": nullable(
                    obj(
                        {
                            "filename": string(),
                            "media_type": enum(*MEDIA_TYPES),
                            "sha256": string(),
                            "pages": integer(),
                        }
                    )
                ),
                "engine": nullable(obj({"name": string(), "version": string(), "fingerprint": string()})),
                "pages": {"type": "array", "items": ref("Page")},
                "markdown": string(),
                "warnings": {"type": "array", "items": string()},  # only when there are any
            },
            ["schema_version", "source", "engine", "pages", "markdown"],
        ),
        "Page": obj(
            {
                "index": integer(),
                "width": integer(),
                "height": integer(),
                "blocks": {"type": "array", "items": ref("Block")},
            }
        ),
        "Block": obj(
            {
                "id": integer(None),
                "order": nullable(integer(None)),
                "label": string(),
                "bbox": bbox,
                "text": string(),
                "score": nullable(number(None)),
                "html": string(),
                "table": obj(
                    {
                        "n_rows": integer(),
                        "n_cols": integer(),
                        "cells": {
                            "type": "array",
                            "items": obj(
                                {
                                    "row": integer(),
                                    "col": integer(),
                                    "rowspan": integer(1),
                                    "colspan": integer(1),
                                    "text": string(),
                                    "bbox": nullable(bbox),
                                }
                            ),
                        },
                    }
                ),
                "image": string(),
                "lines": {
                    "type": "array",
                    "items": obj({"text": string(), "bbox": bbox, "score": nullable(number(None))}),
                },
            },
            ["id", "order", "label", "bbox", "text", "score"],
        ),
        # Async jobs (Prefer: respond-async, GET /jobs/{job_id}).
        "Job": obj(
            {
                "request_id": string(),
                "job_id": string(pattern="^[0-9a-f]{32}$"),
                "state": enum("queued", "running", "completed", "failed"),
                "pages": obj({"done": integer(0), "total": integer(1)}),
                "document": obj(
                    {"filename": string(), "media_type": string(), "sha256": string(), "pages": integer(1)}
                ),
                "created": string(format="date-time"),
                "updated": string(format="date-time"),
                "result": ref("OCRResult"),
                "error": obj({"code": string(), "message": string()}),
            },
            ["job_id", "state", "pages", "document", "created", "updated"],
        ),
        "JobAccepted": obj(
            {"status": enum("accepted"), "request_id": string(), "job_id": string(), "subject": string()}
        ),
        "ChunkPending": obj(
            {
                "status": enum("pending"),
                "request_id": string(),
                "job_id": string(),
                "chunk": {"type": "array", "items": integer(1), "minItems": 2, "maxItems": 2},
            }
        ),
        # Events: what a storage notification or an ocr.document.requested event is answered with.
        "EventSkipped": obj({"status": enum("skipped"), "request_id": string(), "reason": string()}),
        "EventFailed": obj(
            {
                "status": enum("error"),
                "request_id": string(),
                "error": obj(
                    {"code": enum(*(code for code, _ in ERROR_CODES.values())), "message": string()}
                ),
                "subject": string(),
            }
        ),
        "EventBatch": obj(
            {
                "status": enum("success", "failed", "accepted"),
                "documents": {
                    "type": "array",
                    "minItems": 2,
                    "items": {"oneOf": [ref("OCRResult"), ref("EventFailed"), ref("JobAccepted")]},
                },
            }
        ),
        "StorageNotification": obj(
            {
                "Records": {"type": "array", "items": ref("S3Record")},
                "EventName": string(),
                "Key": string(),
            },
            ["Records"],
            strict=False,
        ),
        "S3Record": obj(
            {
                "eventName": string(description="Only ObjectCreated:* records are processed"),
                "eventSource": string(),
                "s3": obj(
                    {
                        "bucket": obj({"name": string()}, strict=False),
                        "object": obj(
                            {
                                "key": string(description="URL-encoded by the sender; decoded once"),
                                "userMetadata": {"type": "object", "additionalProperties": string()},
                            },
                            ["key"],
                            strict=False,
                        ),
                    },
                    ["object"],
                    strict=False,
                ),
            },
            ["eventName", "s3"],
            strict=False,
        ),
        "CloudEvent": obj(
            {
                "specversion": enum("1.0"),
                "id": string(minLength=1),
                "source": string(minLength=1),
                "type": string(minLength=1),
                "subject": string(),
                "datacontenttype": string(),
                "data": {},
                "data_base64": string(format="byte"),
            },
            ["specversion", "id", "source", "type"],
            strict=False,
        ),
        "OCRRequestJSON": {
            **obj({**DOCUMENT_FIELDS, "filename": FILENAME, **OPTIONS}, []),
            **one_of_documents(("image_base64", "image_url", "s3_uri")),
        },
        "Health": obj(
            {
                "status": enum("ok"),
                "engine": string(),
                "fingerprint": nullable(string()),
                "ready": BOOLEAN,
                "reason": nullable(string()),
                "model_load_sec": nullable(number()),
                "uptime_sec": number(),
                "store": enum("local", "s3"),
                "pid": integer(1),
            },
            strict=False,
        ),
    }
