"""Table rows the rules leave out: a ruled row that holds several rows of values, found in its ink.

Many tables rule only their header off from the body and leave the body's rows unruled (GOST's
example tables: three rows of numbers in one ruled band). The grid the rules draw then has one
"cell" per column holding all three values, and the table reads column by column. Where every
cell of such a band holds the same rows of ink at the same heights, the white between them is a
rule the printer left out: the band is split into those rows. A header whose cells wrap their
text differently (three lines beside two) has no such white across it and stays one row.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from function.document import Cell, Table

# Text rows each cell of a band must hold, whether the band is split by its ink or read as rows of
# text (tables.py): fewer is more likely a header's wrap.
BAND_ROWS = 3
CELL_INSET = 3  # pixels a cell's crop keeps off its rules
INK_LEVEL = 128  # grey below which a pixel is ink
SPECK_PIXELS = 2  # ink pixels a pixel row needs to count: a lone speck does not make a text row
# A gap under this share of a line height lies inside a text row (the dots of ё, a breve), not
# between rows; a run of ink under this share is a speck or a stray mark.
ROW_GAP = 0.25
MIN_ROW = 0.3


def split_bands(table: Table, rgb: np.ndarray, line_h: float) -> Table:
    """The table with each band of unruled rows split into its rows; the table itself if none."""
    cuts = [_band_cuts(table, row, rgb, line_h) for row in range(table.n_rows)]
    if not any(cuts):
        return table
    starts = [0]  # each old row's first new row; one more at the end
    for row_cuts in cuts:
        starts.append(starts[-1] + len(row_cuts) + 1)
    cells: list[Cell] = []
    for cell in table.cells:
        first, end = starts[cell.row], starts[cell.row + cell.rowspan]
        if not cuts[cell.row] or cell.bbox is None:
            cells.append(Cell(first, cell.col, cell.text, end - first, cell.colspan, cell.bbox))
            continue
        x0, y0, x1, y1 = cell.bbox
        for i, (top, bottom) in enumerate(pairwise([y0, *cuts[cell.row], y1])):
            cells.append(Cell(first + i, cell.col, "", 1, cell.colspan, (x0, top, x1, bottom)))
    return Table(n_rows=starts[-1], n_cols=table.n_cols, cells=cells)


def _band_cuts(table: Table, row: int, rgb: np.ndarray, line_h: float) -> list[int]:
    """y of the rows left unruled inside a grid row: between the text rows every cell holding ink
    has, at the same heights. Empty where the row is one row of text, or its cells differ."""
    cells = [c for c in table.cells if c.row <= row < c.row + c.rowspan]
    if any(c.rowspan != 1 or c.bbox is None for c in cells):
        return []
    per_cell = []
    for cell in cells:
        assert cell.bbox is not None
        x0, y0, x1, y1 = cell.bbox
        x0, y0, x1, y1 = x0 + CELL_INSET, y0 + CELL_INSET, x1 - CELL_INSET, y1 - CELL_INSET
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        runs = ink_rows(rgb[y0:y1, x0:x1], line_h)
        if runs:
            per_cell.append([(top + y0, bottom + y0) for top, bottom in runs])
    count = len(per_cell[0]) if per_cell else 0
    if len(per_cell) < 2 or count < BAND_ROWS or any(len(runs) != count for runs in per_cell):
        return []
    lowest = [max(runs[i][1] for runs in per_cell) for i in range(count)]
    highest = [min(runs[i][0] for runs in per_cell) for i in range(count)]
    # The k-th rows of all cells must lie above all their (k+1)-th rows: one row of text each.
    if any(highest[i + 1] <= lowest[i] for i in range(count - 1)):
        return []
    return [(lowest[i] + highest[i + 1]) // 2 for i in range(count - 1)]


def ink_rows(crop: np.ndarray, line_h: float) -> list[tuple[int, int]]:
    """(top, bottom) of the rows of text in a crop, from the pixel rows that hold ink."""
    gray = crop.mean(axis=2) if crop.ndim == 3 else crop
    inked = np.flatnonzero((gray < INK_LEVEL).sum(axis=1) >= SPECK_PIXELS)
    runs: list[list[int]] = []
    for y in inked.tolist():
        if runs and y - runs[-1][1] <= max(1.0, ROW_GAP * line_h):
            runs[-1][1] = y + 1
        else:
            runs.append([y, y + 1])
    return [(top, bottom) for top, bottom in runs if bottom - top >= MIN_ROW * line_h]
