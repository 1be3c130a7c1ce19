"""Layout pictures: the page with each block's box, label and reading-order number drawn on it.

People judge an OCR result by looking at what the engine saw; this is that picture.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from function.document import Document, Page
from function.engines.base import PageImage

# One colour per label family, so a title, a table and a picture read apart at a glance.
COLOURS = {
    "doc_title": (200, 30, 30),
    "paragraph_title": (230, 110, 20),
    "text": (30, 90, 220),
    "table": (20, 150, 60),
    "image": (150, 40, 180),
    "chart": (150, 40, 180),
    "seal": (150, 40, 180),
    "formula": (0, 150, 150),
    "display_formula": (0, 150, 150),
}
OTHER = (120, 120, 120)  # marginalia and labels without a colour of their own
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def _font(size: int) -> Font:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def draw_layout(image: Image.Image, page: Page) -> Image.Image:
    """A copy of the page image with every block's box, label and reading-order number."""
    out = image.convert("RGB")  # always a copy, even for an RGB page
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 400))
    font = _font(max(12, round(min(out.size) / 60)))
    for block in page.blocks:
        colour = COLOURS.get(block.label, OTHER)
        x0, y0, x1, y1 = block.bbox
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        caption = block.label if block.order is None else f"{block.order} {block.label}"
        _caption(draw, (x0, y0), caption, colour, font)
    return out


def _caption(
    draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, colour: tuple[int, ...], font: Font
) -> None:
    """White text on a tab of the box's colour above its top-left corner (inside it at the page top),
    so the tab does not hide the text it labels."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    height = bottom - top + 4
    x, y = at[0], at[1] - height if at[1] >= height else at[1]
    draw.rectangle((x, y, x + right - left + 4, y + height), fill=colour)
    draw.text((x + 2 - left, y + 2 - top), text, fill="white", font=font)


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


class KeepPages:
    """Hands the pages on to the engine and keeps each image by page index, to draw on afterwards.

    Memory: every selected page stays in memory until the Document is back (at most OCR_MAX_PAGES);
    only requests that ask for pictures pay it, and `layout_pngs` turns them into compressed PNGs."""

    def __init__(self, pages: Iterable[PageImage]) -> None:
        self._pages = pages
        self.images: dict[int, Image.Image] = {}

    def __iter__(self) -> Iterator[PageImage]:
        for page in self._pages:
            self.images[page.index] = page.image
            yield page


def layout_pngs(document: Document, images: dict[int, Image.Image]) -> dict[int, bytes]:
    """1-based page number -> PNG of its layout picture; the kept page images are released."""
    pngs = {}
    for page in sorted(document.pages, key=lambda p: p.index):
        image = images.pop(page.index, None)
        if image is not None:
            pngs[page.index + 1] = to_png(draw_layout(image, page))
    images.clear()
    return pngs
