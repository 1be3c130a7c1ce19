"""The try-it page at GET /, in headless Chromium: upload a generated page, see the recognised text.

Chromium is Debian's (`scripts/system-deps.sh`), driven by Playwright's Python API with that binary
(Playwright's own browser download is not reachable here). A screenshot lands in test-artifacts/.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import requests

from tests.server import ROOT, FunctionServer
from tests.synthetic import english_page

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def test_get_root_serves_the_page(server: FunctionServer) -> None:
    resp = requests.get(server.url + "/", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert 'id="file"' in resp.text and 'fetch("ocr"' in resp.text


def test_the_page_can_be_turned_off(tmp_path: Path) -> None:
    env = {"OCR_STORE": f"file://{tmp_path}/out", "OCR_TRY_PAGE": "false"}
    with FunctionServer(env, tmp_path / "log") as srv:
        resp = requests.get(srv.url + "/", timeout=10)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_upload_in_chromium_shows_the_text(server: FunctionServer, tmp_path: Path) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: run scripts/system-deps.sh (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    page_image = english_page(seed=3)
    upload = tmp_path / "letter.png"
    page_image.image.save(upload)
    title = next(b.text for b in page_image.blocks if b.kind == "title")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url + "/")
            page.set_input_files("#file", str(upload))
            page.click("#run")
            page.wait_for_selector("#markdown h1", timeout=120_000)
            assert page.inner_text("#markdown h1") == title
            assert "page(s) in" in page.inner_text("#status")
            assert page.locator("#picture canvas").count() == 1
            assert page.locator("#links a").count() >= 2
            page.screenshot(path=str(ARTIFACTS / "try-page.png"), full_page=True)
        finally:
            browser.close()
    shot = (ARTIFACTS / "try-page.png").read_bytes()
    from PIL import Image

    assert Image.open(io.BytesIO(shot)).width == 1400
