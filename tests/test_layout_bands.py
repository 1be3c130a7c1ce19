"""Table rows the rules leave out (`function.engines.layout.bands`), on drawn tables with real ink."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from function.document import TextLine
from function.engines.layout import recognise_table
from function.engines.layout.bands import ink_rows, split_bands
from function.engines.layout.tables import _ruled_grid

FONT = ImageFont.truetype("DejaVuSans.ttf", 22)
COLS = (60, 360, 660, 960)  # x of the vertical rules
PITCH = 40  # between the baselines of a cell's text rows


def _table(header: list[list[str]], body: list[list[str]]) -> tuple[np.ndarray, list[TextLine]]:
    """A header row and one ruled band below it, each cell's text rows centred in it (as a GOST
    table: the header's cells wrap differently, the band's rows are not ruled apart)."""
    image = Image.new("RGB", (1020, 520), "white")
    draw = ImageDraw.Draw(image)
    for x in COLS:
        draw.line([(x, 40), (x, 480)], fill="black", width=3)
    for y in (40, 200, 480):
        draw.line([(COLS[0], y), (COLS[-1], y)], fill="black", width=3)
    lines = []
    for (top, bottom), cells in (((40, 200), header), ((200, 480), body)):
        for col, rows in enumerate(cells):
            first = (top + bottom) / 2 - PITCH * (len(rows) - 1) / 2
            for i, text in enumerate(rows):
                origin = ((COLS[col] + COLS[col + 1]) / 2, first + i * PITCH)
                draw.text(origin, text, font=FONT, fill="black", anchor="mm")
                box = draw.textbbox(origin, text, font=FONT, anchor="mm")
                lines.append(TextLine(text, (box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), 0.95))
    return np.asarray(image), lines


HEADER = [["Diameter", "of the rod,", "mm"], ["Mass of", "1000 washers"], ["Diameter", "of the rod,", "mm"]]
BODY = [["1,1", "1,2", "1,4"], ["0,045", "0,043", "0,111"], ["2,0", "2,5", "3,0"]]
BBOX = (COLS[0], 40, COLS[-1], 480)


def test_a_band_of_unruled_rows_is_split_into_its_rows() -> None:
    """GOST 2.105's split table (042): three rows of numbers in one ruled band read as rows, the
    header's cells (three lines beside two) as one row of cells."""
    rgb, lines = _table(HEADER, BODY)
    table = recognise_table(rgb, BBOX, lines)
    assert table is not None and (table.n_rows, table.n_cols) == (4, 3)
    assert [[" ".join(text.split()) for text in row] for row in table.grid()] == [
        ["Diameter of the rod, mm", "Mass of 1000 washers", "Diameter of the rod, mm"],
        ["1,1", "0,045", "2,0"],
        ["1,2", "0,043", "2,5"],
        ["1,4", "0,111", "3,0"],
    ]


def test_a_cell_that_wraps_beside_one_line_cells_is_no_band() -> None:
    """Three lines in one cell beside one line in each other: a wrapped name, not three rows."""
    body = [["Resistance of", "the collector", "load, Ohm"], ["5"], ["7"]]
    rgb, lines = _table(HEADER, body)
    ruled = _ruled_grid(rgb, BBOX, lines)
    assert ruled is not None and ruled.n_rows == 2
    assert split_bands(ruled, rgb, 30.0) is ruled


def test_ink_rows_merge_accents_and_drop_specks() -> None:
    """A row of text with the dots of ё above it is one row; a lone speck is none."""
    crop = np.full((100, 200), 255, dtype=np.uint8)
    crop[10:12, 20:24] = 0  # the dots, 3 px above the letters
    crop[15:40, 20:180] = 0  # the letters
    crop[70, 100] = 0  # a speck
    assert ink_rows(crop, 30.0) == [(10, 40)]
