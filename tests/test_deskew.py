"""Deskewing: the angle found on rendered pages, level pages left untouched, and a skewed ruled
table that comes back as a table (rule detection needs level rules)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality.damage import skew
from function.config import load_settings
from function.engines import PageImage, create_engine
from function.engines.deskew import deskew, estimate_skew
from function.options import Options
from tests.synthetic import english_page, table_page


@pytest.mark.parametrize("degrees", [0.6, -1.5, 2.5, -3.0])
def test_the_skew_of_a_rotated_page_is_found(degrees: float) -> None:
    page = np.asarray(skew(english_page(seed=4).image, degrees))
    assert estimate_skew(page) == pytest.approx(-degrees, abs=0.15)


def test_a_level_page_is_left_as_it_is() -> None:
    page = np.asarray(table_page(seed=5).image)
    assert deskew(page) is page


def test_a_blank_page_has_no_skew() -> None:
    assert estimate_skew(np.full((400, 300, 3), 255, np.uint8)) == 0.0


@pytest.mark.slow
def test_a_skewed_ruled_table_keeps_its_cells() -> None:
    engine = create_engine("rapidocr", load_settings({}))
    engine.load()
    truth = table_page(rows=4, cols=4, seed=6)
    cells = truth.blocks[-1].cells
    assert cells is not None
    tilted = skew(truth.image, 2.5)
    page = engine.predict([PageImage(0, tilted)], Options()).pages[0]
    table = next(b.table for b in page.blocks if b.label == "table" and b.table is not None)
    assert (table.n_rows, table.n_cols) == (5, 4)
    got = table.grid()
    right = sum(got[r][c].strip() == text for r, row in enumerate(cells) for c, text in enumerate(row))
    assert right >= 18, got
