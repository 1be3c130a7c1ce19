"""The try-it page at GET /, in headless Chromium against a real server: upload real pages (a two-page
PDF, a photograph, a two-column page) and check what a person sees. Screenshots land in
test-artifacts/ to be looked at.

Chromium is Debian's (`scripts/system-deps.sh`), driven by Playwright's Python API with that binary
(Playwright's own browser download is not reachable here, and not needed). The server reads with the
`tesseract` engine: what is tested is what the page shows of a real result, whatever the engine, and
`tesseract` reads these pages several times faster than `rapidocr` on two cores.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from function.visualize import PICTURE_PIXELS
from tests import devset
from tests.conftest import local_server
from tests.fakes import AppServer, GatedEngine, app_server, fake_text
from tests.pdfs import light_pdf
from tests.server import ROOT, FunctionServer
from tests.synthetic import english_page

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts"
API_KEY = "try-page-key-4711"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    with local_server(tmp_path_factory.mktemp("try-page"), "tesseract") as srv:
        yield srv


def test_get_root_serves_the_page(server: FunctionServer) -> None:
    resp = requests.get(server.url + "/", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert 'id="file"' in resp.text and 'fetch("ocr"' in resp.text


def test_the_page_loads_nothing_from_elsewhere_and_has_a_favicon(server: FunctionServer) -> None:
    """Its scripts are vendored (served from function/static/vendor), so it works offline."""
    html = requests.get(server.url + "/", timeout=10).text
    for script in ("static/marked.umd.js", "static/purify.min.js"):
        assert f'src="{script}"' in html
        resp = requests.get(f"{server.url}/{script}", timeout=10)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/javascript")
        assert len(resp.content) > 10_000
    assert "//" not in "".join(line for line in html.splitlines() if "<script src" in line or "<link" in line)
    icon = requests.get(server.url + "/favicon.ico", timeout=10)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).format == "ICO"
    assert requests.get(server.url + "/static/index.html", timeout=10).status_code == 404  # only those


def test_the_page_can_be_turned_off(tmp_path: Path) -> None:
    """Routing, so in process with the FAKE engine (tests/fakes.py) rather than a server of its own."""
    with app_server({"OCR_TRY_PAGE": "false"}, tmp_path / "out") as srv:
        resp = requests.get(srv.url + "/", timeout=10)
        icon = requests.get(srv.url + "/favicon.ico", timeout=10)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
    assert icon.status_code == 404


# --- in Chromium ---------------------------------------------------------------------------------


@contextmanager
def browser_page(server: FunctionServer | AppServer) -> Iterator[Any]:
    """A Chromium tab on the try-it page; on leaving, no script error and no request off the server."""
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: run scripts/system-deps.sh (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    elsewhere: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            own = (server.url, "blob:", "data:")
            page.on("request", lambda r: r.url.startswith(own) or elsewhere.append(r.url))
            page.goto(server.url + "/")
            assert not errors, errors  # a script that does not even load fails here, not on a timeout
            yield page
        finally:
            browser.close()
    assert not errors, errors
    assert not elsewhere, f"the page fetched from outside the function: {elsewhere}"


def recognise(page: Any, upload: Path, shot: str) -> dict[str, Any]:
    """Upload a file through the form, wait until every page picture and Markdown image has loaded,
    save a full-page screenshot, and return what is shown."""
    page.set_input_files("#file", str(upload))
    page.click("#run")
    return shown_result(page, shot)


def shown_result(page: Any, shot: str) -> dict[str, Any]:
    """Wait for the result of the upload under way, screenshot it, and return what is shown."""
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('page(s) in')"
        " || document.querySelector('#status').className === 'error'",
        timeout=300_000,
    )
    assert page.get_attribute("#status", "class") != "error", page.inner_text("#status")
    page.wait_for_function(
        "[...document.querySelectorAll('#pictures img, #markdown img')]"
        ".every(i => i.complete && i.naturalWidth)",
        timeout=30_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return page.evaluate(
        """() => ({
            pages: [...document.querySelectorAll('#pictures figure')].map(f => ({
                caption: f.querySelector('figcaption').textContent,
                width: f.querySelector('img').naturalWidth, shownWidth: f.querySelector('img').width})),
            headings: [...document.querySelectorAll('#markdown :is(h1, h2, h3)')].map(h => h.textContent),
            paragraphs: document.querySelectorAll('#markdown p').length,
            images: [...document.querySelectorAll('#markdown img')].map(i => i.naturalWidth),
            text: document.querySelector('#markdown').innerText,
            links: [...document.querySelectorAll('#links a')].map(a => a.textContent),
        })"""
    )


def assert_rendered_markdown(shown: dict[str, Any]) -> None:
    """Markdown shown as HTML, not as its source text."""
    assert shown["paragraphs"] >= 2, shown
    assert "![" not in shown["text"] and "](" not in shown["text"], shown["text"][:2000]
    assert "\\" not in shown["text"], shown["text"][:2000]  # no backslash escapes such as `1\.`
    assert "\n#" not in "\n" + shown["text"], shown["text"][:2000]
    assert shown["links"] == ["download markdown", "download json", "download manifest"]


def test_nothing_but_the_form_before_an_upload(server: FunctionServer) -> None:
    with browser_page(server) as page:
        page.wait_for_function("document.querySelector('#engine').textContent.includes('ready')")
        assert not page.is_visible("#result") and not page.is_visible("#status")
        assert not page.is_visible("#links") and not page.is_visible("#keyrow")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "try-page-empty.png"))


def test_a_pdf_shows_every_page_with_its_boxes(server: FunctionServer, tmp_path: Path) -> None:
    pdf = devset.write_pdf(tmp_path / "two-pages.pdf", [devset.FILING, devset.FIGURES])
    with browser_page(server) as page:
        shown = recognise(page, pdf, "try-page-pdf.png")
    assert [p["caption"] for p in shown["pages"]] == ["page 1", "page 2"]
    for p, name in zip(shown["pages"], [devset.FILING, devset.FIGURES], strict=True):
        # The page itself, scaled down by a whole factor to at most PICTURE_PIXELS (visualize.py).
        width = devset.page(name).width
        factor = math.ceil(math.sqrt(width * devset.page(name).height / PICTURE_PIXELS))
        assert abs(p["width"] - width / factor) <= 2, p
        assert 600 <= p["shownWidth"] <= 700, p  # half the window
    assert_rendered_markdown(shown)
    assert shown["images"] and all(shown["images"]), shown  # the journal page's photographs, loaded


def test_a_photo_shows_with_its_boxes(server: FunctionServer, tmp_path: Path) -> None:
    width = devset.page(devset.PHOTO).width  # skips without the development set
    photo = shutil.copy(devset.DEVSET / devset.PHOTO, tmp_path / "testimony.jpg")  # the JPEG as it is
    with browser_page(server) as page:
        shown = recognise(page, photo, "try-page-photo.png")
    assert [p["caption"] for p in shown["pages"]] == ["page 1"]
    assert shown["pages"][0]["width"] == width
    assert_rendered_markdown(shown)


def test_a_two_column_page(server: FunctionServer, tmp_path: Path) -> None:
    upload = tmp_path / "research-note.png"
    devset.page(devset.TWO_COLUMNS).save(upload)
    with browser_page(server) as page:
        shown = recognise(page, upload, "try-page-two-columns.png")
    assert len(shown["pages"]) == 1
    assert_rendered_markdown(shown)


def test_a_generated_letter_shows_its_title_as_a_heading(server: FunctionServer, tmp_path: Path) -> None:
    """Without the development set too: a generated page's title is the Markdown's first heading."""
    letter = english_page(seed=3)
    upload = tmp_path / "letter.png"
    letter.image.save(upload)
    title = next(b.text for b in letter.blocks if b.kind == "title")
    with browser_page(server) as page:
        shown = recognise(page, upload, "try-page-letter.png")
    assert shown["headings"][0] == title
    assert shown["pages"][0]["width"] == letter.image.width


def test_with_api_keys_the_page_asks_for_one_and_sends_it(tmp_path: Path) -> None:
    """Auth is the transport's: in process with the FAKE engine (tests/fakes.py)."""
    letter = english_page(seed=5)
    upload = tmp_path / "letter.png"
    letter.image.save(upload)
    with app_server({"OCR_API_KEYS": API_KEY}, tmp_path / "out") as srv:
        assert requests.get(srv.url + "/favicon.ico", timeout=10).status_code == 200  # open, like the page
        assert requests.get(srv.url + "/static/marked.umd.js", timeout=10).status_code == 200
        with browser_page(srv) as page:
            page.wait_for_selector("#keyrow", state="visible")  # it saw the 401 and asks for a key
            page.set_input_files("#file", str(upload))
            page.click("#run")
            page.wait_for_function("document.querySelector('#status').className === 'error'", timeout=60_000)
            assert page.inner_text("#status").startswith("401")
            page.fill("#key", API_KEY)
            shown = recognise(page, upload, "try-page-api-key.png")
    # The layout picture and the result files are behind the key too: the page fetched them with it.
    assert shown["pages"][0]["width"] == letter.image.width
    assert fake_text(*letter.image.size) in shown["text"]


