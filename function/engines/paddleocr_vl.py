"""PaddleOCR-VL engine (GPU): `paddleocr.PaddleOCRVL`, its layout blocks and its own Markdown.

Settings come from the environment once (`ENV`, function/engines/paddleocr_vl_settings.py). `_load`
builds the pipeline with every model directory given explicitly (paddleocr_vl_models.py) and the
model-hoster probe off, so nothing is looked up or downloaded; a missing package or model directory
is an `EngineLoadError` naming it (readiness 503, no fall-back).

Each page result's `parsing_res_list` becomes our blocks: `id` is PaddleX's `block_id` (the list
index), labels and boxes are kept, tables keep their HTML in `Block.html`. `order` is the position
in the pipeline's reading order among non-marginal blocks (0-based, as the CPU engines number it);
PaddleX's own `block_order` leaves tables, images and captions unnumbered, which would drop them
from our reading order. The Markdown is PaddleOCR-VL's own, pages joined by the package's
`concatenate_markdown_pages` (after `restructure_pages` when configured). It references image crops
by paths relative to the Markdown file (`imgs/...`); the crops themselves are in
`Document.images` (path -> RGB image), and `Block.image` holds the same path.

Concurrency: PaddleX's own server runs all inference of a pipeline on one thread ("We work around a
bug in Paddle Inference by performing all inference in the same thread", basic_serving/_app.py),
and its predictors take no locks. So each pipeline here has a thread of its own, and a document
borrows one pipeline for its whole run (the engines' `Slots`): one pipeline (documents one at a
time) with the native backend, `PADDLEOCR_VL_CONCURRENCY` pipelines sharing a VLM server otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any

import numpy as np
from PIL import Image

from function.config import Settings
from function.document import MARGINAL_LABELS, BBox, Block, Document, Page
from function.engines import paddleocr_vl_models as models
from function.engines.base import Engine, EngineLoadError, PageImage, Slots, package_version
from function.engines.layout import bgr, rgb_pixels
from function.engines.paddleocr_vl_models import DIR_ARGS, init_parameters, model_dir, pipeline_name
from function.engines.paddleocr_vl_settings import (
    CONSTRUCTOR_ARGS,
    ENV,
    NOT_OUTPUT,
    VLSettings,
    load_vl_settings,
)
from function.errors import UpstreamFailed
from function.options import Options

log = logging.getLogger(__name__)

PAGES_PER_CALL = 8  # pages per pipeline call: enough to overlap layout and VLM, few in memory at once


# ---------------------------------------------------------------- loading


def _pipeline_class() -> type:
    try:
        import paddleocr
    except ImportError as exc:
        raise EngineLoadError(
            f"the paddleocr package is not installed ({exc}); run the PaddleOCR-VL image (docs/gpu.md)"
        ) from exc
    cls = getattr(paddleocr, "PaddleOCRVL", None)
    if cls is None:
        raise EngineLoadError(
            f"paddleocr {package_version('paddleocr')} has no PaddleOCRVL; it needs 3.3 or newer"
        )
    return cls


def _require_paddle() -> None:
    """The layout model runs on Paddle whatever the VLM backend; find it without importing it."""
    if importlib.util.find_spec("paddle") is None:
        raise EngineLoadError("the paddlepaddle package is not installed; run the PaddleOCR-VL image")


# ---------------------------------------------------------------- pipelines and their threads


class _Worker:
    """One pipeline and the one thread that runs all of its inference."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pipeline: Any = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(fn, *args, **kwargs).result()


# ---------------------------------------------------------------- the engine


