"""S3 going away in the middle of a request, for real: moto's ThreadedMotoServer over HTTP is stopped
while the OCR runs (after the function looked for a stored result, before it stores its own) and
started again on the same port.

The request answers a retryable 502 with Retry-After quickly and leaves nothing in the bucket — above
all no manifest.json, so no partial result is ever served as cached; the same request, or the same
storage CloudEvent redelivered as a broker would, then completes, and the stored parts match the
manifest's checksums. (A write failing between the parts and the manifest is in test_s3.py.)

The function runs the FAKE engine (tests/fake_serve.py) with a page of known length
(OCR_FAKE_PAGE_SEC): what is tested is the store failing around the OCR, which must last long
enough to stop S3 in the middle of it, whatever this machine's speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from function.config import load_settings
from function.store import S3Store
from tests.conftest import S3_KEYS, s3_env
from tests.server import FunctionServer, free_port
from tests.synthetic import english_page, make_pdf
from tests.test_events import reply_of

BUCKET = "ocr-faults"  # moto keeps every bucket of this process in one place: a name of our own
PREFIX = "results"
# How much longer than a normal run a request may take to give up on a stopped S3: botocore's standard
# retries of a refused connection back off for well under a second in all.
FAIL_FAST_SEC = 15


class CrashableMoto(ThreadedMotoServer):
    """moto's threaded server, stopped the way a crashed S3 is gone: the listening socket is closed
    (new connections are refused) and open keep-alive connections are cut. `ThreadedMotoServer.stop`
    does neither — the kernel would still accept connections that nobody answers, and a client would
    wait out its read timeout. Started again on the same port it has its data back (moto keeps it in
    this process). Records the requests it answered."""

    def __init__(self, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.answered: list[tuple[str, str]] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _server_entry(self) -> None:
        owner = self
        app = DomainDispatcherApplication(create_backend_app)

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            body = app(environ, start_response)
            owner.answered.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            return body

        class Handler(MotoRequestHandler):
            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                super().finish()

        self._server = make_server(self._ip_address, self._port, recording, True, request_handler=Handler)
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        super().stop()
        assert self._server is not None
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                conn.shutdown(socket.SHUT_RDWR)

    def saw(self, method: str, *parts: str) -> bool:
        return any(m == method and all(p in path for p in parts) for m, path in list(self.answered))


@pytest.fixture(scope="module")
def moto() -> Iterator[CrashableMoto]:
    srv = CrashableMoto(free_port())
    srv.start()
    try:
        yield srv
    finally:
        if srv._server_ready_event.is_set():
            srv.stop()


@pytest.fixture(scope="module")
def faults_s3(moto: CrashableMoto):  # type: ignore[no-untyped-def]
    import boto3

    client = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", **S3_KEYS)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, moto: CrashableMoto, faults_s3
) -> Iterator[FunctionServer]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("function-faults")
    secret = tmp / "secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"])
    env = {
        **s3_env(moto.endpoint, secret),
        "OCR_STORE": f"s3://{BUCKET}/{PREFIX}",
        "OCR_INPUT_BUCKETS": BUCKET,
        "OCR_FAKE_PAGE_SEC": "3",
    }
    with FunctionServer(env, tmp / "server.log", fake=True) as srv:
        yield srv


def document(seed: int) -> bytes:
    """One page of prose as a PDF: OCR_FAKE_PAGE_SEC of OCR, plenty to stop S3 in the middle of it."""
    return make_pdf([english_page(seed).image])


class Background(threading.Thread):
    def __init__(self, send: Any) -> None:
        super().__init__(daemon=True)
        self.send = send
        self.response: requests.Response | None = None
        self.error: Exception | None = None
        self.seconds = 0.0

    def run(self) -> None:
        began = time.monotonic()
        try:
            self.response = self.send()
        except Exception as exc:
            self.error = exc
        self.seconds = time.monotonic() - began


def stop_during_ocr(moto: CrashableMoto, call: Background, stem: str) -> float:
    """Stop S3 once the function has looked up `stem`'s result (so the OCR is running); when."""
    deadline = time.monotonic() + 120
    while not moto.saw("GET", f"/{PREFIX}/{stem}-", "/manifest.json"):
        assert call.is_alive(), (call.response, call.error)
        assert time.monotonic() < deadline, "the function never looked up a stored result"
        time.sleep(0.02)
    time.sleep(0.3)  # let the lookup's answer reach the function
    moto.stop()
    assert call.is_alive(), "the request finished before S3 was stopped: use a longer document"
    return time.monotonic()


def objects(s3, stem: str) -> list[str]:  # type: ignore[no-untyped-def]
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{stem}-")
    return [o["Key"] for o in listing.get("Contents", [])]


def assert_retryable_failure(call: Background) -> None:
    assert call.error is None, call.error
    resp = call.response
    assert resp is not None and resp.status_code in (502, 503), resp.text if resp is not None else None
    assert resp.headers.get("Retry-After"), resp.headers
    assert resp.json()["error"]["code"] in ("upstream_failed", "not_ready"), resp.text
    assert "Traceback" not in resp.text and "ce-type" not in {k.lower() for k in resp.headers}