def test_a_long_pdf_shows_its_pages_done_while_it_is_read(tmp_path: Path) -> None:
    """A PDF goes as a job; the page shows its pages done of the total, then the result. In process
    with the gated FAKE engine (tests/fakes.py): what is tested is the progress shown, whatever the
    timing — the engine waits after three pages until the page has shown them."""
    upload = tmp_path / "long.pdf"
    upload.write_bytes(light_pdf(6))
    engine = GatedEngine(stop_after=3)
    with app_server({}, tmp_path / "out", engine) as srv, browser_page(srv) as page:
        page.set_input_files("#file", str(upload))
        page.click("#run")
        page.wait_for_function(
            "/^Recognising long\\.pdf… 3 of 6 pages done · \\d+ s$/"
            ".test(document.querySelector('#status').textContent)",
            timeout=60_000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "try-page-job-progress.png"))
        engine.gate.set()
        shown = shown_result(page, "try-page-job-done.png")
        status = page.inner_text("#status")
    assert status.startswith("6 page(s) in ") and "cached" not in status, status
    assert [p["caption"] for p in shown["pages"]] == [f"page {n}" for n in range(1, 7)]
    assert all(f"fake page {n} " in shown["text"] for n in range(1, 7)), shown["text"]
    assert shown["links"] == ["download markdown", "download json", "download manifest"]


def test_a_failed_job_shows_its_error(tmp_path: Path) -> None:
    """In process with the FAKE engine failing on the third page (tests/fakes.py)."""
    upload = tmp_path / "broken.pdf"
    upload.write_bytes(light_pdf(4))
    with (
        app_server({}, tmp_path / "out", GatedEngine(stop_after=2, broken=True)) as srv,
        browser_page(srv) as page,
    ):
        page.set_input_files("#file", str(upload))
        page.click("#run")
        page.wait_for_function("document.querySelector('#status').className === 'error'", timeout=60_000)
        assert page.inner_text("#status") == "job failed: page 3 cannot be read (a FAKE failure)"
        assert not page.is_visible("#result")
