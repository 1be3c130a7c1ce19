"""Async jobs in process: `Prefer: respond-async`, `/jobs/<id>`, the job events, the broker dispatch and
the signed callback. The engine is FAKE (tests/fakes.py) — what is tested is the job around it; the
real-process tests (tests/test_jobs_served.py) run a server with the real store and a real kill."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent, from_http

from function.dispatch import chunks
from tests.conftest import BUCKET, S3_KEYS, pages_read, s3_env
from tests.fakes import AppServer, app_server
from tests.pdfs import light_pdf
from tests.test_events import aws_event

ASYNC = {"Prefer": "respond-async"}


class Receiver:
    """A callback receiver or a broker stand-in on 127.0.0.1: keeps what is POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def submit(srv: AppServer, data: bytes, name: str = "long.pdf", **fields: str) -> requests.Response:
    return requests.post(
        srv.url + "/ocr", files={"file": (name, data)}, data=fields, headers=ASYNC, timeout=60
    )


def wait_done(srv: AppServer, location: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(srv.url + location, timeout=10).json()
        if status["state"] in ("completed", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"the job did not finish: {status}")


def stored(srv: AppServer, result: dict[str, Any], part: str) -> bytes:
    return requests.get(result["results"][part]["url"], timeout=10).content


def test_respond_async_accepts_at_once_and_the_job_completes(tmp_path: Path) -> None:
    document = light_pdf(12)
    with app_server({}, tmp_path / "out") as srv:
        resp = submit(srv, document)
        assert resp.status_code == 202, resp.text
        assert resp.headers["Preference-Applied"] == "respond-async"
        body = resp.json()
        assert resp.headers["Location"] == f"/jobs/{body['job_id']}"
        assert body["pages"]["total"] == 12 and body["state"] in ("queued", "running", "completed")
        done = wait_done(srv, resp.headers["Location"])
        assert done["state"] == "completed" and done["pages"] == {"done": 12, "total": 12}
        assert done["result"]["document"]["pages_processed"] == 12 and done["result"]["cached"] is False
        again = submit(srv, document)  # the same document: the same job, already done
        assert again.json()["job_id"] == body["job_id"] and again.json()["state"] == "completed"
        markdown = stored(srv, done["result"], "markdown")
        as_json = stored(srv, done["result"], "json")
    with app_server({}, tmp_path / "sync") as srv:  # a fresh store: read synchronously
        sync = requests.post(srv.url + "/ocr", files={"file": ("long.pdf", document)}, timeout=60).json()
        assert stored(srv, sync, "markdown") == markdown and stored(srv, sync, "json") == as_json


def test_an_unknown_job_is_a_json_404(tmp_path: Path) -> None:
    with app_server({}, tmp_path / "out") as srv:
        for job in ("0" * 32, "not-a-job", "../../etc/passwd"):
            resp = requests.get(f"{srv.url}/jobs/{job}", timeout=10)
            assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found", resp.text


def test_prefer_is_read_as_rfc_7240_says(tmp_path: Path) -> None:
    with app_server({}, tmp_path / "out") as srv:
        for prefer, status in (
            ("wait=5, Respond-Async", 202),
            ("respond-async; foo=bar", 202),
            ("return=minimal", 200),
        ):
            resp = requests.post(
                srv.url + "/ocr",
                files={"file": ("a.pdf", light_pdf(1, prefer))},
                headers={"Prefer": prefer},
                timeout=60,
            )
            assert resp.status_code == status, (prefer, resp.text)


def test_the_callback_is_signed_with_the_secret(tmp_path: Path, receiver: Receiver) -> None:
    env = {"OCR_CALLBACK_SECRET": "s3cret", "OCR_URL_ALLOW_PRIVATE": "true"}
    with app_server(env, tmp_path / "out") as srv:
        resp = submit(srv, light_pdf(3), callback_url=receiver.url)
        done = wait_done(srv, resp.headers["Location"])
        deadline = time.monotonic() + 30
        while not receiver.posts and time.monotonic() < deadline:
            time.sleep(0.05)
    headers, body = receiver.posts[0]
    assert headers["X-OCR-Job"] == done["job_id"]
    signed = headers["X-OCR-Timestamp"].encode() + b"." + body
    expected = hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert headers["X-OCR-Signature"] == f"sha256={expected}"
    posted = json.loads(body)
    assert posted["state"] == "completed" and posted["result"]["document"]["pages_processed"] == 3


def test_a_callback_to_a_private_address_is_refused_by_default(tmp_path: Path, receiver: Receiver) -> None:
    with app_server({}, tmp_path / "out") as srv:
        resp = submit(srv, light_pdf(1), callback_url=receiver.url)
        assert wait_done(srv, resp.headers["Location"])["state"] == "completed"
        time.sleep(0.5)
    assert receiver.posts == []  # the result is stored; only the post to 127.0.0.1 was refused


def test_a_bad_callback_url_is_a_400(tmp_path: Path) -> None:
    with app_server({}, tmp_path / "out") as srv:
        for url in ("file:///etc/passwd", "not a url", "http://"):
            resp = submit(srv, light_pdf(1), callback_url=url)
            assert resp.status_code == 400 and "callback_url" in resp.json()["error"]["message"], resp.text


def test_with_a_broker_a_long_document_is_sent_as_chunk_events(tmp_path: Path, receiver: Receiver) -> None:
    env = {"K_SINK": receiver.url, "OCR_CHUNK_PAGES": "5"}
    with app_server(env, tmp_path / "out") as srv:
        resp = submit(srv, light_pdf(12))
        assert resp.status_code == 202 and resp.json()["state"] == "queued", resp.text
        job = resp.json()["job_id"]
        events = [from_http(h, b) for h, b in receiver.posts]
        assert [e["type"] for e in events] == ["ocr.document.chunk"] * 3
        assert [e.data["chunk"] for e in events] == [[1, 5], [6, 10], [11, 12]]
        assert {e.data["job_id"] for e in events} == {job}
        # The broker delivers them back (here: in reverse); the last one completes the document.
        replies = [deliver(srv, event) for event in reversed(events)]
        assert [r.status_code for r in replies] == [202, 202, 200]
        assert replies[-1].headers["ce-type"] == "ocr.document.completed"
        assert replies[-1].headers["ce-id"] == job  # deterministic: duplicates can be dropped
        status = requests.get(f"{srv.url}/jobs/{job}", timeout=10).json()
        assert status["state"] == "completed" and status["pages"]["done"] == 12
        again = deliver(srv, events[0])  # a redelivered chunk costs nothing and says the same
        assert again.status_code == 200 and again.headers["ce-id"] == job


def test_a_document_read_before_is_a_completed_job_at_once(tmp_path: Path, receiver: Receiver) -> None:
    with app_server({"K_SINK": receiver.url}, tmp_path / "out") as srv:
        document = light_pdf(2, "Before")
        assert requests.post(srv.url + "/ocr", files={"file": ("b.pdf", document)}, timeout=60).ok
        resp = submit(srv, document, "b.pdf")
        assert resp.status_code == 202 and resp.json()["state"] == "completed", resp.text
        assert resp.json()["result"]["cached"] is True
        assert receiver.posts == []  # nothing sent to the broker


def test_a_short_document_is_one_request_event(tmp_path: Path, receiver: Receiver) -> None:
    with app_server({"K_SINK": receiver.url, "OCR_CHUNK_PAGES": "5"}, tmp_path / "out") as srv:
        resp = submit(srv, light_pdf(5))
        (event,) = [from_http(h, b) for h, b in receiver.posts]
        assert event["type"] == "ocr.document.requested" and event.data == {"job_id": resp.json()["job_id"]}
        reply = deliver(srv, event)
        assert reply.status_code == 200 and reply.headers["ce-type"] == "ocr.document.completed"


def test_an_unreachable_broker_fails_the_submission_with_502(tmp_path: Path) -> None:
    with app_server({"K_SINK": "http://127.0.0.1:9/"}, tmp_path / "out") as srv:
        resp = submit(srv, light_pdf(2))
        assert resp.status_code == 502 and "K_SINK" in resp.json()["error"]["message"], resp.text


@pytest.mark.parametrize(
    "data",
    [{"job_id": "nope", "chunk": [1, 2]}, {"job_id": "a" * 32, "chunk": [3, 1]}, {"job_id": "a" * 32}, "x"],
)
def test_a_malformed_chunk_event_is_a_failed_reply(tmp_path: Path, data: Any) -> None:
    with app_server({}, tmp_path / "out") as srv:
        event = CloudEvent({"type": "ocr.document.chunk", "source": "test"}, data)
        reply = deliver(srv, event)
        assert reply.status_code == 400, reply.text


def test_a_chunk_of_an_unknown_job_fails_permanently(tmp_path: Path) -> None:
    with app_server({}, tmp_path / "out") as srv:
        event = CloudEvent(
            {"type": "ocr.document.chunk", "source": "test"}, {"job_id": "b" * 32, "chunk": [1, 2]}
        )
        reply = deliver(srv, event)
        assert reply.status_code == 200 and reply.headers["ce-type"] == "ocr.document.failed", reply.text


def test_chunks_cover_every_page_once() -> None:
    for total in (1, 9, 10, 11, 60, 301):
        for size in (0, 1, 10):
            ranges = chunks(total, size)
            pages = [p for first, last in ranges for p in range(first, last + 1)]
            assert pages == list(range(1, total + 1))


def deliver(srv: AppServer, event: CloudEvent) -> requests.Response:
    headers, body = to_binary(event)
    return requests.post(srv.url + "/", headers=headers, data=body, timeout=60)


def test_a_long_document_named_by_a_storage_event_is_spread_as_chunks(
    tmp_path: Path, receiver: Receiver, moto_endpoint: str, s3: Any
) -> None:
    """With a broker, a storage event's long document is not read in that delivery (it would outlast
    the delivery's timeout): it becomes a job of chunk events, and the event is acknowledged (202)."""
    secret = tmp_path / "secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"])
    env = {**s3_env(moto_endpoint, secret), "K_SINK": receiver.url, "OCR_CHUNK_PAGES": "4"}
    s3.put_object(Bucket=BUCKET, Key="inbox/long-event.pdf", Body=light_pdf(9))
    s3.put_object(Bucket=BUCKET, Key="inbox/short-event.pdf", Body=light_pdf(3))
    with app_server(env, tmp_path / "unused") as srv:
        long_one = deliver(srv, aws_event("inbox/long-event.pdf"))
        assert long_one.status_code == 202 and long_one.json()["status"] == "accepted", long_one.text
        events = [from_http(h, b) for h, b in receiver.posts]
        assert [e.data["chunk"] for e in events] == [[1, 4], [5, 8], [9, 9]]
        replies = [deliver(srv, event) for event in events]
        assert replies[-1].headers["ce-type"] == "ocr.document.completed"
        assert replies[-1].json()["document"]["pages_processed"] == 9
        short = deliver(srv, aws_event("inbox/short-event.pdf"))  # read in the delivery, as before
        assert short.status_code == 200 and short.headers["ce-type"] == "ocr.document.completed"
        assert len(receiver.posts) == 3


