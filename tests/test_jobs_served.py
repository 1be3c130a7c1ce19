"""Long documents through real server processes: a 300-page async job against S3 on a moto server, a
worker SIGKILLed part-way and its event redelivered, and a 1,000-page job's memory. The engine is the
FAKE one (`OCR_ENGINE=fake`, tests/fake_serve.py): a real engine would take minutes for these pages,
and what is tested is everything around recognition — rendering, checkpoints, jobs, assembly, S3."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import BUCKET, S3_KEYS, pages_read, s3_env
from tests.pdfs import light_pdf
from tests.server import FunctionServer
from tests.test_jobs import Receiver

pytestmark = pytest.mark.slow
ASYNC = {"Prefer": "respond-async"}


def submit(url: str, document: bytes, name: str) -> requests.Response:
    return requests.post(url + "/ocr", files={"file": (name, document)}, headers=ASYNC, timeout=60)


def poll(url: str, location: str, timeout: float = 300) -> tuple[dict[str, Any], list[int]]:
    """The job's final state, and the pages done seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(url + location, timeout=10).json()
        seen.append(status["pages"]["done"])
        if status["state"] in ("completed", "failed"):
            return status, seen
        time.sleep(0.2)
    raise AssertionError(f"the job did not finish in {timeout}s: {status}")


def test_a_300_page_job_answers_at_once_and_ends_as_the_synchronous_read(
    tmp_path: Path, moto_endpoint: str, s3: Any
) -> None:
    secret = tmp_path / "aws-secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"])
    env = {
        **s3_env(moto_endpoint, secret),
        "OCR_ENGINE": "fake",
        "OCR_STORE": f"s3://{BUCKET}/jobs-300",
        "OCR_MAX_PAGES": "1000",
        "OCR_FAKE_PAGE_SEC": "0.02",
    }
    document = light_pdf(300)
    with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
        began = time.monotonic()
        resp = submit(srv.url, document, "long.pdf")
        accepted = time.monotonic() - began
        assert resp.status_code == 202, resp.text
        print(f"202 after {accepted:.3f}s")
        status, seen = poll(srv.url, resp.headers["Location"])
        assert status["state"] == "completed", status
        assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # pages done rose while it ran
        assert status["pages"] == {"done": 300, "total": 300}
        results = status["result"]["results"]
        async_md = requests.get(results["markdown"]["url"], timeout=30).content
        async_json = requests.get(results["json"]["url"], timeout=30).content
        assert pages_read(srv) == 300
        sync = requests.post(
            srv.url + "/ocr", files={"file": ("long.pdf", document)}, data={"force": "true"}, timeout=300
        )
        assert sync.status_code == 200 and pages_read(srv) == 600, sync.text
        sync_results = sync.json()["results"]
        assert requests.get(sync_results["markdown"]["url"], timeout=30).content == async_md
        assert requests.get(sync_results["json"]["url"], timeout=30).content == async_json
        assert b"fake page 300 " in async_md  # every page, in order, to the last


def test_a_killed_worker_loses_at_most_the_page_it_was_reading(tmp_path: Path) -> None:
    """A job event is being processed when the worker is SIGKILLed; the broker redelivers the same
    event, and the next worker reads only the pages without a checkpoint."""
    broker = Receiver()  # a broker stand-in that only keeps the events
    env = {
        "OCR_STORE": f"file://{tmp_path}/out",
        "OCR_FAKE_PAGE_SEC": "0.1",
        "K_SINK": broker.url,
        "OCR_CHUNK_PAGES": "0",  # one event for the whole document
    }
    try:
        with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
            resp = submit(srv.url, light_pdf(60), "sixty.pdf")
            assert resp.status_code == 202, resp.text
            (headers, body) = broker.posts[0]
            outcome: list[Any] = []

            def deliver() -> None:
                try:
                    outcome.append(requests.post(srv.url + "/", headers=headers, data=body, timeout=120))
                except requests.RequestException as exc:
                    outcome.append(exc)

            worker = srv.worker_pid()
            delivery = threading.Thread(target=deliver)
            delivery.start()
            pages = tmp_path / "out"
            deadline = time.monotonic() + 60
            while len(list(pages.rglob("pages/*.json"))) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(worker, signal.SIGKILL)
            delivery.join(60)
            assert isinstance(outcome[0], requests.RequestException), outcome  # the broker saw it fail
            stored = len(list(pages.rglob("pages/*.json")))
            assert 20 <= stored < 60
            srv.wait_ready()
            again = requests.post(srv.url + "/", headers=headers, data=body, timeout=120)  # redelivery
            assert again.status_code == 200 and again.headers["ce-type"] == "ocr.document.completed", (
                again.text
            )
            assert again.headers["ce-id"] == resp.json()["job_id"]
            assert pages_read(srv) == 60 - stored  # the new worker read only the missing pages
            reads = Counter(re.findall(r"page (\d+) of \w+ read", (tmp_path / "server.log").read_text()))
            assert set(reads) == {str(n) for n in range(1, 61)}
            twice = [page for page, count in reads.items() if count > 1]
            assert len(twice) <= 2, twice  # at most the page in the engine when the kill came
    finally:
        broker.close()


def test_a_1000_page_job_stays_within_150_mb_of_a_one_page_one(tmp_path: Path) -> None:
    env = {"OCR_STORE": f"file://{tmp_path}/out", "OCR_MAX_PAGES": "1000"}
    with FunctionServer(env, tmp_path / "server.log", fake=True) as srv:
        worker = srv.worker_pid()
        one, _ = poll(srv.url, submit(srv.url, light_pdf(1, "One"), "one.pdf").headers["Location"])
        assert one["state"] == "completed"
        after_one = peak_rss_mb(worker)
        many, _ = poll(srv.url, submit(srv.url, light_pdf(1000), "many.pdf").headers["Location"], timeout=600)
        assert many["state"] == "completed" and many["pages"]["done"] == 1000
        after_many = peak_rss_mb(worker)
        assert srv.worker_pid() == worker  # the same process all along
    print(f"peak RSS: 1 page {after_one:.0f} MB, 1000 pages {after_many:.0f} MB")
    assert after_many - after_one <= 150


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) / 1024
