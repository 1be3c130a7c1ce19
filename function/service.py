"""The orchestration: a Job in, a result out — pages, engine, render, store. Knows nothing of HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from function.document import EngineInfo, SourceInfo
from function.errors import BadRequest
from function.options import Options
from function.pages import PageLimits, PageSource, sniff
from function.render import render_json, render_markdown
from function.runtime import Runtime
from function.sources import Source
from function.store import result_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    source: Source
    options: Options
    request_id: str


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - began, 4)


def run(job: Job, runtime: Runtime, base_url: str) -> dict[str, Any]:
    """OCR one document and store its results; the success response of the contract."""
    began = time.perf_counter()
    timings = Timings()
    settings = runtime.settings
    with timings.stage("open"):
        media_type = sniff(job.source.data)
        pages = PageSource(
            job.source.data,
            media_type,
            job.options.pages,
            PageLimits(settings.max_pixels, settings.max_pages, settings.pdf_dpi),
        )
    with timings.stage("wait_engine"):
        engine = runtime.wait_engine()
    _check_lang(job.options.lang, engine.languages(), engine.name)
    with timings.stage("ocr"):
        document = engine.predict(pages, job.options)
    source = SourceInfo(
        filename=job.source.filename,
        media_type=media_type,
        sha256=hashlib.sha256(job.source.data).hexdigest(),
        pages=pages.page_count,
    )
    document = replace(
        document, source=source, engine=EngineInfo(engine.name, engine.version, engine.fingerprint)
    )
    with timings.stage("render"):
        markdown = render_markdown(document)
        as_json = render_json(document)
    prefix = result_prefix(source.filename, source.sha256, engine.fingerprint, job.options.output_affecting())
    with timings.stage("store"):
        results = _store(runtime, prefix, markdown, as_json, base_url)
    response: dict[str, Any] = {
        "status": "success",
        "request_id": job.request_id,
        "input_type": job.source.input_type,
        "document": {**as_json["source"], "pages_processed": len(document.pages)},
        "engine": {"name": engine.name, "fingerprint": engine.fingerprint},
        "cached": False,
        "results": results,
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "elapsed_sec": round(time.perf_counter() - began, 3),
        "timings": timings.stages,
    }
    if job.options.return_content:
        response["content"] = {"markdown": markdown, "json": as_json}
    log.info("request %s: %d page(s) in %.2fs", job.request_id, len(document.pages), response["elapsed_sec"])
    return response


def _check_lang(lang: str | None, known: list[str] | None, engine: str) -> None:
    if not lang or known is None:
        return
    unknown = [part for part in lang.split("+") if part not in known]
    if unknown:
        raise BadRequest(
            f"engine {engine!r} cannot read language {'+'.join(unknown)!r}; it reads: {', '.join(known)}"
        )


def _store(runtime: Runtime, prefix: str, markdown: str, as_json: dict[str, Any], base_url: str) -> dict:
    store = runtime.store
    parts = {
        "markdown": (f"{prefix}/document.md", markdown.encode(), "text/markdown; charset=utf-8"),
        "json": (
            f"{prefix}/document.json",
            json.dumps(as_json, ensure_ascii=False).encode(),
            "application/json",
        ),
    }
    results = {}
    for name, (key, data, ctype) in parts.items():
        store.put(key, data, ctype)
        results[name] = {"uri": store.uri(key), "url": store.url(key, base_url)}
    return results
