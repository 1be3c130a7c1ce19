"""The layout stage on the kinds of trouble real pages brought (issue 21), without a model: layout
regions and OCR lines built by hand on drawn pages, as the layout model and an OCR would give them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from function.document import TextLine
from function.engines.layout import Region, build_blocks, lines_text, reading_order, recognise_table
from tests.test_engine_rapidocr import _draw_table


def _white(width: int = 1000, height: int = 1400) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _body(blocks: list) -> str:  # type: ignore[type-arg]
    return "\n".join(
        b.text for b in sorted((b for b in blocks if b.order is not None), key=lambda b: b.order)
    )


def test_a_photo_across_two_columns_is_read_around_column_by_column() -> None:
    """A photo spanning the gutter and overlapping both columns leaves no straight cut: the page is
    still read left column, right column above the photo, the photo, then the same below it."""
    boxes = [
        (50, 100, 450, 460),  # left column, above; its bottom reaches into the photo's top
        (500, 100, 900, 400),  # right column, above
        (60, 430, 890, 640),  # the photo, across both columns
        (50, 620, 450, 1000),  # left column, below; its top reaches into the photo
        (500, 660, 900, 1000),  # right column, below
    ]
    assert reading_order(boxes, 20.0) == [0, 1, 2, 3, 4]


def test_a_block_spanning_two_columns_reads_column_by_column() -> None:
    """One text region drawn around both columns: its lines are not interleaved row by row."""
    left = [
        TextLine(f"left{i} words of the left column", (50, 100 + 40 * i, 440, 130 + 40 * i)) for i in range(5)
    ]
    right = [
        TextLine(f"right{i} words of the right column", (500, 100 + 40 * i, 900, 130 + 40 * i))
        for i in range(5)
    ]
    text = lines_text(left + right).split("\n")
    assert [t.split()[0] for t in text] == [f"left{i}" for i in range(5)] + [f"right{i}" for i in range(5)]


def test_a_form_with_values_on_the_right_reads_across() -> None:
    """A receipt's item and price share a row; the narrow price column is no column of text."""
    items = [TextLine(f"item{i} with a long name", (50, 100 + 40 * i, 500, 130 + 40 * i)) for i in range(5)]
    prices = [TextLine(f"{i}.99", (800, 100 + 40 * i, 880, 130 + 40 * i)) for i in range(5)]
    assert lines_text(items + prices).split("\n")[0] == "item0 with a long name 0.99"


def test_a_line_made_tall_by_a_pen_stroke_stays_below_the_line_above() -> None:
    """Tesseract's box of a typed line with a stroke through it reaches far up into the line above
    (a real letter, 022): still two rows, top to bottom, not one row read left to right."""
    lines = [
        TextLine("claimed to have a", (278, 648, 1684, 703)),
        TextLine("great interest, has been taken over by other", (276, 698, 1567, 753)),
        TextLine("Rumanians. Accordingly, supporters are found in", (275, 704, 1897, 802)),
        TextLine("Rumania for editorials", (275, 794, 1656, 851)),
    ]
    assert lines_text(lines).splitlines() == [ln.text for ln in lines]


def test_a_letter_body_labelled_as_a_figure_keeps_its_text() -> None:
    """The layout model calls a typewritten letter's body a figure; its lines cover under half of it."""
    rgb = _white()
    draw = ImageDraw.Draw(img := Image.fromarray(rgb))
    lines = []
    for i in range(12):
        box = (100, 200 + 60 * i, 700, 224 + 60 * i)
        draw.rectangle(box, fill="black")  # ink where the words are
        lines.append(TextLine(f"line {i} of the letter", box, 0.9))
    blocks = build_blocks(np.asarray(img), [Region("image", (80, 180, 920, 960), 0.8)], lines)
    body = _body(blocks)
    assert all(f"line {i} of the letter" in body for i in range(12))


