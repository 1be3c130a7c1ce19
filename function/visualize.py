"""Layout pictures: the page with each block's box, label and reading-order number drawn on it.

People judge an OCR result by looking at what the engine saw; this is that picture.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from function.document import Block, Document, Page
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


Rect = tuple[int, int, int, int]


def caption(block: Block) -> str:
    """The tab's text: the block's place in reading order counted from 1 (document.json's `order`
    + 1, as the try-it page shows it), then its label; marginalia have no place, only the label."""
    return block.label if block.order is None else f"{block.order + 1} {block.label}"


def draw_layout(image: Image.Image, page: Page) -> Image.Image:
    """A copy of the page image with every block's box, label and reading-order number. The image
    may be the page scaled down (`KeepPages`): boxes are scaled from the page's size to it."""
    out = image.convert("RGB")  # always a copy, even for an RGB page
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 400))
    blocks = _scaled(page, out.size)
    for block in blocks:
        draw.rectangle(block.bbox, outline=COLOURS.get(block.label, OTHER), width=width)
    font = _font(label_size(out.size))
    for block, tab in place_tabs(blocks, out.size, lambda text: _text_size(draw, text, font)):
        draw.rectangle(tab, fill=COLOURS.get(block.label, OTHER))
        left, top, _, _ = draw.textbbox((0, 0), caption(block), font=font)
        draw.text((tab[0] + PAD - left, tab[1] + PAD - top), caption(block), fill="white", font=font)
    return out


def _scaled(page: Page, size: tuple[int, int]) -> list[Block]:
    """The page's blocks with their boxes in the pixels of a picture of `size`."""
    sx, sy = size[0] / (page.width or size[0]), size[1] / (page.height or size[1])
    if (sx, sy) == (1, 1):
        return list(page.blocks)

    def scale(box: Rect) -> Rect:
        return round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)

    return [replace(b, bbox=scale(b.bbox)) for b in page.blocks]


def label_size(size: tuple[int, int]) -> int:
    """Font pixels for a page: about 1/45 of its width (at least 14), so a picture shown in half a
    screen still has labels of about 16 screen pixels (an A4 page at 200 DPI: 37 px)."""
    return max(14, round(min(size) / 45))


PAD = 3  # pixels between a tab's edge and its text


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return round(right - left), round(bottom - top)


def place_tabs(
    blocks: Iterable[Block], size: tuple[int, int], measure: Callable[[str], tuple[int, int]]
) -> list[tuple[Block, Rect]]:
    """Each block's label tab, placed where it hides no tab placed before it: above the box's top-left
    corner, else inside it, else at its top-right or bottom-left corner, else stepped down the box's
    left edge. Blocks in reading order go first, so the body's tabs get the best places."""
    placed: list[tuple[Block, Rect]] = []
    for block in sorted(blocks, key=lambda b: (b.order is None, b.order or 0)):
        text_w, text_h = measure(caption(block))
        w, h = text_w + 2 * PAD, text_h + 2 * PAD
        x0, y0, x1, y1 = block.bbox
        candidates = [(x0, y0 - h), (x0, y0), (x1 - w, y0 - h), (x1 - w, y0), (x0, y1), (x0, y1 - h)]
        candidates += [(x0, y0 + k * h) for k in range(1, max(1, (y1 - y0) // h))]
        tabs = [_clamp((x, y, x + w, y + h), size) for x, y in candidates]
        free = (t for t in tabs if not any(_overlap(t, other) for _, other in placed))
        placed.append((block, next(free, tabs[0])))
    return placed


def _clamp(rect: Rect, size: tuple[int, int]) -> Rect:
    """The rectangle moved, not shrunk, to lie inside the page."""
    x0, y0, x1, y1 = rect
    dx = max(0, -x0) - max(0, x1 - size[0])
    dy = max(0, -y0) - max(0, y1 - size[1])
    return x0 + dx, y0 + dy, x1 + dx, y1 + dy


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
        png = layout_png(page, images)
        if png is not None:
            pngs[page.index + 1] = png
    images.clear()
    return pngs


def layout_png(page: Page, images: dict[int, bytes]) -> bytes | None:
    """The PNG of one page's layout picture, its kept page released; None if it was not kept."""
    kept = images.pop(page.index, None)
    if kept is None:
        return None
    with Image.open(io.BytesIO(kept)) as image:
        return to_png(draw_layout(image, page))
