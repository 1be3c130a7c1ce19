"""Every input form of the contract, and every bad input: in process through `create_app` with a fake
engine (the `app` fixture; the page's size stands for its text), and one upload read by the real
engine in a real function process."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image, ImageDraw, ImageFont

from tests.fakes import AppServer, app_server, fake_text
from tests.server import FunctionServer

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = "Invoice 2041 paid"


def text_image(text: str = WORDS, fmt: str = "PNG", size: tuple[int, int] = (560, 110)) -> bytes:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 30), text, font=ImageFont.truetype(FONT, 40), fill="black")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


PNG = text_image()
FAKE = fake_text(560, 110)  # what the fake engine writes for PNG


def ocr(server: FunctionServer | AppServer, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(server.url + "/ocr", timeout=120, **kwargs)


def assert_text(resp: requests.Response, input_type: str, text: str = WORDS) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    assert body["input_type"] == input_type
    assert text in body["content"]["markdown"]
    for legacy in ("timestamp", "elapsed_sec", "request_id"):
        assert legacy in body
    return body


def assert_error(resp: requests.Response, status: int, code: str, *words: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == code
    assert body["request_id"] == resp.headers["X-Request-Id"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in resp.text


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    """A local HTTP server that serves the test image at /scan.png (and 404 elsewhere)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/scan.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


# --- the input forms ----------------------------------------------------------------------------


def test_multipart_file(server: FunctionServer) -> None:
    resp = ocr(server, files={"file": ("scan.png", PNG, "image/png")}, data={"return_content": "true"})
    body = assert_text(resp, "multipart")
    assert body["document"]["filename"] == "scan.png"
    assert body["document"]["media_type"] == "image/png"


def test_multipart_base64_field(app: AppServer) -> None:
    data = {"image_base64": base64.b64encode(PNG).decode(), "return_content": "1"}
    resp = ocr(app, files={"unused": (None, "")}, data=data)
    assert_text(resp, "base64", FAKE)


def test_urlencoded_base64_with_data_url(app: AppServer) -> None:
    data = {
        "image_base64": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "return_content": "true",
    }
    assert_text(ocr(app, data=data), "base64", FAKE)


def test_json_base64_with_filename_and_query_option(app: AppServer) -> None:
    body = {"image_base64": base64.b64encode(PNG).decode(), "filename": "bill.png"}
    resp = requests.post(app.url + "/?return_content=true", json=body, timeout=120)
    assert assert_text(resp, "base64", FAKE)["document"]["filename"] == "bill.png"


def test_raw_body_with_filename_query(app: AppServer) -> None:
    resp = ocr(
        app,
        data=PNG,
        headers={"Content-Type": "image/png"},
        params={"filename": "raw.png", "return_content": "true"},
    )
    assert assert_text(resp, "raw", FAKE)["document"]["filename"] == "raw.png"


def test_raw_body_content_disposition(app: AppServer) -> None:
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="cd.png"',
    }
    resp = ocr(app, data=PNG, headers=headers, params={"return_content": "true"})
    assert assert_text(resp, "raw", FAKE)["document"]["filename"] == "cd.png"


