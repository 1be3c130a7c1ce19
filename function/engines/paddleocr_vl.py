"""PaddleOCR-VL engine (GPU): `paddleocr.PaddleOCRVL`, its layout blocks and its own Markdown.

Settings come from the environment once (`ENV` below). `_load` builds the pipeline with every model
directory given explicitly and the model-hoster probe off, so nothing is looked up or downloaded; a
missing package or model directory is an `EngineLoadError` naming it (readiness 503, no fall-back).

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
borrows one pipeline for its whole run: one pipeline (documents one at a time) with the native
backend, `PADDLEOCR_VL_CONCURRENCY` pipelines sharing a VLM server otherwise.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import queue
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from function.config import Settings, parse_env
from function.document import MARGINAL_LABELS, BBox, Block, Document, Page
from function.engines.base import Engine, EngineLoadError, PageImage, package_version
from function.engines.layout import bgr, rgb_pixels
from function.errors import ConfigError, UpstreamFailed
from function.options import Options

log = logging.getLogger(__name__)

# paddleocr/_pipelines/paddleocr_vl.py `_SUPPORTED_VL_BACKENDS` (3.4-3.7); 3.3 knows the first four.
BACKENDS = (
    "native",
    "vllm-server",
    "sglang-server",
    "fastdeploy-server",
    "mlx-vlm-server",
    "llama-cpp-server",
)
DEFAULT_MODELS_DIR = "/home/paddleocr/.paddlex/official_models"  # where the offline images keep them
DEFAULT_SERVER_CONCURRENCY = 2
PAGES_PER_CALL = 8  # pages per pipeline call: enough to overlap layout and VLM, few in memory at once

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_VERSION_RE = re.compile(r"^v\d+(\.\d+)*$")
_LABEL_RE = re.compile(r"^[a-z_]+$")


# ---------------------------------------------------------------- settings


def boolean(raw: str) -> bool:
    text = raw.lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(raw)


def labels(raw: str) -> tuple[str, ...]:
    """Comma-separated layout labels; `none` is the empty list."""
    if raw.lower() == "none":
        return ()
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items or not all(_LABEL_RE.match(item) for item in items):
        raise ValueError(raw)
    return items


@dataclass(frozen=True)
class VLSettings:
    """The engine's settings. None means "not set": the package's default applies."""

    pipeline_version: str | None = None  # None: the newest the package offers whose models are present
    models_dir: str = DEFAULT_MODELS_DIR
    device: str | None = None
    backend: str = "native"
    server_url: str | None = None
    server_model_name: str | None = None
    server_api_key: str | None = field(default=None, repr=False)
    server_max_concurrency: int | None = None
    concurrency: int | None = None
    use_doc_orientation_classify: bool | None = None
    use_doc_unwarping: bool | None = None
    use_layout_detection: bool | None = None
    use_chart_recognition: bool | None = None
    use_seal_recognition: bool | None = None
    use_ocr_for_image_block: bool | None = None
    merge_layout_blocks: bool | None = None
    use_queues: bool | None = None
    layout_threshold: float | None = None
    markdown_ignore_labels: tuple[str, ...] | None = None
    restructure_pages: bool = False
    merge_tables: bool = True
    relevel_titles: bool = True
    pretty_markdown: bool = True
    show_formula_number: bool = False

    @property
    def uses_server(self) -> bool:
        return self.backend != "native"

    @property
    def pipelines(self) -> int:
        """Documents run at once in one process (one pipeline each)."""
        if not self.uses_server:
            return 1
        return self.concurrency or DEFAULT_SERVER_CONCURRENCY


# variable -> (field, parser); one table so docs, manifests and tests can check names.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "PADDLEOCR_VL_PIPELINE_VERSION": ("pipeline_version", str),
    "PADDLEOCR_VL_MODELS_DIR": ("models_dir", str),
    "PADDLEOCR_VL_DEVICE": ("device", str),
    "PADDLEOCR_VL_BACKEND": ("backend", str),
    "PADDLEOCR_VL_SERVER_URL": ("server_url", str),
    "PADDLEOCR_VL_SERVER_MODEL_NAME": ("server_model_name", str),
    "PADDLEOCR_VL_SERVER_API_KEY": ("server_api_key", str),
    "PADDLEOCR_VL_SERVER_MAX_CONCURRENCY": ("server_max_concurrency", int),
    "PADDLEOCR_VL_CONCURRENCY": ("concurrency", int),
    "PADDLEOCR_VL_USE_DOC_ORIENTATION_CLASSIFY": ("use_doc_orientation_classify", boolean),
    "PADDLEOCR_VL_USE_DOC_UNWARPING": ("use_doc_unwarping", boolean),
    "PADDLEOCR_VL_USE_LAYOUT_DETECTION": ("use_layout_detection", boolean),
    "PADDLEOCR_VL_USE_CHART_RECOGNITION": ("use_chart_recognition", boolean),
    "PADDLEOCR_VL_USE_SEAL_RECOGNITION": ("use_seal_recognition", boolean),
    "PADDLEOCR_VL_USE_OCR_FOR_IMAGE_BLOCK": ("use_ocr_for_image_block", boolean),
    "PADDLEOCR_VL_MERGE_LAYOUT_BLOCKS": ("merge_layout_blocks", boolean),
    "PADDLEOCR_VL_USE_QUEUES": ("use_queues", boolean),
    "PADDLEOCR_VL_LAYOUT_THRESHOLD": ("layout_threshold", float),
    "PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": ("markdown_ignore_labels", labels),
    "PADDLEOCR_VL_RESTRUCTURE_PAGES": ("restructure_pages", boolean),
    "PADDLEOCR_VL_MERGE_TABLES": ("merge_tables", boolean),
    "PADDLEOCR_VL_RELEVEL_TITLES": ("relevel_titles", boolean),
    "PADDLEOCR_VL_PRETTY_MARKDOWN": ("pretty_markdown", boolean),
    "PADDLEOCR_VL_SHOW_FORMULA_NUMBER": ("show_formula_number", boolean),
}
_VAR = {name: var for var, (name, _) in ENV.items()}

# VLSettings field -> `PaddleOCRVL(...)` argument (paddleocr/_pipelines/paddleocr_vl.py, _common_args.py).
CONSTRUCTOR_ARGS = {
    "device": "device",
    "backend": "vl_rec_backend",
    "server_url": "vl_rec_server_url",
    "server_model_name": "vl_rec_api_model_name",
    "server_api_key": "vl_rec_api_key",
    "server_max_concurrency": "vl_rec_max_concurrency",
    "use_doc_orientation_classify": "use_doc_orientation_classify",
    "use_doc_unwarping": "use_doc_unwarping",
    "use_layout_detection": "use_layout_detection",
    "use_chart_recognition": "use_chart_recognition",
    "use_seal_recognition": "use_seal_recognition",
    "use_ocr_for_image_block": "use_ocr_for_image_block",
    "merge_layout_blocks": "merge_layout_blocks",
    "use_queues": "use_queues",
    "layout_threshold": "layout_threshold",
    "markdown_ignore_labels": "markdown_ignore_labels",
}
_COMMON_ARGS = frozenset({"device"})  # paddleocr/_common_args.py, taken through **kwargs
# Settings that do not change the output (or are secret): kept out of the fingerprint.
_NOT_OUTPUT = frozenset(
    {"models_dir", "device", "server_url", "server_api_key", "server_max_concurrency", "concurrency"}
)
_SERVER_ONLY = ("server_url", "server_model_name", "server_api_key", "server_max_concurrency", "concurrency")


def load_vl_settings(environ: Mapping[str, str] | None = None) -> VLSettings:
    settings = VLSettings(**parse_env(ENV, os.environ if environ is None else environ))
    _check(settings)
    return settings


def _check(s: VLSettings) -> None:
    if s.pipeline_version is not None and not _VERSION_RE.match(s.pipeline_version):
        raise ConfigError(f"PADDLEOCR_VL_PIPELINE_VERSION must look like v1.6, got {s.pipeline_version!r}")
    if s.backend not in BACKENDS:
        raise ConfigError(f"PADDLEOCR_VL_BACKEND must be one of {', '.join(BACKENDS)}, got {s.backend!r}")
    if s.uses_server and not s.server_url:
        raise ConfigError(f"PADDLEOCR_VL_SERVER_URL is required with PADDLEOCR_VL_BACKEND={s.backend}")
    if not s.uses_server:
        # A server setting with the native backend means the server is not used: say so at start.
        for name in _SERVER_ONLY:
            if getattr(s, name) is not None and not (name == "concurrency" and s.concurrency == 1):
                raise ConfigError(f"{_VAR[name]} needs a server backend; PADDLEOCR_VL_BACKEND is native")
    for name in ("server_max_concurrency", "concurrency"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise ConfigError(f"{_VAR[name]} must be 1 or more, got {value}")
    if s.layout_threshold is not None and not 0 <= s.layout_threshold <= 1:
        raise ConfigError(f"PADDLEOCR_VL_LAYOUT_THRESHOLD must be between 0 and 1, got {s.layout_threshold}")


# ---------------------------------------------------------------- models


def pipeline_name(version: str) -> str:
    """PaddleX pipeline of a wrapper version (PaddleOCRVL._paddlex_pipeline_name)."""
    return "PaddleOCR-VL" if version == "v1" else f"PaddleOCR-VL-{version[1:]}"


def model_dir(models_dir: Path, model_name: str) -> Path | None:
    """Where PaddleX's cache keeps a model (official_models.py `_get_model_local_path`):
    "PaddleOCR-VL-1.6-0.9B" lives in "PaddleOCR-VL-1.6"; "PaddleOCR-VL-0.9B" may sit one level down."""
    base = models_dir / (model_name.replace("-0.9B", "") if "PaddleOCR-VL" in model_name else model_name)
    nested = base / model_name
    if nested.is_dir():
        return nested
    return base if base.is_dir() else None


def _pipeline_models(name: str) -> dict[str, str]:
    """Model names of a PaddleX pipeline, from the package's own YAML (role -> name)."""
    from paddlex.inference import load_pipeline_config

    config = load_pipeline_config(name)
    modules = config.get("SubModules", {})
    pre = config.get("SubPipelines", {}).get("DocPreprocessor", {}).get("SubModules", {})
    roles = {
        "layout": modules.get("LayoutDetection", {}),
        "vl": modules.get("VLRecognition", {}),
        "orientation": pre.get("DocOrientationClassify", {}),
        "unwarping": pre.get("DocUnwarping", {}),
    }
    return {role: sub["model_name"] for role, sub in roles.items() if sub.get("model_name")}


