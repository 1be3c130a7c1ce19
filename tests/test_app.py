"""`create_app`, the one place the function is wired: the engine and store it is given are the ones
it uses, and the transport's answers around them (errors, logs, the Result it renders). In process,
with the fake engine of tests/fakes.py where recognition is not what is tested."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import pytest
from PIL import Image

from function.app import create_app
from function.config import load_settings
from function.document import Document
from function.model import PageImage
from function.options import Options
from function.service import Job
from function.sources import Source
from function.store import LocalStore
from tests.fakes import FakeEngine, fake_markdown_of


def png(size: tuple[int, int] = (64, 32), colour: str = "white") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


class BrokenEngine(FakeEngine):
    """A FAKE engine whose `predict` has a bug: the transport must answer 500 without a trace."""

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        raise ZeroDivisionError("a bug in the engine")


class UnloadableEngine(FakeEngine):
    """A FAKE engine that cannot load (a missing model file, say)."""

    def _load(self) -> None:
        raise RuntimeError("model file /models/x.onnx is missing")


def client(tmp_path: Path, engine: FakeEngine | None = None, **env: str):  # type: ignore[no-untyped-def]
    settings = load_settings({"OCR_STORE": f"file://{tmp_path}/out", "OCR_READY_WAIT_SEC": "5", **env})
    app = create_app(settings, engine=engine or FakeEngine())
    if not isinstance(engine, UnloadableEngine):
        app.runtime.wait_engine(timeout=10)
    return app, app.wsgi().test_client()


def test_the_engine_given_is_the_engine_used(tmp_path: Path) -> None:
    engine = FakeEngine()
    _, http = client(tmp_path, engine)
    health = http.get("/health").get_json()
    assert health["ready"] is True and health["fingerprint"] == engine.fingerprint
    data = png((70, 40), "pink")
    body = http.post("/ocr", data={"file": (io.BytesIO(data), "p.png"), "return_content": "true"}).get_json()
    assert body["engine"] == {"name": "fake", "fingerprint": engine.fingerprint}
    assert body["content"]["markdown"].strip() == fake_markdown_of(data)
    assert engine.calls == 1


def test_the_store_given_is_the_store_written(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "given")
    settings = load_settings({"OCR_STORE": f"file://{tmp_path}/unused"})
    app = create_app(settings, engine=FakeEngine(), store=store)
    app.runtime.wait_engine(timeout=10)
    body = app.wsgi().test_client().post("/ocr", data=png(), content_type="image/png").get_json()
    key = body["results"]["manifest"]["url"].split("/files/", 1)[1]
    assert store.exists(key) and not (tmp_path / "unused").exists()


def test_the_service_returns_a_result_the_transport_renders(tmp_path: Path) -> None:
    app, _ = client(tmp_path)
    job = Job.start(Source(png(), "r.png", "raw"), Options(return_content=True), "job-1", 60)
    first = app.service.run(job)
    assert first.cached is False and first.pages == 1 and first.engine["name"] == "fake"
    assert first.keys.markdown.endswith("/document.md") and first.keys.manifest.endswith("/manifest.json")
    assert "ocr" in first.timings and first.content is not None
    again = app.service.run(job)
    assert again.cached is True and again.keys == first.keys and "ocr" not in again.timings


def test_a_bug_answers_500_json_without_a_trace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, http = client(tmp_path, BrokenEngine())
    with caplog.at_level(logging.INFO):
        resp = http.post("/ocr", data=png(), content_type="image/png", headers={"X-Request-Id": "bug-1"})
    assert resp.status_code == 500
    body = resp.get_json()
    assert body["error"]["code"] == "internal_error" and body["request_id"] == "bug-1"
    assert "ZeroDivisionError" not in resp.get_data(as_text=True)
    assert any(r.exc_info and "bug-1" in r.getMessage() for r in caplog.records)  # the trace is logged
    line = next(r for r in caplog.records if getattr(r, "event", None) == "request")
    assert line.outcome == "internal_error" and line.status == 500  # type: ignore[attr-defined]


def test_an_engine_that_cannot_load_is_not_ready_with_the_reason(tmp_path: Path) -> None:
    _, http = client(tmp_path, UnloadableEngine(), OCR_READY_WAIT_SEC="0")
    ocr = http.post("/ocr", data=png(), content_type="image/png")
    ready = http.get("/health/ready")
    for resp in (ocr, ready):
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.headers["Retry-After"]
    assert "x.onnx" in ready.get_json()["reason"] and ocr.get_json()["error"]["code"] == "not_ready"


def test_one_log_line_per_request_from_the_request_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, http = client(tmp_path)
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with caplog.at_level(logging.INFO):
        resp = http.post("/", data=png(), content_type="image/png", headers={"traceparent": trace})
        http.get("/health")  # not an OCR request: no request line
    assert resp.status_code == 200 and resp.headers["traceparent"].startswith("00-0af7651916cd43dd")
    lines = [r for r in caplog.records if getattr(r, "event", None) == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.outcome, line.input_type, line.engine, line.pages) == ("success", "raw", "fake", 1)  # type: ignore[attr-defined]
