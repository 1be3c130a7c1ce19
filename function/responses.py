"""The answers the transport sends, as JSON-able dicts: a Result with its URLs, and an error.

Shared by the HTTP responses and the reply events; no Flask here.
"""

from __future__ import annotations

from typing import Any

from function.context import RequestContext
from function.errors import OCRError
from function.options import Options
from function.results import now
from function.service import Job, Result, Service
from function.sources import Source
from function.store import ResultStore


def answer(
    service: Service, ctx: RequestContext, source: Source, options: Options, base_url: str
) -> dict[str, Any]:
    """Run one document through the service and render its answer; the request's log notes it."""
    ctx.log["input_type"] = source.input_type
    budget = service.settings.deadline_sec
    result = service.run(Job.start(source, options, ctx.request_id, budget, ctx.client_gone))
    ctx.record(result, source.input_type)
    return success_body(result, ctx.request_id, source.input_type, service.store, base_url)


def success_body(
    result: Result, request_id: str, input_type: str, store: ResultStore, base_url: str
) -> dict[str, Any]:
    """The contract's response to one document (`OcrResponse` in function/openapi.py)."""
    body: dict[str, Any] = {
        "status": "success",
        "request_id": request_id,
        "input_type": input_type,
        "document": result.document,
        "engine": result.engine,
        "cached": result.cached,
        "results": links(result, store, base_url),
        "timestamp": now(),
        "elapsed_sec": result.elapsed_sec,
        "timings": result.timings,
    }
    if result.content is not None:
        body["content"] = result.content
    return body


def links(result: Result, store: ResultStore, base_url: str) -> dict[str, Any]:
    """Each stored part's URI and a URL a client can GET (`base_url`: this function's address)."""

    def link(key: str) -> dict[str, str]:
        return {"uri": store.uri(key), "url": store.url(key, base_url)}

    keys = result.keys
    out: dict[str, Any] = {
        "markdown": link(keys.markdown),
        "json": link(keys.json),
        "manifest": link(keys.manifest),
    }
    if keys.images:
        out["images"] = {path: link(key) for path, key in keys.images.items()}
    if keys.layout:
        out["layout"] = [{"page": page, **link(key)} for page, key in keys.layout]
    return out


def error_body(exc: OCRError, request_id: str) -> dict[str, Any]:
    return {"status": "error", "request_id": request_id, "error": {"code": exc.code, "message": exc.message}}