# role -> the constructor argument that takes its directory
_DIR_ARGS = {
    "layout": "layout_detection_model_dir",
    "vl": "vl_rec_model_dir",
    "orientation": "doc_orientation_classify_model_dir",
    "unwarping": "doc_unwarping_model_dir",
}


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


def init_parameters(cls: type) -> set[str]:
    """Named `__init__` parameters along the class's MRO (a subclass may pass **kwargs up)."""
    names: set[str] = set()
    for klass in cls.__mro__[:-1]:
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"self"}


def available_versions(cls: type) -> list[str]:
    """Pipeline versions the installed wrapper offers; before 3.4 there is no choice (v1 only)."""
    if "pipeline_version" not in init_parameters(cls):
        return ["v1"]
    for klass in cls.__mro__:
        versions = getattr(sys.modules.get(klass.__module__), "_AVAILABLE_PIPELINE_VERSIONS", None)
        if versions:
            return list(versions)
    return ["v1"]


# ---------------------------------------------------------------- pipelines and their threads


class _Worker:
    """One pipeline and the one thread that runs all of its inference."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pipeline: Any = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(fn, *args, **kwargs).result()


class _Pool:
    """Idle workers; a document waits for one and keeps it until it is done."""

    def __init__(self, workers: list[_Worker]) -> None:
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in workers:
            self._idle.put(worker)

    @contextmanager
    def borrow(self) -> Iterator[_Worker]:
        worker = self._idle.get()
        try:
            yield worker
        finally:
            self._idle.put(worker)


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
        self._pool: _Pool | None = None

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
        self._pool = _Pool([self._build(cls, i) for i in range(self.vl.pipelines)])
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
        """`PaddleOCRVL(...)` arguments: the settings that are set, the version and the model dirs."""
        versions = available_versions(cls)
        version, dirs = self._resolve_models(versions)
        kwargs: dict[str, Any] = {}
        if "pipeline_version" in init_parameters(cls):
            kwargs["pipeline_version"] = version
        kwargs.update({_DIR_ARGS[role]: str(path) for role, path in dirs.items()})
        for name, arg in CONSTRUCTOR_ARGS.items():
            value = getattr(self.vl, name)
            if value is not None:
                kwargs[arg] = list(value) if isinstance(value, tuple) else value
        self._check_supported(cls, kwargs)
        return kwargs

    @staticmethod
    def _check_supported(cls: type, kwargs: Mapping[str, Any]) -> None:
        """A setting the installed wrapper has no argument for (older paddleocr) names its variable.
        The common arguments (device) travel in **kwargs; the package itself checks those."""
        known = init_parameters(cls) | _COMMON_ARGS
        for name, arg in CONSTRUCTOR_ARGS.items():
            if arg in kwargs and arg not in known:
                raise EngineLoadError(
                    f"{_VAR[name]} is not supported by paddleocr {package_version('paddleocr')} "
                    f"(PaddleOCRVL has no {arg} argument)"
                )

    def _needed_roles(self) -> list[str]:
        s = self.vl
        roles = [] if s.use_layout_detection is False else ["layout"]
        roles += [] if s.uses_server else ["vl"]  # a server backend runs the VLM elsewhere
        roles += ["orientation"] if s.use_doc_orientation_classify else []
        roles += ["unwarping"] if s.use_doc_unwarping else []
        return roles

    def _resolve_models(self, versions: list[str]) -> tuple[str, dict[str, Path]]:
        """The pipeline version and the directory of each model it needs; all must exist."""
        root = Path(self.vl.models_dir)
        wanted = self.vl.pipeline_version
        if wanted is not None and wanted not in versions:
            raise EngineLoadError(
                f"PADDLEOCR_VL_PIPELINE_VERSION={wanted} is not offered by paddleocr "
                f"{package_version('paddleocr')} (it offers {', '.join(versions)})"
            )
        missing: list[str] = []
        for version in [wanted] if wanted else list(reversed(versions)):
            names = _pipeline_models(pipeline_name(version))
            needed = {role: names[role] for role in self._needed_roles() if role in names}
            dirs = {role: model_dir(root, name) for role, name in needed.items()}
            lost = [needed[role] for role, path in dirs.items() if path is None]
            if lost:
                missing.append(f"{version}: {', '.join(lost)}")
                continue
            self.pipeline_version, self.models = version, needed
            if self.vl.uses_server and "vl" in names:  # the VLM runs on the server
                self.models["vl"] = self.vl.server_model_name or names["vl"]
            return version, {role: path for role, path in dirs.items() if path is not None}
        raise EngineLoadError(
            f"PaddleOCR-VL model directories not found in {root} (PADDLEOCR_VL_MODELS_DIR) for "
            f"{'; '.join(missing)}; use the offline image or mount the models there"
        )

    # ------------------------------------------------------------ identity

    @property
    def version(self) -> str:
        packages = f"paddleocr {package_version('paddleocr')}, paddlex {package_version('paddlex')}"
        models = ", ".join(self.models.values()) or "models not resolved yet"
        return f"{packages}; {pipeline_name(self.pipeline_version or 'v1')} ({models})"

    def settings(self) -> dict[str, object]:
        s = self.vl
        out: dict[str, object] = {
            name: getattr(s, name) for name in s.__dataclass_fields__ if name not in _NOT_OUTPUT
        }
        out.update(pipeline_version=self.pipeline_version, models=dict(self.models))
        return out

    def languages(self) -> list[str] | None:
        return None  # the VLM reads its 109 languages without a hint

    # ------------------------------------------------------------ OCR

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        if self._pool is None:
            raise RuntimeError("paddleocr-vl engine used before load()")
        with self._pool.borrow() as worker:
            return self._document(worker, pages)

    def _document(self, worker: _Worker, pages: Iterable[PageImage]) -> Document:
        out = _Assembly(self.vl)
        kept: list[tuple[PageImage, Any]] = []
        for chunk in _chunks(pages, PAGES_PER_CALL):
            for page, result in zip(chunk, self._infer(worker, chunk), strict=True):
                if self.vl.restructure_pages:
                    kept.append((page, result))  # restructuring needs every page at once
                else:
                    out.add(page, result)
        if kept:
            restructured = worker.pipeline.restructure_pages(
                [result for _, result in kept],
                merge_tables=self.vl.merge_tables,
                relevel_titles=self.vl.relevel_titles,
                concatenate_pages=False,
            )
            for (page, _), result in zip(kept, restructured, strict=True):
                out.add(page, result)
        markdown = worker.pipeline.concatenate_markdown_pages(out.markdown_pages)
        return Document(pages=out.pages, markdown=_tidy(markdown), images=out.images)

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


class _Assembly:
    """Pages, per-page Markdown and image crops, gathered in page order."""

    def __init__(self, vl: VLSettings) -> None:
        self.vl = vl
        self.pages: list[Page] = []
        self.markdown_pages: list[dict[str, Any]] = []
        self.images: dict[str, Image.Image] = {}

    def add(self, page: PageImage, result: Any) -> None:
        # As PaddleX's own server does (basic_serving/_pipeline_apps/paddleocr_vl.py).
        md = result._to_markdown(
            pretty=self.vl.pretty_markdown, show_formula_number=self.vl.show_formula_number
        )
        renames = self._claim(page.index, md.get("markdown_images") or {})
        text = md["markdown_texts"]
        for old, new in renames.items():
            text = text.replace(old, new)
        self.markdown_pages.append({**md, "markdown_texts": text})
        self.pages.append(_page(page, result, renames))

    def _claim(self, index: int, images: Mapping[str, Image.Image]) -> dict[str, str]:
        """Add a page's crops; a path an earlier page already used (same label and box) gets a
        page folder, so no crop overwrites another."""
        renames = {}
        for path, image in images.items():
            final = path
            if path in self.images:
                head, _, tail = path.rpartition("/")
                final = f"{head}/page{index + 1}/{tail}" if head else f"page{index + 1}/{tail}"
                renames[path] = final
            self.images[final] = image
        return renames


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
