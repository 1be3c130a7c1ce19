"""Hostile PDFs (issue 18): rendered in a child process with a memory cap and a wall clock, so a bomb
costs its own process, not the worker; page selection counted before it is expanded.

The renderer is tested directly (each limit on its own, deterministic) and through a real function
process (functions-framework + gunicorn, rapidocr): the documented status, the worker's memory, a
cache hit answered while a bomb renders, and the worker healthy afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from function.errors import DeadlineExceeded, TooLarge, Undecodable
from function.pdf_render import PdfRenderer, memory_limit
from tests.pdfs import count_liar, xobject_bomb
from tests.server import FunctionServer
from tests.test_hostile import assert_error, peak_rss, text_png

MB = 1024 * 1024


# --- the renderer on its own ----------------------------------------------------------------------------


def test_a_bomb_is_stopped_by_the_memory_cap() -> None:
    with PdfRenderer(xobject_bomb(), max_pixels=10**7, timeout=120) as pdf:
        assert pdf.page_count == 1
        child = psutil.Process(pdf._proc.pid)
        with pytest.raises(
            Undecodable, match=r"stopped its renderer while rendering page 1 .*most likely out"
        ):
            pdf.render(0, 1.0)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_bomb_is_stopped_by_the_render_timeout() -> None:
    # A cap far above what the bomb reaches in half a second: the clock stops it, not the memory.
    with PdfRenderer(xobject_bomb(), max_pixels=10**9, timeout=0.5) as pdf:
        began = time.monotonic()
        with pytest.raises(Undecodable, match=r"took longer than 0.5 s rendering page 1; it was stopped"):
            pdf.render(0, 1.0)
        assert time.monotonic() - began < 5
        assert pdf._proc.poll() is not None  # killed, not left running


def test_a_bomb_is_stopped_by_the_documents_deadline() -> None:
    deadline = time.monotonic() + 0.5
    with PdfRenderer(xobject_bomb(), max_pixels=10**9, timeout=60, deadline=deadline) as pdf:
        with pytest.raises(DeadlineExceeded, match="ran past its deadline while rendering page 1"):
            pdf.render(0, 1.0)
        assert pdf._proc.poll() is not None


def test_a_page_over_the_pixel_limit_is_refused_in_the_child() -> None:
    with (
        PdfRenderer(count_liar(1), max_pixels=1000, timeout=30) as pdf,
        pytest.raises(TooLarge, match="OCR_MAX"),
    ):
        pdf.render(0, 1.0)


def test_a_page_that_will_not_load() -> None:
    # The tree claims two pages and holds one: PDFium cannot load the second.
    with PdfRenderer(count_liar(2), max_pixels=10**8, timeout=30) as pdf:
        assert pdf.page_count == 2
        assert pdf.render(0, 0.5).size == (306, 396)
        with pytest.raises(Undecodable, match="page 2 of the PDF could not be loaded"):
            pdf.render(1, 0.5)


def test_the_cap_leaves_room_for_a_page_at_the_pixel_limit() -> None:
    # 3 bytes a pixel for the bitmap, twice, on top of the interpreter and PDFium.
    assert memory_limit(100_000_000) == 512 * MB + 600_000_000


# --- through a real function process --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("function-hostile-pdf")
    env = {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp}/output", "OCR_RENDER_TIMEOUT_SEC": "30"}
    with FunctionServer(env, tmp / "server.log") as srv:
        yield srv


@pytest.fixture()
def worker(pdf_server: FunctionServer) -> Iterator[psutil.Process]:
    proc = psutil.Process(pdf_server.worker_pid())
    yield proc
    assert requests.get(pdf_server.url + "/health/live", timeout=10).status_code == 200, pdf_server.log()
    assert pdf_server.worker_pid() == proc.pid and proc.is_running()


def post(server: FunctionServer, data: bytes, name: str, **fields: str) -> requests.Response:
    return requests.post(server.url + "/ocr", files={"file": (name, data)}, data=fields, timeout=300)


@pytest.mark.slow
def test_xobject_bomb_costs_the_worker_nothing(pdf_server: FunctionServer, worker: psutil.Process) -> None:
    before = peak_rss(worker)
    resp = post(pdf_server, xobject_bomb(), "bomb.pdf")
    assert_error(resp, 422, "undecodable_document", "rendering page 1")
    # The bomb grew its renderer to the cap (~1 GB); the worker's own high-water mark barely moved.
    assert peak_rss(worker) - before < 100 * MB
    assert not [c for c in worker.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE][1:], (
        "only the one spare renderer may be left"
    )


@pytest.mark.slow
def test_a_cache_hit_is_answered_while_a_bomb_renders(
    pdf_server: FunctionServer, worker: psutil.Process
) -> None:
    words = post(pdf_server, text_png("Cache hit while bombed"), "hit.png")
    assert words.status_code == 200, words.text
    answers: list[requests.Response] = []
    bomb = threading.Thread(target=lambda: answers.append(post(pdf_server, xobject_bomb(), "bomb2.pdf")))
    bomb.start()
    try:
        pdf_server.wait_in_flight(1)
        began = time.monotonic()
        again = post(pdf_server, text_png("Cache hit while bombed"), "hit.png")
        hit_seconds = time.monotonic() - began
        still_rendering = bomb.is_alive()
    finally:
        bomb.join(120)
    assert again.status_code == 200 and again.json()["cached"] is True, again.text
    assert still_rendering, "the bomb finished before the cache hit was asked: nothing was shown"
    assert hit_seconds < 5
    assert_error(answers[0], 422, "undecodable_document")


@pytest.mark.slow
def test_a_million_page_claim_is_refused_at_once(pdf_server: FunctionServer, worker: psutil.Process) -> None:
    cpu_before = sum(worker.cpu_times()[:2])
    resp = post(pdf_server, count_liar(1_000_000), "liar.pdf", pages="1-")
    assert_error(resp, 413, "too_large", "1000000 pages selected", "OCR_MAX_PAGES")
    resp = post(pdf_server, count_liar(1_000_000), "liar.pdf", pages="1-3,2-999999,5")
    assert_error(resp, 413, "too_large", "999999 pages selected")
    assert sum(worker.cpu_times()[:2]) - cpu_before < 2  # counted, never listed


@pytest.mark.slow
def test_a_pdf_page_that_will_not_load_is_422(pdf_server: FunctionServer, worker: psutil.Process) -> None:
    resp = post(pdf_server, count_liar(2), "broken.pdf", pages="2")
    assert_error(resp, 422, "undecodable_document", "page 2 of the PDF could not be loaded")


def test_renderer_leaves_no_process_behind() -> None:
    pdf = PdfRenderer(count_liar(1), max_pixels=10**8, timeout=30)
    pid = pdf._proc.pid
    pdf.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
