"""The S3 result store against moto over real HTTP: presigned URLs, the content-addressed cache
(manifest last, `cached: true`, `force`), `s3_uri` input, the store probe, image crops, and what an
unreachable or failing S3 leaves behind (a retryable 5xx and no manifest)."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from function import service
from function.config import ENV, load_settings
from function.document import Block, Document, Page
from function.engines.base import Engine
from function.errors import ConfigError
from function.options import Options
from function.responses import success_body
from function.sources import Source
from function.store import S3Store
from tests.conftest import BUCKET, RESULT_PREFIX, S3_KEYS, engine_calls, pages_read, s3_env
from tests.server import FunctionServer
from tests.test_http_inputs import text_image


def ocr(server: FunctionServer, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + "/ocr", timeout=180, **kwargs)


def key_of(uri: str) -> str:
    assert uri.startswith(f"s3://{BUCKET}/{RESULT_PREFIX}/"), uri
    return uri[len(f"s3://{BUCKET}/") :]


def manifest_keys(s3, stem: str) -> list[str]:  # type: ignore[no-untyped-def]
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{RESULT_PREFIX}/{stem}-")
    return [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith("/manifest.json")]


# --- through the function's HTTP API ---------------------------------------------------------------


@pytest.mark.slow
def test_upload_returns_presigned_urls_with_the_exact_results(s3_server: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    resp = ocr(
        s3_server,
        files={"file": ("presign.png", text_image("Presign 7310 ok"))},
        data={"return_content": "1"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["cached"] is False and "7310" in body["content"]["markdown"]
    md = requests.get(body["results"]["markdown"]["url"], timeout=10)
    assert md.status_code == 200 and md.content == body["content"]["markdown"].encode()
    assert md.headers["Content-Type"].startswith("text/markdown")
    js = requests.get(body["results"]["json"]["url"], timeout=10)
    assert js.headers["Content-Type"] == "application/json" and js.json() == body["content"]["json"]
    # Manifest: written by the function, with the checksums of the parts as stored.
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=key_of(body["results"]["manifest"]["uri"]))["Body"].read()
    )
    for name in ("markdown", "json"):
        part = manifest["parts"][name]
        stored = s3.get_object(Bucket=BUCKET, Key=f"{RESULT_PREFIX}/{part['key']}")["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == part["sha256"]
    assert manifest["document"]["sha256"] == body["document"]["sha256"]
    assert (
        manifest["engine"]["fingerprint"] == body["engine"]["fingerprint"] and manifest["timings"]["ocr"] > 0
    )


@pytest.mark.slow
def test_repeat_is_cached_without_ocr_and_force_reruns(s3_server: FunctionServer) -> None:
    doc = {"file": ("repeat.png", text_image("Repeat 4482 done"))}
    before = engine_calls(s3_server)
    t0 = time.perf_counter()
    first = ocr(s3_server, files=doc, data={"return_content": "true"}).json()
    fresh_sec = time.perf_counter() - t0
    assert first["cached"] is False and engine_calls(s3_server) == before + 1

    t0 = time.perf_counter()
    again = ocr(s3_server, files=doc, data={"return_content": "true"}).json()
    cached_sec = time.perf_counter() - t0
    assert again["cached"] is True, again
    assert engine_calls(s3_server) == before + 1  # no OCR ran
    assert again["results"]["markdown"]["uri"] == first["results"]["markdown"]["uri"]
    assert again["content"] == first["content"]
    assert requests.get(again["results"]["markdown"]["url"], timeout=10).text == first["content"]["markdown"]
    print(f"\nthrough HTTP: fresh OCR {fresh_sec:.3f}s, cached answer {cached_sec:.3f}s")

    forced = ocr(s3_server, files=doc, data={"force": "true"}).json()
    assert forced["cached"] is False and engine_calls(s3_server) == before + 2
    metrics = requests.get(s3_server.url + "/metrics", timeout=10).text
    assert 'ocr_requests_total{outcome="cached"}' in metrics and "ocr_cache_hits_total" in metrics


@pytest.mark.slow
def test_output_affecting_options_get_their_own_result(s3_server: FunctionServer) -> None:
    doc = {"file": ("opts.png", text_image("Options 5521 set"))}
    plain = ocr(s3_server, files=doc).json()
    # pages=1 of a one-page document is the whole document: the selection is the key, not its spelling.
    paged = ocr(s3_server, files=doc, data={"pages": "1"}).json()
    uris = [{part: link["uri"] for part, link in body["results"].items()} for body in (paged, plain)]
    assert paged["cached"] is True and uris[0] == uris[1]  # (presigned URLs differ by the second)
    pictured = ocr(s3_server, files=doc, data={"visualize": "true"}).json()
    assert pictured["cached"] is False
    assert pictured["results"]["markdown"]["uri"] != plain["results"]["markdown"]["uri"]


@pytest.mark.slow
def test_s3_uri_input(s3_server: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    key = "inbox/by uri/Счёт 100% + tax.png"
    s3.put_object(Bucket=BUCKET, Key=key, Body=text_image("Bucket 6604 read"))
    resp = ocr(s3_server, json={"s3_uri": f"s3://{BUCKET}/{key}", "return_content": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["input_type"] == "s3" and "6604" in body["content"]["markdown"]
    assert body["document"]["filename"] == "Счёт_100_+_tax.png"


@pytest.mark.slow
def test_s3_uri_missing_object_is_404(s3_server: FunctionServer) -> None:
    resp = ocr(s3_server, json={"s3_uri": f"s3://{BUCKET}/inbox/nothing-here.png"})
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "not_found" and "Traceback" not in resp.text


@pytest.mark.slow
def test_store_probe_writes_reads_and_deletes(s3_server: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    resp = requests.post(s3_server.url + "/test/s3-upload", timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["steps"] == {"put": "ok", "get": "ok", "delete": "ok"}
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{RESULT_PREFIX}/.probe/").get("KeyCount", 0)
    assert left == 0


@pytest.mark.slow
def test_health_and_readiness_name_the_s3_store(s3_server: FunctionServer) -> None:
    assert requests.get(s3_server.url + "/health", timeout=10).json()["store"] == "s3"
    assert requests.get(s3_server.url + "/health/ready", timeout=10).status_code == 200


# --- S3 failing: a retryable 5xx, and never a manifest for a half-written result -------------------


class FlakyS3:
    """An HTTP proxy in front of moto: `pass`, `down` (connections dropped), or `fail-manifest`
    (a PUT of any manifest.json answers 500, as an overloaded S3 would)."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.mode == "down":
                    self.close_connection = True
                    return
                if proxy.mode == "fail-manifest" and self.command == "PUT" and "manifest.json" in self.path:
                    self._send(500, {}, b"<Error><Code>InternalError</Code><Message>boom</Message></Error>")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                r = requests.request(
                    self.command, upstream + self.path, headers=headers, data=body, timeout=30
                )
                self._send(r.status_code, r.headers, r.content)

            def _send(self, status: int, headers: Any, body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def flaky(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3
) -> Iterator[tuple[FunctionServer, FlakyS3]]:  # type: ignore[no-untyped-def]
    proxy = FlakyS3(moto_endpoint)
    proxy.mode = "down"  # S3 unreachable from the start
    tmp = tmp_path_factory.mktemp("function-flaky")
    secret = tmp / "secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"])
    srv = FunctionServer(s3_env(proxy.url, secret), tmp / "server.log").start()
    try:
        srv.wait_live()
        deadline = time.monotonic() + 180
        while not requests.get(srv.url + "/health", timeout=10).json()["ready"]:
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.2)
        yield srv, proxy
    finally:
        srv.stop()
        proxy.httpd.shutdown()


