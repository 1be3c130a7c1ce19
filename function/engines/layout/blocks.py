"""A page's blocks from layout regions and OCR lines: every line in exactly one block, titles
labelled, blocks in reading order."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence

import numpy as np

from function.document import MARGINAL_LABELS, BBox, Block, TextLine
from function.engines.layout.geometry import (
    area,
    box_height,
    covered,
    intersection,
    median_line_height,
    union,
    x_overlap,
)
from function.engines.layout.labels import label_titles, taller_than_body, unmark_false_headers
from function.engines.layout.model import Region
from function.engines.layout.order import lines_text, reading_order
from function.engines.layout.split import split_across_regions
from function.engines.layout.tables import (
    CellReader,
    TextReader,
    recognise_table,
    side_by_side,
    split_table_lines,
    table_text,
)

log = logging.getLogger(__name__)

# How a table's text is read again: pieces of lines (`recognise_table`'s read_text), whole cells.
TableReaders = tuple[TextReader | None, CellReader | None]
# Labels whose content is a picture: VL gives them no text, so neither do we.
PICTURE_LABELS = frozenset({"image", "chart", "seal"})
# A picture region is blank paper when under 1 % of it is this much darker than its paper.
INK_CONTRAST = 60
MIN_INK_SHARE = 0.01
LONG_LINE = 20  # widths of a line height: a line of running text, some 40 characters or more


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
    return [r for r in kept if not _is_loose(r, kept)]


def _is_loose(region: Region, regions: Sequence[Region]) -> bool:
    """A text region drawn around paragraphs the model also found one by one. Its other lines lie
    above, between and below those paragraphs: as one block they would be read all before (or
    after) them. Without it they are loose lines, grouped into paragraphs where they lie."""
    if region.label != "text":
        return False
    return any(
        other is not region
        and other.label == "text"
        and covered(other.bbox, region.bbox) >= 0.8
        and area(other.bbox) < area(region.bbox)
        for other in regions
    )


def _confidence(region: Region) -> float:
    return region.score - (0.2 if region.label in MARGINAL_LABELS else 0.0)


def _is_shadow(region: Region, kept: Region) -> bool:
    inter = intersection(region.bbox, kept.bbox)
    if kept.label == "table" and inter >= 0.6 * area(region.bbox):
        return True
    iou = inter / max(1, area(region.bbox) + area(kept.bbox) - inter)
    return iou >= 0.6


def _assign_lines(
    regions: Sequence[Region], lines: Sequence[TextLine]
) -> tuple[list[list[TextLine]], list[TextLine]]:
    """Each line goes to one region (mostly covering it; the tightest if nested) or to no region."""
    by_region: list[list[TextLine]] = [[] for _ in regions]
    orphans: list[TextLine] = []
    for line in lines:
        cover = [covered(line.bbox, r.bbox) for r in regions]
        best = max(cover, default=0.0)
        if best < 0.5:
            orphans.append(line)
            continue
        near_best = [i for i, c in enumerate(cover) if c >= best - 0.1]
        chosen = min(near_best, key=lambda i: area(regions[i].bbox))
        by_region[chosen].append(line)
    return by_region, orphans


def _region_blocks(
    rgb: np.ndarray, region: Region, lines: list[TextLine], body_h: float, readers: TableReaders
) -> tuple[list[Block], list[TextLine]]:
    """The block of one region, and the lines it had that turned out not to belong to it."""
    if region.label in {"header", "footer"} and taller_than_body(lines, body_h):
        # Running heads are small print; a big line near the top edge is a title the model mislabelled.
        region = Region("text", region.bbox, region.score)
    if region.label == "table":
        return _table_block(rgb, region, lines, readers)
    if region.label in PICTURE_LABELS and not _mostly_text(region.bbox, lines):
        # A picture's text (a chart's labels, a letter the model took for a figure) was read and
        # must not vanish: its lines go on as text. Blank paper is no picture to crop.
        picture = [_block(region.label, region.bbox, [], region.score)] if has_ink(rgb, region.bbox) else []
        return picture, lines
    if not lines:  # a text region without text is a false detection
        return [], []
    label = "text" if region.label in PICTURE_LABELS else region.label
    # The box around the lines, not the region: the model nests a loose region around several
    # paragraphs it also found one by one, and the loose box would overlap them all and lose the
    # reading order its own leftover lines belong in.
    return [_block(label, union([ln.bbox for ln in lines]), lines, region.score)], []


def _table_block(
    rgb: np.ndarray, region: Region, lines: list[TextLine], readers: TableReaders
) -> tuple[list[Block], list[TextLine]]:
    table = recognise_table(rgb, region.bbox, lines, *readers)
    if table is None:
        parts = side_by_side(rgb, region.bbox, lines) if lines else []
        if len(parts) > 1:
            return [
                _block("table", union([ln.bbox for ln in part]), part, region.score) for part in parts
            ], []
        return [_block("table", region.bbox, lines, region.score)], []
    inside, outside = split_table_lines(table, lines)
    bbox = union([region.bbox, *(c.bbox for c in table.cells if c.bbox)])
    block = _block("table", bbox, inside, region.score)
    block.table = table
    return [block], outside


def has_ink(rgb: np.ndarray, bbox: BBox) -> bool:
    """Whether a region holds anything but paper: enough pixels clearly darker than its paper tone."""
    x0, y0, x1, y1 = bbox
    gray = rgb[y0:y1, x0:x1].mean(axis=2) if rgb.ndim == 3 else rgb[y0:y1, x0:x1]
    if gray.size == 0:
        return False
    paper = float(np.percentile(gray, 90))
    return float((gray < paper - INK_CONTRAST).mean()) >= MIN_INK_SHARE


def _mostly_text(bbox: BBox, lines: Sequence[TextLine]) -> bool:
    """Lines covering half a "figure" make it a text region the model mistook (a chart's labels
    cover far less); its text must not vanish as a picture's."""
    return sum(area(ln.bbox) for ln in lines) >= 0.5 * area(bbox)


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
            (b.bbox[1] - a.bbox[3]) / max(1, box_height(a.bbox))
            for b in lines
            if b is not a and b.bbox[1] >= a.bbox[3] and x_overlap(a.bbox, b.bbox) > 0
        ]
        if below:
            ratios.append(min(below))
    if len(ratios) < 4:
        return 0.8
    return min(1.2, max(0.5, 2.5 * statistics.median(ratios)))


