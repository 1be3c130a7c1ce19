"""Ruled tables: the cell grid from the drawn rules, filled with the OCR lines inside it."""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise

import cv2
import numpy as np

from function.document import BBox, Cell, Table, TextLine
from function.engines.layout.bands import BAND_ROWS, CELL_INSET, split_bands
from function.engines.layout.geometry import box_height, clip, covered, grow, median_line_height
from function.engines.layout.order import lines_text, order_lines

log = logging.getLogger(__name__)

MIN_PIECES_SHARE = 0.7  # of a line's characters its cell-by-cell re-reads must keep

# Recognises the one line of text in an RGB crop: (text, score). Used for the pieces of an OCR
# line that runs across a table rule, one piece per cell.
TextReader = Callable[[np.ndarray], tuple[str, float | None]]
# Reads the text lines of an RGB crop (a whole table cell); boxes in the crop's pixels.
CellReader = Callable[[np.ndarray], list[TextLine]]
FRAME_GAP = 3  # times the usual gap between columns' cells: between two tables' frames


def recognise_table(
    rgb: np.ndarray,
    bbox: BBox,
    lines: Sequence[TextLine],
    read_text: TextReader | None = None,
    read_cell: CellReader | None = None,
) -> Table | None:
    """The cell grid of a ruled table (rows, columns, spans), filled with the OCR lines inside it.

    The grid comes from the table's drawn rules (OpenCV morphology). None when no grid of at least
    2 x 2 cells is found (a borderless table): the caller keeps the block as text. An OCR line that
    runs across a rule is cut at it, and with `read_text` each piece is recognised again; without
    it the whole line goes to the cell holding most of it. With `read_cell`, every cell with ink in
    it is read anew on its own, and what that finds replaces what the page's lines gave it.
    """
    ruled = _ruled_grid(rgb, bbox, lines)
    if ruled is None:
        return None
    # Rows found in the ink between the rules settle what the lines' heights only suggest.
    table = split_bands(ruled, rgb, median_line_height(lines) or 20.0)
    if table is ruled and _rows_unruled(table, lines):
        return None
    # Cells read whole make reading the pieces of lines across them one by one redundant.
    unsure = _fill_cells(table, lines, rgb, None if read_cell else read_text)
    if read_cell is not None:
        _reread_cells(table, unsure, rgb, read_cell)
    return table