@pytest.mark.slow
def test_s3_unreachable_is_a_retryable_5xx_and_not_ready(flaky, s3) -> None:  # type: ignore[no-untyped-def]
    srv, _ = flaky
    ready = requests.get(srv.url + "/health/ready", timeout=60)
    assert ready.status_code == 503 and "store" in ready.json()["reason"]
    resp = ocr(
        srv,
        data=text_image("Outage 9051 now"),
        headers={"Content-Type": "image/png"},
        params={"filename": "outage.png"},
    )
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "upstream_failed" and "Traceback" not in resp.text
    assert resp.headers.get("Retry-After")
    assert manifest_keys(s3, "outage") == []


@pytest.mark.slow
def test_failed_manifest_write_leaves_no_result_then_a_retry_succeeds(flaky, s3) -> None:  # type: ignore[no-untyped-def]
    srv, proxy = flaky
    doc = text_image("Partial 3377 write")
    params = {"filename": "partial.png"}
    proxy.mode = "fail-manifest"
    resp = ocr(srv, data=doc, headers={"Content-Type": "image/png"}, params=params)
    assert resp.status_code == 502, resp.text
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{RESULT_PREFIX}/partial-").get("Contents", [])
    assert any(o["Key"].endswith("/document.md") for o in listing)  # the parts were written ...
    assert manifest_keys(s3, "partial") == []  # ... but without a manifest they do not count
    proxy.mode = "pass"
    read = pages_read(srv)
    again = ocr(srv, data=doc, headers={"Content-Type": "image/png"}, params=params)
    assert again.status_code == 200 and again.json()["cached"] is False
    assert pages_read(srv) == read  # its page was stored before the write failed: not read again
    assert len(manifest_keys(s3, "partial")) == 1


