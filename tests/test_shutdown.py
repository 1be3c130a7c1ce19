"""Graceful shutdown and worker recycling against the real server (gunicorn).

SIGTERM to the master of `python -m function serve`: the request in flight completes and its result
is stored, a new connection is refused at once, the process exits when the drain is done — and no
later than `OCR_DRAIN_SEC`, which really bounds it. `OCR_RECYCLE_AFTER_DOCS`: the worker is
replaced after N documents, and the next document is answered by the fresh one.

The drain tests run the FAKE engine (tests/fake_serve.py) with pages of known length
(OCR_FAKE_PAGE_SEC): what is tested is the request around the OCR, which must last a known while.
The recycling test runs the real engine under the plain functions-framework command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from function.config import Settings, load_settings
from function.lifecycle import DrainingWorker, Recycler, drain_seconds, gunicorn_options
from tests.server import FunctionServer
from tests.synthetic import english_page, make_pdf
from tests.test_http_inputs import text_image

GUNICORN = {"SERVER_SOFTWARE": "gunicorn/23.0.0"}


def pdf(pages: int, seed: int) -> bytes:
    """A PDF of `pages` full pages of prose: several seconds of OCR per page on a small machine."""
    return make_pdf([english_page(seed + n).image for n in range(pages)])


class Call(threading.Thread):
    """A POST /ocr in the background; `.response` or `.error` when it has finished."""

    def __init__(self, url: str, data: bytes, filename: str) -> None:
        super().__init__(daemon=True)
        self.url, self.data, self.filename = url, data, filename
        self.response: requests.Response | None = None
        self.error: Exception | None = None
        self.finished_at = 0.0

    def run(self) -> None:
        try:
            self.response = requests.post(
                self.url + "/ocr", files={"file": (self.filename, self.data)}, timeout=300
            )
        except requests.RequestException as exc:
            self.error = exc
        self.finished_at = time.monotonic()


def stored_result_is_complete(body: dict[str, Any]) -> dict[str, Any]:
    """The local store's manifest of a 200, and every part it names on disk with its checksum."""
    manifest_path = Path(unquote(urlsplit(body["results"]["manifest"]["uri"]).path))
    manifest = json.loads(manifest_path.read_bytes())
    root = Path(str(manifest_path)[: -len(f"{manifest['prefix']}/manifest.json")])  # keys are relative to it
    for part in [*manifest["parts"].values(), *manifest.get("images", {}).values()]:
        data = (root / part["key"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"], part["key"]
    return manifest


def refused(url: str) -> tuple[bool, float, str]:
    """Whether a new request is turned away (connection refused/reset, or 503), how fast, and how."""
    began = time.monotonic()
    try:
        resp = requests.get(url + "/health/live", timeout=30)
    except requests.ConnectionError as exc:
        return True, time.monotonic() - began, type(exc).__name__
    return resp.status_code == 503, time.monotonic() - began, f"HTTP {resp.status_code}"


# --- SIGTERM -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_drains_the_request_in_flight_and_refuses_new_ones(tmp_path: Path) -> None:
    env = {"OCR_FAKE_PAGE_SEC": "3", "OCR_STORE": f"file://{tmp_path}/out", "OCR_DRAIN_SEC": "120"}
    with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
        assert srv.proc is not None
        call = Call(srv.url, pdf(1, seed=11), "drain.pdf")
        call.start()
        srv.wait_in_flight()
        time.sleep(0.5)  # well inside the OCR (seconds), past reading the body
        sigterm_at = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the master has closed its sockets and signalled the worker
        turned_away, took, how = refused(srv.url)
        assert turned_away, f"a request after SIGTERM was served ({how})"
        assert took < 2, f"a request after SIGTERM waited {took:.1f}s before it was refused ({how})"
        assert call.is_alive(), "the request in flight finished before the check: use a longer document"

        call.join(300)
        assert call.error is None, f"the request in flight was cut: {call.error}\n{srv.log()}"
        assert call.response is not None and call.response.status_code == 200, call.response
        body = call.response.json()
        assert body["cached"] is False and body["document"]["pages_processed"] == 1
        stored_result_is_complete(body)

        srv.proc.wait(60)
        exited_at = time.monotonic()
        assert srv.proc.returncode == 0, srv.log()
        # The process leaves once the drain is done (gunicorn lingers 2 s on kept-alive connections),
        # not at the end of the 120 s grace period.
        assert exited_at - call.finished_at < 6, (exited_at - call.finished_at, srv.log())
        # The drain is logged: its start with what it waits for, and its end.
        log = srv.log_path.read_text()
        assert re.search(r"stopping: new connections refused, draining [1-9]\d* connection", log), log[-3000:]
        assert re.search(r"drained in \d+\.\d s, 0 connection\(s\) left; exiting", log), log[-3000:]
        print(
            f"\nSIGTERM: in-flight request answered {call.finished_at - sigterm_at:.1f}s after it, "
            f"process exited {exited_at - sigterm_at:.1f}s after it; "
            f"new request refused in {took:.3f}s ({how})"
        )


@pytest.mark.slow
def test_drain_stops_at_ocr_drain_sec(tmp_path: Path) -> None:
    """A request longer than the grace period is cut when it ends: OCR_DRAIN_SEC really is the bound."""
    env = {"OCR_FAKE_PAGE_SEC": "5", "OCR_STORE": f"file://{tmp_path}/out", "OCR_DRAIN_SEC": "1"}
    with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
        assert srv.proc is not None
        call = Call(srv.url, pdf(2, seed=21), "cut.pdf")
        call.start()
        srv.wait_in_flight()
        sigterm_at = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)
        exited = time.monotonic() - sigterm_at
        call.join(60)
        assert exited < 5, (exited, srv.log())
        assert call.response is None and call.error is not None, call.response
        assert not list((tmp_path / "out").rglob("manifest.json")), "a cut request stored a result"
        print(f"\nOCR_DRAIN_SEC=1: process exited {exited:.1f}s after SIGTERM, the long request was cut")


def test_drain_seconds_and_gunicorn_options() -> None:
    assert drain_seconds(Settings()) == 630  # deadline_sec 600 + 30
    assert drain_seconds(Settings(deadline_sec=0)) == 630
    assert drain_seconds(Settings(deadline_sec=100)) == 130
    assert drain_seconds(load_settings({"OCR_DRAIN_SEC": "45"})) == 45
    options = gunicorn_options(load_settings({"OCR_DRAIN_SEC": "12.5"}))
    assert options["graceful_timeout"] == 13 and isinstance(options["graceful_timeout"], int)
    assert options["worker_class"] == "function.lifecycle.DrainingWorker"
    from gunicorn.util import load_class

    assert load_class(options["worker_class"]) is DrainingWorker


def test_negative_drain_is_refused() -> None:
    from function.errors import ConfigError

    with pytest.raises(ConfigError, match="OCR_DRAIN_SEC"):
        load_settings({"OCR_DRAIN_SEC": "-1"})


# --- recycling -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_is_recycled_after_n_documents(tmp_path: Path) -> None:
    """Under the plain `functions-framework` command too (the recycler needs gunicorn, not `serve`)."""
    env = {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp_path}/out", "OCR_RECYCLE_AFTER_DOCS": "2"}
    with FunctionServer(env, tmp_path / "server.log") as srv:

        def ocr(n: int) -> requests.Response:
            doc = text_image(f"Recycle {n} 40{n}7")
            return requests.post(srv.url + "/ocr", files={"file": (f"recycle-{n}.png", doc)}, timeout=180)

        first_pid = srv.worker_pid()
        assert ocr(1).status_code == 200
        assert srv.worker_pid() == first_pid
        second = ocr(2)
        assert second.status_code == 200 and second.json()["status"] == "success", second.text
        stored_result_is_complete(second.json())  # answered in full before the worker went

        deadline = time.monotonic() + 120
        while True:
            try:
                pid = srv.worker_pid()
            except requests.RequestException:
                pid = first_pid
            if pid != first_pid:
                break
            assert time.monotonic() < deadline, f"the worker was not replaced:\n{srv.log()}"
            time.sleep(0.1)
        srv.wait_ready()
        third = ocr(3)
        assert third.status_code == 200 and third.json()["cached"] is False, third.text
        assert srv.worker_pid() == pid
        assert (
            f"recycling worker pid {first_pid} after this response: 2 documents" in srv.log_path.read_text()
        )
        # The new worker's cold start is timed from its own fork, not from the parent's start.
        startups = [
            json.loads(line) for line in srv.log_path.read_text().splitlines() if '"event": "startup"' in line
        ]
        assert len(startups) >= 2 and startups[-1]["pid"] == pid, startups
        assert startups[-1]["startup"]["to_load"] < 2 and "import" not in startups[-1]["startup"], startups[
            -1
        ]


class FakeResponse:
    def __init__(self, status: int = 200) -> None:
        self.status_code = status
        self.on_close: list[Any] = []

    def call_on_close(self, func: Any) -> Any:
        self.on_close.append(func)
        return func


def test_recycler_counts_documents_and_arms_once() -> None:
    recycler = Recycler(Settings(recycle_after_docs=2))
    first, busy, second, third = FakeResponse(), FakeResponse(429), FakeResponse(), FakeResponse()
    for response in (first, busy, second, third):
        recycler.after_document(response, GUNICORN)
    assert first.on_close == [] and busy.on_close == [] and third.on_close == []
    assert len(second.on_close) == 1  # SIGTERM to this process, once the response is sent
    (kill,) = second.on_close
    assert kill.args[1] == signal.SIGTERM


def test_recycler_rss_watermark(caplog: pytest.LogCaptureFixture) -> None:
    recycler = Recycler(Settings(recycle_rss_mb=1))  # any Python process is above 1 MiB
    response = FakeResponse()
    with caplog.at_level(logging.INFO, logger="function.lifecycle"):
        recycler.after_document(response, GUNICORN)
    assert len(response.on_close) == 1
    assert "resident memory" in caplog.text and "OCR_RECYCLE_RSS_MB=1" in caplog.text


def test_recycler_off_and_outside_gunicorn(caplog: pytest.LogCaptureFixture) -> None:
    off, response = Recycler(Settings()), FakeResponse()
    off.after_document(response, GUNICORN)
    assert not off.enabled and response.on_close == []
    werkzeug = Recycler(Settings(recycle_after_docs=1))
    with caplog.at_level(logging.WARNING, logger="function.lifecycle"):
        for _ in range(3):
            werkzeug.after_document(response, {"SERVER_SOFTWARE": "Werkzeug/3.1"})
    assert response.on_close == []
    assert caplog.text.count("not gunicorn") == 1