def test_blank_paper_labelled_as_a_picture_is_no_picture() -> None:
    rgb = _white()
    lines = [TextLine("A paragraph of text", (100, 100, 700, 130), 0.9)]
    blocks = build_blocks(rgb, [Region("image", (100, 400, 900, 900), 0.7)], lines)
    assert [b.label for b in blocks] == ["text"]


def test_a_drawn_picture_stays_a_picture() -> None:
    rgb = _white()
    rgb[450:850, 150:850] = 90  # a grey photograph
    blocks = build_blocks(rgb, [Region("image", (100, 400, 900, 900), 0.7)], [])
    assert [b.label for b in blocks] == ["image"]


def test_a_table_whose_cells_reread_empty_still_carries_its_text() -> None:
    """Real scans: Tesseract's one-line re-reads of the pieces of a line crossing a rule come back
    empty. The reader here is a stand-in that returns nothing, as those re-reads did."""
    spec = [(r, c, 1, 1, f"c{r}{c}") for r in range(3) for c in range(3)]
    rgb, bbox, lines = _draw_table(spec)
    # Each row read as one detector line across the rules.
    rows = [
        TextLine(
            " ".join(ln.text for ln in lines[3 * r : 3 * r + 3]),
            (lines[3 * r].bbox[0], lines[3 * r].bbox[1], lines[3 * r + 2].bbox[2], lines[3 * r + 2].bbox[3]),
        )
        for r in range(3)
    ]
    table = recognise_table(rgb, bbox, rows, lambda crop: ("", None))
    assert table is not None
    text = " ".join(" ".join(row) for row in table.grid())
    assert all(f"c{r}{c}" in text for r in range(3) for c in range(3))


def _paragraph(first_line: int, count: int = 4) -> list[TextLine]:
    return [
        TextLine(f"Body text line {i} of running prose that fills the column.", (100, y, 900, y + 30), 0.9)
        for i, y in enumerate(range(first_line, first_line + 45 * count, 45))
    ]


def test_a_page_number_in_the_margin_is_no_body_text() -> None:
    lines = [*_paragraph(200), TextLine("- 12 -", (480, 1340, 530, 1370), 0.9)]
    blocks = build_blocks(_white(), [], lines)
    number = next(b for b in blocks if b.text == "- 12 -")
    assert number.label == "number" and number.order is None


def test_a_numbered_section_heading_is_a_title_whatever_its_size() -> None:
    lines = [TextLine("1. Introduction", (100, 120, 330, 150), 0.9), *_paragraph(200)]
    blocks = build_blocks(_white(), [], lines, page_index=1)
    assert next(b for b in blocks if b.text == "1. Introduction").label == "paragraph_title"


def test_a_numbered_list_item_stays_text() -> None:
    lines = [TextLine("1. Approve the attached regulation.", (100, 120, 700, 150), 0.9), *_paragraph(300)]
    blocks = build_blocks(_white(), [], lines, page_index=1)
    assert next(b for b in blocks if b.text.startswith("1. Approve")).label == "text"


def test_a_table_ruled_only_every_few_rows_reads_row_by_row() -> None:
    """A financial table ruled into bands of rows and columns, not cells: each "cell" holds four
    text rows beside others of four. Read as a grid, a band came out column by column."""
    image = Image.new("RGB", (1000, 700), "white")
    draw = ImageDraw.Draw(image)
    for x in (50, 350, 650, 950):
        draw.line([(x, 50), (x, 650)], fill="black", width=2)
    for y in (50, 350, 650):
        draw.line([(50, y), (950, y)], fill="black", width=2)
    lines = [
        TextLine(f"r{band}{row}c{col}", (80 + 300 * col, y, 250 + 300 * col, y + 30), 0.9)
        for band in range(2)
        for row, y in enumerate(range(80 + 300 * band, 80 + 300 * band + 4 * 60, 60))
        for col in range(3)
    ]
    rgb = np.asarray(image)
    assert recognise_table(rgb, (50, 50, 950, 650), lines) is None
    blocks = build_blocks(rgb, [Region("table", (50, 50, 950, 650), 0.9)], lines)
    rows = _body(blocks).split("\n")
    assert rows[:2] == ["r00c0 r00c1 r00c2", "r01c0 r01c1 r01c2"] and len(rows) == 8


