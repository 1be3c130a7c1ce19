"""One page through the layout stage, whatever the OCR: deskew, read, detect regions, re-read what
the OCR missed, build blocks, crop figures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from function.document import IMAGE_LABELS, Block, Document, Page, TextLine
from function.engines.deskew import straighten, unrotate_box
from function.engines.layout.blocks import PICTURE_LABELS, build_blocks
from function.engines.layout.geometry import box_height, clip, covered, grow, shift_box
from function.engines.layout.model import LayoutModel, Region
from function.engines.layout.tables import TextReader

log = logging.getLogger(__name__)

# Detects and recognises the lines of an RGB crop; boxes in the crop's pixels.
LineReader = Callable[[np.ndarray], list[TextLine]]
# Reads the lines of a skewed page from its own pixels; boxes in the frame of the page turned level
# by the angle given (degrees), as `straighten` turns it.
TurnedReader = Callable[[np.ndarray, float], list[TextLine]]


@dataclass(frozen=True)
class PageOCR:
    """An engine's OCR, as the layout stage calls it: `read_lines` reads the whole page,
    `read_crop` a layout region the page pass found empty, `read_text` one line piece of a table
    cell, `read_cell` a whole table cell, where the engine reads cells better alone (see
    `build_blocks`). `read_turned`, where given, reads a skewed page from its own pixels: a
    detector that finds tilted lines reads them without the blur of the page's resampling."""

    read_lines: LineReader
    read_crop: LineReader
    read_text: TextReader | None = None
    read_cell: LineReader | None = None
    read_turned: TurnedReader | None = None


def analyse_page(
    rgb: np.ndarray, page_index: int, layout: LayoutModel, ocr: PageOCR
) -> tuple[Page, dict[str, Image.Image]]:
    """A page's blocks and its figures' crops: the steps every CPU engine shares.

    The page is read straightened (deskewed); boxes come back in the pixels of the page as given.
    """
    started = time.perf_counter()
    level, angle = straighten(rgb)
    lines = ocr.read_turned(rgb, angle) if angle and ocr.read_turned else ocr.read_lines(level)
    read = time.perf_counter()
    regions = layout.detect(level)
    lines += reread_empty_regions(level, regions, lines, ocr.read_crop)
    laid_out = time.perf_counter()
    blocks = build_blocks(
        level, regions, lines, page_index=page_index, read_text=ocr.read_text, read_cell=ocr.read_cell
    )
    log.debug(
        "page %s: %s lines in %.2f s, %s regions in %.2f s, %s blocks in %.2f s (skew %.1f°)",
        page_index,
        len(lines),
        read - started,
        len(regions),
        laid_out - read,
        len(blocks),
        time.perf_counter() - laid_out,
        angle,
    )
    height, width = rgb.shape[:2]
    if angle:
        _unrotate(blocks, angle, width, height)
    page = Page(index=page_index, width=width, height=height, blocks=blocks)
    return page, crop_figures(rgb, page_index, blocks)


def _unrotate(blocks: list[Block], angle: float, width: int, height: int) -> None:
    """Every box of the straightened page turned back into the page's own frame."""
    for block in blocks:
        block.bbox = unrotate_box(block.bbox, angle, width, height)
        block.lines = [
            TextLine(ln.text, unrotate_box(ln.bbox, angle, width, height), ln.score) for ln in block.lines
        ]
        for cell in block.table.cells if block.table else []:
            if cell.bbox is not None:
                cell.bbox = unrotate_box(cell.bbox, angle, width, height)


def crop_figures(rgb: np.ndarray, page_index: int, blocks: list[Block]) -> dict[str, Image.Image]:
    """Crops of the picture blocks, for the Markdown to show; each block's `image` names its crop."""
    crops = {}
    for block in blocks:
        x0, y0, x1, y1 = block.bbox
        if block.label not in IMAGE_LABELS or x1 <= x0 or y1 <= y0:
            continue
        block.image = f"imgs/page{page_index + 1}_{block.label}_{block.id}.jpg"
        crops[block.image] = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    return crops


def collect(pages: Iterable[tuple[Page, dict[str, Image.Image]]]) -> Document:
    """One Document from `analyse_page` results, taken one page at a time."""
    document = Document(pages=[])
    for page, crops in pages:
        document.pages.append(page)
        document.images.update(crops)
    return document


def reread_empty_regions(
    rgb: np.ndarray, regions: Sequence[Region], lines: Sequence[TextLine], read_lines: LineReader
) -> list[TextLine]:
    """Lines of the text regions where the OCR found nothing, read again from their crops.

    A text detector can miss what the layout model sees: PP-OCRv6's detector scores a lone short
    line on an otherwise empty page at 0.2 (dropped), the same line in a smaller crop at 0.75.
    Returns only new lines, in page pixels.
    """
    height, width = rgb.shape[:2]
    found: list[TextLine] = []
    for region in regions:
        if region.label == "table" or region.label in PICTURE_LABELS:
            continue
        if any(covered(ln.bbox, region.bbox) >= 0.5 for ln in lines):
            continue
        pad = max(8, box_height(region.bbox) // 2)
        x0, y0, x1, y1 = clip(grow(region.bbox, pad), width, height)
        for line in read_lines(np.ascontiguousarray(rgb[y0:y1, x0:x1])):
            box = shift_box(line.bbox, x0, y0)
            new = TextLine(line.text, box, line.score)
            # Only what lies in this region, and not what another line already gave.
            if covered(box, region.bbox) >= 0.5 and not any(
                covered(box, other.bbox) > 0.3 for other in (*lines, *found)
            ):
                found.append(new)
    if found:
        log.debug("re-read %s lines the detector had missed", len(found))
    return found