class PaddleOCRVLEngine(Engine):
    name = "paddleocr-vl"
    prefetch_pages = True  # the CPU waits while the GPU reads a page: render the next one meanwhile

    def __init__(self, settings: Settings, vl: VLSettings | None = None) -> None:
        super().__init__(settings)
        self.vl = load_vl_settings() if vl is None else vl
        self.pipeline_version = self.vl.pipeline_version  # resolved at load when not set
        self.models: dict[str, str] = {}  # role -> model name, resolved at load
        self.constructor: dict[str, Any] = {}  # what PaddleOCRVL(...) was given
        self._workers: Slots[_Worker] = Slots()  # one pipeline per document at once

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        began = time.perf_counter()
        # PaddleX reads this when it is imported: without it, start-up probes the model hosters.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        cls = _pipeline_class()
        _require_paddle()
        if self.vl.restructure_pages and not hasattr(cls, "restructure_pages"):
            raise EngineLoadError(
                f"PADDLEOCR_VL_RESTRUCTURE_PAGES needs paddleocr 3.4 or newer; "
                f"this is {package_version('paddleocr')}"
            )
        self.constructor = self.constructor_kwargs(cls)
        for index in range(self.vl.pipelines):
            self._workers.add(self._build(cls, index))
        log.info(
            "paddleocr-vl loaded in %.1f s: %s, backend %s, %d pipeline(s), models %s",
            time.perf_counter() - began,
            pipeline_name(self.pipeline_version or "v1"),
            self.vl.backend,
            self.vl.pipelines,
            ", ".join(self.models.values()),
        )

    def _build(self, cls: type, index: int) -> _Worker:
        worker = _Worker(f"paddleocr-vl-{index}")
        try:
            worker.pipeline = worker.call(cls, **self.constructor)
        except Exception as exc:
            raise EngineLoadError(f"paddleocr.PaddleOCRVL could not be built: {exc}") from exc
        return worker

    def constructor_kwargs(self, cls: type) -> dict[str, Any]:
        """`PaddleOCRVL(...)` arguments (function/engines/paddleocr_vl_models.py); the version and
        models they resolve to are kept for the fingerprint."""
        kwargs, self.pipeline_version, self.models = models.constructor_kwargs(self.vl, cls)
        return kwargs

    # ------------------------------------------------------------ identity

    @property
    def version(self) -> str:
        packages = f"paddleocr {package_version('paddleocr')}, paddlex {package_version('paddlex')}"
        models = ", ".join(self.models.values()) or "models not resolved yet"
        return f"{packages}; {pipeline_name(self.pipeline_version or 'v1')} ({models})"

    def settings(self) -> dict[str, object]:
        s = self.vl
        out: dict[str, object] = {
            name: getattr(s, name) for name in s.__dataclass_fields__ if name not in NOT_OUTPUT
        }
        out.update(pipeline_version=self.pipeline_version, models=dict(self.models))
        return out

    def languages(self) -> list[str] | None:
        return None  # the VLM reads its 109 languages without a hint

    # ------------------------------------------------------------ OCR

    @property
    def pages_independent(self) -> bool:
        return not self.vl.restructure_pages  # restructuring reads every page at once

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        return self.join(list(self.read(pages, options)))

    def read(self, pages: Iterable[PageImage], options: Options) -> Iterator[Document]:
        """Pages in batches of PAGES_PER_CALL (layout and VLM overlap), each yielded as soon as its
        batch is done; with restructuring, all at the end."""
        with self._workers.borrow() as worker:
            kept: list[tuple[PageImage, Any]] = []
            for chunk in _chunks(pages, PAGES_PER_CALL):
                for page, result in zip(chunk, self._infer(worker, chunk), strict=True):
                    if self.vl.restructure_pages:
                        kept.append((page, result))  # restructuring needs every page at once
                    else:
                        yield _page_document(self.vl, page, result)
            if kept:
                restructured = worker.pipeline.restructure_pages(
                    [result for _, result in kept],
                    merge_tables=self.vl.merge_tables,
                    relevel_titles=self.vl.relevel_titles,
                    concatenate_pages=False,
                )
                for (page, _), result in zip(kept, restructured, strict=True):
                    yield _page_document(self.vl, page, result)

    def join_markdown(self, markdown_pages: list[dict[str, Any]]) -> str | None:
        """PaddleOCR's own concatenation: a paragraph that runs on to the next page is joined."""
        with self._workers.borrow() as worker:
            return _tidy(worker.pipeline.concatenate_markdown_pages(markdown_pages))

    def _infer(self, worker: _Worker, chunk: list[PageImage]) -> list[Any]:
        arrays = [_bgr(page.image) for page in chunk]
        try:
            results = worker.call(worker.pipeline.predict, arrays)
        except Exception as exc:
            if self.vl.uses_server:  # 502: the VLM server failed; an event may be retried
                raise UpstreamFailed(f"PaddleOCR-VL's {self.vl.backend} backend failed: {exc}") from exc
            raise
        for item in results:
            if "error" in item and "parsing_res_list" not in item:  # PaddleX yields {"error": ...}
                raise RuntimeError(f"PaddleOCR-VL: {item['error']}")
        if len(results) != len(chunk):
            raise RuntimeError(f"PaddleOCR-VL returned {len(results)} results for {len(chunk)} pages")
        return results


