"""Fast checks of the synthetic page generator and the error-rate functions (no OCR involved)."""

from __future__ import annotations

import re

import numpy as np
import pypdfium2 as pdfium
import pytest

from tests.synthetic import (
    SyntheticPage,
    cer,
    english_page,
    make_pdf,
    page_with_text,
    table_page,
    two_column_page,
    wer,
)

GENERATORS = [english_page, two_column_page, table_page]


def _dark(page: SyntheticPage) -> np.ndarray:
    return np.asarray(page.image.convert("L")) < 200


def test_cer_and_wer_on_known_strings() -> None:
    assert cer("kitten", "sitting") == pytest.approx(3 / 6)
    assert cer("a  b\nc ", " a b c") == 0.0  # whitespace runs and newlines count as one space
    assert cer("abcd", "") == 1.0
    assert cer("", "") == 0.0 and cer("", "x") == 1.0
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert wer("the cat\nsat", "the bat sat") == pytest.approx(1 / 3)


@pytest.mark.parametrize("make", GENERATORS)
def test_page_size_and_text_where_truth_says(make) -> None:
    page = make()
    assert page.image.mode == "RGB" and page.image.size == (1240, 1754)  # A4 at 150 dpi
    dark = _dark(page)
    covered = np.zeros_like(dark)
    for block in page.blocks:
        left, top, right, bottom = block.bbox
        assert dark[top:bottom, left:right].mean() > 0.03, block.kind
        covered[max(0, top - 2) : bottom + 2, max(0, left - 2) : right + 2] = True
    assert not dark[~covered].any()  # nothing is drawn outside the recorded blocks
    assert page.text == "\n".join(block.text for block in page.blocks)


@pytest.mark.parametrize("make", GENERATORS)
def test_deterministic_plain_text(make) -> None:
    assert make(seed=3).text == make(seed=3).text != make(seed=4).text
    assert re.fullmatch(r"[A-Za-z0-9 .,;\n]+", make(seed=3).text)


def test_english_page_layout() -> None:
    page = english_page(seed=1)
    title, *paragraphs = page.blocks
    assert title.kind == "title" and [b.kind for b in paragraphs] == ["paragraph"] * 3
    assert title.bbox[3] - title.bbox[1] > 1.5 * 24  # a title line is clearly taller than body text
    for block in paragraphs:
        assert block.bbox[3] - block.bbox[1] > 3 * 30  # several wrapped lines
        assert block.bbox[0] >= 140 and block.bbox[2] <= 1240 - 140  # inside ~1 inch margins


def test_two_columns_are_separated_and_share_baselines() -> None:
    page = two_column_page()
    title, left1, left2, right1, right2 = page.blocks
    assert title.bbox[3] < min(left1.bbox[1], right1.bbox[1])  # the title sits above both columns
    assert max(left1.bbox[2], left2.bbox[2]) + 60 <= min(right1.bbox[0], right2.bbox[0])
    assert left1.bbox[1] == right1.bbox[1]  # first lines of both columns start at the same height
    assert left1.bbox[1] < left2.bbox[1] and right1.bbox[1] < right2.bbox[1]


def test_table_cells() -> None:
    page = table_page(rows=5, cols=4, seed=2)
    table = page.blocks[-1]
    assert [b.kind for b in page.blocks] == ["title", "paragraph", "table"]
    assert table.cells is not None and len(table.cells) == 6 and all(len(row) == 4 for row in table.cells)
    flat = [cell for row in table.cells for cell in row]
    assert len(set(flat)) == len(flat)  # distinct cells, so OCR output can be matched unambiguously
    assert table.text == " ".join(flat)


def test_page_with_text_and_overflow() -> None:
    page = page_with_text(["First paragraph here.", "Second one."], title="Hello")
    assert page.text == "Hello\nFirst paragraph here.\nSecond one."
    with pytest.raises(ValueError):
        page_with_text(["word " * 200] * 20)


def test_make_pdf_round_trips_through_pdfium() -> None:
    images = [english_page(seed=s).image for s in range(3)]
    pdf = pdfium.PdfDocument(make_pdf(images, dpi=150))
    try:
        assert len(pdf) == 3
        for page, image in zip(pdf, images, strict=True):
            rendered = page.render(scale=150 / 72).to_pil()  # the page size makes 150 dpi render 1:1
            assert abs(rendered.width - 1240) <= 1 and abs(rendered.height - 1754) <= 1
            # The embedded image is the page itself, up to JPEG noise (a different page differs by ~9).
            embedded = next(iter(page.get_objects())).get_bitmap().to_pil()
            diff = np.abs(np.asarray(embedded.convert("L"), int) - np.asarray(image.convert("L"), int))
            assert diff.mean() < 1
    finally:
        pdf.close()
