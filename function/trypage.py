"""The try-it page (`GET /`) and the few files it loads: its vendored scripts and the favicon.

Served only while `OCR_TRY_PAGE` is on, and open like the page itself (auth.py): they are static and
public; what the page posts is checked like any request.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import flask

STATIC = Path(__file__).parent / "static"
PAGE = "/"
# URL path -> file; nothing else under static/ is served.
FILES = {
    PAGE: STATIC / "index.html",
    "/favicon.ico": STATIC / "favicon.ico",
    "/static/marked.umd.js": STATIC / "vendor" / "marked.umd.js",
    "/static/purify.min.js": STATIC / "vendor" / "purify.min.js",
}
TYPES = {".ico": "image/x-icon", ".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8"}


def response(path: str) -> flask.Response:
    """The file served at `path` (one of FILES), cached by the browser for an hour but the page."""
    file = FILES[path]
    mimetype = TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    resp = flask.Response(file.read_bytes(), content_type=mimetype)
    resp.headers["Cache-Control"] = "no-cache" if path == PAGE else "public, max-age=3600"
    return resp
