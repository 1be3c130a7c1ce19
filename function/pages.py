"""Documents become page images, one at a time: raster formats via Pillow, PDF via pypdfium2.

The media type is sniffed from the bytes, never taken from headers or file names. Pillow inflates a
PNG with whatever libz.so.1 the process has loaded: the CPU image and `make run` preload zlib-ng, which
decodes an A4 page in a third of the time Debian's zlib takes (BENCHMARKS.md).
"""

from __future__ import annotations

import io
import logging
import warnings
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image, ImageOps

from function.errors import BadRequest, TooLarge, Undecodable, UnsupportedType
from function.model import PageImage
from function.options import PageSelection
from function.pdf_render import PdfRenderer

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


@dataclass
class PageLimits:
    max_pixels: int
    max_pages: int
    pdf_dpi: int
    render_timeout_sec: float = 60.0  # the longest a PDF may take to open, or one page to render


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

    def __init__(
        self,
        data: bytes,
        media_type: str,
        selection: PageSelection | None,
        limits: PageLimits,
        deadline: float | None = None,
    ):
        self.media_type = media_type
        self._data = data
        self._limits = limits
        self._pdf: PdfRenderer | None = None
        if media_type == PDF:  # opened in its own process, which ends with this object at the latest
            self._pdf = PdfRenderer(
                data, max_pixels=limits.max_pixels, timeout=limits.render_timeout_sec, deadline=deadline
            )
            weakref.finalize(self, self._pdf.close)
        self.page_count = self._count()
        self.selected = self._select(selection)
        self.to_read = self.selected  # the selected pages still to read (the others have checkpoints)

    def set_deadline(self, deadline: float | None) -> None:
        """When a PDF's renderer gives up on a page from now on (a `time.monotonic()` value)."""
        if self._pdf is not None:
            self._pdf.deadline = deadline

    def close(self) -> None:
        """End the PDF's renderer process now (it ends when this object is collected otherwise)."""
        if self._pdf is not None:
            self._pdf.close()

    def _count(self) -> int:
        if self._pdf is not None:
            return self._pdf.page_count
        with _open_image(self._data) as img:
            return getattr(img, "n_frames", 1) if img.format in MULTI_PAGE else 1

    def _select(self, selection: PageSelection | None) -> list[int]:
        # Counted before expanding: a PDF may claim a million pages in a few hundred bytes.
        count = self.page_count if selection is None else selection.count(self.page_count)
        if not count:
            raise BadRequest(
                f"option 'pages={selection}' selects no page: the document has {self.page_count}"
            )
        if count > self._limits.max_pages:
            raise TooLarge(
                f"{count} pages selected, the limit is {self._limits.max_pages} (OCR_MAX_PAGES); "
                "use the 'pages' option to send a part"
            )
        return list(range(self.page_count)) if selection is None else selection.indices(self.page_count)

    def __iter__(self) -> Iterator[PageImage]:
        pages = self._pdf_pages() if self.media_type == PDF else self._image_pages()
        if self.prefetch and len(self.to_read) > 1:
            pages = _one_ahead(pages)
        yield from pages

    def _pdf_pages(self) -> Iterator[PageImage]:
        assert self._pdf is not None
        scale = self._limits.pdf_dpi / 72
        try:
            for index in self.to_read:
                yield PageImage(index=index, image=self._pdf.render(index, scale))
        finally:
            self._pdf.close()

    def _image_pages(self) -> Iterator[PageImage]:
        img = _open_image(self._data)
        last = self.to_read[-1]
        handed_out = False
        try:
            for index in self.to_read:
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
