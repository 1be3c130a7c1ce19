"""Auth (in process through `create_app` with a fake engine), backpressure, deadlines, request logs
and trace context against a real server process, plus the admission queue in-process where thread
timing must be exact. The real processes run the FAKE engine (tests/fake_serve.py, each page taking
OCR_FAKE_PAGE_SEC): what is tested surrounds recognition, and a page of known length makes the
holder, the waiter and the deadline independent of how fast this machine reads."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from PIL import Image

from function.admission import Admission
from function.errors import Busy
from function.tracing import from_header
from tests.conftest import engine_calls, pages_read
from tests.fakes import AppServer, app_server, digest, fake_text
from tests.server import FunctionServer
from tests.synthetic import make_pdf, page_with_text

KEY = "s3cr3t-key-1"
OTHER_KEY = "second-key"


def pdf(pages: int, word: str = "Deadline") -> bytes:
    return make_pdf([page_with_text([f"{word} page {n} of the test document."]).image for n in range(pages)])


def post_pdf(url: str, data: bytes, name: str, force: bool = True, **headers: str) -> requests.Response:
    fields = {"force": "true"} if force else {}
    files = {"file": (name, data)}
    return requests.post(url + "/ocr", files=files, data=fields, headers=headers, timeout=300)


def gauge(server: FunctionServer, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def wait_for(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def request_logs(server: FunctionServer) -> list[dict]:
    lines = server.log_path.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in records if r.get("event") == "request"]


# --- auth --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """Keys from a mounted file (one per line), /metrics behind the key too; in process, with the
    fake engine (tests/fakes.py): auth is the transport's."""
    tmp = tmp_path_factory.mktemp("keyed")
    (tmp / "keys").write_text(f"{KEY}\n{OTHER_KEY}\n", encoding="utf-8")
    env = {"OCR_API_KEYS_FILE": str(tmp / "keys"), "OCR_METRICS_AUTH": "true"}
    with app_server(env, tmp / "output") as srv:
        yield srv


