"""Fan-out over the broker: two real function processes behind the test broker (tests/broker.py)
read a 60-page PDF in chunks of 10, with results in S3 on a moto server over HTTP. They run the FAKE
engine (tests/fake_serve.py), each page taking OCR_FAKE_PAGE_SEC: what is tested is how the pages are
shared and assembled; bench/fanout.py runs the same with the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from bench.fanout import (
    BUCKET,
    Params,
    completed_for,
    function_env,
    pages_read,
    post_sync,
    processes,
    submit_async,
    text_pdf,
)
from tests.broker import Broker

PARAMS = Params(pages=60, chunk_pages=10)
FAKE_PAGE = {"OCR_FAKE_PAGE_SEC": "0.2"}  # a chunk lasts 2 s: long enough for both processes to take chunks


def stored(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def parts(s3: Any, result: dict[str, Any]) -> dict[str, bytes]:
    return {name: stored(s3, result["results"][name]["uri"]) for name in ("markdown", "json")}


@pytest.fixture(scope="module")
def fanout_bucket(s3: Any) -> Any:
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.mark.slow
def test_two_processes_read_a_long_pdf_once_a_page_with_the_result_of_one(
    tmp_path: Path, moto_endpoint: str, fanout_bucket: Any
) -> None:
    s3 = fanout_bucket
    data = text_pdf(PARAMS.pages, PARAMS.dpi, tag="fan-out test")
    single_env = {**function_env(PARAMS, moto_endpoint, "single"), **FAKE_PAGE}
    with processes(1, single_env, tmp_path, None, fake=True) as [single]:
        reference = post_sync(single, data, "long.pdf")
        assert reference.status_code == 200, reference.text[:500]
        assert pages_read(single) == PARAMS.pages + 1  # and the warm-up page

    env = {**function_env(PARAMS, moto_endpoint, "fanout"), **FAKE_PAGE}
    with (
        Broker(retry=3, backoff_delay=0.5) as broker,
        processes(2, env, tmp_path, broker, fake=True) as servers,
    ):
        before = [pages_read(s) for s in servers]
        job_id = submit_async(servers[0], data, "long.pdf")
        completed = completed_for(broker, job_id, timeout=900)
        read = [pages_read(s) - b for s, b in zip(servers, before, strict=True)]
        status = requests.get(f"{servers[1].url}/jobs/{job_id}", timeout=30).json()

    # Every page read exactly once, by both processes together, each taking chunks.
    assert sum(read) == PARAMS.pages and all(r > 0 for r in read), read
    chunks = [d for d in broker.deliveries if d.type == "ocr.document.chunk"]
    assert len({d.event_id for d in chunks}) == PARAMS.pages // PARAMS.chunk_pages
    assert not broker.dead_letters and all(d.status in (200, 202) for d in chunks), broker.deliveries
    # Completed with the job's id (twice at most when the last two chunks finish together); the same
    # Markdown and JSON as the single process wrote.
    assert {e["id"] for e in broker.received if e["type"] == "ocr.document.completed"} == {job_id}
    assert parts(s3, completed.data) == parts(s3, reference.json())
    assert status["state"] == "completed" and status["pages"] == {"done": 60, "total": 60}
