"""Real pages for the tests that show results to a person (README examples, the try-it page).

They come from the shared development set, read where it lies (`../shared/devset` from the
repository root) and never copied into the repository; without it those tests skip and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.server import ROOT

DEVSET = ROOT.parent / "shared" / "devset" / "pages"
FILING = "003_eng_filing03.png"  # a clean single-column court opinion page
FIGURES = "016_eng_biostor03.png"  # a journal page with two photographs and a caption
TWO_COLUMNS = "004_eng_multicol03.png"  # a research note in two columns with a sidebar
PHOTO = "023_eng_ehri1955testimony.jpg"  # a low-resolution photograph of a typescript page


def page(name: str) -> Image.Image:
    """A development-set page as RGB; the test skips when the set is not there."""
    path = DEVSET / name
    if not path.is_file():
        pytest.skip(f"needs the development set's {name} at {DEVSET} (../shared/devset, not in the repo)")
    with Image.open(path) as image:
        return image.convert("RGB")


def write_pdf(path: Path, names: list[str], dpi: int = 200) -> Path:
    """A PDF with one development-set page per PDF page, sized so that the function's 200 DPI
    rendering gives the page back at its own pixel size."""
    first, *rest = [page(name) for name in names]
    first.save(path, "PDF", save_all=True, append_images=rest, resolution=dpi)
    return path