def _belong_together(a: BBox, b: BBox, gap_limit: float) -> bool:
    if not _same_size(a, b):
        return False
    h = min(box_height(a), box_height(b))
    v_overlap = min(a[3], b[3]) - max(a[1], b[1])
    if v_overlap >= 0.5 * h:  # one row: pieces a detector split at a wide space (not a gutter)
        return -x_overlap(a, b) <= 0.8 * h
    return -v_overlap <= gap_limit * h and x_overlap(a, b) > 0


def _same_size(a: BBox, b: BBox) -> bool:
    """Lines set in one size. Two long lines of about one width are, even where one box is much
    taller: a speck, an underline or a descender run makes a typescript's line box taller, not its
    type. (A title is short, or set apart by more than a line's gap.)"""
    (ha, hb), (wa, wb) = (box_height(a), box_height(b)), (a[2] - a[0], b[2] - b[0])
    if max(ha, hb) <= 1.3 * min(ha, hb):
        return True
    long_lines = min(wa, wb) >= LONG_LINE * min(ha, hb) and min(wa, wb) >= 0.7 * max(wa, wb)
    return long_lines and max(ha, hb) <= 2 * min(ha, hb)


def _attach_or_add(blocks: list[Block], group: list[TextLine], body_h: float) -> None:
    """A paragraph's stray lines join the text block right above or below them; else a new block."""
    box = union([ln.bbox for ln in group])
    h = median_line_height(group)
    for block in blocks:
        if block.label != "text" or not block.lines:
            continue
        bh = median_line_height(block.lines)
        gap = max(block.bbox[1] - box[3], box[1] - block.bbox[3])
        same_size = max(h, bh) <= 1.25 * min(h, bh)
        aligned = x_overlap(box, block.bbox) >= 0.5 * min(box[2] - box[0], block.bbox[2] - block.bbox[0])
        if same_size and aligned and gap <= 0.8 * max(body_h, bh):
            block.lines.extend(group)
            block.bbox = union([block.bbox, box])
            return
    blocks.append(_block("text", box, group))


def build_blocks(
    rgb: np.ndarray,
    regions: Sequence[Region],
    lines: Sequence[TextLine],
    *,
    page_index: int = 0,
    read_text: TextReader | None = None,
    read_cell: CellReader | None = None,
) -> list[Block]:
    """Blocks of one page from layout regions and OCR lines, every line in exactly one block.

    `page_index` 0 allows a doc_title; `read_text`, where given, re-reads the pieces of an OCR line
    that runs across a table rule, cell by cell (see `recognise_table`).
    """
    height = rgb.shape[0]
    lines = [ln for ln in lines if ln.text.strip()]
    regions = _resolve_overlaps(regions)
    by_region, orphans = _assign_lines(regions, split_across_regions(lines, regions))
    body_h = _body_linebox_height(regions, by_region, orphans)
    blocks: list[Block] = []
    for region, its_lines in zip(regions, by_region, strict=True):
        made, leftover = _region_blocks(rgb, region, its_lines, body_h, (read_text, read_cell))
        blocks.extend(made)
        orphans.extend(leftover)
    for group in group_lines(orphans):
        _attach_or_add(blocks, group, body_h)
    unmark_false_headers(blocks)
    label_titles(blocks, body_h, page_index, height)
    return _finish(blocks, body_h)


def _body_linebox_height(
    regions: Sequence[Region], by_region: Sequence[list[TextLine]], orphans: list[TextLine]
) -> float:
    """Typical height of running text. Table cells and labels in figures are left out: short words
    get relatively taller detector boxes, and a page of table would make its title look small."""
    running = list(orphans)
    for region, its_lines in zip(regions, by_region, strict=True):
        if region.label != "table" and region.label not in PICTURE_LABELS:
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
    if block.label in PICTURE_LABELS:
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
