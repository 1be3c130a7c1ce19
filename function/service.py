"""The orchestration: a Job in, a Result out — cache, pages, engine, render, store. Knows nothing of
HTTP or events: the transport turns the Result into its answer (JSON, URLs, a reply event)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from function import metrics, reading, results
from function.config import Settings
from function.document import Document, EngineInfo, SourceInfo
from function.engines.base import Engine
from function.errors import BadRequest, DeadlineExceeded, OCRError
from function.model import PageImage
from function.options import Options
from function.pages import PageLimits, PageSource, sniff
from function.reading import Plan, Timings
from function.render import render_json, render_markdown
from function.results import Keys, Stored
from function.sources import Source
from function.store import ResultStore
from function.visualize import KeepPages, layout_pngs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    source: Source
    options: Options
    request_id: str
    deadline: float | None = None  # time.monotonic() by which the OCR must be done (OCR_DEADLINE_SEC)
    # Whether whoever asked has gone away (a closed connection): asked between pages.
    abandoned: Callable[[], bool] = lambda: False
    # An async job's run (function/jobs.py): with `force`, the stored pages are still its own (the
    # job cleared the older ones when it was accepted), so it goes on from them.
    resume: bool = False

    @classmethod
    def start(
        cls,
        source: Source,
        options: Options,
        request_id: str,
        budget_sec: float,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> Job:
        """A job that starts now, with `budget_sec` seconds to finish (0: no deadline)."""
        deadline = time.monotonic() + budget_sec if budget_sec else None
        return cls(source, options, request_id, deadline, abandoned)


@dataclass(frozen=True)
class Result:
    """One document's outcome: what was read, by which engine, where its parts are stored."""

    document: dict[str, Any]  # the source's filename, media type, sha256, pages, pages_processed
    engine: dict[str, str]  # name, fingerprint
    cached: bool  # answered from a stored result, without OCR
    keys: Keys  # the stored parts' keys
    timings: dict[str, float]  # seconds per stage
    elapsed_sec: float
    content: dict[str, Any] | None = None  # {"markdown", "json"} when the job asked for it

    @property
    def pages(self) -> int | None:
        return self.document.get("pages_processed", self.document.get("pages"))


@dataclass(frozen=True)
class Recognised:
    """A document read by an engine and rendered; layout pictures by 1-based page when asked for."""

    document: Document
    layout: dict[int, bytes]
    markdown: str
    as_json: dict[str, Any]


