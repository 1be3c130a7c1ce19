"""Start-up: readiness before and after the engine loads, early requests, bad configuration."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.server import ROOT, FunctionServer
from tests.test_http_inputs import PNG

pytestmark = pytest.mark.slow


def test_ready_is_503_until_the_engine_loads_then_200(tmp_path: Path) -> None:
    srv = FunctionServer(
        {"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp_path}/out", "OCR_READY_WAIT_SEC": "0.01"},
        tmp_path / "log",
    )
    srv.start()
    try:
        srv.wait_live()
        first = requests.get(srv.url + "/health/ready", timeout=5)
        assert first.status_code == 503, first.text
        assert first.headers["Retry-After"]
        assert "loading" in first.json()["reason"]
        early = requests.post(srv.url + "/ocr", files={"file": ("a.png", PNG)}, timeout=30)
        assert early.status_code == 503 and early.headers["Retry-After"], early.text
        assert early.json()["error"]["code"] == "not_ready"
        srv.wait_ready()
        health = requests.get(srv.url + "/health", timeout=5).json()
        assert health["ready"] is True and health["model_load_sec"] > 0
        # The engine was loaded by the process that serves, not by the gunicorn parent.
        assert f"loading engine rapidocr in pid {health['pid']}" in srv.log()
        assert health["pid"] != srv.proc.pid  # type: ignore[union-attr]
    finally:
        srv.stop()


def test_early_request_waits_for_the_engine(tmp_path: Path) -> None:
    srv = FunctionServer(
        {"OCR_STORE": f"file://{tmp_path}/out", "OCR_READY_WAIT_SEC": "120"}, tmp_path / "log"
    )
    srv.start()
    try:
        srv.wait_live()
        resp = requests.post(
            srv.url + "/ocr", files={"file": ("a.png", PNG)}, data={"return_content": "1"}, timeout=180
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["timings"]["wait_engine"] > 0
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "env,word", [({"OCR_MAX_BYTES": "lots"}, "OCR_MAX_BYTES"), ({"OCR_ENGINE": "nosuch"}, "nosuch")]
)
def test_bad_configuration_stops_the_start_with_the_variable_named(env: dict[str, str], word: str) -> None:
    cmd = [
        str(Path(sys.executable).with_name("functions-framework")),
        "--source",
        "handler.py",
        "--target",
        "handle",
    ]
    began = time.monotonic()
    proc = subprocess.run(
        [*cmd, "--port", "1"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "configuration error" in err and word in err, err
    assert "Traceback" not in err
    assert time.monotonic() - began < 60