@pytest.fixture(scope="module")
def url_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A function (in process, fake engine) allowed to fetch from private addresses: `image_host`
    listens on 127.0.0.1, which the default settings refuse (tests/test_hostile.py checks that)."""
    with app_server({"OCR_URL_ALLOW_PRIVATE": "true"}, tmp_path_factory.mktemp("function-url")) as srv:
        yield srv


def test_image_url(url_server: AppServer, image_host: str) -> None:
    resp = ocr(url_server, json={"image_url": image_host + "/scan.png", "return_content": True})
    assert assert_text(resp, "url", FAKE)["document"]["filename"] == "scan.png"


def test_image_url_upstream_404_is_502(url_server: AppServer, image_host: str) -> None:
    resp = ocr(url_server, json={"image_url": image_host + "/missing.png"})
    assert_error(resp, 502, "upstream_failed", "404")


@pytest.mark.parametrize(
    "fmt,media", [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp"), ("GIF", "image/gif")]
)
def test_raster_formats(app: AppServer, fmt: str, media: str) -> None:
    data = text_image(fmt=fmt)
    resp = ocr(
        app,
        files={"file": (f"x.{fmt.lower()}", data, "application/octet-stream")},
        data={"return_content": "true"},
    )
    assert assert_text(resp, "multipart", FAKE)["document"]["media_type"] == media


def test_exif_orientation_applied(app: AppServer) -> None:
    # Stored sideways with an EXIF tag saying "rotate 90° clockwise to display" (orientation 6).
    upright = Image.open(io.BytesIO(text_image()))
    sideways = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", exif=exif, quality=95)
    resp = ocr(app, files={"file": ("rot.jpg", buf.getvalue())}, data={"return_content": "true"})
    body = assert_text(resp, "multipart", FAKE)
    page = body["content"]["json"]["pages"][0]
    assert (page["width"], page["height"]) == upright.size


def test_multi_page_tiff_reads_every_page(app: AppServer) -> None:
    pages = [Image.open(io.BytesIO(text_image(f"Sheet {w} ready"))) for w in ("alpha", "bravo", "delta")]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    resp = ocr(app, files={"file": ("s.tiff", buf.getvalue())}, data={"return_content": "true"})
    body = assert_text(resp, "multipart", FAKE)
    assert [p["index"] for p in body["content"]["json"]["pages"]] == [0, 1, 2]
    md = body["content"]["markdown"]
    assert (
        md.index(fake_text(560, 110, 1)) < md.index(fake_text(560, 110, 2)) < md.index(fake_text(560, 110, 3))
    )


def test_result_urls_serve_the_results(app: AppServer) -> None:
    body = ocr(app, files={"file": ("urls.png", PNG)}, data={"return_content": "true"}).json()
    md = requests.get(body["results"]["markdown"]["url"], timeout=10)
    assert md.status_code == 200 and md.text == body["content"]["markdown"]
    assert md.headers["Content-Type"].startswith("text/markdown")
    js = requests.get(body["results"]["json"]["url"], timeout=10).json()
    assert js == body["content"]["json"]
    assert body["results"]["markdown"]["uri"].startswith("file://")
    listing = requests.get(app.url + "/files", timeout=10).json()["files"]
    key = body["results"]["markdown"]["url"].split("/files/", 1)[1]
    assert key in listing


@pytest.mark.parametrize(
    "path", ["/files/../handler.py", "/files/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd"]
)
def test_files_refuses_path_traversal(app: AppServer, path: str) -> None:
    resp = requests.get(app.url + path, timeout=10)
    assert resp.status_code in (400, 404), resp.text
    assert "root:" not in resp.text and "functions_framework" not in resp.text


# --- bad input ----------------------------------------------------------------------------------


def test_no_document(app: AppServer) -> None:
    assert_error(ocr(app, data={"return_content": "true"}), 400, "bad_request", "no document", "file")


def test_empty_body(app: AppServer) -> None:
    assert_error(ocr(app), 400, "bad_request", "no document")


def test_empty_file(app: AppServer) -> None:
    assert_error(ocr(app, files={"file": ("e.png", b"")}), 400, "bad_request", "empty")


def test_two_documents(app: AppServer) -> None:
    resp = ocr(app, files={"file": ("a.png", PNG)}, data={"image_base64": base64.b64encode(PNG).decode()})
    assert_error(resp, 400, "bad_request", "exactly one", "file", "image_base64")


def test_bad_base64(app: AppServer) -> None:
    assert_error(ocr(app, json={"image_base64": "not*base64!"}), 400, "bad_request", "base64")


def test_not_an_image(app: AppServer) -> None:
    resp = ocr(app, files={"file": ("notes.png", b"just some text, not a picture")})
    assert_error(resp, 415, "unsupported_media_type", "PDF", "PNG")


def test_truncated_png(app: AppServer) -> None:
    assert_error(ocr(app, files={"file": ("cut.png", PNG[: len(PNG) // 2])}), 422, "undecodable_document")


def test_corrupt_pdf(app: AppServer) -> None:
    resp = ocr(app, data=b"%PDF-1.7\nthis is not really a pdf", headers={"Content-Type": "application/pdf"})
    assert_error(resp, 422, "undecodable_document", "PDF")


@pytest.mark.parametrize(
    "field,value,word",
    [
        ("return_content", "maybe", "return_content"),
        ("pages", "two", "pages"),
        ("pages", "3-1", "pages"),
        ("force", "2", "force"),
    ],
)
def test_unknown_option_value(app: AppServer, field: str, value: str, word: str) -> None:
    assert_error(ocr(app, files={"file": ("a.png", PNG)}, data={field: value}), 400, "bad_request", word)


def test_language_the_engine_cannot_read(app: AppServer) -> None:
    assert_error(
        ocr(app, files={"file": ("a.png", PNG)}, data={"lang": "ru"}), 400, "bad_request", "'ru'", "en"
    )


def test_pages_beyond_the_document(app: AppServer) -> None:
    assert_error(ocr(app, files={"file": ("a.png", PNG)}, data={"pages": "4-5"}), 400, "bad_request", "has 1")


def test_json_not_an_object(app: AppServer) -> None:
    resp = ocr(app, data="[1, 2]", headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request", "JSON object")


def test_unsupported_content_type(app: AppServer) -> None:
    resp = ocr(app, data="hello", headers={"Content-Type": "text/plain"})
    assert_error(resp, 400, "bad_request", "Content-Type")


def test_get_on_ocr_is_405(app: AppServer) -> None:
    assert_error(requests.get(app.url + "/ocr", timeout=10), 405, "method_not_allowed", "POST")


def test_unknown_route_is_404(app: AppServer) -> None:
    assert_error(requests.get(app.url + "/nope", timeout=10), 404, "not_found")
