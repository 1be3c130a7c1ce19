"""A burst of uploads against `python -m function serve` with the default settings, as the CPU image
runs it: admission pushes back with 429 (THREADS derived from it, function/lifecycle.py), liveness
keeps answering, and every document answered 200 has its result stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.server import FunctionServer
from tests.test_hostile import text_png

UPLOADS = 20
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("function-burst")
    with FunctionServer(
        {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp}/output"}, tmp / "log", serve=True
    ) as srv:
        yield srv


@pytest.mark.slow
def test_twenty_simultaneous_uploads(defaults: FunctionServer) -> None:
    answers: dict[int, requests.Response] = {}
    start = threading.Barrier(UPLOADS + 1)

    def upload(n: int) -> None:
        doc = text_png(f"Burst {WORDS[n]}")
        start.wait()
        answers[n] = requests.post(defaults.url + "/ocr", files={"file": (f"b{n}.png", doc)}, timeout=300)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADS)]
    for t in threads:
        t.start()
    start.wait()
    probes = []
    while any(t.is_alive() for t in threads):
        began = time.monotonic()
        assert requests.get(defaults.url + "/health/live", timeout=10).status_code == 200
        probes.append(time.monotonic() - began)
        time.sleep(0.2)
    statuses = sorted(r.status_code for r in answers.values())
    print(
        f"20 uploads: {statuses.count(200)} x 200, {statuses.count(429)} x 429; "
        f"liveness max {max(probes) * 1000:.0f} ms over {len(probes)} probes"
    )
    assert set(statuses) <= {200, 429}, [r.text for r in answers.values() if r.status_code not in (200, 429)]
    assert statuses.count(429) >= 1  # admission pushed back instead of the server queueing unseen
    assert max(probes) < 2.0
    for n, resp in answers.items():
        body = resp.json()
        if resp.status_code == 429:
            assert body["error"]["code"] == "busy" and resp.headers["Retry-After"]
            continue
        markdown = requests.get(body["results"]["markdown"]["url"], timeout=10).text
        assert WORDS[n] in markdown.lower(), (n, markdown)  # nothing lost, nothing mixed up
