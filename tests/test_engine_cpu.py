"""The default CPU engine (`cpu`): a page's script picks the recogniser; warnings for unreadable scripts;
boxes in the frame of the page as it was sent, also when it was deskewed. Real engines, rendered pages."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.quality.damage import skew
from function.config import Settings
from function.document import Document
from function.engines import Engine, PageImage, create_engine
from function.engines.cpu import CPUEngine
from function.engines.deskew import unrotate_box
from function.engines.script import Script
from function.options import Options
from function.render import render_json, render_markdown
from tests.synthetic import cer, english_page, prose_page

pytestmark = pytest.mark.slow

CYRILLIC = re.compile(r"[А-Яа-яЁё]")


@pytest.fixture(scope="module")
def engine() -> CPUEngine:
    """The engine `make run` and the CPU image start: the default of OCR_ENGINE."""
    eng = create_engine(Settings().engine, Settings())
    assert isinstance(eng, CPUEngine)
    eng.load()
    return eng


def _read(engine: object, image: Image.Image, options: Options | None = None) -> Document:
    return engine.predict([PageImage(0, image)], options or Options())  # type: ignore[attr-defined]


def _body(doc: Document) -> str:
    return "\n".join(b.text for p in doc.pages for b in p.ordered_blocks())


def test_a_russian_page_through_the_default_engine_comes_back_right(engine: CPUEngine) -> None:
    truth = prose_page("ru", seed=3)
    doc = _read(engine, truth.image)
    assert not doc.warnings
    assert len(CYRILLIC.findall(_body(doc))) > 200
    assert cer(truth.text, _body(doc)) < 0.03


def test_an_english_page_goes_to_rapidocr(engine: CPUEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    used = _routes(engine, monkeypatch)
    truth = english_page(seed=5)
    doc = _read(engine, truth.image)
    assert used == ["rapidocr"]
    assert cer(truth.text, _body(doc)) < 0.03


def test_lang_still_decides(engine: CPUEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    used = _routes(engine, monkeypatch)
    image = english_page(seed=6).image
    _read(engine, image, Options(lang="ru"))
    _read(engine, image, Options(lang="en"))
    assert used == ["tesseract", "rapidocr"]


@pytest.mark.parametrize(
    ("seed", "lang", "expected"), [(7, "en", ["tesseract", "rapidocr"]), (8, "ru", ["tesseract"])]
)
def test_a_page_osd_was_unsure_was_cyrillic_goes_by_its_text(
    engine: CPUEngine, monkeypatch: pytest.MonkeyPatch, seed: int, lang: str, expected: list[str]
) -> None:
    """OSD's call is faked here (it called two real English scans Cyrillic at confidence 0.1 and
    1.4): an English page read as Cyrillic and English comes back Latin and is read again by
    RapidOCR; a Russian page read so stays with Tesseract."""
    used = _routes(engine, monkeypatch)
    monkeypatch.setattr(engine, "_script", lambda page: Script("Cyrillic", 0.5))
    truth = english_page(seed=seed) if lang == "en" else prose_page("ru", seed=seed)
    doc = _read(engine, truth.image)
    assert used == expected
    assert len(doc.pages) == 1 and cer(truth.text, _body(doc)) < 0.05


def _routes(engine: CPUEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the sub-engines that read each page, in order, as the test goes on."""
    used: list[str] = []
    for name in ("rapidocr", "tesseract"):
        sub = getattr(engine, name)
        monkeypatch.setattr(sub, "_page", _recording(sub._page, name, used))
    return used


def _recording(page, name: str, used: list[str]):  # type: ignore[no-untyped-def]
    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        used.append(name)
        return page(*args, **kwargs)

    return record


def test_a_blank_page_reads_as_nothing(engine: CPUEngine) -> None:
    doc = _read(engine, Image.new("RGB", (800, 1100), "white"))
    assert doc.pages[0].blocks == [] and not doc.warnings


@pytest.fixture(scope="module")
def rapidocr() -> Engine:
    eng = create_engine("rapidocr", Settings())
    eng.load()
    return eng


def test_rapidocr_on_a_russian_page_warns_instead_of_returning_punctuation(rapidocr: Engine) -> None:
    doc = _read(rapidocr, prose_page("ru", seed=4).image)
    assert len(doc.warnings) == 1 and "cannot read" in doc.warnings[0] and "page 1" in doc.warnings[0]
    assert render_markdown(doc) == ""
    assert render_json(doc)["warnings"] == doc.warnings


def test_no_warnings_key_without_warnings(rapidocr: Engine) -> None:
    assert "warnings" not in render_json(_read(rapidocr, english_page(seed=7).image))


@pytest.mark.parametrize("reader", ["tesseract", "rapidocr"])
def test_boxes_of_a_skewed_page_are_in_its_own_frame(engine: CPUEngine, reader: str) -> None:
    """A page rotated 2.5 degrees is laid out level (Tesseract reads it deskewed, RapidOCR reads
    its tilted lines from the page's own pixels); its boxes must still be the sent page's pixels:
    every line where the same line of the level page lands when that page is turned, and every
    block's box around its lines."""
    ocr = getattr(engine, reader)
    level = english_page(seed=8)
    tilted = skew(level.image, 2.5)
    width, height = tilted.size
    flat = _read(ocr, level.image, Options(lang="en")).pages[0]
    page = _read(ocr, tilted, Options(lang="en")).pages[0]
    assert (page.width, page.height) == (width, height)
    # Where each level line's centre lands on the tilted page (PIL turns counter-clockwise).
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 2.5, 1.0)
    expected = {
        ln.text: turn @ np.array([(ln.bbox[0] + ln.bbox[2]) / 2, (ln.bbox[1] + ln.bbox[3]) / 2, 1.0])
        for b in flat.blocks
        for ln in b.lines
    }
    matched = 0
    for block in page.blocks:
        for line in block.lines:
            x0, y0, x1, y1 = line.bbox
            assert block.bbox[0] <= x0 and block.bbox[1] <= y0 and x1 <= block.bbox[2] and y1 <= block.bbox[3]
            if line.text in expected:
                matched += 1
                centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
                assert np.abs(centre - expected[line.text]).max() < 6, line.text
    assert matched >= 5


def test_unrotate_box_undoes_the_straightening_turn() -> None:
    assert unrotate_box((100, 100, 110, 110), 0.0, 500, 500) == (100, 100, 110, 110)
    # A point of the page, turned as straighten() turns the page (+a), comes back where it was.
    turn = cv2.getRotationMatrix2D((250, 250), 30.0, 1.0)
    x, y = turn @ np.array([120.0, 80.0, 1.0])
    x0, y0, x1, y1 = unrotate_box((round(x) - 2, round(y) - 2, round(x) + 2, round(y) + 2), 30.0, 500, 500)
    assert x0 <= 120 <= x1 and y0 <= 80 <= y1


@pytest.mark.parametrize(
    "line", ["Договор аренды № 17 подписан", "Счёт на оплату", "Invoice 2041 paid in full", "Total due"]
)
def test_a_single_line_too_short_for_osd_is_read_in_either_script(engine: CPUEngine, line: str) -> None:
    """OSD finds too little text on one line: the page goes to Tesseract with English and Russian, not
    to RapidOCR, which would turn Cyrillic into Latin look-alikes (`## 1` for a Russian line)."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", (900, 200), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    ImageDraw.Draw(image).text((20, 60), line, font=font, fill="black")
    text = render_markdown(_read(engine, image)).lstrip("# ").strip()
    assert text == line, text
