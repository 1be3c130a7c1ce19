"""Documents become page images, one at a time: raster formats via Pillow, PDF via pypdfium2.

The media type is sniffed from the bytes, never taken from headers or file names. Pillow inflates a
PNG with whatever libz.so.1 the process has loaded: the CPU image and `make run` preload zlib-ng, which
decodes an A4 page in a third of the time Debian's zlib takes (BENCHMARKS.md).
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pypdfium2 as pdfium
from PIL import Image, ImageOps

from function.errors import BadRequest, TooLarge, Undecodable, UnsupportedType
from function.model import PageImage
from function.options import PageSelection

log = logging.getLogger(__name__)

PDF = "application/pdf"
# Pillow format name -> media type, for the raster formats we accept.
RASTER_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}
MEDIA_TYPES = (PDF, *RASTER_TYPES.values())  # every type a document may be
MULTI_PAGE = {"TIFF"}  # GIF/WebP frames are animation, not pages: only the first is read

# Our own pixel check (OCR_MAX_PIXELS) runs before decoding; Pillow's bomb guard would only warn.
Image.MAX_IMAGE_PIXELS = None
# PDFium is not thread-safe, not even across documents (pypdfium2's docs): every call into it, from
# any of the documents in progress or their page prefetchers, holds this lock.
_PDFIUM = threading.RLock()


@dataclass
class PageLimits:
    max_pixels: int
    max_pages: int
    pdf_dpi: int


def sniff(data: bytes) -> str:
    """The media type of `data`, from its bytes; 415 if it is not a format we read."""
    if not data:
        raise BadRequest("the document is empty (0 bytes)")
    if b"%PDF-" in data[:1024]:
        return PDF
    try:
        with Image.open(io.BytesIO(data), formats=list(RASTER_TYPES)) as img:
            return RASTER_TYPES[img.format or ""]
    except (Image.UnidentifiedImageError, KeyError):
        pass
    except Exception as exc:  # a recognised header with a broken body
        raise Undecodable(f"the image could not be read: {exc}") from exc
    raise UnsupportedType(
        "the document is not a supported type; send a PDF or an image (PNG, JPEG, TIFF, WebP, BMP, GIF)"
    )


class PageSource:
    """An opened document: its page count now, its selected pages one at a time later.

    With `prefetch` (the engine's choice: `Engine.prefetch_pages`), the page after the one being
    read is rendered in a thread of its own meanwhile, so the engine never waits for a page; at
    most two are in memory at once.
    """

    prefetch = False

    def __init__(self, data: bytes, media_type: str, selection: PageSelection | None, limits: PageLimits):
        self.media_type = media_type
        self._data = data
        self._limits = limits
        self.page_count = self._count()
        self.selected = self._select(selection)

    def _count(self) -> int:
        if self.media_type == PDF:
            with _PDFIUM, _open_pdf(self._data) as pdf:
                return len(pdf)
        with _open_image(self._data) as img:
            return getattr(img, "n_frames", 1) if img.format in MULTI_PAGE else 1

    def _select(self, selection: PageSelection | None) -> list[int]:
        indices = list(range(self.page_count)) if selection is None else selection.indices(self.page_count)
        if not indices:
            raise BadRequest(
                f"option 'pages={selection}' selects no page: the document has {self.page_count}"
            )
        if len(indices) > self._limits.max_pages:
            raise TooLarge(
                f"{len(indices)} pages selected, the limit is {self._limits.max_pages} (OCR_MAX_PAGES); "
                "use the 'pages' option to send a part"
            )
        return indices

    def __iter__(self) -> Iterator[PageImage]:
        pages = self._pdf_pages() if self.media_type == PDF else self._image_pages()
        if self.prefetch and len(self.selected) > 1:
            pages = _one_ahead(pages)
        yield from pages

    def _pdf_pages(self) -> Iterator[PageImage]:
        scale = self._limits.pdf_dpi / 72
        with _open_pdf(self._data) as pdf:
            for index in self.selected:
                with _PDFIUM:
                    page = pdf[index]
                    try:
                        width, height = page.get_size()
                        self._check_pixels(int(width * scale) * int(height * scale), index)
                        bitmap = page.render(scale=scale)
                        try:
                            image = bitmap.to_pil()  # RGB, copied out of PDFium's BGR buffer
                            if image.mode != "RGB":  # other modes may share the buffer: copy
                                image = image.convert("RGB")
                        finally:
                            bitmap.close()
                    finally:
                        page.close()
                yield PageImage(index=index, image=image)

    def _image_pages(self) -> Iterator[PageImage]:
        img = _open_image(self._data)
        last = self.selected[-1]
        handed_out = False
        try:
            for index in self.selected:
                img.seek(index)
                self._check_pixels(img.width * img.height, index)
                try:
                    image = _to_rgb(self._upright(img, index == last))
                except OSError as exc:
                    raise Undecodable(f"page {index + 1} of the image could not be decoded: {exc}") from exc
                # Set before the yield: a reader may stop (close this generator) holding the last page.
                handed_out = index == last
                yield PageImage(index=index, image=image)
        finally:
            if not handed_out:  # close() frees the pixels, so not those of the page handed out
                img.close()

    @staticmethod
    def _upright(img: Image.Image, last: bool) -> Image.Image:
        """The frame turned by its EXIF orientation. The last page is the opened image itself, turned
        in place: no later seek replaces its pixels, and an A4 page's copy cost 10 ms (BENCHMARKS.md).
        """
        if not last:
            return ImageOps.exif_transpose(img)  # a new image: turned, or a copy of the frame
        ImageOps.exif_transpose(img, in_place=True)
        return img

    def _check_pixels(self, pixels: int, index: int) -> None:
        limit = self._limits.max_pixels
        if pixels > limit:
            raise TooLarge(f"page {index + 1} has {pixels} pixels, the limit is {limit} (OCR_MAX_PIXELS)")


T = TypeVar("T")
_END = object()


def _one_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, the next one produced in a worker thread while the caller works on this one.

    Errors reach the caller when it asks for the item that raised them; when the caller stops
    early, the pending item is finished and `items` is closed in the caller's thread.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="page-prefetch")
    try:
        future = pool.submit(next, items, _END)
        while (item := future.result()) is not _END:
            future = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()


class _open_pdf:
    """pypdfium2 document as a context manager, with its errors mapped to 422."""

    def __init__(self, data: bytes) -> None:
        try:
            with _PDFIUM:
                self.pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise Undecodable("the PDF is encrypted; send it without a password") from exc
            raise Undecodable(f"the PDF could not be read: {exc}") from exc

    def __enter__(self) -> pdfium.PdfDocument:
        return self.pdf

    def __exit__(self, *exc: object) -> None:
        with _PDFIUM:
            self.pdf.close()


def _open_image(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data), formats=list(RASTER_TYPES))
    except Exception as exc:
        raise Undecodable(f"the image could not be read: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB on white: transparency flattened, 16-bit and CMYK converted."""
    img.load()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")  # 16-bit greyscale to 8 bits
    return img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB page
