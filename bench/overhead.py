"""Seconds per page: the engine alone vs. the same pages through the real HTTP function, one run.

    .venv/bin/python -m bench.overhead [--rounds 3]

Both sides see the same PNG pages, interleaved page by page so machine noise hits both alike;
the server is the same process `make run` starts. Also reports process start → ready.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import requests

from function.config import load_settings
from function.engines import PageImage, create_engine
from function.options import Options
from tests.server import FunctionServer
from tests.synthetic import english_page, table_page, two_column_page


def pages() -> dict[str, bytes]:
    out = {}
    kinds = {"english": english_page(1), "two_column": two_column_page(2), "table": table_page()}
    for name, page in kinds.items():
        buf = io.BytesIO()
        page.image.save(buf, "PNG")
        out[name] = buf.getvalue()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    docs = pages()
    engine = create_engine("rapidocr", load_settings({}))
    began = time.perf_counter()
    engine.load()
    print(f"engine load in-process: {time.perf_counter() - began:.2f}s")
    with tempfile.TemporaryDirectory() as tmp:
        srv = FunctionServer({"OCR_STORE": f"file://{tmp}/out"}, Path(tmp) / "log").start()
        try:
            print(f"function process start -> ready: {srv.wait_ready():.2f}s")
            run(engine, srv, docs, args.rounds)
        finally:
            srv.stop()


def run(engine, srv: FunctionServer, docs: dict[str, bytes], rounds: int) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    alone: dict[str, list[float]] = {k: [] for k in docs}
    http: dict[str, list[float]] = {k: [] for k in docs}
    for _ in range(rounds):
        for name, data in docs.items():
            began = time.perf_counter()
            engine.predict([PageImage(0, Image.open(io.BytesIO(data)).convert("RGB"))], Options())
            alone[name].append(time.perf_counter() - began)
            began = time.perf_counter()
            resp = requests.post(  # force: the cache would answer repeats without OCR
                srv.url + "/ocr", files={"file": (f"{name}.png", data)}, data={"force": "true"}, timeout=300
            )
            http[name].append(time.perf_counter() - began)
            assert resp.status_code == 200, resp.text
    print(f"{'page':<12}{'engine s/page':>15}{'HTTP s/page':>14}{'overhead':>10}")
    for name in docs:
        a, h = statistics.median(alone[name]), statistics.median(http[name])
        print(f"{name:<12}{a:>15.3f}{h:>14.3f}{(h / a - 1) * 100:>9.1f}%")
    a_all = statistics.median([t for ts in alone.values() for t in ts])
    h_all = statistics.median([t for ts in http.values() for t in ts])
    print(f"{'median':<12}{a_all:>15.3f}{h_all:>14.3f}{(h_all / a_all - 1) * 100:>9.1f}%  ({rounds} rounds)")


if __name__ == "__main__":
    main()
