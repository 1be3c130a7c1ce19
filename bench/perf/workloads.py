"""The documents the benchmark sends, and the very pages the function will see in them.

Each workload is a document (PNG or PDF bytes) plus its pages rendered by the function's own
`PageSource` with the function's own limits, so the bare engine gets the same pixels the function
gets — rendered before the clock starts, as a bare engine would be handed images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import cached_property

from PIL import Image

from bench.quality.synthetic import english_page, make_pdf, page_with_text, table_page, two_column_page
from function.engines.base import PageImage
from function.pages import PageLimits, PageSource, sniff

LIGHT_LINES = 3  # a light page: a title and three short lines


@dataclass
class Workload:
    name: str
    filename: str
    data: bytes
    dpi: int  # what the function renders PDFs at (OCR_PDF_DPI)
    what: str  # a person's description, for the report
    _pages: list[PageImage] | None = field(default=None, repr=False)

    @cached_property
    def media_type(self) -> str:
        return sniff(self.data)

    def source(self) -> PageSource:
        return PageSource(self.data, self.media_type, None, PageLimits(10**9, 10**6, self.dpi))

    def pages(self) -> list[PageImage]:
        """The decoded pages, as the function's page source yields them (kept once made)."""
        if self._pages is None:
            self._pages = list(self.source())
        return self._pages

    @property
    def page_count(self) -> int:
        return self.source().page_count


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _lang(engine: str) -> str:
    return "ru" if engine == "tesseract" else "en"  # rapidocr has no Cyrillic model


def text_pages(count: int, dpi: int, lang: str) -> list[Image.Image]:
    """Ordinary text pages in turn: prose, a ruled table, two columns (A4, a few hundred words)."""
    makers = (
        lambda k: english_page(k, dpi, lang=lang),
        lambda k: table_page(seed=k, dpi=dpi, lang=lang),
        lambda k: two_column_page(k, dpi, lang=lang),
    )
    return [makers[k % 3](k).image for k in range(count)]


def light_page(k: int, dpi: int) -> Image.Image:
    """A light page: a title and three short lines (a cover letter's worth of ink), distinct per `k`."""
    lines = [f"Line {n + 1} of page {k + 1}: a few plain words here." for n in range(LIGHT_LINES)]
    return page_with_text(lines, title=f"Page {k + 1}", dpi=dpi).image


def light_pages(count: int, dpi: int) -> list[Image.Image]:
    return [light_page(k, dpi) for k in range(count)]


def image_doc(engine: str, dpi: int, seed: int = 0, *, light: bool = False) -> Workload:
    """One A4 page of prose, or with `light` a light one (`--quick`: OCR time is not looked at)."""
    page = light_page(seed, dpi) if light else english_page(seed, dpi, lang=_lang(engine)).image
    kind = "light A4 page (a title and 3 short lines)" if light else "A4 prose page"
    return Workload(
        f"image-1#{seed}" if seed else "image-1",
        f"page-{seed}.png",
        _png(page),
        dpi,
        f"a PNG of one {kind} at {dpi} dpi ({page.width}x{page.height})",
    )


def pdf_doc(engine: str, pages: int, dpi: int, *, light: bool = False) -> Workload:
    """A multi-page PDF of text pages, or with `light` of light ones."""
    if light:
        return replace(light_pdf(pages, dpi), name=f"pdf-{pages}", filename=f"doc-{pages}.pdf")
    return Workload(
        f"pdf-{pages}",
        f"doc-{pages}.pdf",
        make_pdf(text_pages(pages, dpi, _lang(engine)), dpi=dpi),
        dpi,
        f"a {pages}-page PDF of scanned A4 text pages (prose, ruled table, two columns in turn) at {dpi} dpi",
    )


def light_pdf(pages: int, dpi: int) -> Workload:
    return Workload(
        f"light-pdf-{pages}",
        f"light-{pages}.pdf",
        make_pdf(light_pages(pages, dpi), dpi=dpi),
        dpi,
        f"a {pages}-page PDF of light scanned A4 pages (a title and {LIGHT_LINES} short lines each) "
        f"at {dpi} dpi",
    )
