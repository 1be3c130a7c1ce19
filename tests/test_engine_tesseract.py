"""The tesseract engine on rendered pages with known text: Russian, mixed scripts, tables, languages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from function.config import ENGINE_ENV, Settings
from function.document import BBox, Page
from function.engines import ENGINES, EngineLoadError
from function.engines.base import PageImage
from function.engines.layout import Region, build_blocks
from function.engines.tesseract import ENV, TesseractEngine, find_tessdata, normalise_langs
from function.engines.tesseract_words import Word, in_context, keep_words, langs_for_print, lookalike, mostly
from function.errors import ConfigError
from function.options import Options
from tests.synthetic import cer, english_page, page_with_text, table_page, two_column_page

CYRILLIC = set("абвгдежзийклмнопрстуфхцчшщъыьэюя")


@pytest.fixture(scope="module")
def engine() -> TesseractEngine:
    eng = TesseractEngine(Settings(), environ={})
    eng.load()
    return eng


def _page(engine: TesseractEngine, image: Image.Image, lang: str | None = None) -> Page:
    return engine.predict([PageImage(0, image)], Options(lang=lang)).pages[0]


def _text(page: Page) -> str:
    return " ".join(b.text for b in page.ordered_blocks())


def test_registered_and_env_documented() -> None:
    assert ENGINES["tesseract"] == "function.engines.tesseract:TesseractEngine"
    assert set(ENV) == {"OCR_TESSERACT_LANGS"} and ENGINE_ENV["tesseract"] is ENV  # with config.py


def test_russian_page_reads_with_low_cer(engine: TesseractEngine) -> None:
    page = english_page(seed=4, lang="ru")
    got = _page(engine, page.image)
    assert cer(page.text, _text(got)) < 0.02
    assert next(b.label for b in got.ordered_blocks()) == "doc_title"


def test_words_have_boxes_and_confidences(engine: TesseractEngine) -> None:
    page = english_page(seed=4, lang="ru")
    blocks = _page(engine, page.image).blocks
    lines = [ln for b in blocks for ln in b.lines]
    assert len(lines) >= 10
    for line in lines:
        x0, y0, x1, y1 = line.bbox
        assert 0 <= x0 < x1 <= page.image.width and 0 <= y0 < y1 <= page.image.height
        assert line.score is not None and 0.5 < line.score <= 1.0


def test_mixed_scripts_keep_both(engine: TesseractEngine) -> None:
    page = english_page(seed=2, lang="mixed")
    text = _text(_page(engine, page.image))
    assert cer(page.text, text) < 0.03
    latin = {w for w in page.text.split() if w.isascii() and w.isalpha() and len(w) > 3}
    assert latin and latin <= set(text.replace(".", " ").replace(",", " ").split())
    assert CYRILLIC & set(text.lower())


def test_two_russian_columns_in_order(engine: TesseractEngine) -> None:
    page = two_column_page(seed=3, lang="ru")
    text = _text(_page(engine, page.image))
    positions = [text.find(" ".join(b.text.split()[:3])) for b in page.blocks]
    assert -1 not in positions and positions == sorted(positions), (positions, text)


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_ruled_table_cells_in_place(engine: TesseractEngine, lang: str) -> None:
    page = table_page(rows=4, cols=4, seed=3, lang=lang)  # a header row + 4 rows: 5 x 4 cells
    truth = page.blocks[-1].cells
    table = next(b.table for b in _page(engine, page.image, lang=lang).blocks if b.table is not None)
    assert (table.n_rows, table.n_cols) == (5, 4)
    assert table.grid() == truth


def test_languages_and_aliases(engine: TesseractEngine) -> None:
    assert {"ru", "rus", "en", "eng"} <= set(engine.languages())
    assert "osd" not in engine.languages()
    assert normalise_langs("ru+en") == "rus+eng" == normalise_langs("rus+eng+ru")


def test_default_langs_from_env() -> None:
    assert TesseractEngine(Settings(), environ={}).langs == "rus+eng"
    assert TesseractEngine(Settings(), environ={"OCR_TESSERACT_LANGS": "en"}).langs == "eng"
    with pytest.raises(ConfigError, match="OCR_TESSERACT_LANGS"):
        TesseractEngine(Settings(), environ={"OCR_TESSERACT_LANGS": "rus,eng"})


def test_uninstalled_default_language_is_a_load_error() -> None:
    engine = TesseractEngine(Settings(), environ={"OCR_TESSERACT_LANGS": "deu"})
    with pytest.raises(EngineLoadError, match=r"deu not installed.*installed: eng, rus"):
        engine.load()


def test_missing_tessdata_is_a_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("function.engines.tesseract.TESSDATA_DIRS", ())
    assert find_tessdata({"TESSDATA_PREFIX": str(tmp_path)}) is None
    engine = TesseractEngine(Settings(), environ={"TESSDATA_PREFIX": str(tmp_path)})
    with pytest.raises(EngineLoadError, match="tesseract-ocr-rus"):
        engine.load()


def test_fingerprint_follows_langs() -> None:
    a = TesseractEngine(Settings(), environ={})
    b = TesseractEngine(Settings(), environ={"OCR_TESSERACT_LANGS": "ru+en"})
    c = TesseractEngine(Settings(), environ={"OCR_TESSERACT_LANGS": "eng"})
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.version.startswith("tesseract 5")


def test_blank_page_has_no_blocks(engine: TesseractEngine) -> None:
    assert _page(engine, Image.new("RGB", (600, 800), "white")).blocks == []


def test_ruled_cells_the_page_pass_missed_are_read_on_their_own(engine: TesseractEngine) -> None:
    """A dimensions table as in a standard (042): the page pass kept only the header row's lines and
    dropped the lone numbers below it; each ruled cell is read again on its own (Tesseract, PSM 6)."""
    from function.engines.layout import recognise_table
    from tests.test_engine_rapidocr import _draw_table

    values = [["Size", "Mass"], ["50", "160"], ["80", "195"], ["125", "210"]]
    spec = [(r, c, 1, 1, v) for r, row in enumerate(values) for c, v in enumerate(row)]
    rgb, bbox, lines = _draw_table(spec, col_w=190, row_h=60)
    table = recognise_table(rgb, bbox, lines[:2], read_cell=lambda crop: engine.read_crop(crop, "eng"))
    assert table is not None and table.grid() == values


def test_latin_symbols_on_a_clear_russian_page_stay_latin(engine: TesseractEngine) -> None:
    """A car hand-over certificate (045): its make and VIN read as Cyrillic look-alikes with `rus`
    alone ("КТА ВТО", "УМ"); a page in clear print is read with English too."""
    lines = [
        "Настоящий акт составлен о том, что продавец передал,",
        "а покупатель принял автомобиль марки KIA RIO, год выпуска",
        "две тысячи двенадцатый, идентификационный номер VIN",
        "XWEDC41BBD0012345, номер двигателя G4FC 7654321.",
        "Автомобиль осмотрен покупателем, претензий к его",
        "техническому состоянию и комплектности стороны не имеют.",
    ]
    image = Image.new("RGB", (1400, 700), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSerif.ttf", 30)
    for i, line in enumerate(lines):
        draw.text((80, 80 + 60 * i), line, font=font, fill="black")
    text = _text(_page(engine, image, "ru"))
    assert "KIA RIO" in text and "VIN" in text and "G4FC" in text
    assert cer("\n".join(lines), text) < 0.03


def test_a_word_in_letters_both_alphabets_share_is_no_english() -> None:
    """Read with `rus+eng`, "Томск" came back as the English "TOMCK" (043) and initials as "H.":
    such a word is read again in Russian; a word with letters only Latin has ("KIA") is not."""
    box = (0, 0, 10, 10)
    assert lookalike(Word("TOMCK", box, 91, "eng"), "rus")
    assert lookalike(Word("H.,", box, 89, "eng"), "rus")
    assert not lookalike(Word("KIA", box, 95, "eng"), "rus")
    assert not lookalike(Word("TOMCK", box, 91, "eng"), "eng")  # an English page's English
    assert not lookalike(Word("2009.", box, 93, "eng"), "rus")  # no letters: nothing to doubt
    assert lookalike(Word("ТОМ", box, 80, "rus"), "eng")
    russian = [[Word("Соколов", box, 96, "rus"), Word("H.,", box, 89, "eng"), Word("ЮИ", box, 92, "rus")]]
    assert mostly(russian, "rus") and not mostly(russian, "eng")
    assert in_context(russian[0], 1, "rus", alone=False)
    mixed = [Word("Скачайте", box, 95, "rus"), Word("App", box, 90, "eng"), Word("Store", box, 93, "eng")]
    assert not in_context(mixed, 1, "rus", alone=True)  # an English name on a Russian page
    assert in_context([Word("K", box, 92, "eng")], 0, "rus", alone=True)  # alone: the page's


def test_only_a_page_in_clear_print_is_read_with_a_second_language() -> None:
    """18th-century print reads at a mean confidence of 63-70 with `rus`; English would win over
    its garbled words there (CER 0.157 -> 0.206). Modern print reads at 88-96."""
    box = (0, 0, 10, 10)
    assert langs_for_print("rus", [[Word("слово", box, 95, "rus"), Word("L1", box, 70, "rus")]]) == "rus+eng"
    assert langs_for_print("rus", [[Word("слБдующихЪ", box, 73, "rus"), Word("вЪ", box, 33, "rus")]]) is None
    assert langs_for_print("rus", []) is None


def test_the_second_language_goes_by_the_print() -> None:
    """`rus` on clear print: read again with English; `rus+eng` (asked for, or a script OSD was
    unsure of) on hard Russian print: read again in Russian alone; an English page read with
    `rus+eng` stays as it is (the cpu engine hands it to RapidOCR)."""
    box = (0, 0, 10, 10)
    clear = [[Word("слово", box, 95, "rus"), Word("L1", box, 90, "eng")]]
    hard = [[Word("слБдующихЪ", box, 73, "rus"), Word("вЪ", box, 40, "rus"), Word("omb", box, 50, "eng")]]
    english = [[Word("Dear", box, 60, "eng"), Word("Sir", box, 55, "eng")]]
    assert langs_for_print("rus", clear) == "rus+eng"
    assert langs_for_print("rus", hard) is None
    assert langs_for_print("rus+eng", hard) == "rus"
    assert langs_for_print("rus+eng", clear) is None
    assert langs_for_print("rus+eng", english) is None
    damaged_mixed = [
        [Word("таблица", box, 85, "rus"), Word("слово", box, 80, "rus"), Word("word", box, 75, "eng")]
    ]
    assert langs_for_print("rus+eng", damaged_mixed) is None  # its English is English
    assert langs_for_print("eng", english) is None and langs_for_print("eng+rus", hard) is None


SIDEBAR = ["The company mines gold", "in two provinces and", "sells it on the market", "at the spot price."]
ROWS = ["Revenue 915.9 1,382.7", "Costs 532.0 955.4", "Profit 383.9 427.3", "Taxes 120.1 254.6"]


def _table_beside_a_sidebar() -> tuple[np.ndarray, BBox]:
    """A table's rows on the left and a sidebar's lines on the same baselines to its right, a
    gutter of two word heights between them (as on a broker's research note); the table's box."""
    image = Image.new("RGB", (1100, 420), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSans-Bold.ttf", 24)
    for i, (row, side) in enumerate(zip(ROWS, SIDEBAR, strict=True)):
        draw.text((40, 60 + 60 * i), row, font=font, fill="black")
        draw.text((520, 60 + 60 * i), side, font=font, fill="black")
    return np.asarray(image), (30, 50, 470, 310)


def test_a_line_running_from_a_table_into_a_sidebar_is_cut_at_the_gutter(engine: TesseractEngine) -> None:
    """Tesseract joins a table row and the sidebar line on its baseline into one line; the layout
    stage cuts it at the table's edge, so the sidebar reads as its own paragraph, in order, and
    the table keeps only its rows (real Tesseract lines; the regions stand in for the model's)."""
    rgb, table_box = _table_beside_a_sidebar()
    lines = engine.read_lines(rgb)
    assert any(ln.bbox[0] < table_box[2] < ln.bbox[2] for ln in lines)  # the trouble is there
    blocks = build_blocks(rgb, [Region("table", table_box, 0.9)], lines)
    table = next(b for b in blocks if b.label == "table")
    assert not any(word in table.text for word in ("gold", "provinces", "market", "spot"))
    others = [b.text for b in blocks if b.label != "table"]
    assert " ".join(others).split() == " ".join(SIDEBAR).split()


def test_flat_paper_is_thresholded_globally_a_photo_locally() -> None:
    """Otsu for paper of one flat grey (a digital render, a cleaned scan), Sauvola for a page whose
    paper varies (a photographed book page: light falling off across it, grain)."""
    from function.engines.tesseract_thresholds import OTSU, THRESHOLDING_METHOD, thresholding_for

    image = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(image).text(
        (40, 40), "Revenue 915.9", font=ImageFont.truetype("DejaVuSans.ttf", 28), fill="black"
    )
    flat = np.asarray(image)
    assert thresholding_for(flat) == OTSU
    light = np.linspace(150, 235, flat.shape[1])[None, :, None]  # paper darkening to one side
    grain = np.random.default_rng(3).normal(0, 4, flat.shape)
    photo = np.clip(flat.astype(float) * light / 255 + grain, 0, 255).astype(np.uint8)
    assert thresholding_for(photo) == THRESHOLDING_METHOD != OTSU


@pytest.mark.parametrize("n", [5, 8, 10, 11, 13])
def test_an_english_page_read_with_russian_first_keeps_its_english_words(
    engine: TesseractEngine, n: int
) -> None:
    """The engine's default languages are `rus+eng`: on an English page Russian, tried first, took
    "page" for "раде" at 95 % confidence on a quarter of these pages. A word read in Russian among
    English words on a mostly English page is read again in English (real Tesseract, 150 dpi)."""
    lines = [
        f"Fan-out test page {n} of 20 queue-worker.",
        f"Invoice number {4000 + n * 7}, amount {n * 13 % 997}.",
    ]
    image = page_with_text(lines, title=f"Section {n}", dpi=150).image
    text = _text(_page(engine, image))
    assert f"page {n} of 20" in text and not CYRILLIC & set(text.lower()), text


@pytest.mark.parametrize("name", ["Омск", "Керчь", "Перо"])
def test_a_russian_name_in_english_text_stays_russian(engine: TesseractEngine, name: str) -> None:
    """The second look at a word read as Russian among English words keeps only a read English
    knows: "page" for "раде", not "Omck", "Kepup" or "Tlepo" (read at 64-77 %) for a Russian name
    (real Tesseract, `rus+eng`)."""
    lines = [f"The office in the village of {name} is open on Monday.", "Invoice number 4091, amount 169."]
    text = _text(_page(engine, page_with_text(lines, title="Branches", dpi=150).image))
    assert name in text and "Monday" in text, text


def test_an_english_name_on_a_russian_page_comes_back_in_latin(engine: TesseractEngine) -> None:
    """Read with `rus+eng`, Russian took "Excel" for "Ехсе]" on the synthetic benchmark's mixed
    two-column page, a word its word list does not know; read again in English it is a word English
    knows (real Tesseract on that page, as `bench.quality.run` draws it)."""
    from bench.quality.generate import cases

    case = next(c for c in cases(1, damaged=False, langs=("mixed",)) if c.kind == "columns")
    assert "Excel" in case.page.text
    text = _text(_page(engine, case.image))
    assert "Excel" in text and "Ехсе" not in text and cer(case.page.text, text) < 0.005, text


def test_a_comma_set_apart_between_words_is_kept_a_speck_is_not() -> None:
    """18th-century print sets a space before a comma, and Tesseract doubts the lone mark (30 %):
    between two words it is punctuation; at a line's end, or a rule's bar, it is a speck."""
    box = (0, 0, 10, 10)
    spaced = [Word("ность", box, 90, "rus"), Word(",", box, 30, "rus"), Word("есть", box, 91, "rus")]
    assert [w.text for w in keep_words(spaced)] == ["ность", ",", "есть"]
    trailing = [Word("4091", box, 90, "eng"), Word(",", box, 30, "eng")]
    assert [w.text for w in keep_words(trailing)] == ["4091"]
    bar = [Word("Total", box, 90, "eng"), Word("|", box, 30, "eng"), Word("due", box, 90, "eng")]
    assert [w.text for w in keep_words(bar)] == ["Total", "due"]
    between_numbers = [Word("12", box, 90, "eng"), Word(",", box, 30, "eng"), Word("34", box, 90, "eng")]
    assert [w.text for w in keep_words(between_numbers)] == ["12", "34"]
