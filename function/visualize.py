"""Layout pictures: the page with each block's box, label and reading-order number drawn on it.

People judge an OCR result by looking at what the engine saw; this is that picture.
"""

from __future__ import annotations

import io
import math
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
# The most pixels a layout picture has: a page is scaled down by a whole factor to fit (about
# 1320 x 1870 for A4), enough to read every box and label.
PICTURE_PIXELS = 2_500_000
OTHER = (120, 120, 120)  # marginalia and labels without a colour of their own
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def _font(size: int) -> Font:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def draw_layout(image: Image.Image, page: Page) -> Image.Image:
    """A copy of the page image with every block's box, label and reading-order number. The image
    may be the page scaled down (`KeepPages`): boxes are scaled from the page's size to it."""
    out = image.convert("RGB")  # always a copy, even for an RGB page
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 400))
    font = _font(max(12, round(min(out.size) / 60)))
    sx, sy = out.width / (page.width or out.width), out.height / (page.height or out.height)
    for block in page.blocks:
        colour = COLOURS.get(block.label, OTHER)
        x0, y0, x1, y1 = block.bbox
        x0, y0, x1, y1 = round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)
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
    """Hands the pages on to the engine and keeps each one, to draw on afterwards, as a JPEG of at
    most `PICTURE_PIXELS`: a few hundred KB a page instead of its full pixels (an A4 page at 200 dpi
    is 46 MB decoded), so a 200-page document asked with `visualize` stays within the pod's memory."""

    def __init__(self, pages: Iterable[PageImage]) -> None:
        self._pages = pages
        self.images: dict[int, bytes] = {}

    def __iter__(self) -> Iterator[PageImage]:
        for page in self._pages:
            self.images[page.index] = _reduced_jpeg(page.image)
            yield page


def _reduced_jpeg(image: Image.Image) -> bytes:
    factor = math.ceil(math.sqrt(image.width * image.height / PICTURE_PIXELS))
    small = image.reduce(factor) if factor > 1 else image
    buf = io.BytesIO()
    small.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def layout_pngs(document: Document, images: dict[int, bytes]) -> dict[int, bytes]:
    """1-based page number -> PNG of its layout picture, drawn one page at a time; the kept pages
    are released as they are drawn."""
    pngs = {}
    for page in sorted(document.pages, key=lambda p: p.index):
        kept = images.pop(page.index, None)
        if kept is not None:
            with Image.open(io.BytesIO(kept)) as image:
                pngs[page.index + 1] = to_png(draw_layout(image, page))
    images.clear()
    return pngs
