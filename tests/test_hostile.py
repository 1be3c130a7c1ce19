"""Hostile input against a real function process (functions-framework + gunicorn, rapidocr).

Every case checks the status and JSON error body that README.md's error table documents, and
afterwards (an autouse fixture) that `/health/live` still answers 200 from the same worker process.
The server runs with a small OCR_MAX_BYTES so that bodies over the limit are cheap to send, and with
the default OCR_URL_ALLOW_PRIVATE=false so that every address on this machine is refused to image_url.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pypdfium2 as pdfium
import pytest
import requests
from PIL import Image, ImageDraw, ImageFont

from function.fetch import refusal_reason
from tests.pdfs import raw_pdf
from tests.server import FunctionServer

MAX_BYTES = 1024 * 1024  # OCR_MAX_BYTES of the server under test
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = "Invoice 2041 paid"


# --- documents ----------------------------------------------------------------------------------------


def text_png(text: str = WORDS, size: tuple[int, int] = (560, 110)) -> bytes:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 30), text, font=ImageFont.truetype(FONT, 40), fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20000) -> bytes:
    """A valid side×side 1-bit greyscale PNG of zeros: ~50 KB on the wire, 400 megapixels (Pillow would
    hold 400 MB in mode "1", 1.2 GB once converted to RGB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def blank_pdf(pages: int) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(612, 792).close()
    buf = io.BytesIO()
    pdf.save(buf)
    pdf.close()
    return buf.getvalue()


def encrypted_pdf() -> bytes:
    """A one-page PDF behind the standard security handler (RC4, V1 R2) whose /U entry does not match
    the empty user password, so a reader needs a password it is not given — what an encrypted PDF with
    a user password looks like to PDFium (no PDF library here can encrypt; the page content does not
    matter, the document is refused at open)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 "
        + (b"/O <%s> /U <%s> >>" % (b"11" * 32, b"22" * 32)),
    ]
    file_id = b"ab" * 16
    return raw_pdf(objects, b"/Encrypt 4 0 R /ID [<%s> <%s>] " % (file_id, file_id))


# --- the server under test ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("function-hostile")
    env = {
        "OCR_ENGINE": "rapidocr",
        "OCR_STORE": f"file://{tmp}/output",
        "OCR_MAX_BYTES": str(MAX_BYTES),
        "OCR_PDF_DPI": "72",  # blank PDF pages cost little to OCR
        "OCR_URL_ALLOW_PRIVATE": "false",
        "OCR_URL_FETCH_TIMEOUT_SEC": "5",
    }
    with FunctionServer(env, tmp / "server.log", serve=True) as srv:  # as the images run it
        yield srv


@pytest.fixture(scope="module")
def worker(hostile: FunctionServer) -> psutil.Process:
    """The gunicorn worker that serves the requests (WORKERS=1), from /health."""
    return psutil.Process(requests.get(hostile.url + "/health", timeout=10).json()["pid"])


@pytest.fixture(autouse=True)
def still_serving(hostile: FunctionServer, worker: psutil.Process) -> Iterator[None]:
    yield
    assert requests.get(hostile.url + "/health/live", timeout=10).status_code == 200, hostile.log()
    assert requests.get(hostile.url + "/health", timeout=10).json()["pid"] == worker.pid
    assert worker.is_running()


def post(server: FunctionServer, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(server.url + "/ocr", timeout=120, **kwargs)


def assert_error(resp: requests.Response, status: int, code: str, *words: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == code
    assert body["request_id"] == resp.headers["X-Request-Id"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in resp.text
    return body["error"]["message"]


def assert_processed(resp: requests.Response, media_type: str) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success"
    assert body["document"]["media_type"] == media_type
    return body


def peak_rss(proc: psutil.Process) -> int:
    """The process's high-water RSS (VmHWM), in bytes; its current RSS where /proc has none."""
    status = Path(f"/proc/{proc.pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return proc.memory_info().rss


# --- raw HTTP: bodies the requests library would not send ----------------------------------------------


def exchange(
    port: int, head: bytes, chunks: Iterable[bytes], timeout: float = 5.0
) -> tuple[http.client.HTTPResponse, bytes, float]:
    """Send `head` and then `chunks` from a thread while reading the response here: the answer is read
    as soon as the server gives it, whether or not it read what we sent. Returns the response, its
    body and the seconds from the first byte sent to the end of the response."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send() -> None:
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server stopped reading (it answered and closed): expected once it refused

    sender = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        return resp, body, time.monotonic() - started
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sender.join(5)


def assert_raw_error(resp: http.client.HTTPResponse, body: bytes, status: int, code: str) -> None:
    assert resp.status == status, body[:500]
    assert (resp.getheader("Content-Type") or "").startswith("application/json"), body[:500]
    payload = json.loads(body)
    assert payload["status"] == "error" and payload["error"]["code"] == code
    assert payload["request_id"] == resp.getheader("X-Request-Id")


TEN_GB = 10 * 1024**3


def test_declared_huge_body_refused_before_it_is_read(hostile: FunctionServer) -> None:
    """Content-Length: 10 GB, 4 KB actually sent: the answer must come at once, from the header."""
    head = (
        b"POST /ocr HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
        % TEN_GB
    )
    resp, body, seconds = exchange(hostile.port, head, [b"\x00" * 4096])
    assert seconds < 3
    assert_raw_error(resp, body, 413, "too_large")
    assert b"OCR_MAX_BYTES" in body


def test_declared_huge_body_on_another_route_is_not_read(hostile: FunctionServer) -> None:
    head = b"POST /health/live HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % TEN_GB
    try:
        resp, body, _ = exchange(hostile.port, head, [b"\x00" * 4096], timeout=3)
    except TimeoutError:
        pytest.fail("no answer within 3 s: the server is reading the 10 GB body")
    assert_raw_error(resp, body, 405, "method_not_allowed")


def test_chunked_body_over_the_limit(hostile: FunctionServer, worker: psutil.Process) -> None:
    """No Content-Length: 8 MB in 64 KB chunks against a ~2.3 MB body limit (OCR_MAX_BYTES plus base64
    and form framing). The server stops reading at the limit."""
    chunk = b"10000\r\n" + b"\x00" * 0x10000 + b"\r\n"
    head = (
        b"POST /ocr HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    before = worker.memory_info().rss
    resp, body, seconds = exchange(hostile.port, head, [chunk] * 128 + [b"0\r\n\r\n"])
    assert_raw_error(resp, body, 413, "too_large")
    assert b"OCR_MAX_BYTES" in body
    assert seconds < 5
    assert worker.memory_info().rss - before < 100 * 1024 * 1024


# --- decompression bombs and page counts --------------------------------------------------------------


def test_png_decompression_bomb(hostile: FunctionServer, worker: psutil.Process) -> None:
    """400 megapixels in 50 KB: refused from the header (OCR_MAX_PIXELS), never decoded. Decoding would
    take 400 MB at least; the worker's RSS and its high-water mark stay within 300 MB of before."""
    bomb = png_bomb()
    assert len(bomb) < MAX_BYTES
    rss, peak = worker.memory_info().rss, peak_rss(worker)
    resp = post(hostile, data=bomb, headers={"Content-Type": "image/png"})
    assert_error(resp, 413, "too_large", "400000000 pixels", "OCR_MAX_PIXELS")
    assert worker.memory_info().rss - rss < 300 * 1024 * 1024
    assert peak_rss(worker) - peak < 300 * 1024 * 1024


def test_two_thousand_page_pdf(hostile: FunctionServer) -> None:
    pdf = blank_pdf(2000)  # ~250 KB
    resp = post(hostile, data=pdf, headers={"Content-Type": "application/pdf"})
    assert_error(resp, 413, "too_large", "2000 pages", "OCR_MAX_PAGES", "pages")
    # One page of it is cheap (a blank page at 72 dpi): opening 2000 pages costs nothing up front.
    resp = post(hostile, data=pdf, headers={"Content-Type": "application/pdf"}, params={"pages": "1"})
    body = assert_processed(resp, "application/pdf")
    assert (body["document"]["pages"], body["document"]["pages_processed"]) == (2000, 1)


def test_encrypted_pdf(hostile: FunctionServer) -> None:
    resp = post(hostile, data=encrypted_pdf(), headers={"Content-Type": "application/pdf"})
    assert_error(resp, 422, "undecodable_document", "encrypted")


def test_truncated_pdf(hostile: FunctionServer) -> None:
    # Cut in the middle (PDFium repairs a file that only lacks its trailer, and reads it: that is fine).
    pdf = blank_pdf(1)
    resp = post(hostile, data=pdf[: len(pdf) // 2], headers={"Content-Type": "application/pdf"})
    assert_error(resp, 422, "undecodable_document", "PDF")


# --- lying content types and polyglots: the bytes decide -----------------------------------------------


def test_pdf_sent_as_png_is_read_as_pdf(hostile: FunctionServer) -> None:
    resp = post(hostile, data=blank_pdf(1), headers={"Content-Type": "image/png"})
    assert_processed(resp, "application/pdf")


def test_text_sent_as_png(hostile: FunctionServer) -> None:
    resp = post(hostile, data=b"just some text, not a picture\n" * 20, headers={"Content-Type": "image/png"})
    assert_error(resp, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a<html><script>alert(document.cookie)</script></html>",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;<script>alert(1)</script>",  # a logical screen, no image
    ],
)
def test_gif_header_with_html_payload(hostile: FunctionServer, data: bytes) -> None:
    """A GIF signature in front of HTML/JS: not an image Pillow can read, so not a supported type."""
    resp = post(hostile, data=data, headers={"Content-Type": "image/gif"})
    assert_error(resp, 415, "unsupported_media_type")


def test_png_with_a_pdf_appended_is_read_as_png(hostile: FunctionServer) -> None:
    """The PNG comes first and is longer than the 1 KB where a PDF header is looked for: a PNG."""
    png = text_png()
    assert len(png) > 1024
    resp = post(hostile, data=png + blank_pdf(1), headers={"Content-Type": "image/png"})
    body = assert_processed(resp, "image/png")
    assert body["document"]["pages"] == 1


def test_tiny_png_with_a_pdf_appended_is_read_as_pdf(hostile: FunctionServer) -> None:
    """`%PDF-` within the first 1 KB makes it a PDF (as PDF readers do); PDFium finds the PDF after the
    PNG bytes. Either reading is what the bytes are; the point is that neither is a 500."""
    png = text_png("x", size=(8, 8))
    assert len(png) < 900
    resp = post(hostile, data=png + blank_pdf(1), headers={"Content-Type": "image/png"})
    assert_processed(resp, "application/pdf")


# --- malformed requests ---------------------------------------------------------------------------------


def _multipart(boundary: bytes, payload: bytes) -> bytes:
    return (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + payload + b"\r\n--" + boundary + b"--\r\n"
    )


@pytest.mark.parametrize(
    "content_type,data",
    [
        ("multipart/form-data; boundary=other", _multipart(b"zzz", b"\x89PNG...")),  # wrong boundary
        ("multipart/form-data", _multipart(b"zzz", b"\x89PNG...")),  # no boundary at all
        ("multipart/form-data; boundary=zzz", _multipart(b"zzz", b"\x89PNG...")[:60]),  # cut in a header
        ("multipart/form-data; boundary=zzz", _multipart(b"zzz", b"\x89PNG" + b"\x00" * 500)[:300]),  # no end
        ("multipart/form-data; boundary=" + "b" * 2000, b"--" + b"b" * 2000 + b"\r\n"),  # absurd boundary
    ],
    ids=["wrong-boundary", "no-boundary", "cut-in-header", "cut-in-body", "long-boundary"],
)
def test_malformed_multipart(hostile: FunctionServer, content_type: str, data: bytes) -> None:
    assert_error(post(hostile, data=data, headers={"Content-Type": content_type}), 400, "bad_request")


@pytest.mark.parametrize(
    "data", [b'{"image_base64": ', b"{'image_url': 'x'}", b"\xff\xfe{}", b"[1, 2]", b'"a string"', b"null"]
)
def test_bad_json(hostile: FunctionServer, data: bytes) -> None:
    resp = post(hostile, data=data, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request", "JSON object")


def test_huge_base64_refused_without_decoding(hostile: FunctionServer) -> None:
    """Over OCR_MAX_BYTES once decoded, and invalid at its very end: a decoder would have said 400;
    the 413 shows the size was judged from the text's length."""
    text = "A" * (MAX_BYTES * 4 // 3 + 400) + "!!"
    assert_error(post(hostile, json={"image_base64": text}), 413, "too_large", "OCR_MAX_BYTES")


@pytest.mark.parametrize("text", ["not*base64!", "QUJD\x00RA==", "data:image/png;base64,@@@@"])
def test_invalid_base64(hostile: FunctionServer, text: str) -> None:
    assert_error(post(hostile, json={"image_base64": text}), 400, "bad_request", "base64")


# --- image_url: server-side request forgery -------------------------------------------------------------


@pytest.fixture(scope="module")
def bait() -> Iterator[tuple[int, list[str]]]:
    """A real image server on 127.0.0.1 (port, paths requested). It serves a PNG at /x.png and
    redirects /go to the metadata address. No test below may make the function reach it."""
    hits: list[str] = []
    png = text_png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path == "/go":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1], hits
    httpd.shutdown()
    httpd.server_close()


def _own_hostname_if_private() -> list[str]:
    name = socket.gethostname()
    try:
        address = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return []
    return [name] if refusal_reason(ipaddress.ip_address(address)) else []


SSRF_URLS = [
    ("http://127.0.0.1:{port}/x.png", "loopback"),
    ("http://localhost:{port}/x.png", "loopback"),  # a DNS name that resolves to loopback
    ("http://[::1]:{port}/x.png", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/x.png", "loopback"),
    ("http://2130706433:{port}/x.png", "loopback"),  # 127.0.0.1 spelled as one number
    ("http://0.0.0.0:{port}/x.png", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fd00::1]/x.png", "private"),
    # The bait's /go redirects to the metadata address. With every local address refused, the function
    # refuses this first hop (127.0.0.1) and never sees the redirect: this proves the first-hop check
    # only. The re-check of each redirect hop is proven in-process, with a real first hop allowed, by
    # tests/test_fetch.py::test_redirect_to_*_refused_on_the_second_hop.
    ("http://127.0.0.1:{port}/go", "loopback"),
] + [("http://" + name + ":{port}/x.png", "") for name in _own_hostname_if_private()]


@pytest.mark.parametrize("template,word", SSRF_URLS)
def test_image_url_to_a_non_public_address(
    hostile: FunctionServer, bait: tuple[int, list[str]], template: str, word: str
) -> None:
    port, hits = bait
    resp = post(hostile, json={"image_url": template.format(port=port)})
    assert_error(resp, 400, "bad_request", word, "OCR_URL_ALLOW_PRIVATE=true")
    assert hits == []


def test_image_url_in_a_form_is_checked_too(hostile: FunctionServer, bait: tuple[int, list[str]]) -> None:
    port, hits = bait
    resp = post(hostile, data={"image_url": f"http://localhost:{port}/x.png"})
    assert_error(resp, 400, "bad_request", "loopback", "OCR_URL_ALLOW_PRIVATE")
    assert hits == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "ftp://127.0.0.1/x.png", "//x/y.png"]
)
def test_image_url_other_schemes(hostile: FunctionServer, url: str) -> None:
    assert_error(post(hostile, json={"image_url": url}), 400, "bad_request", "http or https")


# --- and it still works ---------------------------------------------------------------------------------


def test_still_reads_a_document_afterwards(hostile: FunctionServer) -> None:
    resp = post(hostile, files={"file": ("after.png", text_png())}, data={"return_content": "true"})
    body = assert_processed(resp, "image/png")
    assert WORDS in body["content"]["markdown"]
