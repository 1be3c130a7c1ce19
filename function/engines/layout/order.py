"""Reading order: blocks by a recursive XY-cut (columns before rows), lines of a block by rows."""

from __future__ import annotations

from collections.abc import Sequence

from function.document import BBox, TextLine
from function.engines.layout.geometry import box_height, union, x_overlap

MIN_COLUMN_LINES = 3  # rows a side of a gutter needs to be read as a column of its own
MIN_COLUMN_SHARE = 0.3  # of the block's width, for a column of running text
SPANNING_SHARE = 0.6  # a box this much of its group's width spans its columns


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
    return _around_spanning(idx, boxes, line_h)


def _around_spanning(idx: list[int], boxes: Sequence[BBox], line_h: float | None) -> list[int]:
    """A group no straight cut separates, because something spans its columns (a photo or a
    headline across the gutter): the spanning boxes cut it into bands, each band read on its own
    (column by column where it has columns), the spanning boxes in their place between them.
    Without such boxes: top to bottom, then left to right."""
    left, right = min(boxes[i][0] for i in idx), max(boxes[i][2] for i in idx)
    spanning = sorted(
        (i for i in idx if boxes[i][2] - boxes[i][0] >= SPANNING_SHARE * (right - left)),
        key=lambda i: boxes[i][1],
    )
    rest = [i for i in idx if i not in spanning]
    if not spanning or len(rest) < 2 or len(spanning) == len(idx):
        return sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0]))
    bands: list[list[int]] = [[] for _ in range(len(spanning) + 1)]
    for i in rest:
        centre = (boxes[i][1] + boxes[i][3]) / 2
        bands[sum(centre > (boxes[s][1] + boxes[s][3]) / 2 for s in spanning)].append(i)
    order: list[int] = []
    for n, band in enumerate(bands):
        order += (
            _xy_cut(band, boxes, line_h) if len(band) < len(idx) else sorted(band, key=lambda i: boxes[i][1])
        )
        if n < len(spanning):
            order.append(spanning[n])
    return order


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
    return box_height(union([boxes[i] for i in band])) <= 1.5 * line_h


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
    """Lines of one block as rows (top to bottom), each row's pieces left to right; a block that
    spans two columns of running text (the layout model drew one box around both) column by column."""
    columns = _text_columns(lines)
    if len(columns) > 1:
        return [row for column in columns for row in _rows(column)]
    return _rows(lines)


def _text_columns(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """The block's lines split at a gutter, where every side is a column of running text: several
    lines, each filling most of its column. Narrow runs (a form's values, a receipt's prices) are
    not columns: their rows read across."""
    if len(lines) < 2 * MIN_COLUMN_LINES:
        return [list(lines)]
    groups = _split_on_gaps(list(range(len(lines))), [ln.bbox for ln in lines], axis=0)
    if len(groups) < 2:
        return [list(lines)]
    columns = [[lines[i] for i in group] for group in groups]
    whole = union([ln.bbox for ln in lines])
    for column in columns:
        box = union([ln.bbox for ln in column])
        widths = sorted(ln.bbox[2] - ln.bbox[0] for ln in column)
        narrow = box[2] - box[0] < MIN_COLUMN_SHARE * (whole[2] - whole[0])
        ragged = widths[len(widths) // 2] < 0.6 * (box[2] - box[0])
        if narrow or ragged or len(_rows(column)) < MIN_COLUMN_LINES:
            return [list(lines)]
    return columns


def _rows(lines: Sequence[TextLine]) -> list[list[TextLine]]:
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1] + ln.bbox[3]) / 2):
        if (
            rows
            and _same_row(union([ln.bbox for ln in rows[-1]]), line.bbox)
            and not any(_stacked(piece.bbox, line.bbox) for piece in rows[-1])
        ):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.bbox[0]) for row in rows]


def _same_row(a: BBox, b: BBox) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(box_height(a), box_height(b))


def _stacked(a: BBox, b: BBox) -> bool:
    """A box half again as tall as the other, sharing its width, lies below or above it, not beside
    it: a typed line with a pen stroke through it reaches up into the line above (022). Boxes of one
    height keep the rule by overlap alone (a table's cell read whole beside its row's lines)."""
    heights = sorted((box_height(a), box_height(b)))
    return x_overlap(a, b) > 0.3 * min(a[2] - a[0], b[2] - b[0]) and heights[1] >= 1.5 * heights[0]


def lines_text(lines: Sequence[TextLine]) -> str:
    return "\n".join(" ".join(ln.text.strip() for ln in row) for row in order_lines(lines))
