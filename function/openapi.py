"""The HTTP contract as an OpenAPI 3.0 document, served at `GET /openapi.json`.

Built from small helpers as a plain dict, and kept to what `function/http.py` implements: the
schemas (function/openapi_schemas.py) are tight (required fields, enums, `additionalProperties:
false` where the code writes a fixed shape), so a response that drifts from them fails
`tests/test_openapi.py`. The error codes, media types, input types, document fields and option
patterns come from the code that defines them.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from function.openapi_schemas import (
    DOCUMENT_FIELDS,
    ERROR_CODES,
    FILENAME,
    MEDIA_TYPES,
    ONE_DOCUMENT_OF,
    OPTIONS,
    Schema,
    enum,
    integer,
    nullable,
    obj,
    one_of_documents,
    ref,
    schemas,
    string,
)

VERSION = "1"
RETRY_AFTER_STATUSES = (429, 503)
RAW_BODY_TYPES = [*MEDIA_TYPES, "application/octet-stream"]
# Whoever may call: no key (OCR_API_KEYS unset), a bearer token, or the older clients' X-API-Key.
OPTIONAL_AUTH: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}, {"apiKeyHeader": []}]
OPEN: list[dict[str, list[str]]] = []
# What a 202 may carry: an async job, a skipped event, a chunk read, a long document sent on as a job.
ACCEPTED = ("Job", "EventSkipped", "ChunkPending", "JobAccepted", "EventBatch")


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
                "`ce-*` headers or structured `application/cloudevents+json`) and plain-JSON storage "
                "notifications (MinIO's webhook, S3, EventBridge); see docs/events.md. Every error is JSON: "
                '{"status": "error", "request_id", "error": {"code", "message"}}.'
            ),
        },
        "security": OPTIONAL_AUTH,
        "paths": _paths(),
        "components": {
            "schemas": schemas(),
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


def request_id_header() -> dict[str, Any]:
    return {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}


def response(
    description: str,
    schema: Schema | None = None,
    *,
    media: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A response with the X-Request-Id header every answer carries, and `headers`."""
    out: dict[str, Any] = {"description": description, "headers": {**request_id_header(), **(headers or {})}}
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
    return response(description, schema, headers=headers)


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


def _parameters() -> dict[str, Any]:
    params: dict[str, Any] = {name: _param(name, "query", schema) for name, schema in OPTIONS.items()}
    params["filename"] = _param(
        "filename", "query", FILENAME, "The file name of a raw body (else from Content-Disposition)"
    )
    params["X-Request-Id"] = _param(
        "X-Request-Id",
        "header",
        string(pattern="^[A-Za-z0-9_.:-]{1,128}$"),
        "Used as the request id if it is a token of 1-128 [A-Za-z0-9_.:-]; else a new one",
    )
    params["Prefer"] = _param(
        "Prefer", "header", string(), "respond-async (RFC 7240): 202 at once with a job to poll at Location"
    )
    params["Job"] = {**_param("job_id", "path", string(), "The job_id a 202 answer gave"), "required": True}
    disposition = "The file name of a raw body: attachment; filename=scan.pdf"
    params["Content-Disposition"] = _param("Content-Disposition", "header", string(), disposition)
    return params


def _param(name: str, where: str, schema: Schema, description: str | None = None) -> dict[str, Any]:
    out = {"name": name, "in": where, "required": False, "schema": schema}
    return out if description is None else {**out, "description": description}


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
        **one_of_documents(ONE_DOCUMENT_OF),
    }
    form = {
        **obj({**DOCUMENT_FIELDS, "filename": FILENAME, **OPTIONS}, []),
        **one_of_documents(("image_base64", "image_url", "s3_uri")),
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
            {"$ref": "#/components/parameters/Prefer"},
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
                headers={
                    "traceparent": {"schema": string(), "description": "W3C trace context of this request"},
                    **ce_headers,
                },
            ),
            "202": response(
                "With Prefer: respond-async, the document's job (poll its Location); an event "
                "acknowledged and skipped, a job's chunk read while others are missing, or (with a "
                "broker) a long document an event names sent on as a job: no reply event",
                {"oneOf": [ref(name) for name in ACCEPTED]},
                headers={
                    "Location": {"schema": string(), "description": "/jobs/{job_id} (async requests)"},
                    "Preference-Applied": {"schema": string(), "description": "respond-async"},
                },
            ),
            **errors(400, 401, 404, 413, 415, 422, 429, 502, 503, 504, 507),
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
                        headers={"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
                    ),
                    **errors(),
                },
                security=OPEN,
            )
        },
        "/jobs/{job_id}": {
            "get": operation(
                "job",
                "An async job's state, pages done of total, its result once completed (with the "
                "Markdown and JSON in it with `return_content`)",
                {"200": response("The job", ref("Job")), **errors(400, 401, 404)},
                parameters=[
                    {"$ref": "#/components/parameters/Job"},
                    {"$ref": "#/components/parameters/return_content"},
                ],
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
                "A page of the stored result files' keys (`limit` up to 1000 after `after`); off while "
                "OCR_API_KEYS is set",
                {
                    "200": response(
                        "A page of the result keys, and the next page's link (null after the last)",
                        obj(
                            {
                                "files": {"type": "array", "items": string()},
                                "next": {"type": "string", "nullable": True},
                            }
                        ),
                    ),
                    **errors(400, 401, 404),
                },
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "Keys in the page (default and most: 1000)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "description": "The last key of the previous page",
                        "schema": string(),
                    },
                ],
            )
        },
        "/files/{path}": {
            "get": operation(
                "getFile",
                "One result file (no path traversal); with an S3 store, a redirect to its presigned URL",
                {
                    "200": response("The file", string(format="binary"), media="*/*"),
                    "302": {"description": "With an S3 store: the file's presigned URL in Location"},
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
