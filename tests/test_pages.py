"""Pages rendered in turn or one ahead (function/pages.py): the same pages in the same order, errors
at the page that raised them, nothing left running when the reader stops early; image pages handed
out whole, without a copy where none is needed; the engine's choice applied by the service."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bench.quality.synthetic import make_pdf
from function import service
from function.config import load_settings
from function.engines import create_engine
from function.engines.paddleocr_vl import PaddleOCRVLEngine
from function.engines.tesseract import TesseractEngine
from function.options import Options
from function.pages import PageLimits, PageSource, _one_ahead, sniff
from function.pdf_render import PdfRenderer
from function.runtime import Runtime
from function.sources import Source


def numbered_pdf(count: int) -> bytes:
    pages = []
    for n in range(count):
        img = Image.new("RGB", (200, 280), "white")
        ImageDraw.Draw(img).rectangle((10, 10, 10 + 15 * (n + 1), 40), fill="black")  # page n's mark
        pages.append(img)
    return make_pdf(pages, dpi=72)


def source(data: bytes, prefetch: bool) -> PageSource:
    src = PageSource(data, sniff(data), None, PageLimits(max_pixels=10**8, max_pages=10, pdf_dpi=72))
    src.prefetch = prefetch
    return src


def rendering_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that render pages from now on, one per page, in order."""
    threads: list[str] = []
    render = PdfRenderer.render

    def record(self: PdfRenderer, index: int, scale: float) -> Image.Image:
        threads.append(threading.current_thread().name)
        return render(self, index, scale)

    monkeypatch.setattr(PdfRenderer, "render", record)
    return threads


def test_one_ahead_renders_the_same_pages_in_a_thread_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    data = numbered_pdf(4)
    in_turn = list(source(data, prefetch=False))
    threads = rendering_threads(monkeypatch)
    ahead = list(source(data, prefetch=True))
    assert [p.index for p in ahead] == [0, 1, 2, 3]
    assert [p.image.tobytes() for p in ahead] == [p.image.tobytes() for p in in_turn]
    assert len({p.image.tobytes() for p in ahead}) == 4  # four different pages, not one repeated
    assert all(name.startswith("page-prefetch") for name in threads), threads


def test_one_ahead_raises_at_the_item_that_failed() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is broken")

    got = []
    with pytest.raises(ValueError, match="page 3"):
        for item in _one_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_one_ahead_closes_the_source_when_the_reader_stops_early() -> None:
    closed = threading.Event()
    made: list[int] = []

    def items() -> Iterator[int]:
        try:
            for n in range(100):
                made.append(n)
                yield n
        finally:
            closed.set()

    ahead = _one_ahead(items())
    assert next(ahead) == 0
    ahead.close()  # the reader gives up after the first page (a deadline, an engine error)
    assert closed.is_set()
    assert len(made) <= 2  # at most one page ahead, no more
    assert not [t for t in threading.enumerate() if t.name.startswith("page-prefetch")]


def test_only_an_engine_that_leaves_the_cpu_idle_renders_ahead() -> None:
    settings = load_settings({})
    assert not create_engine("rapidocr", settings).prefetch_pages
    assert not create_engine("tesseract", settings).prefetch_pages
    assert PaddleOCRVLEngine.prefetch_pages


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def test_a_one_page_image_is_handed_out_without_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Image.new("RGB", (120, 80), "white")
    ImageDraw.Draw(original).rectangle((10, 10, 50, 30), fill="black")
    copies: list[Image.Image] = []
    copy = Image.Image.copy
    monkeypatch.setattr(Image.Image, "copy", lambda self: copies.append(self) or copy(self))
    (page,) = list(source(encoded(original, "PNG"), prefetch=False))
    assert copies == []  # an A4 page's copy cost 10 ms
    assert page.image.tobytes() == original.tobytes()  # still readable once the source is done


def test_the_last_page_stays_readable_when_the_reader_stops_holding_it() -> None:
    original = Image.new("RGB", (30, 20), (10, 20, 30))
    pages = iter(source(encoded(original, "PNG"), prefetch=False))
    page = next(pages)
    pages.close()  # a reader that stops at the last page without asking for more (a deadline)
    assert page.image.tobytes() == original.tobytes()


def test_exif_orientation_turns_the_page_in_place() -> None:
    upright = Image.new("RGB", (60, 100), "white")
    ImageDraw.Draw(upright).rectangle((5, 5, 25, 15), fill="black")  # a mark at the top left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encoded(upright.rotate(90, expand=True), "PNG", exif=exif)
    (page,) = list(source(data, prefetch=False))
    assert page.image.size == upright.size
    assert page.image.getpixel((10, 10)) == (0, 0, 0) and page.image.getpixel((50, 90)) == (255, 255, 255)


def test_every_frame_of_a_tiff_stays_its_own_page() -> None:
    frames = [Image.new("RGB", (40, 40), (60 * n, 0, 0)) for n in range(3)]
    data = encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    pages = list(source(data, prefetch=False))
    # Read after the last seek: an earlier page sharing the open image's pixels would show frame 3.
    assert [p.image.getpixel((0, 0)) for p in pages] == [(0, 0, 0), (60, 0, 0), (120, 0, 0)]


@pytest.mark.parametrize("ahead", [True, False], ids=["renders-ahead", "in-turn"])
def test_the_service_renders_ahead_as_the_engine_says(
    ahead: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TesseractEngine, "prefetch_pages", ahead)
    runtime = Runtime(load_settings({"OCR_ENGINE": "tesseract", "OCR_STORE": f"file://{tmp_path}"}))
    runtime.wait_engine(timeout=120)
    threads = rendering_threads(monkeypatch)
    job = service.Job(Source(numbered_pdf(3), "three.pdf", "raw"), Options(), request_id="t", deadline=None)
    result = service.Service(runtime.settings, runtime.wait_engine, runtime.store).run(job)
    assert result.document["pages"] == 3 and len(threads) == 3
    assert all(name.startswith("page-prefetch") == ahead for name in threads), threads
