"""The RapidOCR engine and the shared layout module, on real rendered pages and on hand-built boxes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from function.config import Settings
from function.document import BBox, Block, Document, Page, TextLine
from function.engines import rapidocr as rapidocr_mod
from function.engines.base import EngineLoadError, PageImage
from function.engines.layout import (
    CDLA_TO_VL,
    LayoutModel,
    Region,
    build_blocks,
    reading_order,
    recognise_table,
    reread_empty_regions,
)
from function.engines.layout import model as layout_model
from function.engines.rapidocr import RapidOCREngine
from function.options import Options
from tests.synthetic import cer, english_page, page_with_text, table_page, two_column_page

# ---------------------------------------------------------------- the engine on real pages


@pytest.fixture(scope="module")
def engine() -> RapidOCREngine:
    eng = RapidOCREngine(Settings())
    eng.load()
    return eng


def _page(engine: RapidOCREngine, image: Image.Image, index: int = 0) -> Page:
    doc = engine.predict([PageImage(index=index, image=image)], Options())
    assert len(doc.pages) == 1
    return doc.pages[0]


def _body_text(page: Page) -> str:
    return "\n".join(b.text for b in page.ordered_blocks())


def test_english_page_reads_with_low_cer(engine: RapidOCREngine) -> None:
    truth = english_page(seed=0)
    page = _page(engine, truth.image)
    assert (page.width, page.height) == truth.image.size
    assert cer(truth.text, _body_text(page)) < 0.02


def test_title_is_a_title(engine: RapidOCREngine) -> None:
    truth = english_page(seed=1)
    first = _page(engine, truth.image).ordered_blocks()[0]
    assert first.label == "doc_title"
    assert cer(truth.blocks[0].text, first.text) < 0.05
    # On a later page the same title is a section title: a document has one doc_title.
    later = _page(engine, truth.image, index=3).ordered_blocks()[0]
    assert later.label == "paragraph_title"


def test_two_columns_are_read_column_by_column(engine: RapidOCREngine) -> None:
    truth = two_column_page(seed=0)
    text = " ".join(_body_text(_page(engine, truth.image)).split())
    starts = [text.find(" ".join(block.text.split()[:4])) for block in truth.blocks]
    assert all(s >= 0 for s in starts), starts
    assert starts == sorted(starts)
    assert cer(truth.text, text) < 0.02


def test_ruled_table_comes_back_as_a_grid(engine: RapidOCREngine) -> None:
    truth = table_page(rows=5, cols=4, seed=0)
    page = _page(engine, truth.image)
    tables = [b for b in page.blocks if b.label == "table"]
    assert len(tables) == 1 and tables[0].table is not None
    table = tables[0].table
    expected = truth.blocks[-1].cells
    assert expected is not None
    assert (table.n_rows, table.n_cols) == (len(expected), len(expected[0]))
    assert table.grid() == expected
    assert [b.label for b in page.ordered_blocks()] == ["doc_title", "text", "table"]


def test_large_page_boxes_are_in_page_pixels(engine: RapidOCREngine) -> None:
    # 300 dpi: 2480 x 3508, beyond rapidocr's 2000 px working size.
    truth = english_page(seed=2, dpi=300)
    page = _page(engine, truth.image)
    assert (page.width, page.height) == (2480, 3508)
    title = page.ordered_blocks()[0]
    expected = truth.blocks[0].bbox
    assert all(abs(a - b) <= 30 for a, b in zip(title.bbox, expected, strict=True)), (title.bbox, expected)
    assert cer(truth.text, _body_text(page)) < 0.02


@pytest.mark.parametrize("words", ["Bravo mountain survey", "Alpha river report"])
def test_a_lone_short_line_is_read(engine: RapidOCREngine, words: str) -> None:
    # The detector scores a lone short line on an empty page below its threshold; the layout
    # model still sees it, and its region is read again on its own.
    truth = page_with_text([words])
    blocks = _page(engine, truth.image, index=1).ordered_blocks()
    assert [b.text for b in blocks] == [words]


def test_blank_page_has_no_blocks(engine: RapidOCREngine) -> None:
    page = _page(engine, Image.new("RGB", (800, 1100), "white"))
    assert page.blocks == []


def test_pages_are_consumed_one_at_a_time(engine: RapidOCREngine, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    read_page = engine._page

    def recording_page(page: PageImage, options: Options, document: Document) -> None:
        events.append(f"read {page.index}")
        read_page(page, options, document)

    def pages() -> Iterator[PageImage]:
        for index in (4, 5):
            events.append(f"pull {index}")
            yield PageImage(index=index, image=Image.new("RGB", (400, 300), "white"))

    monkeypatch.setattr(engine, "_page", recording_page)
    doc = engine.predict(pages(), Options())
    assert [p.index for p in doc.pages] == [4, 5]
    assert events == ["pull 4", "read 4", "pull 5", "read 5"]


def test_languages_are_latin_and_chinese(engine: RapidOCREngine) -> None:
    assert engine.languages() == ["en", "ch"]
    assert "ru" not in engine.languages()


def test_fingerprint_is_stable_and_follows_settings() -> None:
    a, b = RapidOCREngine(Settings()), RapidOCREngine(Settings())
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint.startswith("rapidocr-")
    b.max_side_len = 1600
    assert a.fingerprint != b.fingerprint
    c = RapidOCREngine(Settings())
    c.layout_conf_thresh = 0.4
    assert c.fingerprint != a.fingerprint


def test_version_names_the_models() -> None:
    version = RapidOCREngine(Settings()).version
    assert "rapidocr 3." in version
    assert "PP-OCRv6_det_small.onnx" in version and "PP-OCRv6_rec_small.onnx" in version


def test_missing_ocr_model_is_a_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rapidocr_mod, "MODEL_DIR", tmp_path)
    eng = RapidOCREngine(Settings())
    with pytest.raises(EngineLoadError, match=re.escape("PP-OCRv6_det_small.onnx")) as info:
        eng.load()
    assert str(tmp_path) in str(info.value)
    assert not eng.ready


def test_missing_layout_model_is_a_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "layout_cdla.onnx"
    monkeypatch.setattr(layout_model, "default_layout_model_path", lambda: missing)
    with pytest.raises(EngineLoadError, match=re.escape(str(missing))):
        RapidOCREngine(Settings()).load()
    with pytest.raises(EngineLoadError, match="layout model file not found"):
        LayoutModel(tmp_path / "nope.onnx")


# ---------------------------------------------------------------- label mapping


def test_every_cdla_class_maps_into_the_vl_vocabulary() -> None:
    vl_labels = {"text", "paragraph_title", "image", "figure_title", "table", "header", "footer"}
    vl_labels |= {"reference", "display_formula"}
    assert set(CDLA_TO_VL.values()) <= vl_labels
    assert len(CDLA_TO_VL) == 10
    assert CDLA_TO_VL["table_caption"] == "figure_title"  # VL has no table_title


# ---------------------------------------------------------------- reading order on hand-built boxes


def test_one_column_reads_top_to_bottom() -> None:
    boxes = [(100, 500, 900, 600), (100, 100, 900, 200), (100, 300, 900, 400)]
    assert reading_order(boxes) == [1, 2, 0]


def test_two_columns_under_a_title_read_column_by_column() -> None:
    title = (100, 50, 900, 100)
    left = [(100, 150, 480, 400), (100, 420, 480, 700)]
    # The right column's gap (at 400-420 too) lines up with the left one's: still no interleaving.
    right = [(520, 150, 900, 400), (520, 420, 900, 650)]
    boxes = [right[1], left[1], title, right[0], left[0]]
    order = [boxes[i] for i in reading_order(boxes)]
    assert order == [title, *left, *right]


def test_columns_then_full_width_then_columns() -> None:
    top = [(100, 100, 480, 300), (520, 100, 900, 300)]
    table = (100, 350, 900, 500)
    bottom = [(100, 550, 480, 800), (520, 550, 900, 700)]
    boxes = [bottom[1], table, top[1], bottom[0], top[0]]
    order = [boxes[i] for i in reading_order(boxes)]
    assert order == [top[0], top[1], table, bottom[0], bottom[1]]


def test_a_block_under_one_column_stays_in_that_column() -> None:
    left, right, left_more = (100, 100, 480, 300), (520, 100, 900, 300), (100, 330, 480, 500)
    boxes = [right, left_more, left]
    assert [boxes[i] for i in reading_order(boxes)] == [left, left_more, right]


def test_form_rows_read_across_when_line_height_is_known() -> None:
    rows = [((100, y, 300, y + 30), (600, y, 900, y + 30)) for y in (100, 150, 200)]
    boxes = [box for row in rows for box in row]
    assert reading_order(boxes, line_height=30) == [0, 1, 2, 3, 4, 5]


def test_overlapping_boxes_fall_back_to_top_then_left() -> None:
    boxes = [(300, 120, 700, 300), (100, 100, 500, 200)]
    assert reading_order(boxes) == [1, 0]


# ---------------------------------------------------------------- blocks from hand-built lines


def _line(text: str, x: int, y: int, w: int, h: int = 30, score: float = 0.9) -> TextLine:
    return TextLine(text=text, bbox=(x, y, x + w, y + h), score=score)


def _all_lines(blocks: list[Block]) -> list[TextLine]:
    return [ln for b in blocks for ln in b.lines]


def test_lines_without_a_region_form_paragraphs_and_a_title() -> None:
    rgb = np.full((1400, 1000, 3), 255, np.uint8)
    title = _line("Big Title", 100, 80, 500, h=50)
    para1 = [_line(f"first {i}", 100, 200 + 36 * i, 800) for i in range(3)]
    para2 = [_line(f"second {i}", 100, 360 + 36 * i, 800) for i in range(2)]
    lines = [para2[1], title, *para1, para2[0]]
    blocks = build_blocks(rgb, [], lines)
    assert [b.label for b in blocks] == ["doc_title", "text", "text"]
    assert blocks[1].text == "first 0\nfirst 1\nfirst 2"
    assert blocks[2].text == "second 0\nsecond 1"
    assert [b.order for b in blocks] == [0, 1, 2] and [b.id for b in blocks] == [0, 1, 2]
    assert blocks[1].score == pytest.approx(0.9)


def test_double_spaced_lines_stay_one_paragraph() -> None:
    rgb = np.full((1400, 1000, 3), 255, np.uint8)
    lines = [_line(f"line {i}", 100, 100 + 56 * i, 800) for i in range(6)]  # gaps of 0.87 heights
    blocks = build_blocks(rgb, [], lines)
    assert len(blocks) == 1 and blocks[0].text == "\n".join(f"line {i}" for i in range(6))


def test_a_figure_keeps_its_crop_and_its_text_goes_on_as_text() -> None:
    rgb = np.full((1400, 1000, 3), 255, np.uint8)
    rgb[150:500, 150:850] = 80  # the chart's ink
    chart = Region("image", (100, 100, 900, 600), 0.9)
    label = _line("axis label", 400, 560, 200, h=24)
    blocks = build_blocks(rgb, [chart], [label])
    assert sorted((b.label, b.text) for b in blocks) == [("image", ""), ("text", "axis label")]
    dense = [_line(f"text {i}", 110, 110 + 36 * i, 780) for i in range(13)]
    blocks = build_blocks(rgb, [chart], dense)
    assert [b.label for b in blocks] == ["text"] and blocks[0].text.startswith("text 0\ntext 1")


def test_overlapping_regions_never_share_a_line() -> None:
    rgb = np.full((800, 1000, 3), 255, np.uint8)
    lines = [_line(f"l{i}", 100, 100 + 36 * i, 700) for i in range(6)]
    regions = [
        Region("text", (90, 90, 820, 320), 0.9),
        Region("text", (92, 95, 815, 310), 0.8),  # a near-duplicate
        Region("text", (90, 250, 820, 320), 0.7),  # overlapping the end of the first
    ]
    blocks = build_blocks(rgb, regions, lines)
    used = _all_lines(blocks)
    assert sorted(ln.text for ln in used) == sorted(ln.text for ln in lines)
    assert len(used) == len({id(ln) for ln in used})


def test_header_and_footer_have_no_order() -> None:
    rgb = np.full((1200, 1000, 3), 255, np.uint8)
    lines = [
        _line("Running head", 100, 20, 300, h=24),
        _line("Body one", 100, 300, 800),
        _line("Body two", 100, 336, 800),
        _line("Page 3", 450, 1150, 100, h=24),
    ]
    regions = [
        Region("header", (90, 15, 410, 50), 0.9),
        Region("text", (90, 290, 910, 370), 0.9),
        Region("footer", (440, 1140, 560, 1180), 0.9),
    ]
    blocks = build_blocks(rgb, regions, lines, page_index=1)
    assert [(b.label, b.order) for b in blocks] == [("header", None), ("text", 0), ("footer", None)]
    assert [b.id for b in blocks] == [0, 1, 2]


def test_a_big_line_labelled_header_is_a_title() -> None:
    rgb = np.full((1200, 1000, 3), 255, np.uint8)
    lines = [
        _line("Report Title", 100, 100, 600, h=50),
        *(_line("body", 100, 300 + 36 * i, 800) for i in range(4)),
    ]
    blocks = build_blocks(rgb, [Region("header", (90, 90, 710, 160), 0.6)], lines)
    assert blocks[0].label == "doc_title" and blocks[0].order == 0


def test_a_header_alone_on_a_page_is_text() -> None:
    rgb = np.full((1200, 1000, 3), 255, np.uint8)
    line = _line("Short note", 100, 100, 300)
    blocks = build_blocks(rgb, [Region("header", (90, 90, 410, 140), 0.9)], [line], page_index=2)
    assert [(b.label, b.order) for b in blocks] == [("text", 0)]


def test_a_body_label_wins_a_close_call_against_header() -> None:
    rgb = np.full((1200, 1000, 3), 255, np.uint8)
    lines = [_line("Words", 100, 100, 300), _line("body", 100, 400, 800)]
    regions = [
        Region("header", (90, 90, 410, 140), 0.72),
        Region("text", (91, 91, 409, 139), 0.70),
        Region("text", (90, 390, 910, 440), 0.9),
    ]
    assert [b.label for b in build_blocks(rgb, regions, lines, page_index=1)] == ["text", "text"]
    regions[0] = Region("header", (90, 90, 410, 140), 0.95)
    assert [b.label for b in build_blocks(rgb, regions, lines, page_index=1)] == ["header", "text"]


def test_empty_text_regions_are_read_again() -> None:
    rgb = np.full((1200, 1000, 3), 255, np.uint8)
    known = _line("known", 100, 100, 300)
    regions = [
        Region("text", (90, 90, 410, 140), 0.9),  # has its line
        Region("text", (90, 300, 410, 340), 0.9),  # the detector missed this one
        Region("image", (90, 500, 410, 700), 0.9),  # pictures are not read
    ]
    crops: list[tuple[int, ...]] = []

    def read_lines(crop: np.ndarray) -> list[TextLine]:
        crops.append(crop.shape)
        return [TextLine("missed", (10, 20, 300, 50), 0.8)]

    found = reread_empty_regions(rgb, regions, [known], read_lines)
    assert len(crops) == 1
    assert [(ln.text, ln.bbox) for ln in found] == [("missed", (80, 300, 370, 330))]


# ---------------------------------------------------------------- ruled tables without OCR


def _draw_table(
    spec: list[tuple[int, int, int, int, str]], col_w: int = 160, row_h: int = 50
) -> tuple[np.ndarray, BBox, list[TextLine]]:
    """A ruled table with spans: (row, col, rowspan, colspan, text) per cell; and lines where text is."""
    image = Image.new("RGB", (900, 600), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSans.ttf", 20)
    x0, y0 = 60, 80
    lines = []
    for r, c, rs, cs, text in spec:
        box = (x0 + c * col_w, y0 + r * row_h, x0 + (c + cs) * col_w, y0 + (r + rs) * row_h)
        draw.rectangle(box, outline="black", width=2)
        origin = (box[0] + 12, (box[1] + box[3]) // 2)
        draw.text(origin, text, font=font, fill="black", anchor="lm")
        tb = draw.textbbox(origin, text, font=font, anchor="lm")
        lines.append(TextLine(text, (tb[0] - 3, tb[1] - 4, tb[2] + 3, tb[3] + 4), 0.99))
    n_cols = max(c + cs for _, c, _, cs, _ in spec)
    n_rows = max(r + rs for r, _, rs, _, _ in spec)
    return np.asarray(image), (x0, y0, x0 + n_cols * col_w, y0 + n_rows * row_h), lines


def test_table_grid_with_row_and_column_spans() -> None:
    spec = [
        (0, 0, 2, 1, "Name"),
        (0, 1, 1, 2, "Scores"),
        (0, 3, 2, 1, "Total"),
        (1, 1, 1, 1, "First"),
        (1, 2, 1, 1, "Second"),
        (2, 0, 1, 1, "Ann"),
        (2, 1, 1, 1, "12"),
        (2, 2, 1, 1, "15"),
        (2, 3, 1, 1, "27"),
        (3, 0, 1, 1, "Bob"),
        (3, 1, 1, 1, "9"),
        (3, 2, 1, 1, "11"),
        (3, 3, 1, 1, "20"),
    ]
    rgb, bbox, lines = _draw_table(spec)
    table = recognise_table(rgb, bbox, lines)
    assert table is not None
    assert (table.n_rows, table.n_cols) == (4, 4)
    got = sorted((c.row, c.col, c.rowspan, c.colspan, c.text) for c in table.cells)
    assert got == sorted(spec)


def test_region_without_rules_is_not_a_grid() -> None:
    image = Image.new("RGB", (600, 300), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSans.ttf", 20)
    lines = []
    for r in range(3):
        for c in range(3):
            origin = (50 + 180 * c, 50 + 60 * r)
            draw.text(origin, f"v{r}{c}", font=font, fill="black")
            lines.append(TextLine(f"v{r}{c}", draw.textbbox(origin, f"v{r}{c}", font=font), 0.9))
    assert recognise_table(np.asarray(image), (40, 40, 560, 240), lines) is None


def test_a_line_crossing_a_rule_is_cut_and_reread() -> None:
    spec = [(r, c, 1, 1, f"c{r}{c}") for r in range(2) for c in range(3)]
    rgb, bbox, lines = _draw_table(spec)
    # One detector line running across the rule between cells (0, 0) and (0, 1).
    merged = TextLine("c00 c01", (lines[0].bbox[0], lines[0].bbox[1], lines[1].bbox[2], lines[1].bbox[3]))
    crops: list[tuple[int, ...]] = []

    def read_text(crop: np.ndarray) -> tuple[str, float]:
        crops.append(crop.shape)
        return f"piece{len(crops)}", 0.9

    table = recognise_table(rgb, bbox, [merged, *lines[2:]], read_text)
    assert table is not None
    assert table.grid()[0] == ["piece1", "piece2", "c02"]
    assert len(crops) == 2
    # Without a reader the whole line stays in the cell holding most of it.
    table = recognise_table(rgb, bbox, [merged, *lines[2:]])
    assert table is not None
    assert "c00 c01" in table.grid()[0][:2]
