"""The orchestration: a Job in, a result out — cache, pages, engine, render, store. Knows nothing of HTTP.

Results are content-addressed (`store.result_prefix`): the parts (Markdown, JSON, image crops) are
written first and a small `manifest.json` last, so only a complete result ever counts as present —
two pods racing on one document, or a write that fails half-way, never leave a result that a later
request would take for finished. A request whose manifest exists is answered from it without OCR,
unless it asks for `force`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from PIL import Image

from function import metrics
from function.config import Settings
from function.document import Document, EngineInfo, SourceInfo
from function.engines.base import Engine, PageImage
from function.errors import BadRequest, DeadlineExceeded, NotFound
from function.options import Options
from function.pages import PageLimits, PageSource, sniff
from function.render import render_json, render_markdown
from function.runtime import Runtime
from function.sources import Source
from function.store import ResultStore, content_type, result_prefix
from function.visualize import KeepPages, layout_pngs

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Job:
    source: Source
    options: Options
    request_id: str
    deadline: float | None = None  # time.monotonic() by which the OCR must be done (OCR_DEADLINE_SEC)


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


@dataclass(frozen=True)
class Part:
    name: str  # markdown | json | the image's path relative to the Markdown
    key: str  # store key
    data: bytes
    content_type: str

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "size": len(self.data),
            "content_type": self.content_type,
        }


def run(
    job: Job, runtime: Runtime, base_url: str, slot: Callable[[], AbstractContextManager] = nullcontext
) -> dict[str, Any]:
    """OCR one document and store its results, or answer from stored ones; the contract's response.
    `slot` bounds how many documents run at once (a cache hit needs none); it yields whether it waited."""
    began = time.perf_counter()
    timings = Timings()
    settings = runtime.settings
    with timings.stage("open"):
        media_type, pages = open_document(job.source.data, job.options, settings)
    with timings.stage("wait_engine"):
        engine = runtime.wait_engine()
    _check_lang(job.options.lang, engine.languages(), engine.name)
    pages.prefetch = engine.prefetch_pages
    source = SourceInfo(
        filename=job.source.filename,
        media_type=media_type,
        sha256=hashlib.sha256(job.source.data).hexdigest(),
        pages=pages.page_count,
    )
    prefix = result_prefix(source.filename, source.sha256, engine.fingerprint, job.options.output_affecting())
    store = runtime.store
    if not job.options.force and (hit := _from_cache(job, store, prefix, base_url, timings, began)):
        return hit
    queued = time.perf_counter()
    with slot() as waited:
        timings.stages["queue"] = round(time.perf_counter() - queued, 4)
        # The same document, sent twice at once, may have been finished by the other request meanwhile.
        if (
            waited
            and not job.options.force
            and (hit := _from_cache(job, store, prefix, base_url, timings, began))
        ):
            return hit
        pages_in_time = _within(pages, job.deadline, len(pages.selected), settings.deadline_sec)
        document, layout = recognise(engine, pages_in_time, job.options, source, timings)
        with timings.stage("render"):
            markdown = render_markdown(document)
            as_json = render_json(document)
        parts = _parts(prefix, markdown, as_json, document.images)
        layout_parts = _layout_parts(prefix, layout)
        manifest = _manifest(prefix, as_json, len(document.pages), job.options, parts, layout_parts, timings)
        with timings.stage("store"):
            _write(store, prefix, parts + list(layout_parts.values()), manifest)
    content = {"markdown": markdown, "json": as_json} if job.options.return_content else None
    response = _response(job, manifest, _links(store, manifest, base_url), content, False, timings, began)
    log.info("request %s: %d page(s) in %.2fs", job.request_id, len(document.pages), response["elapsed_sec"])
    return response


def _from_cache(
    job: Job, store: ResultStore, prefix: str, base_url: str, timings: Timings, began: float
) -> dict[str, Any] | None:
    with timings.stage("lookup"):
        cached = _cached(store, prefix, job.options.return_content)
    if cached is None:
        return None
    metrics.CACHE_HITS.inc()
    manifest, content = cached
    return _response(job, manifest, _links(store, manifest, base_url), content, True, timings, began)


def _within(
    pages: Iterable[PageImage], deadline: float | None, total: int, budget: float
) -> Iterator[PageImage]:
    """The pages, until the deadline passes: checked before each page reaches the engine, so the
    work stops between pages and nothing half-done is stored."""
    for done, page in enumerate(pages):
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"the document ran past OCR_DEADLINE_SEC={budget:g}s: stopped after {done} of {total} "
                "page(s) and stored nothing; send fewer pages (option 'pages') or raise the limit"
            )
        yield page


def _check_lang(lang: str | None, known: list[str] | None, engine: str) -> None:
    if not lang or known is None:
        return
    unknown = [part for part in lang.split("+") if part not in known]
    if unknown:
        raise BadRequest(
            f"engine {engine!r} cannot read language {'+'.join(unknown)!r}; it reads: {', '.join(known)}"
        )


def open_document(data: bytes, options: Options, settings: Settings) -> tuple[str, PageSource]:
    """The media type sniffed from the bytes, and the selected pages within the limits."""
    media_type = sniff(data)
    limits = PageLimits(settings.max_pixels, settings.max_pages, settings.pdf_dpi)
    return media_type, PageSource(data, media_type, options.pages, limits)


def recognise(
    engine: Engine, pages: Iterable[PageImage], options: Options, source: SourceInfo, timings: Timings
) -> tuple[Document, dict[int, bytes]]:
    """The Document, and the layout PNGs by 1-based page when asked for (the engine consumes the
    pages, so they are drawn on here, while they are still at hand)."""
    metrics.ENGINE_CALLS.inc()
    kept = KeepPages(pages) if options.visualize else None
    with timings.stage("ocr"):
        document = engine.predict(kept or pages, options)
    metrics.PAGES.inc(len(document.pages))
    layout: dict[int, bytes] = {}
    if kept is not None:
        with timings.stage("visualize"):
            layout = layout_pngs(document, kept.images)
    info = EngineInfo(engine.name, engine.version, engine.fingerprint)
    return replace(document, source=source, engine=info), layout


# --- results: parts first, manifest last -----------------------------------------------------------


def _parts(prefix: str, markdown: str, as_json: dict[str, Any], images: dict[str, Image.Image]) -> list[Part]:
    as_bytes = json.dumps(as_json, ensure_ascii=False).encode()
    parts = [
        Part("markdown", f"{prefix}/document.md", markdown.encode(), content_type("document.md")),
        Part("json", f"{prefix}/document.json", as_bytes, "application/json"),
    ]
    for path, image in sorted(images.items()):
        if not _relative_path(path):
            log.warning("skipping image %r: not a relative path under the result", path)
            continue
        parts.append(Part(path, f"{prefix}/{path}", _encode_image(path, image), content_type(path)))
    return parts


def _layout_parts(prefix: str, layout: dict[int, bytes]) -> dict[int, Part]:
    return {
        n: Part(f"layout/page-{n}.png", f"{prefix}/layout/page-{n}.png", png, "image/png")
        for n, png in layout.items()
    }


def _relative_path(path: str) -> bool:
    segments = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in segments


def _encode_image(path: str, image: Image.Image) -> bytes:
    """The crop in the format its file name promises, so the Markdown link and content type agree."""
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _manifest(
    prefix: str,
    as_json: dict[str, Any],
    processed: int,
    options: Options,
    parts: list[Part],
    layout_parts: dict[int, Part],
    timings: Timings,
) -> dict[str, Any]:
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "prefix": prefix,
        "created": _now(),
        "document": {**as_json["source"], "pages_processed": processed},
        "engine": as_json["engine"],
        "options": options.output_affecting(),
        "timings": dict(timings.stages),
        "parts": {p.name: p.describe() for p in parts[:2]},
        "images": {p.name: p.describe() for p in parts[2:]},
    }
    if layout_parts:
        manifest["layout"] = [{"page": n, **p.describe()} for n, p in sorted(layout_parts.items())]
    return manifest


def _write(store: ResultStore, prefix: str, parts: list[Part], manifest: dict[str, Any]) -> None:
    for part in parts:
        store.put(part.key, part.data, part.content_type)
    # Last: its presence is what makes the result count (a failure above leaves none).
    store.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, ensure_ascii=False).encode(), "application/json")


def _cached(store: ResultStore, prefix: str, with_content: bool) -> tuple[dict[str, Any], dict | None] | None:
    """The stored manifest (and content, checked against its checksums), or None if absent or broken."""
    try:
        manifest = json.loads(store.get(f"{prefix}/{MANIFEST}"))
    except NotFound:
        return None
    except ValueError:
        log.warning("unreadable manifest under %s; running OCR again", prefix)
        return None
    if not with_content:
        return manifest, None
    try:
        markdown = _read_checked(store, manifest["parts"]["markdown"])
        as_json = json.loads(_read_checked(store, manifest["parts"]["json"]))
    except (NotFound, KeyError, ValueError) as exc:
        log.warning("stored result under %s is incomplete (%s); running OCR again", prefix, exc)
        return None
    return manifest, {"markdown": markdown.decode(), "json": as_json}


def _read_checked(store: ResultStore, part: dict[str, Any]) -> bytes:
    data = store.get(part["key"])
    if hashlib.sha256(data).hexdigest() != part["sha256"]:
        raise ValueError(f"checksum mismatch for {part['key']}")
    return data


def _links(store: ResultStore, manifest: dict[str, Any], base_url: str) -> dict[str, Any]:
    def link(key: str) -> dict[str, str]:
        return {"uri": store.uri(key), "url": store.url(key, base_url)}

    results: dict[str, Any] = {name: link(part["key"]) for name, part in manifest["parts"].items()}
    results["manifest"] = link(f"{manifest['prefix']}/{MANIFEST}")
    if manifest.get("images"):
        results["images"] = {path: link(part["key"]) for path, part in manifest["images"].items()}
    if manifest.get("layout"):
        results["layout"] = [{"page": part["page"], **link(part["key"])} for part in manifest["layout"]]
    return results


def _response(
    job: Job,
    manifest: dict[str, Any],
    results: dict[str, Any],
    content: dict[str, Any] | None,
    cached: bool,
    timings: Timings,
    began: float,
) -> dict[str, Any]:
    metrics.observe_stages(timings.stages)
    engine = manifest["engine"]
    response: dict[str, Any] = {
        "status": "success",
        "request_id": job.request_id,
        "input_type": job.source.input_type,
        "document": manifest["document"],
        "engine": {"name": engine["name"], "fingerprint": engine["fingerprint"]},
        "cached": cached,
        "results": results,
        "timestamp": _now(),
        "elapsed_sec": round(time.perf_counter() - began, 3),
        "timings": timings.stages,
    }
    if content is not None:
        response["content"] = content
    return response


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