def test_requests_without_a_valid_key_get_401(keyed_server: AppServer) -> None:
    page = pdf(1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + KEY}):
        resp = post_pdf(keyed_server.url, page, "a.pdf", **headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(keyed_server.url + "/files", timeout=10).status_code == 401
    assert requests.get(keyed_server.url + "/metrics", timeout=10).status_code == 401


def test_either_configured_key_opens_the_function(keyed_server: AppServer) -> None:
    bearer = {"Authorization": "Bearer " + KEY}
    resp = requests.post(
        keyed_server.url + "/ocr",
        data=pdf(1, "Keyed"),
        headers={"Content-Type": "application/pdf", **bearer},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    # The other key, as the old X-API-Key header, opens a result file (listing is off with keys).
    url = resp.json()["results"]["markdown"]["url"]
    legacy = requests.get(url, headers={"X-API-Key": OTHER_KEY}, timeout=10)
    assert legacy.status_code == 200
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(keyed_server.url + "/metrics", headers=bearer, timeout=10).status_code == 200


def test_health_and_contract_stay_open(keyed_server: AppServer) -> None:
    for path in ("/health", "/health/live", "/health/ready", "/openapi.json"):
        assert requests.get(keyed_server.url + path, timeout=10).status_code == 200, path


# --- backpressure, deadline, logs and traces on one small server ------------------------------------


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("busy")
    env = {
        "OCR_FAKE_PAGE_SEC": "1.5",
        "OCR_STORE": f"file://{tmp}/output",
        "OCR_CONCURRENCY": "1",
        "OCR_QUEUE_SIZE": "1",
        "OCR_QUEUE_WAIT_SEC": "120",
        "THREADS": "6",
    }
    with FunctionServer(env, tmp / "server.log", fake=True) as srv:
        yield srv


def test_a_full_queue_answers_429_and_the_admitted_finish(busy_server: FunctionServer) -> None:
    slow = pdf(3, "Holder")
    read = pages_read(busy_server)
    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(post_pdf, busy_server.url, slow, "holder.pdf")
        # The holder's first page read: it has the slot (on a loaded machine a fixed sleep was not
        # enough — the waiter could take the slot while the holder was still opening its PDF).
        wait_for(lambda: pages_read(busy_server) > read, 120)
        assert gauge(busy_server, "ocr_queued") == 0
        waiter = pool.submit(post_pdf, busy_server.url, pdf(1, "Waiter"), "waiter.pdf")
        wait_for(lambda: gauge(busy_server, "ocr_queued") == 1)
        rejected = post_pdf(busy_server.url, pdf(1, "Rejected"), "rejected.pdf")
        assert rejected.status_code == 429, rejected.text
        assert int(rejected.headers["Retry-After"]) > 0
        assert "OCR_QUEUE_SIZE" in rejected.json()["error"]["message"]
        assert holder.result().status_code == 200
        waited = waiter.result()
    assert waited.status_code == 200, waited.text
    assert waited.json()["timings"]["queue"] > 0.5  # it really waited for the holder's slot


def test_the_same_document_sent_twice_at_once_is_read_once(busy_server: FunctionServer) -> None:
    """The second waits for the slot, then finds the first's result instead of running OCR again."""
    twice = pdf(2, "Twice")
    before = engine_calls(busy_server)

    def send() -> requests.Response:
        return requests.post(busy_server.url + "/ocr", files={"file": ("twice.pdf", twice)}, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        answers = [f.result() for f in [pool.submit(send), pool.submit(send)]]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert sorted(a.json()["cached"] for a in answers) == [False, True]
    assert engine_calls(busy_server) == before + 1


def test_the_deadline_stops_between_pages_with_504_and_keeps_them(tmp_path: Path) -> None:
    """A deadline overrun keeps the pages it read (checkpoints) and says so; each retry reads only
    the pages not yet stored, so the document is read once in all, however many tries it takes."""
    env = {"OCR_STORE": f"file://{tmp_path}/output", "OCR_DEADLINE_SEC": "0.5", "OCR_FAKE_PAGE_SEC": "1"}
    with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
        document = pdf(4, "Late")
        resp = post_pdf(srv.url, document, "late.pdf", force=False)
        assert resp.status_code == 504, resp.text
        message = resp.json()["error"]["message"]
        kept = r"stopped after ([1-3]) of 4 page\(s\); the \1 page\(s\) read are stored, and a retry"
        found = re.search(kept, message)
        assert found, message
        assert not list((tmp_path / "output").rglob("manifest.json")), "a timed-out result was stored"
        assert len(list((tmp_path / "output").rglob("pages/*.json"))) == int(found.group(1))
        assert requests.get(srv.url + "/health/live", timeout=10).status_code == 200
        for _ in range(4):  # every try reads at least the page it starts before the deadline
            resp = post_pdf(srv.url, document, "late.pdf", force=False)
            if resp.status_code == 200:
                break
            assert resp.status_code == 504, resp.text
        assert resp.status_code == 200, resp.text
        assert resp.json()["document"]["pages_processed"] == 4
        assert pages_read(srv) == 4  # no page read twice


def test_one_json_log_line_per_request_with_the_callers_trace(busy_server: FunctionServer) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    incoming = f"00-{trace_id}-00f067aa0ba902b7-01"
    resp = requests.post(
        busy_server.url + "/ocr",
        files={"file": ("traced.pdf", pdf(1, "Traced"))},
        headers={"traceparent": incoming, "X-Request-Id": "req-trace-1"},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    outgoing = resp.headers["traceparent"]
    assert outgoing.startswith(f"00-{trace_id}-") and outgoing != incoming  # same trace, our own span
    wait_for(lambda: any(r.get("request_id") == "req-trace-1" for r in request_logs(busy_server)), 10)
    lines = [r for r in request_logs(busy_server) if r.get("request_id") == "req-trace-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["trace_id"] == trace_id
    assert line["status"] == 200 and line["outcome"] == "success"
    assert line["input_type"] == "multipart" and line["pages"] == 1 and line["engine"] == "fake"
    assert line["cached"] is False and {"open", "queue", "ocr", "store"} <= set(line["stages"])


@pytest.mark.parametrize("mode", [to_binary, to_structured], ids=["binary", "structured"])
def test_an_events_trace_reaches_its_reply_and_log(busy_server: FunctionServer, mode) -> None:  # type: ignore[no-untyped-def]
    """The CloudEvents distributed-tracing extension: the reply continues the event's trace."""
    trace_id = secrets.token_hex(16)
    inline = {"image_base64": base64.b64encode(pdf(1, "Evented")).decode(), "filename": "ev.pdf"}
    attrs = {
        "type": "ocr.document.requested",
        "source": "/tests",
        "traceparent": f"00-{trace_id}-{'a' * 16}-01",
    }
    event = CloudEvent(attrs, inline)
    headers, body = mode(event)
    resp = requests.post(busy_server.url + "/", headers=headers, data=body, timeout=300)
    assert resp.status_code == 200, resp.text
    assert resp.headers["ce-type"] == "ocr.document.completed"
    assert resp.headers["ce-traceparent"].startswith(f"00-{trace_id}-")
    assert not resp.headers["ce-traceparent"].startswith(f"00-{trace_id}-{'a' * 16}")
    wait_for(lambda: any(r.get("ce_id") == event["id"] for r in request_logs(busy_server)), 10)
    (line,) = [r for r in request_logs(busy_server) if r.get("ce_id") == event["id"]]
    assert line["trace_id"] == trace_id and line["ce_type"] == "ocr.document.requested"
    assert line["input_type"] == "cloudevent" and line["outcome"] == "success"


def test_a_bad_request_is_logged_with_its_error_code(busy_server: FunctionServer) -> None:
    resp = requests.post(
        busy_server.url + "/ocr",
        data=b"{not json",
        headers={"Content-Type": "application/json", "X-Request-Id": "bad-1"},
        timeout=30,
    )
    assert resp.status_code == 400
    wait_for(lambda: any(r.get("request_id") == "bad-1" for r in request_logs(busy_server)), 10)
    (line,) = [r for r in request_logs(busy_server) if r.get("request_id") == "bad-1"]
    assert line["outcome"] == "bad_request" and line["status"] == 400 and line["level"] == "INFO"


def test_metrics_cover_the_request_lifecycle(busy_server: FunctionServer) -> None:
    text = requests.get(busy_server.url + "/metrics", timeout=10).text
    for name in (
        'ocr_requests_total{outcome="success"}',
        'ocr_requests_total{outcome="busy"}',
        "ocr_request_seconds_bucket",
        "ocr_stage_seconds_bucket",
        "ocr_pages_total",
        "ocr_in_flight",
        "ocr_queued",
        "ocr_cache_hits_total",
        "ocr_engine_ready 1.0",
    ):
        assert name in text, name
    load = re.search(r"^ocr_engine_load_seconds (\S+)$", text, re.MULTILINE)
    assert load and float(load.group(1)) > 0


def test_a_large_base64_form_field_is_read(busy_server: FunctionServer) -> None:
    """Werkzeug caps non-file form fields at 500 kB by default; the document limit applies instead."""
    page = page_with_text(["Large field 4711 travels as base64."]).image
    noisy = page.copy()
    noisy.paste(Image.effect_noise((noisy.width, 400), 80).convert("RGB"), (0, noisy.height - 400))
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    encoded = base64.b64encode(buf.getvalue()).decode()
    assert len(encoded) > 600_000
    resp = requests.post(
        busy_server.url + "/ocr",
        files={"image_base64": (None, encoded)},
        data={"return_content": "true"},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    # The FAKE engine names the pixels it got: these are the whole field's, decoded.
    assert f"{fake_text(*noisy.size)} {digest(noisy)}" in resp.json()["content"]["markdown"]


# --- in-process: the admission queue and the trace header ----------------------------------------


def test_admission_bounds_the_queue_and_the_wait() -> None:
    admission = Admission(slots=1, queue_size=1, wait_sec=0.3)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with admission.slot():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    began = time.monotonic()
    with pytest.raises(Busy, match="OCR_QUEUE_WAIT_SEC"), admission.slot():  # queued, then timed out
        pass
    assert 0.25 < time.monotonic() - began < 3
    waiter_result: list[str] = []

    def wait_in_queue() -> None:
        try:
            with admission.slot():
                waiter_result.append("admitted")
        except Busy:
            waiter_result.append("busy")

    admission.wait_sec = 5
    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    wait_for(lambda: admission._waiting == 1, 5)
    with pytest.raises(Busy, match="OCR_QUEUE_SIZE"), admission.slot():  # the queue is full: no wait
        pass
    release.set()
    holder.join()
    waiter.join()
    assert waiter_result == ["admitted"]
    with admission.slot():  # every slot was given back
        pass


def test_traceparent_parsing() -> None:
    good = from_header("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert good.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and good.parent_id == "00f067aa0ba902b7"
    assert re.fullmatch(r"00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01", good.traceparent)
    for bad in (
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
    ):
        fresh = from_header(bad)
        assert fresh.parent_id is None and re.fullmatch(r"[0-9a-f]{32}", fresh.trace_id)
