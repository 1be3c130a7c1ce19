"""PaddleOCR-VL's settings: read from the environment once (`ENV`, registered with function/config.py),
checked at start-up with errors that name the variable, and mapped to `PaddleOCRVL(...)` arguments.
No paddle import here: deploy checks and docs read these without the GPU image."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from function.config import boolean, parse_env, register_engine_env
from function.errors import ConfigError

# paddleocr/_pipelines/paddleocr_vl.py `_SUPPORTED_VL_BACKENDS` (3.4-3.7); 3.3 knows the first four.
BACKENDS = (
    "native",
    "vllm-server",
    "sglang-server",
    "fastdeploy-server",
    "mlx-vlm-server",
    "llama-cpp-server",
)
_VERSION_RE = re.compile(r"^v\d+(\.\d+)*$")
_LABEL_RE = re.compile(r"^[a-z_]+$")
DEFAULT_MODELS_DIR = "/home/paddleocr/.paddlex/official_models"  # where the offline images keep them
DEFAULT_SERVER_CONCURRENCY = 2


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


# variable -> (field, parser), registered with function/config.py so docs, manifests and tests can
# check names.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = register_engine_env(
    "paddleocr-vl",
    {
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
    },
)
VAR = {name: var for var, (name, _) in ENV.items()}

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
# Settings that do not change the output (or are secret): kept out of the fingerprint.
NOT_OUTPUT = frozenset(
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
                raise ConfigError(f"{VAR[name]} needs a server backend; PADDLEOCR_VL_BACKEND is native")
    for name in ("server_max_concurrency", "concurrency"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise ConfigError(f"{VAR[name]} must be 1 or more, got {value}")
    if s.layout_threshold is not None and not 0 <= s.layout_threshold <= 1:
        raise ConfigError(f"PADDLEOCR_VL_LAYOUT_THRESHOLD must be between 0 and 1, got {s.layout_threshold}")
