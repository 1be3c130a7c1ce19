"""Pages rendered in turn or one ahead (function/pages.py): the same pages in the same order, errors
at the page that raised them, nothing left running when the reader stops early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PIL import Image, ImageDraw

from bench.quality.synthetic import make_pdf
from function.config import load_settings
from function.engines import create_engine
from function.engines.paddleocr_vl import PaddleOCRVLEngine
from function.pages import PageLimits, PageSource, _one_ahead, sniff


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


def test_one_ahead_renders_the_same_pages_in_a_thread_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    data = numbered_pdf(4)
    in_turn = list(source(data, prefetch=False))
    threads: list[str] = []
    check = PageSource._check_pixels

    def record(self: PageSource, pixels: int, index: int) -> None:
        threads.append(threading.current_thread().name)
        check(self, pixels, index)

    monkeypatch.setattr(PageSource, "_check_pixels", record)
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