def _ruled_grid(rgb: np.ndarray, bbox: BBox, lines: Sequence[TextLine]) -> Table | None:
    """The grid the rules draw, empty."""
    line_h = median_line_height(lines) or 20.0
    pad = round(0.5 * line_h)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = clip(grow(bbox, pad), width, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    boxes = [(a + x0, b + y0, c + x0, d + y0) for a, b, c, d in _cell_boxes(rgb[y0:y1, x0:x1], line_h)]
    return _grid(boxes, tol=max(6.0, 0.5 * line_h))


def side_by_side(rgb: np.ndarray, bbox: BBox, lines: Sequence[TextLine]) -> list[list[TextLine]]:
    """A table region's lines split where tables stand side by side, each in a frame of its own
    (a strip of paper between their rules, wider than the rules between columns): one list per
    table, read one after the other. One list where the region holds one table."""
    table = _ruled_grid(rgb, bbox, lines)
    cuts = _frame_gaps(table, lines) if table else []
    parts: list[list[TextLine]] = [[] for _ in range(len(cuts) + 1)]
    for line in lines:
        parts[sum((line.bbox[0] + line.bbox[2]) / 2 > cut for cut in cuts)].append(line)
    return [part for part in parts if part]


def _frame_gaps(table: Table, lines: Sequence[TextLine]) -> list[float]:
    """x of the column boundaries where the columns with text on either side stand far apart
    (two frames, maybe with an empty strip of paper between them that the rules also enclose)."""
    spans = [_column_span(table, col) for col in range(table.n_cols)]
    centres = [(ln.bbox[0] + ln.bbox[2]) / 2 for ln in lines]
    used = [span for span in spans if span and any(span[0] <= x <= span[1] for x in centres)]
    gaps = [(right[0] - left[1], (left[1] + right[0]) / 2) for left, right in pairwise(used)]
    if not gaps:
        return []
    typical = statistics.median(gap for gap, _ in gaps)
    least = 0.5 * (median_line_height(lines) or 20.0)
    return [x for gap, x in gaps if gap >= max(FRAME_GAP * typical, least)]


def _column_span(table: Table, col: int) -> tuple[int, int] | None:
    boxes = [c.bbox for c in table.cells if c.bbox and c.col == col and c.colspan == 1]
    return (min(b[0] for b in boxes), max(b[2] for b in boxes)) if boxes else None


def _reread_cells(table: Table, unsure: set[int], rgb: np.ndarray, read_cell: CellReader) -> None:
    """The cells the page's lines filled badly, each read on its own: Tesseract's page pass reads
    across a ruled table's rules (one line through four cells) and drops lone numbers in cells; a
    cell alone is one small block. Cells a line lay wholly inside keep it (a read costs ~40 ms)."""
    for i, cell in enumerate(table.cells):
        if cell.bbox is None or i not in unsure:
            continue
        x0, y0, x1, y1 = grow(cell.bbox, -CELL_INSET)
        if x1 - x0 < 8 or y1 - y0 < 8 or not _has_ink(rgb[y0:y1, x0:x1]):
            continue
        text = lines_text(read_cell(np.ascontiguousarray(rgb[y0:y1, x0:x1])))
        if text.strip():
            cell.text = text


def _has_ink(crop: np.ndarray) -> bool:
    gray = crop.mean(axis=2) if crop.ndim == 3 else crop
    return bool((gray < 128).any())


def _rows_unruled(table: Table, lines: Sequence[TextLine]) -> bool:
    """Whether the rules drawn are not the cells' but bands' and columns': a financial table ruled
    only every few rows. Then most of its text sits in "cells" of several text rows each, beside
    others of several rows in the same band, and a grid would read each band column by column;
    read as rows of text, its rows come out whole. (A cell whose text wraps has neighbours of
    one line.) A line reaching across cells counts in each."""
    per_cell: list[list[TextLine]] = [[] for _ in table.cells]
    for line in lines:
        for i in _cells_crossed(line, table.cells):
            per_cell[i].append(line)
    tall = [len(order_lines(ls)) >= BAND_ROWS for ls in per_cell]
    tall_per_row = Counter(cell.row for cell, t in zip(table.cells, tall, strict=True) if t)
    banded = {
        id(line)
        for cell, ls, t in zip(table.cells, per_cell, tall, strict=True)
        if t and tall_per_row[cell.row] >= 2
        for line in ls
    }
    return len(banded) > 0.5 * len({id(line) for ls in per_cell for line in ls})


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
    return cv2.dilate(cv2.bitwise_or(horizontal, vertical), np.ones((3, 3), np.uint8))


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
    shares = [covered(line.bbox, c.bbox) if c.bbox else 0.0 for c in cells]
    best = max(range(len(cells)), key=lambda i: shares[i])
    return best, shares[best]


def split_table_lines(table: Table, lines: Sequence[TextLine]) -> tuple[list[TextLine], list[TextLine]]:
    """Lines inside the table's cells, and the others (a caption inside the layout box, say)."""
    inside: list[TextLine] = []
    outside: list[TextLine] = []
    for line in lines:
        (inside if _inside(line, table.cells) else outside).append(line)
    return inside, outside


def _inside(line: TextLine, cells: Sequence[Cell]) -> bool:
    """Mostly in one cell, or in several: a line Tesseract read across the rules of a row."""
    return (
        _best_cell(line, cells)[1] >= 0.3 or sum(covered(line.bbox, c.bbox) for c in cells if c.bbox) >= 0.5
    )


def _fill_cells(
    table: Table, lines: Sequence[TextLine], rgb: np.ndarray, read_text: TextReader | None
) -> set[int]:
    """Cells filled with the lines inside them; returns the cells left unsure: empty, or reached by
    a line that runs across rules."""
    per_cell: list[list[TextLine]] = [[] for _ in table.cells]
    across: set[int] = set()
    for line in lines:
        best = _best_cell(line, table.cells)[0]
        if not _inside(line, table.cells):
            continue
        crossed = _cells_crossed(line, table.cells)
        if len(crossed) > 1:
            across.update(crossed)
        pieces = _pieces(line, crossed, rgb, read_text) if len(crossed) > 1 and read_text else []
        if not _kept_the_text(line, pieces):  # re-reads that came back (nearly) empty
            pieces = []
        for i, piece in pieces or [(best, line)]:
            per_cell[i].append(piece)
    for cell, its_lines in zip(table.cells, per_cell, strict=True):
        cell.text = lines_text(its_lines)
    return across | {i for i, its_lines in enumerate(per_cell) if not its_lines}


def _kept_the_text(line: TextLine, pieces: Sequence[tuple[int, TextLine]]) -> bool:
    """Whether a line's pieces, re-read cell by cell, still hold most of its characters. On real
    scans Tesseract's one-line re-reads of small pieces often come back empty; the whole line in
    one cell then loses less than pieces that dropped half the text."""
    read = sum(len("".join(piece.text.split())) for _, piece in pieces)
    return read >= MIN_PIECES_SHARE * len("".join(line.text.split()))


def _cells_crossed(line: TextLine, cells: Sequence[Cell]) -> dict[int, BBox]:
    """The cells a line reaches into by at least a character's width: index -> the part inside."""
    least = 0.5 * box_height(line.bbox)
    parts = {}
    for i, cell in enumerate(cells):
        if cell.bbox is None:
            continue
        x0, y0 = max(line.bbox[0], cell.bbox[0]), max(line.bbox[1], cell.bbox[1])
        x1, y1 = min(line.bbox[2], cell.bbox[2]), min(line.bbox[3], cell.bbox[3])
        if x1 - x0 >= least and y1 - y0 >= 0.5 * box_height(line.bbox):
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