def test_lines_between_paragraphs_the_model_found_stay_where_they_lie() -> None:
    """The layout model draws a loose text region around two paragraphs it also found one by one;
    the lines above, between and below them belong to the loose region only. As its block they
    were read all before the paragraphs."""
    lines = [
        *_paragraph(100, 2),
        *_paragraph(190, 4),
        *_paragraph(370, 2),
        *_paragraph(460, 4),
        *_paragraph(640, 2),
    ]
    for n, line in enumerate(lines):
        line.text = f"line{n:02d} " + line.text
    regions = [
        Region("text", (90, 90, 910, 740), 0.7),  # loose, around everything
        Region("text", (90, 185, 910, 360), 0.9),
        Region("text", (90, 455, 910, 630), 0.9),
    ]
    order = [ln.split()[0] for ln in _body(build_blocks(_white(), regions, lines)).split("\n")]
    assert order == [f"line{n:02d}" for n in range(len(lines))]


def test_two_tables_framed_side_by_side_read_one_after_the_other() -> None:
    """A quarterly and an annual table, each in its own frame with paper between, banded as above:
    the left table's rows, then the right one's (not rows running across both)."""
    image = Image.new("RGB", (1900, 700), "white")
    draw = ImageDraw.Draw(image)
    for left in (50, 1000):
        for x in range(left, left + 901, 300):
            draw.line([(x, 50), (x, 650)], fill="black", width=2)
        for y in (50, 350, 650):
            draw.line([(left, y), (left + 900, y)], fill="black", width=2)
    lines = [
        TextLine(f"{side}{band}{row}c{col}", (x0 + 30 + 300 * col, y, x0 + 200 + 300 * col, y + 30), 0.9)
        for side, x0 in (("L", 50), ("R", 1000))
        for band in range(2)
        for row, y in enumerate(range(80 + 300 * band, 80 + 300 * band + 4 * 60, 60))
        for col in range(3)
    ]
    blocks = build_blocks(np.asarray(image), [Region("table", (50, 50, 1900, 650), 0.9)], lines)
    rows = _body(blocks).split("\n")
    assert rows[0] == "L00c0 L00c1 L00c2" and rows[8] == "R00c0 R00c1 R00c2" and len(rows) == 16


def test_a_header_of_two_lines_is_the_documents_own_text() -> None:
    """A contract's title (two centred lines at the top) labelled a running head stays in the body;
    a one-line running head does not."""
    title = [TextLine("CONTRACT No 2/31", (400, 60, 600, 90), 0.9), TextLine("of lease", (440, 95, 560, 125))]
    head = TextLine("Journal of Things 12", (100, 20, 400, 45), 0.9)
    regions = [Region("header", (390, 55, 610, 130), 0.9), Region("header", (90, 15, 410, 50), 0.9)]
    blocks = build_blocks(_white(), regions, [head, *title, *_paragraph(300)], page_index=3)
    labels = {b.text.split("\n")[0]: b.label for b in blocks}
    assert labels["Journal of Things 12"] == "header" and labels["CONTRACT No 2/31"] != "header"
    assert "CONTRACT No 2/31" in _body(blocks)


def test_a_line_above_the_first_pages_title_is_no_running_head() -> None:
    note = TextLine("Approved by the council on 5 April 2010", (300, 60, 900, 90), 0.9)
    title = TextLine("The Form of the Theses", (300, 150, 800, 200), 0.9)
    lines = [note, title, *_paragraph(300)]
    blocks = build_blocks(_white(), [Region("header", (290, 55, 910, 95), 0.9)], lines, page_index=0)
    assert next(b for b in blocks if b.text == title.text).label == "doc_title"
    assert _body(blocks).startswith(note.text)
