"""Labels a block earns by its text and size: titles (section, document), page numbers, and headers
that are no running heads."""

from __future__ import annotations

import re
from collections.abc import Sequence

from function.document import MARGINAL_LABELS, Block, TextLine
from function.engines.layout.geometry import median_line_height
from function.engines.layout.order import lines_text, order_lines

# "1. Introduction", "2.3 Results", "IV. Methods": a number, then a capitalised short heading
# without a closing full stop.
_SECTION_HEADING = re.compile(r"^(\d{1,2}(\.\d{1,2})*\.?|[IVX]{1,5}\.)\s+[A-ZА-ЯЁ][^.!?]{1,80}$")
_PAGE_NUMBER = re.compile(r"^(?:[-–—]\s*)?(?:page\s+|стр\.\s*|с\.\s*)?\d{1,4}(?:\s*[-–—])?$", re.IGNORECASE)
MARGIN_SHARE = 0.08  # of the page's height: the top and bottom margins, where page numbers sit
_TITLE_HEIGHT = 1.3  # a short group this much taller than body lines is a title
# The tallest such title high on the first page is the document's title. Detector boxes carry a
# margin, so a title set 1.8 times the body size measures about 1.4 times as tall.


def unmark_false_headers(blocks: list[Block]) -> None:
    """Headers that are no running heads become text. A page with a header and no body has none:
    it is a short page's text (the layout model takes a lone line near the top for a running head).
    A running head is one line: a header of several is the document's own (a contract's title, a
    letterhead). Footers stay: mostly page numbers."""
    lone = not any(b.label not in MARGINAL_LABELS for b in blocks)
    for block in blocks:
        if block.label == "header" and (lone or len(order_lines(block.lines)) > 1):
            block.label = "text"


def unmark_headers_above_title(blocks: list[Block]) -> None:
    """A document's first page has no running head above its title: a line there (an approval
    note, an organisation's name) is part of the document. Run once the doc_title is known."""
    titles = [b for b in blocks if b.label == "doc_title"]
    for block in blocks:
        if block.label == "header" and any(block.bbox[3] <= t.bbox[1] for t in titles):
            block.label = "text"


def label_titles(blocks: list[Block], body_h: float, page_index: int, page_h: int) -> None:
    for block in blocks:
        if block.label == "text" and _is_page_number(block, page_h):
            block.label = "number"
        elif block.label in ("text", "header") and _looks_like_title(block, body_h):
            block.label = "paragraph_title"
        elif block.label == "paragraph_title" and not _could_be_title(block):
            block.label = "text"  # the model's "title" on a long block or a sentence
    if page_index == 0:
        _promote_doc_title(blocks, body_h, page_h)
        unmark_headers_above_title(blocks)


def _looks_like_title(block: Block, body_h: float) -> bool:
    """A short block set bigger than the body, or a numbered section heading ("1. Introduction",
    "2.3 Results") on a line of its own, which is a title whatever its size (not so a numbered
    list item: that is a sentence, ending with a full stop)."""
    if not _could_be_title(block):
        return False
    if block.label == "header":  # a running head is small print: only size makes it a title
        return taller_than_body(block.lines, body_h)
    text = lines_text(block.lines)
    numbered = len(order_lines(block.lines)) == 1 and _SECTION_HEADING.match(text) is not None
    return numbered or taller_than_body(block.lines, body_h)


def _could_be_title(block: Block) -> bool:
    return len(order_lines(block.lines)) <= 2 and len(lines_text(block.lines)) <= 200


def _is_page_number(block: Block, page_h: int) -> bool:
    """A lone number (or "- 12 -", "Page 3") in the top or bottom margin of the page."""
    near_edge = block.bbox[3] < MARGIN_SHARE * page_h or block.bbox[1] > (1 - MARGIN_SHARE) * page_h
    return near_edge and _PAGE_NUMBER.match(lines_text(block.lines).strip()) is not None


def _promote_doc_title(blocks: list[Block], body_h: float, page_h: int) -> None:
    """The top-most of the largest titles, in the upper half of the first page, clearly bigger than body."""
    titles = [b for b in blocks if b.label == "paragraph_title" and b.lines]
    if not titles or body_h <= 0:
        return
    tallest = max(median_line_height(b.lines) for b in titles)
    candidates = [b for b in titles if median_line_height(b.lines) >= 0.9 * tallest]
    top = min(candidates, key=lambda b: b.bbox[1])
    if top.bbox[1] < page_h / 2 and median_line_height(top.lines) >= _TITLE_HEIGHT * body_h:
        top.label = "doc_title"


def taller_than_body(lines: Sequence[TextLine], body_h: float) -> bool:
    return bool(lines) and body_h > 0 and median_line_height(lines) >= _TITLE_HEIGHT * body_h
