"""Test doubles for the in-process tests (`create_app(settings, engine=FakeEngine())`)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from werkzeug.serving import make_server

from function.app import App, create_app
from function.config import Settings, load_settings
from function.document import Block, Document, Page, TextLine
from function.engines.base import Engine
from function.errors import Undecodable
from function.model import PageImage
from function.options import Options


class FakeEngine(Engine):
    """A FAKE engine: it recognises nothing. Each page becomes one text block that names the page,
    its size and a digest of its pixels (`fake page 1 560x110 3f2a9c01`), so tests of the transport
    — bad input, the contract, routing, events — see which pages reached the engine without loading
    a model. Never used where recognition is what is tested: those tests run the real engines
    (tests/test_ocr_e2e.py, tests/test_engine_*.py, the real-process tests)."""

    name = "fake"

    def __init__(self, languages: list[str] | None = None) -> None:
        """`languages`: what `lang` may ask for (None: any)."""
        super().__init__(load_settings({}))
        self._languages = languages
        self.calls = 0

    def _load(self) -> None:
        pass

    @property
    def version(self) -> str:
        return "0"

    def languages(self) -> list[str] | None:
        return self._languages

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        self.calls += 1
        out = []
        for page in pages:
            w, h = page.image.size
            text = f"{fake_text(w, h, page.index + 1)} {digest(page.image)}"
            block = Block(0, "text", (0, 0, w, h), text=text, order=0, lines=[TextLine(text, (0, 0, w, h))])
            out.append(Page(page.index, w, h, [block]))
        return Document(out)


def fake_text(width: int, height: int, page: int = 1) -> str:
    """What FakeEngine writes first for a page of that size."""
    return f"fake page {page} {width}x{height}"


def digest(image: Image.Image) -> str:
    """A short digest of a page's pixels: which image reached the engine."""
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()[:8]


def fake_markdown_of(encoded: bytes) -> str:
    """What FakeEngine writes for a one-page image file (its decoded pixels)."""
    with Image.open(io.BytesIO(encoded)) as image:
        return f"{fake_text(*image.size)} {digest(image)}"


class AppServer:
    """`create_app` in this process, served on a free port of 127.0.0.1 by werkzeug's threaded
    server: the same `url` interface as tests/server.py's FunctionServer, without a process."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._httpd = make_server("127.0.0.1", 0, app.wsgi(), threaded=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> AppServer:
        self._thread.start()
        self.app.runtime.wait_engine(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def app_server(env: dict[str, str], output: Path, engine: Engine | None = None) -> Iterator[AppServer]:
    """An in-process function with `env`'s settings, results under `output`, and a fake engine."""
    settings = load_settings({"OCR_STORE": f"file://{output}", **env})
    with AppServer(create_app(settings, engine=engine or FakeEngine(["en"]))) as srv:
        yield srv


class ServedFakeEngine(FakeEngine):
    """FakeEngine as `OCR_ENGINE=fake` in a real server process (tests/fake_serve.py), for tests of
    what surrounds recognition at a scale a real engine would take minutes for (300- and 1,000-page
    jobs, a worker killed part-way). `OCR_FAKE_PAGE_SEC` makes each page take that long."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.config = settings
        self.page_sec = float(os.environ.get("OCR_FAKE_PAGE_SEC", "0"))

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        document = super().predict(pages, options)
        time.sleep(self.page_sec * len(document.pages))
        return document


class GatedEngine(FakeEngine):
    """FakeEngine (FAKE: it recognises nothing) reading the pages before `stop_after` (0-based) at
    once, then waiting until `gate` is set: a job part-way done for as long as a test needs, whatever
    the timing. With `broken` the page at `stop_after` fails instead."""

    def __init__(self, stop_after: int, broken: bool = False) -> None:
        super().__init__(["en"])
        self.stop_after, self.broken = stop_after, broken
        self.gate = threading.Event()

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        pages = list(pages)
        if pages[0].index >= self.stop_after:
            if self.broken:
                raise Undecodable(f"page {pages[0].index + 1} cannot be read (a FAKE failure)")
            assert self.gate.wait(60), "the test never opened the gate"
        return super().predict(pages, options)
