"""The HTTP contract as an OpenAPI 3.0 document, served at `GET /openapi.json`.

Built from small helpers as a plain dict, and kept to what `function/http.py` implements: the
schemas are tight (required fields, enums, `additionalProperties: false` where the code writes a
fixed shape), so a response that drifts from them fails `tests/test_openapi.py`.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

Schema = dict[str, Any]

VERSION = "1"
# Each error status with the one code the function answers it with (function/errors.py).
ERROR_CODES = {
    400: ("bad_request", "Malformed request: no document or two, bad base64, an unknown option value, ..."),
    401: ("unauthorized", "Missing or wrong API key (only when OCR_API_KEYS is set)"),
    404: ("not_found", "Unknown route, result file or S3 object"),
    405: ("method_not_allowed", "The route does not take this method"),
    413: ("too_large", "Bytes over OCR_MAX_BYTES, a page over OCR_MAX_PIXELS, pages over OCR_MAX_PAGES"),
    415: ("unsupported_media_type", "Not a PDF or one of the image formats read"),
    422: ("undecodable_document", "A truncated image, a corrupt or encrypted PDF"),
    429: ("busy", "Every slot (OCR_CONCURRENCY) is taken and the queue is full; retry after Retry-After"),
    500: ("internal_error", "A bug: logged with its traceback, the client sees no trace"),
    502: ("upstream_failed", "image_url could not be fetched, or S3 failed"),
    503: ("not_ready", "The engine is still loading or failed to load; retry after Retry-After"),
    504: ("deadline_exceeded", "The document ran past OCR_DEADLINE_SEC; nothing was stored"),
}
RETRY_AFTER_STATUSES = (429, 503)
INPUT_TYPES = ["multipart", "base64", "url", "raw", "s3", "cloudevent"]
MEDIA_TYPES = [
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "image/webp",
    "image/bmp",
    "image/gif",
]
RAW_BODY_TYPES = [*MEDIA_TYPES, "application/octet-stream"]
# Whoever may call: no key (OCR_API_KEYS unset), a bearer token, or the older clients' X-API-Key.
OPTIONAL_AUTH: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}, {"apiKeyHeader": []}]
OPEN: list[dict[str, list[str]]] = []


@lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "OCR function",
            "version": VERSION,
            "description": (
                "A document (PDF or image) in, Markdown + JSON out, stored in the result store and "
                "linked from the response. POST / and POST /ocr also take CloudEvents (binary mode "
                "`ce-*` headers or structured `application/cloudevents+json`) and MinIO's plain-JSON "
                "storage webhook; see docs/events.md. Every error is JSON: "
                '{"status": "error", "request_id", "error": {"code", "message"}}.'
            ),
        },
        "security": OPTIONAL_AUTH,
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(),
            "headers": _headers(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of OCR_API_KEYS; without OCR_API_KEYS no key is needed",
                },
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def spec() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_spec())


# --- helpers -----------------------------------------------------------------------------------------


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


def request_id_header() -> dict[str, Any]:
    return {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}


def response(
    description: str, schema: Schema | None = None, *, media: str = "application/json", **headers: Any
) -> dict[str, Any]:
    """A response with the X-Request-Id header every answer carries."""
    out: dict[str, Any] = {"description": description, "headers": {**request_id_header(), **headers}}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def error(status: int) -> dict[str, Any]:
    code, description = ERROR_CODES[status]
    headers: dict[str, Any] = {}
    if status in RETRY_AFTER_STATUSES:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    elif status == 502:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After-Optional"}
    if status == 401:
        headers["WWW-Authenticate"] = {"schema": string(), "description": 'Bearer realm="ocr-function"'}
    schema = {"allOf": [ref("Error"), {"properties": {"error": {"properties": {"code": enum(code)}}}}]}
    return response(description, schema, **headers)


def errors(*statuses: int) -> dict[str, Any]:
    """The given error responses and 500 (a bug), keyed by status."""
    return {str(status): error(status) for status in sorted({*statuses, 500})}


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    security: list[dict[str, list[str]]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, **extra, "responses": responses}
    op["parameters"] = [{"$ref": "#/components/parameters/X-Request-Id"}, *op.get("parameters", [])]
    if security is not None:
        op["security"] = security
    return op


# --- schemas -----------------------------------------------------------------------------------------


PAGES_PATTERN = r"^(all|[0-9]+(-[0-9]*)?(,[0-9]+(-[0-9]*)?)*)$"
LANG_PATTERN = r"^[A-Za-z_]{2,16}(\+[A-Za-z_]{2,16})*$"
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
ONE_DOCUMENT_OF = ("file", "image_base64", "image_url", "s3_uri")


def _one_of_documents(names: tuple[str, ...]) -> Schema:
    return {"oneOf": [{"required": [name]} for name in names]}


def _schemas() -> dict[str, Schema]:
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
                "status": enum("success", "failed"),
                "documents": {
                    "type": "array",
                    "minItems": 2,
                    "items": {"oneOf": [ref("OCRResult"), ref("EventFailed")]},
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
            **_one_of_documents(("image_base64", "image_url", "s3_uri")),
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


def _parameters() -> dict[str, Any]:
    params: dict[str, Any] = {
        name: {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in OPTIONS.items()
    }
    params["filename"] = {
        "name": "filename",
        "in": "query",
        "required": False,
        "description": "The file name of a raw body (else from Content-Disposition)",
        "schema": FILENAME,
    }
    params["X-Request-Id"] = {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "Used as the request id if it is a token of 1-128 [A-Za-z0-9_.:-]; else a new one",
        "schema": string(pattern="^[A-Za-z0-9_.:-]{1,128}$"),
    }
    params["Content-Disposition"] = {
        "name": "Content-Disposition",
        "in": "header",
        "required": False,
        "description": "The file name of a raw body, e.g. attachment; filename=scan.pdf",
        "schema": string(),
    }
    return params


def _headers() -> dict[str, Any]:
    return {
        "X-Request-Id": {
            "description": "The request id (the caller's X-Request-Id if sane, else generated)",
            "required": True,
            "schema": string(minLength=1),
        },
        "Retry-After": {"description": "Seconds to wait", "required": True, "schema": integer(0)},
        "Retry-After-Optional": {"description": "Seconds to wait (S3 failures)", "schema": integer(0)},
    }


# --- paths -------------------------------------------------------------------------------------------


def _ocr_operation(operation_id: str, path: str) -> dict[str, Any]:
    multipart = {
        **obj({"file": string(format="binary"), **DOCUMENT_FIELDS, "filename": FILENAME, **OPTIONS}, []),
        **_one_of_documents(ONE_DOCUMENT_OF),
    }
    form = {
        **obj({**DOCUMENT_FIELDS, "filename": FILENAME, **OPTIONS}, []),
        **_one_of_documents(("image_base64", "image_url", "s3_uri")),
    }
    raw = {media: {"schema": string(format="binary")} for media in RAW_BODY_TYPES}
    ce_headers = {
        name: {"schema": string(), "description": f"The reply CloudEvent's {name[3:]} (events only)"}
        for name in ("ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-correlationid")
    }
    return operation(
        operation_id,
        f"OCR one document ({path})",
        description=(
            "Exactly one document per request, in any of the request body forms; options as form or "
            "JSON fields or query parameters (a field wins over the query). A CloudEvent (binary or "
            "structured mode) or a storage notification is handled as an event: 202 when it is "
            "skipped, else 200 with a binary-mode reply CloudEvent (ocr.document.completed or "
            "ocr.document.failed) whose data is the body."
        ),
        parameters=[
            *({"$ref": f"#/components/parameters/{name}"} for name in OPTIONS),
            {"$ref": "#/components/parameters/filename"},
            {"$ref": "#/components/parameters/Content-Disposition"},
        ],
        requestBody={
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/x-www-form-urlencoded": {"schema": form},
                "application/json": {
                    "schema": {"oneOf": [ref("OCRRequestJSON"), ref("StorageNotification")]}
                },
                "application/cloudevents+json": {"schema": ref("CloudEvent")},
                **raw,
            },
        },
        responses={
            "200": response(
                "The document's results; for an event, the reply CloudEvent's data",
                {"oneOf": [ref("OCRResult"), ref("EventFailed"), ref("EventBatch")]},
                traceparent={"schema": string(), "description": "W3C trace context of this request"},
                **ce_headers,
            ),
            "202": response("An event acknowledged and skipped (no reply event)", ref("EventSkipped")),
            **errors(400, 401, 404, 413, 415, 422, 429, 502, 503, 504),
        },
    )


def _probe_operation(operation_id: str) -> dict[str, Any]:
    return operation(
        operation_id,
        "Endpoint probe (MinIO checks its webhook target this way)",
        {"200": response("OK"), **errors(401)},
    )


def _paths() -> dict[str, Any]:
    ok = enum("ok")
    return {
        "/": {
            "get": operation(
                "tryPage",
                "The try-it page (OCR_TRY_PAGE); 405 when it is off",
                {"200": response("The page", string(), media="text/html"), **errors(401, 405)},
                security=OPEN,
            ),
            "head": _probe_operation("probeRoot"),
            "post": _ocr_operation("ocrRoot", "/"),
        },
        "/ocr": {"head": _probe_operation("probeOcr"), "post": _ocr_operation("ocr", "/ocr")},
        "/health": {
            "get": operation(
                "health",
                "Status, engine, readiness, model load seconds, uptime, store kind",
                {"200": response("Alive", ref("Health")), **errors()},
                security=OPEN,
            )
        },
        "/health/live": {
            "get": operation(
                "live",
                "200 while the process serves",
                {"200": response("Alive", obj({"status": enum("alive")})), **errors()},
                security=OPEN,
            )
        },
        "/health/ready": {
            "get": operation(
                "ready",
                "200 once the engine is loaded and the store usable; 503 with the reason before",
                {
                    "200": response("Ready", obj({"status": enum("ready"), "engine": nullable(string())})),
                    "503": response(
                        "Not ready",
                        obj({"status": enum("not_ready"), "reason": string()}),
                        **{"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
                    ),
                    **errors(),
                },
                security=OPEN,
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus text exposition (needs a key only with OCR_METRICS_AUTH)",
                {"200": response("The metrics", string(), media="text/plain"), **errors(401)},
            )
        },
        "/files": {
            "get": operation(
                "listFiles",
                "The stored result files (local result store only)",
                {
                    "200": response("The result keys", obj({"files": {"type": "array", "items": string()}})),
                    **errors(401, 404),
                },
            )
        },
        "/files/{path}": {
            "get": operation(
                "getFile",
                "One result file (local result store only; no path traversal)",
                {
                    "200": response("The file", string(format="binary"), media="*/*"),
                    **errors(400, 401, 404),
                },
                parameters=[
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "description": "The key under the store, as in a result's url",
                        "schema": string(minLength=1),
                    }
                ],
            )
        },
        "/test/s3-upload": {
            "post": operation(
                "probeStore",
                "Write, read back and delete a probe object in the result store; 502 names the failed step",
                {
                    "200": response(
                        "Every step worked",
                        obj(
                            {
                                "status": ok,
                                "store": enum("local", "s3"),
                                "uri": string(),
                                "steps": obj({"put": ok, "get": ok, "delete": ok}),
                            }
                        ),
                    ),
                    **errors(401, 502),
                },
            )
        },
        "/openapi.json": {
            "get": operation(
                "openapi",
                "This document",
                {
                    "200": response("The OpenAPI document", obj({"openapi": string()}, strict=False)),
                    **errors(),
                },
                security=OPEN,
            )
        },
    }