def _page_document(vl: VLSettings, page: PageImage, result: Any) -> Document:
    """One page as read: its blocks, its Markdown page (as PaddleX's own server makes it,
    basic_serving/_pipeline_apps/paddleocr_vl.py) and its crops. The crops of every page after the
    first go in a folder of that page (`imgs/page2/...`): PaddleX names a crop by its label and box
    alone, and a page must be named the same whichever pages were read with it (checkpoints, chunks)."""
    md = result._to_markdown(pretty=vl.pretty_markdown, show_formula_number=vl.show_formula_number)
    images: Mapping[str, Image.Image] = md.get("markdown_images") or {}
    renames = {path: _page_path(path, page.index) for path in images}
    text = md["markdown_texts"]
    for old, new in renames.items():
        if old != new:
            text = text.replace(old, new)
    markdown: dict[str, Any] = {"markdown_texts": text}
    if md.get("page_continuation_flags") is not None:  # what the concatenation reads besides the text
        markdown["page_continuation_flags"] = list(md["page_continuation_flags"])
    return Document(
        pages=[_page(page, result, renames)],
        markdown_pages=[markdown],
        images={renames[path]: image for path, image in images.items()},
    )


def _page_path(path: str, index: int) -> str:
    if index == 0:
        return path
    head, _, tail = path.rpartition("/")
    return f"{head}/page{index + 1}/{tail}" if head else f"page{index + 1}/{tail}"


def _page(page: PageImage, result: Any, renames: Mapping[str, str]) -> Page:
    blocks = []
    order = 0
    for block_id, raw in enumerate(result["parsing_res_list"]):  # block_id is the index (result.py)
        marginal = raw.label in MARGINAL_LABELS
        blocks.append(_block(block_id, raw, None if marginal else order, renames))
        order += 0 if marginal else 1
    width = result.get("width") or page.image.width  # absent before PaddleX 3.4
    height = result.get("height") or page.image.height
    return Page(index=page.index, width=int(width), height=int(height), blocks=blocks)


def _block(block_id: int, raw: Any, order: int | None, renames: Mapping[str, str]) -> Block:
    content = raw.content or ""
    bbox: BBox = tuple(int(v) for v in raw.bbox[:4])  # type: ignore[assignment]
    image = raw.image.get("path") if isinstance(raw.image, dict) else None
    block = Block(id=block_id, label=raw.label, bbox=bbox, text=content.strip(), order=order)
    block.image = renames.get(image, image) if image else None
    if raw.label == "table" and content.lstrip().startswith("<table"):
        block.html, block.text = content.strip(), _table_text(content)
    return block


class _TableText(HTMLParser):
    """Cell texts of an HTML table: a line per row, cells separated by tabs."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_text(html: str) -> str:
    parser = _TableText()
    parser.feed(html)
    parser.close()
    return "\n".join("\t".join(row) for row in parser.rows if row)


def _bgr(image: Image.Image) -> np.ndarray:
    # PaddleX reads an ndarray as BGR (ReadImage(format="BGR") passes arrays through unchanged).
    return bgr(rgb_pixels(image))


def _chunks(pages: Iterable[PageImage], size: int) -> Iterator[list[PageImage]]:
    chunk: list[PageImage] = []
    for page in pages:
        chunk.append(page)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _tidy(markdown: str) -> str:
    """`concatenate_markdown_pages` starts every page with a blank line; end with one newline."""
    body = markdown.strip("\n")
    return body + "\n" if body else ""


# Re-exported: the settings and model resolution live in modules of their own.
__all__ = [
    "CONSTRUCTOR_ARGS",
    "DIR_ARGS",
    "ENV",
    "PaddleOCRVLEngine",
    "VLSettings",
    "init_parameters",
    "load_vl_settings",
    "model_dir",
    "pipeline_name",
]