def assert_stored_result(s3, data: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The manifest of a success, and every part it lists in the bucket with its checksum."""
    manifest_uri = data["results"]["manifest"]["uri"]
    assert manifest_uri.startswith(f"s3://{BUCKET}/{PREFIX}/"), manifest_uri
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=manifest_uri[len(f"s3://{BUCKET}/") :])["Body"].read()
    )
    assert manifest["document"]["sha256"] == data["document"]["sha256"]
    parts = [*manifest["parts"].values(), *manifest.get("images", {}).values()]
    assert {"markdown", "json"} <= set(manifest["parts"])
    for part in parts:
        stored = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{part['key']}")["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == part["sha256"], part["key"]
        assert len(stored) == part["size"]
    return manifest


@pytest.mark.slow
def test_s3_stopped_during_ocr_then_the_retry_completes(
    server: FunctionServer, moto: CrashableMoto, faults_s3
) -> None:  # type: ignore[no-untyped-def]
    stem, doc = "s3-crash", document(31)

    def send() -> requests.Response:
        return requests.post(
            server.url + "/ocr",
            data=doc,
            headers={"Content-Type": "application/pdf"},
            params={"filename": f"{stem}.pdf"},
            timeout=300,
        )

    call = Background(send)
    call.start()
    stopped_at = stop_during_ocr(moto, call, stem)
    call.join(300)
    answered_after_stop = time.monotonic() - stopped_at
    assert_retryable_failure(call)
    assert not moto.saw("PUT", f"/{PREFIX}/{stem}-"), "a write got through before the stop"

    moto.start()  # the same port, the same data
    assert objects(faults_s3, stem) == [], "a failed request left objects behind"

    retry = Background(send)
    retry.run()
    assert retry.response is not None and retry.response.status_code == 200, retry.response
    body = retry.response.json()
    assert body["cached"] is False
    assert_stored_result(faults_s3, body)
    assert call.seconds < retry.seconds + FAIL_FAST_SEC, (call.seconds, retry.seconds)
    print(
        f"\nS3 stopped mid-request: {call.response.status_code} {answered_after_stop:.1f}s after the stop "
        f"({call.seconds:.1f}s in all); the retry: 200 in {retry.seconds:.1f}s "
        f"(ocr {body['timings']['ocr']:.1f}s, store {body['timings']['store']:.3f}s)"
    )


@pytest.mark.slow
def test_storage_event_redelivered_after_s3_came_back_completes(
    server: FunctionServer, moto: CrashableMoto, faults_s3
) -> None:  # type: ignore[no-untyped-def]
    stem = "event-crash"
    key = f"inbox/{stem}.pdf"
    faults_s3.put_object(Bucket=BUCKET, Key=key, Body=document(41), ContentType="application/pdf")
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}},
    }
    attributes = {"type": "com.amazonaws.s3.ObjectCreated:Put", "source": f"aws:s3.us-east-1.{BUCKET}"}
    event = CloudEvent(attributes, {"Records": [record]})
    headers, body = to_binary(event)

    def deliver() -> requests.Response:
        return requests.post(server.url + "/", headers=headers, data=body, timeout=300)

    call = Background(deliver)
    call.start()
    stop_during_ocr(moto, call, stem)
    call.join(300)
    assert_retryable_failure(call)  # a 5xx: the broker delivers the event again

    moto.start()
    assert objects(faults_s3, stem) == []
    again = deliver()  # the same event, the same id
    reply = reply_of(again)
    assert reply["correlationid"] == event["id"] and reply.data["status"] == "success"
    assert reply.data["cached"] is False
    assert_stored_result(faults_s3, reply.data)

    third = reply_of(deliver())  # redelivered once more: answered from the stored result
    assert third.data["cached"] is True
    assert third.data["results"]["manifest"]["uri"] == reply.data["results"]["manifest"]["uri"]


def test_a_failed_put_gives_up_within_a_bound(tmp_path: Path) -> None:
    """botocore's standard retry mode with 3 attempts in all (set explicitly); the worst case of one put
    against an S3 that accepts connections and never answers is attempts x (connect + read timeout)
    plus the backoff between them (at most 0.05 + 0.1 s for errors other than throttling; a throttled
    put at most 1 + 2 s, plus up to 5 s each when S3 sends x-amz-retry-after)."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    settings = load_settings(s3_env("http://127.0.0.1:9", secret))
    config = S3Store(BUCKET, PREFIX, settings).client.meta.config
    assert config.retries.get("mode") == "standard"
    retries = config.retries
    if "total_max_attempts" in retries:
        attempts = retries["total_max_attempts"]
    elif "max_attempts" in retries:  # retries, not counting the first attempt
        attempts = retries["max_attempts"] + 1
    else:
        attempts = 3  # the standard mode's default, in all
    worst = attempts * (config.connect_timeout + config.read_timeout) + (1 + 2) + 2 * 5
    print(f"\none failed put: {attempts} attempts, worst case {worst:.0f}s")
    assert attempts == 3
    assert worst <= 90, "a put to a silent S3 may hang a request longer than the stated bound"