def test_a_forced_job_reads_every_page_again_once(tmp_path: Path) -> None:
    """`force` on a job: the pages stored before are not reused, and the job's own are (a redelivery
    of a forced chunk does not read its pages a second time)."""
    with app_server({}, tmp_path / "out") as srv:
        before = pages_read(srv)  # the counters are this test process's, shared by in-process apps
        wait_done(srv, submit(srv, light_pdf(4)).headers["Location"])
        assert pages_read(srv) == before + 4
        forced = submit(srv, light_pdf(4), force="true")
        assert forced.status_code == 202, forced.text
        deadline = time.monotonic() + 30
        while pages_read(srv) < before + 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert pages_read(srv) == before + 8


def test_a_forced_chunk_delivered_twice_reads_its_pages_once(tmp_path: Path, receiver: Receiver) -> None:
    with app_server({"K_SINK": receiver.url, "OCR_CHUNK_PAGES": "2"}, tmp_path / "out") as srv:
        before = pages_read(srv)
        submit(srv, light_pdf(4), force="true")
        first, second = [from_http(h, b) for h, b in receiver.posts]
        assert deliver(srv, first).status_code == 202 and deliver(srv, first).status_code == 202
        assert pages_read(srv) == before + 2
        assert deliver(srv, second).headers["ce-type"] == "ocr.document.completed"
        assert pages_read(srv) == before + 4


def test_a_completed_jobs_result_carries_the_content_when_asked(tmp_path: Path) -> None:
    """`GET /jobs/<id>?return_content=true`: the result as a synchronous answer with that option."""
    document = light_pdf(3)
    with app_server({}, tmp_path / "out") as srv:
        location = submit(srv, document).headers["Location"]
        assert "content" not in wait_done(srv, location)["result"]
        with_content = requests.get(srv.url + location + "?return_content=true", timeout=10).json()
        sync = requests.post(
            srv.url + "/ocr",
            files={"file": ("long.pdf", document)},
            data={"return_content": "true"},
            timeout=60,
        ).json()
        assert (
            with_content["result"]["content"] == sync["content"]
            and "fake page 3" in sync["content"]["markdown"]
        )
        bad = requests.get(srv.url + location + "?return_content=maybe", timeout=10)
        assert bad.status_code == 400 and "return_content" in bad.json()["error"]["message"], bad.text
