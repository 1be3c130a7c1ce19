"""A document's pages read into checkpoints, and the checkpoints assembled into its result.

`read` gives the engine only the pages without a checkpoint and stores each page as soon as the engine
hands it back (function/checkpoints.py); `assemble` builds the Markdown, the JSON and the manifest
from the stored pages alone, so a document read in one run, in several (a deadline, a killed pod), or
in chunks on several pods is the same result byte for byte.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from function import checkpoints, metrics, results
from function.checkpoints import Checkpoint
from function.document import Document, EngineInfo, SourceInfo
from function.engines.base import Engine
from function.model import PageImage
from function.options import Options
from function.pages import PageSource
from function.render import render_json, render_markdown
from function.results import Stored
from function.store import ResultStore
from function.visualize import KeepPages, layout_png

log = logging.getLogger(__name__)


@dataclass
class Timings:
    """Seconds per stage of one run."""

    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - began, 4)


@dataclass
class Plan:
    """One document, opened and keyed: what a run reads and where its result goes."""

    pages: PageSource
    engine: Engine
    source: SourceInfo
    options: dict[str, str]  # the output-affecting options (part of the key)
    prefix: str

    def missing(self, store: ResultStore, wanted: list[int], force: bool) -> list[int]:
        """The pages of `wanted` without a checkpoint (all of them with `force`). An engine whose
        pages depend on one another reads them all again unless every page is stored."""
        stored = set() if force else checkpoints.done(store, self.prefix)
        if not self.engine.pages_independent and not stored.issuperset(self.pages.selected):
            stored = set()
        return [index for index in wanted if index not in stored]

    def complete(self, store: ResultStore) -> bool:
        return checkpoints.done(store, self.prefix).issuperset(self.pages.selected)


def read(plan: Plan, store: ResultStore, pages: Iterable[PageImage], options: Options) -> Iterator[int]:
    """Reads `pages` (some of `plan.pages`' selection) and stores each one as it is done; yields each
    page's 0-based index once it is stored (the caller counts, and may stop between pages)."""
    kept = KeepPages(pages) if options.visualize else None
    metrics.ENGINE_CALLS.inc()
    for part in plan.engine.read(kept or pages, options):
        checkpoint = _checkpoint(plan.prefix, part, store, kept)
        checkpoints.write(store, plan.prefix, plan.source.sha256, checkpoint)
        metrics.PAGES.inc()
        log.info("page %d of %s read", checkpoint.page.index + 1, plan.source.sha256[:12])
        yield checkpoint.page.index


def _checkpoint(prefix: str, part: Document, store: ResultStore, kept: KeepPages | None) -> Checkpoint:
    """One page as read: its crops and layout picture stored now, described in its checkpoint."""
    (page,) = part.pages
    images = {}
    for path, image in part.images.items():
        if (stored := results.image_part(prefix, path, image)) is not None:
            store.put(stored.key, stored.data, stored.content_type)
            images[path] = stored.describe()
    layout = None
    if kept is not None and (png := layout_png(page, kept.images)) is not None:
        picture = results.layout_part(prefix, page.index + 1, png)
        store.put(picture.key, picture.data, picture.content_type)
        layout = {"page": page.index + 1, **picture.describe()}
    markdown = part.markdown_pages[0] if part.markdown_pages else None
    return Checkpoint(page, markdown, list(part.warnings), images, layout)


def assemble(
    plan: Plan,
    store: ResultStore,
    with_content: bool,
    timings: Timings,
) -> Stored:
    """The result the stored pages make: Markdown, JSON and, last, the manifest."""
    sha256 = plan.source.sha256
    pages: list[Document] = []
    images: dict[str, dict[str, Any]] = {}
    layout: list[dict[str, Any]] = []
    with timings.stage("assemble"):
        for cp in checkpoints.load(store, plan.prefix, sha256, plan.pages.selected):
            pages.append(cp.document())
            images.update(cp.images)
            layout.extend([cp.layout] if cp.layout else [])
        engine = plan.engine
        document = replace(
            engine.join(pages),
            source=plan.source,
            engine=EngineInfo(engine.name, engine.version, engine.fingerprint),
        )
    with timings.stage("render"):
        markdown = render_markdown(document)
        as_json = render_json(document)
    parts = results.parts(plan.prefix, markdown, as_json)
    manifest = results.manifest(plan.prefix, as_json, plan.options, parts, images, layout, timings.stages)
    with timings.stage("store"):
        results.write(store, plan.prefix, parts, manifest)
    content = {"markdown": markdown, "json": as_json} if with_content else None
    return Stored(manifest, content)