# --- in-process: image crops next to the Markdown, settings ----------------------------------------


@dataclass
class CropDocument(Document):
    images: dict[str, Image.Image] = field(default_factory=dict)


class CropEngine(Engine):
    """A FAKE engine: every page becomes one figure with a stored crop; no recognition."""

    name = "crops"
    calls = 0

    def _load(self) -> None:
        pass

    @property
    def version(self) -> str:
        return "1"

    def predict(self, pages, options):  # type: ignore[no-untyped-def]
        CropEngine.calls += 1
        index = next(iter(pages)).index
        figure = Block(id=0, order=0, label="image", bbox=(0, 0, 10, 10), image="imgs/figure one.jpg")
        crop = Image.new("RGB", (40, 20), "red")
        return CropDocument(
            pages=[Page(index=index, width=40, height=20, blocks=[figure])],
            images={"imgs/figure one.jpg": crop},
        )


def test_engine_image_crops_are_stored_where_the_markdown_links(
    moto_endpoint: str, s3, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"])
    settings = load_settings(s3_env(moto_endpoint, secret))
    store = S3Store(BUCKET, RESULT_PREFIX, settings)
    engine = CropEngine(settings)
    svc = service.Service(settings, lambda: engine, store)
    job = service.Job(Source(text_image("crop"), "figures.png", "raw"), Options(return_content=True), "r1")
    body = success_body(svc.run(job), "r1", "raw", store, "http://unused")
    md_key = key_of(body["results"]["markdown"]["uri"])
    assert "![image](<imgs/figure one.jpg>)" in body["content"]["markdown"]
    img_key = posixpath.join(posixpath.dirname(md_key), "imgs/figure one.jpg")  # the link, resolved
    obj = s3.get_object(Bucket=BUCKET, Key=img_key)
    assert obj["ContentType"] == "image/jpeg"
    assert Image.open(io.BytesIO(obj["Body"].read())).size == (40, 20)
    via_url = requests.get(body["results"]["images"]["imgs/figure one.jpg"]["url"], timeout=10)
    assert via_url.status_code == 200 and via_url.content[:2] == b"\xff\xd8"
    again = svc.run(job)
    assert again.cached is True and CropEngine.calls == 1
    assert list(again.keys.images) == ["imgs/figure one.jpg"]


@pytest.mark.parametrize(
    "env,word",
    [
        ({"S3_FORCE_PATH_STYLE": "maybe"}, "S3_FORCE_PATH_STYLE"),
        ({"S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL"),
        ({"OCR_STORE": "s3:///prefix"}, "OCR_STORE"),
        ({"AWS_ACCESS_KEY_ID": "only-the-id"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent/secret"}, "AWS_SECRET_ACCESS_KEY_FILE"),
        ({"OCR_EVENT_COMPLETED_TYPE": "ocr.document.requested"}, "OCR_EVENT_COMPLETED_TYPE"),
        ({"OCR_URL_EXPIRES_SEC": "0"}, "OCR_URL_EXPIRES_SEC"),
    ],
)
def test_bad_s3_settings_name_the_variable(env: dict[str, str], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        load_settings(env)


def test_secrets_from_files_win_and_stay_out_of_repr(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("key-id-from-file\n")
    (tmp_path / "secret").write_text("s3cr3t-from-file\n")
    settings = load_settings(
        {
            "AWS_ACCESS_KEY_ID": "ignored",
            "AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "id"),
            "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
            "S3_FORCE_PATH_STYLE": "yes",
            "OCR_EVENT_SKIP_PREFIXES": "archive/, other-bucket/done",
        }
    )
    assert (settings.aws_access_key_id, settings.aws_secret_access_key) == (
        "key-id-from-file",
        "s3cr3t-from-file",
    )
    assert settings.s3_force_path_style is True
    assert settings.event_skip_prefixes == ("archive", "other-bucket/done")
    assert "s3cr3t" not in repr(settings)
    assert {"S3_ENDPOINT_URL", "AWS_REGION", "OCR_URL_EXPIRES_SEC", "OCR_PUBLIC_BASE_URL"} <= set(ENV)


def test_public_base_url_replaces_presigning(moto_endpoint: str) -> None:
    settings = load_settings(
        {"OCR_STORE": f"s3://{BUCKET}/out", "OCR_PUBLIC_BASE_URL": "https://cdn.example/b/"}
    )
    store = S3Store(BUCKET, "out", settings)
    assert store.url("a b/document.md", "") == "https://cdn.example/b/out/a%20b/document.md"
    assert store.uri("a b/document.md") == f"s3://{BUCKET}/out/a b/document.md"
