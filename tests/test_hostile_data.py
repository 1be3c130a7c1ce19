"""Data that leaks or is confused (issue 18): input buckets, cache keys, result listings, the Host
header, and the errors a broker would otherwise retry forever.

In process through `create_app` with the FAKE engine of tests/fakes.py (recognition is not what is
tested), and moto's S3 server over real HTTP; the full disk and the client that leaves run against a
real function process (tests/server.py).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import requests

from function.results import KEY_HASH_DIGITS, read, result_prefix
from function.sources import MAX_NAME_BYTES, safe_filename
from function.store import LocalStore
from tests.conftest import S3_KEYS
from tests.fakes import app_server
from tests.server import FunctionServer
from tests.test_app import png
from tests.test_hostile import text_png

INPUTS = "inbox"  # a bucket this function is told to read from
OTHER_TEAM = "other-team"  # a bucket its credentials reach but its callers may not
RESULTS = "results-bucket"


def s3_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "OCR_STORE": f"s3://{RESULTS}/out",
        "S3_ENDPOINT_URL": endpoint,
        "S3_FORCE_PATH_STYLE": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_KEYS["aws_secret_access_key"],
        **extra,
    }


@pytest.fixture(scope="module")
def buckets(s3) -> object:  # type: ignore[no-untyped-def]
    for bucket in (INPUTS, OTHER_TEAM, RESULTS):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=INPUTS, Key="scans/ok.png", Body=png())
    s3.put_object(Bucket=OTHER_TEAM, Key="payroll/secret.png", Body=png((80, 40)))
    return s3


def post_json(url: str, body: dict[str, object]) -> requests.Response:
    return requests.post(url + "/ocr", json=body, timeout=60)


# --- the confused deputy: what s3_uri may read ----------------------------------------------------------


def test_s3_uri_reads_only_the_input_buckets(moto_endpoint: str, buckets: object, tmp_path: Path) -> None:
    env = s3_env(moto_endpoint, OCR_INPUT_BUCKETS=f"{INPUTS}/scans")
    with app_server(env, tmp_path) as srv:
        ok = post_json(srv.url, {"s3_uri": f"s3://{INPUTS}/scans/ok.png"})
        assert ok.status_code == 200, ok.text
        answers = {
            uri: post_json(srv.url, {"s3_uri": uri})
            for uri in (
                f"s3://{OTHER_TEAM}/payroll/secret.png",  # exists, another team's
                f"s3://{INPUTS}/elsewhere/ok.png",  # the right bucket, outside the prefix
                f"s3://{INPUTS}/scans/missing.png",  # allowed, missing
                "s3://no-such-bucket/scans/ok.png",  # no bucket at all
            )
        }
    for uri, resp in answers.items():
        assert resp.status_code == 404, (uri, resp.text)
        message = resp.json()["error"]["message"]
        # One answer whatever the reason: nothing tells a caller what else exists.
        assert message.endswith(
            "no such object, or not in a place this function reads documents from (OCR_INPUT_BUCKETS)"
        ), message
        assert "NoSuch" not in message and "AccessDenied" not in message


def test_by_default_only_the_result_bucket_is_read(
    moto_endpoint: str, buckets: object, tmp_path: Path
) -> None:
    with app_server(s3_env(moto_endpoint), tmp_path) as srv:
        refused = post_json(srv.url, {"s3_uri": f"s3://{INPUTS}/scans/ok.png"})
    assert refused.status_code == 404, refused.text


# --- cache keys -------------------------------------------------------------------------------------------


def test_result_keys_hold_128_bits_and_a_hit_is_checked_against_the_full_hash(tmp_path: Path) -> None:
    sha = "ab" * 32
    prefix = result_prefix("scan.png", sha, "engine-1", {})
    assert prefix == f"scan-{sha[:KEY_HASH_DIGITS]}/engine-1" and KEY_HASH_DIGITS * 4 >= 128
    store = LocalStore(tmp_path)
    manifest = {"prefix": prefix, "document": {"sha256": sha}, "parts": {}}
    store.put(f"{prefix}/manifest.json", json.dumps(manifest).encode(), "application/json")
    assert read(store, prefix, sha, with_content=False) is not None
    # Another document whose hash shares the key's digits is not served this one's result.
    colliding = sha[:KEY_HASH_DIGITS] + "cd" * 16
    assert read(store, prefix, colliding, with_content=False) is None


def blank_pdf(pages: int) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for n in range(pages):
        pdf.new_page(200 + n, 300).close()
    buf = io.BytesIO()
    pdf.save(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("first", "again"), [(None, "1-3"), ("1-3", None), ("1,2,3", "1-"), ("1,2", "1-2"), ("2-3", "2,3")]
)
def test_the_selection_not_its_spelling_is_the_cache_key(
    tmp_path: Path, first: str | None, again: str | None
) -> None:
    pdf = blank_pdf(3)
    with app_server({}, tmp_path) as srv:
        answers = []
        for pages in (first, again):
            data = {"pages": pages} if pages else {}
            answers.append(
                requests.post(srv.url + "/ocr", files={"file": ("p.pdf", pdf)}, data=data, timeout=60)
            )
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert [a.json()["cached"] for a in answers] == [False, True]
    assert answers[0].json()["results"] == answers[1].json()["results"]


def test_a_different_selection_is_another_result(tmp_path: Path) -> None:
    pdf = blank_pdf(3)
    with app_server({}, tmp_path) as srv:
        one = requests.post(
            srv.url + "/ocr", files={"file": ("p.pdf", pdf)}, data={"pages": "1-2"}, timeout=60
        )
        two = requests.post(
            srv.url + "/ocr", files={"file": ("p.pdf", pdf)}, data={"pages": "2-3"}, timeout=60
        )
    assert two.json()["cached"] is False and one.json()["results"] != two.json()["results"]


# --- listings and the Host header -------------------------------------------------------------------------


def test_listing_is_paginated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    written = sorted(f"doc-{n:02d}/part/{name}" for n in range(13) for name in ("a.md", "b.json"))
    for key in written:
        store.put(key, b"x", "text/plain")
    with app_server({}, tmp_path / "out") as srv:
        seen, url, pages = [], srv.url + "/files?limit=10", 0
        while url:
            body = requests.get(url, timeout=10).json()
            assert len(body["files"]) <= 10
            seen += body["files"]
            url = srv.url + body["next"] if body["next"] else None
            pages += 1
        too_many = requests.get(srv.url + "/files?limit=100000", timeout=10)
    assert seen == written and pages == 3  # every key once, in order, 10 + 10 + 6
    assert too_many.status_code == 400 and "from 1 to 1000" in too_many.json()["error"]["message"]


def test_no_listing_when_api_keys_are_set(tmp_path: Path) -> None:
    with app_server({"OCR_API_KEYS": "key-a,key-b"}, tmp_path) as srv:
        auth = {"Authorization": "Bearer key-a"}
        done = requests.post(srv.url + "/ocr", files={"file": ("a.png", png())}, headers=auth, timeout=60)
        listing = requests.get(srv.url + "/files", headers={"Authorization": "Bearer key-b"}, timeout=10)
        own = requests.get(done.json()["results"]["markdown"]["url"], headers=auth, timeout=10)
    assert listing.status_code == 404 and "OCR_API_KEYS" in listing.json()["error"]["message"]
    assert own.status_code == 200  # the answer's own URLs still reach its results


def test_s3_results_are_listed_and_a_result_path_redirects(
    moto_endpoint: str, buckets: object, tmp_path: Path
) -> None:
    with app_server(s3_env(moto_endpoint), tmp_path) as srv:
        done = requests.post(srv.url + "/ocr", files={"file": ("s3.png", png((90, 45)))}, timeout=60)
        listing = requests.get(srv.url + "/files?limit=1000", timeout=10).json()
        key = next(k for k in listing["files"] if k.startswith("s3-") and k.endswith("document.md"))
        moved = requests.get(f"{srv.url}/files/{key}", allow_redirects=False, timeout=10)
        followed = requests.get(f"{srv.url}/files/{key}", timeout=10)
        missing = requests.get(f"{srv.url}/files/markdown/nothing.md", allow_redirects=False, timeout=10)
    assert done.status_code == 200
    assert moved.status_code == 302 and moved.headers["Location"].startswith(moto_endpoint)
    assert followed.status_code == 200 and followed.text.startswith("fake page 1 90x45")
    assert missing.status_code == 404


def test_an_untrusted_host_header_is_not_echoed_into_result_urls(tmp_path: Path) -> None:
    with app_server({}, tmp_path) as srv:
        evil = requests.post(
            srv.url + "/ocr", files={"file": ("a.png", png())}, headers={"Host": "evil.example"}, timeout=60
        )
        local = requests.post(
            srv.url + "/ocr", files={"file": ("a.png", png())}, headers={"Host": "localhost:8080"}, timeout=60
        )
    assert evil.status_code == 400 and "OCR_TRUSTED_HOSTS" in evil.json()["error"]["message"]
    assert "evil.example" not in json.dumps(evil.json()["error"]).replace("'evil.example'", "")
    assert local.json()["results"]["markdown"]["url"].startswith("http://localhost:8080/files/")
    with app_server({"OCR_PUBLIC_BASE_URL": "https://ocr.example.org"}, tmp_path) as srv:
        public = requests.post(
            srv.url + "/ocr", files={"file": ("a.png", png())}, headers={"Host": "evil.example"}, timeout=60
        )
    assert public.json()["results"]["markdown"]["url"].startswith("https://ocr.example.org/files/")


# --- errors that were 500s ---------------------------------------------------------------------------------


def test_a_file_name_over_255_bytes(tmp_path: Path) -> None:
    name = "報告書" * 60 + ".png"  # 180 characters, 540 bytes of UTF-8
    assert len(safe_filename(name).encode()) <= MAX_NAME_BYTES and safe_filename(name).endswith(".png")
    with app_server({}, tmp_path) as srv:
        resp = requests.post(srv.url + "/ocr", files={"file": (name, png())}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["document"]["filename"].startswith("報告書")


def test_a_missing_result_bucket_on_write_is_a_retryable_502(
    moto_endpoint: str, buckets: object, tmp_path: Path
) -> None:
    env = s3_env(moto_endpoint, OCR_STORE="s3://no-results-bucket/out")
    with app_server(env, tmp_path) as srv:
        resp = requests.post(srv.url + "/ocr", files={"file": ("a.png", png())}, timeout=60)
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "upstream_failed" and resp.headers["Retry-After"]


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs to fill (root only: CI runs as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write to `path` until its file system has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_full_disk_is_507_and_readiness_says_so(full_disk: Path, tmp_path: Path) -> None:
    env = {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{full_disk}"}
    with FunctionServer(env, tmp_path / "log", serve=True) as srv:
        fill(full_disk / "filler")
        resp = requests.post(
            srv.url + "/ocr", files={"file": ("big.png", text_png("Disk full"))}, timeout=120
        )
        ready = requests.get(srv.url + "/health/ready", timeout=10)
        live = requests.get(srv.url + "/health/live", timeout=10)
    assert resp.status_code == 507, resp.text
    assert resp.json()["error"]["code"] == "insufficient_storage" and resp.headers["Retry-After"]
    assert ready.status_code == 503 and "full" in ready.json()["reason"]
    assert live.status_code == 200


@pytest.mark.slow
def test_a_client_that_leaves_stops_its_work(tmp_path: Path) -> None:
    env = {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp_path}/out", "OCR_PDF_DPI": "100"}
    pdf = blank_pdf(40)
    boundary = "leaving"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + pdf
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /ocr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with FunctionServer(env, tmp_path / "log", serve=True) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(head + body)
            srv.wait_in_flight(1)
        deadline = time.monotonic() + 60
        while srv.in_flight() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = srv.log()
        assert requests.get(srv.url + "/health/live", timeout=10).status_code == 200
    assert '"outcome": "client_closed_request"' in log, log[-2000:]


def test_result_files_carry_one_charset(tmp_path: Path) -> None:
    with app_server({}, tmp_path) as srv:
        done = requests.post(srv.url + "/ocr", files={"file": ("a.png", png())}, timeout=60).json()
        markdown = requests.get(done["results"]["markdown"]["url"], timeout=10)
        as_json = requests.get(done["results"]["json"]["url"], timeout=10)
    assert markdown.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert as_json.headers["Content-Type"] == "application/json"


# --- the same, against the real function process (functions-framework + gunicorn, rapidocr) ----------


def healthy(server: FunctionServer) -> None:
    assert requests.get(server.url + "/health/live", timeout=10).status_code == 200, server.log()


@pytest.mark.slow
def test_real_process_reads_no_other_teams_bucket(s3_server: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=OTHER_TEAM)
    s3.put_object(Bucket=OTHER_TEAM, Key="payroll/secret.png", Body=text_png("Salary 9000"))
    answers = [
        post_json(s3_server.url, {"s3_uri": uri})
        for uri in (f"s3://{OTHER_TEAM}/payroll/secret.png", f"s3://{OTHER_TEAM}/payroll/missing.png")
    ]
    assert [a.status_code for a in answers] == [404, 404], [a.text for a in answers]
    messages = {a.json()["error"]["message"].split(": ", 1)[1] for a in answers}
    assert len(messages) == 1  # the same words for a forbidden object and a missing one
    healthy(s3_server)


@pytest.mark.slow
def test_real_process_selection_and_host_and_long_names(server: FunctionServer) -> None:
    pdf = blank_pdf(3)
    whole = requests.post(server.url + "/ocr", files={"file": ("sel.pdf", pdf)}, timeout=300)
    spelled = requests.post(
        server.url + "/ocr", files={"file": ("sel.pdf", pdf)}, data={"pages": "1-3"}, timeout=300
    )
    assert whole.status_code == spelled.status_code == 200, spelled.text
    assert spelled.json()["cached"] is True
    evil = requests.post(
        server.url + "/ocr",
        files={"file": ("h.png", text_png("Host"))},
        headers={"Host": "evil.example"},
        timeout=60,
    )
    assert evil.status_code == 400 and "OCR_TRUSTED_HOSTS" in evil.text
    long_name = requests.post(
        server.url + "/ocr", files={"file": ("報告書" * 90 + ".png", png())}, timeout=300
    )
    assert long_name.status_code == 200, long_name.text
    healthy(server)