class Service:
    """Runs jobs against an engine and a result store. `engine` returns the loaded engine (waiting
    for it at cold start); `slot` bounds how many documents run at once (a cache hit needs none) and
    yields whether it waited."""

    def __init__(
        self,
        settings: Settings,
        engine: Callable[[], Engine],
        store: ResultStore,
        slot: Callable[[], AbstractContextManager[bool]] = lambda: nullcontext(False),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.slot = slot

    def run(self, job: Job) -> Result:
        """OCR one document and store its results, or answer from stored ones. Pages stored by an
        earlier run of the same document (checkpoints) are not read again."""
        result = self._run(job, None)
        assert result is not None  # the whole document was asked for
        return result

    def run_chunk(self, job: Job, first: int, last: int) -> Result | None:
        """Read the `first`..`last` (1-based, inclusive) of the document's selected pages; the result
        if that completed the document (this run assembled it), else None."""
        return self._run(job, (first, last))

    def prepare(self, job: Job, timings: Timings | None = None) -> Plan:
        """The document opened (page count, selection) and keyed (engine, options): its result prefix."""
        timings = timings or Timings()
        with timings.stage("open"):
            # No deadline yet: opening (bounded by OCR_RENDER_TIMEOUT_SEC) and the first page are part
            # of every run, so that each retry gets further (see _within).
            pages = open_pages(job.source.data, job.options, self.settings)
        with timings.stage("wait_engine"):
            engine = self.engine()
        source = describe(job.source, pages, engine, job.options)
        options = job.options.output_affecting(pages.selected, pages.page_count)
        prefix = results.result_prefix(source.filename, source.sha256, engine.fingerprint, options)
        return Plan(pages, engine, source, options, prefix)

    def _run(self, job: Job, chunk: tuple[int, int] | None) -> Result | None:
        began = time.perf_counter()
        timings = Timings()
        plan = self.prepare(job, timings)
        if hit := self._cached(job, plan, timings, began):
            return hit
        queued = time.perf_counter()
        with self.slot() as waited:
            timings.stages["queue"] = round(time.perf_counter() - queued, 4)
            # The same document, sent twice at once, may have been finished by the other request meanwhile.
            if waited and (hit := self._cached(job, plan, timings, began)):
                return hit
            selected = plan.pages.selected
            wanted = selected if chunk is None else selected[chunk[0] - 1 : chunk[1]]
            plan.pages.to_read = plan.missing(self.store, wanted, job.options.force and not job.resume)
            if plan.pages.to_read:
                with timings.stage("ocr"):
                    self._read(job, plan, len(wanted))
            if chunk is not None and not plan.complete(self.store):
                return None
            stored = reading.assemble(plan, self.store, job.options.return_content, timings)
        result = _result(stored, False, timings, began)
        log.info("request %s: %d page(s) in %.2fs", job.request_id, len(selected), result.elapsed_sec)
        return result

    def _read(self, job: Job, plan: Plan, wanted: int) -> None:
        """The pages still to read, each stored as it is done; stopped between pages at the deadline
        or when the client has gone, the pages read so far kept."""
        todo = plan.pages.to_read
        already = wanted - len(todo)
        done = 0
        for _ in reading.read(plan, self.store, _within(plan.pages, job), job.options):
            done += 1
        if done < len(todo):  # _within stopped the pages
            raise _stopped(job, self.settings.deadline_sec, already + done, wanted)

    def stored(self, prefix: str, sha256: str, with_content: bool) -> Result | None:
        """The finished result under `prefix`, if its manifest exists (no OCR, no document needed)."""
        stored = results.read(self.store, prefix, sha256, with_content)
        return None if stored is None else _result(stored, True, Timings(), time.perf_counter())

    def _cached(self, job: Job, plan: Plan, timings: Timings, began: float) -> Result | None:
        if job.options.force:
            return None
        with timings.stage("lookup"):
            stored = results.read(self.store, plan.prefix, plan.source.sha256, job.options.return_content)
        if stored is None:
            return None
        metrics.CACHE_HITS.inc()
        return _result(stored, True, timings, began)


def _result(stored: Stored, cached: bool, timings: Timings, began: float) -> Result:
    metrics.observe_stages(timings.stages)
    engine = stored.manifest["engine"]
    return Result(
        document=stored.manifest["document"],
        engine={"name": engine["name"], "fingerprint": engine["fingerprint"]},
        cached=cached,
        keys=stored.keys,
        timings=timings.stages,
        elapsed_sec=round(time.perf_counter() - began, 3),
        content=stored.content,
    )


def open_pages(
    data: bytes, options: Options, settings: Settings, deadline: float | None = None
) -> PageSource:
    """The selected pages of the document within the limits (its media type sniffed from the bytes);
    a PDF's renderer stops at `deadline` (a `time.monotonic()` value) at the latest."""
    limits = PageLimits(
        settings.max_pixels, settings.max_pages, settings.pdf_dpi, settings.render_timeout_sec
    )
    return PageSource(data, sniff(data), options.pages, limits, deadline)


def describe(source: Source, pages: PageSource, engine: Engine, options: Options) -> SourceInfo:
    """The source as the result records it; a 400 for a language the engine cannot read."""
    _check_lang(options.lang, engine.languages(), engine.name)
    pages.prefetch = engine.prefetch_pages
    sha256 = hashlib.sha256(source.data).hexdigest()
    return SourceInfo(
        filename=source.filename, media_type=pages.media_type, sha256=sha256, pages=pages.page_count
    )


def _within(pages: PageSource, job: Job) -> Iterator[PageImage]:
    """The pages, until the deadline passes or the client leaves: checked before each page reaches
    the engine (and by a PDF's renderer while it renders one), so the work stops between pages.
    The first page of a run is read whatever the time (its render bounded by OCR_RENDER_TIMEOUT_SEC):
    the pages read are kept, so every retry gets further."""
    source = iter(pages)
    pages.set_deadline(None)
    first = True
    while not job.abandoned():
        if not first and job.deadline is not None and time.monotonic() > job.deadline:
            return
        try:
            page = next(source)
        except (StopIteration, DeadlineExceeded):  # the end, or the renderer's own check inside a page
            return
        if first:
            pages.set_deadline(job.deadline)
            first = False
        yield page


def _stopped(job: Job, budget: float, done: int, total: int) -> OCRError:
    kept = f"stopped after {done} of {total} page(s); the {done} page(s) read are stored"
    if job.abandoned():
        return ClientGone(f"the client closed its connection: {kept}")
    return DeadlineExceeded(
        f"the document ran past OCR_DEADLINE_SEC={budget:g}s: {kept}, and a retry reads only the rest "
        "(or send fewer pages with the option 'pages', or raise the limit)"
    )


class ClientGone(OCRError):
    """The client closed its connection while its document was read: the work stops between pages.
    Nobody reads this answer (nginx's 499): it is logged and counted, never part of the contract."""

    status, code = 499, "client_closed_request"


def _check_lang(lang: str | None, known: list[str] | None, engine: str) -> None:
    if not lang or known is None:
        return
    unknown = [part for part in lang.split("+") if part not in known]
    if unknown:
        raise BadRequest(
            f"engine {engine!r} cannot read language {'+'.join(unknown)!r}; it reads: {', '.join(known)}"
        )


def recognise(
    engine: Engine, pages: Iterable[PageImage], options: Options, source: SourceInfo, timings: Timings
) -> Recognised:
    """The pages read by the engine and rendered (the layout pictures are drawn here, while the
    pages are still at hand: the engine consumes them)."""
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
    document = replace(document, source=source, engine=info)
    with timings.stage("render"):
        markdown = render_markdown(document)
        as_json = render_json(document)
    return Recognised(document, layout, markdown, as_json)
