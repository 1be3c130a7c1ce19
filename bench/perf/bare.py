"""The bare engine: the engine's own `predict` on pages already decoded, in this process or in
worker processes — no HTTP, no document decoding, no storage."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from function.config import load_settings
from function.engines import Engine, PageImage, create_engine
from function.options import Options


def load_engine(
    name: str, env: dict[str, str], slots: int | None = None, threads: int | None = None
) -> Engine:
    """The engine as the function would build it from `env`, optionally with other slots/threads."""
    engine = create_engine(name, load_settings({"OCR_ENGINE": name, **env}))
    if slots is not None:
        engine.slots = slots  # type: ignore[attr-defined]
    if threads is not None:
        engine.threads = threads  # type: ignore[attr-defined]
    engine.load()
    pool = getattr(engine, "_apis", None) or getattr(engine, "_ocr", None)
    deadline = time.monotonic() + 120
    while pool is not None and pool.count < getattr(engine, "slots", 1) and time.monotonic() < deadline:
        time.sleep(0.05)  # slots that load in the background (tesseract)
    return engine


def predict(engine: Engine, pages: Sequence[PageImage]) -> float:
    """Seconds for one document of `pages`."""
    began = time.perf_counter()
    engine.predict(iter(pages), Options())
    return time.perf_counter() - began


@dataclass
class Throughput:
    pages: int
    seconds: float
    latencies: list[float]  # per page (bare) or per document (function)

    @property
    def pages_per_sec(self) -> float:
        return self.pages / self.seconds


def threaded(engine: Engine, pages: Sequence[PageImage], workers: int) -> Throughput:
    """`workers` threads share one engine, each taking the next page (one-page documents)."""
    todo = list(reversed(pages))
    lock = threading.Lock()
    latencies: list[float] = []

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                page = todo.pop()
            seconds = predict(engine, [page])
            with lock:
                latencies.append(seconds)

    began = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Throughput(len(pages), time.perf_counter() - began, latencies)


def _worker(conn, name: str, env: dict[str, str], threads: int) -> None:  # type: ignore[no-untyped-def]
    engine = load_engine(name, env, slots=1, threads=threads)
    pages: list[PageImage] = []
    conn.send("ready")
    while True:
        message = conn.recv()
        if message is None:
            return
        if message[0] == "pages":
            pages = message[1]
            conn.send("ok")
        else:  # ("run", indices)
            conn.send([predict(engine, [pages[i]]) for i in message[1]])


class Processes:
    """Worker processes with an engine each (one slot, `threads` threads): the bare engine's
    other way to run pages in parallel."""

    def __init__(self, count: int, name: str, env: dict[str, str], threads: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, name, env, threads), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv() == "ready"

    def give(self, pages: Sequence[PageImage]) -> None:
        for conn in self.conns:
            conn.send(("pages", list(pages)))
        for conn in self.conns:
            assert conn.recv() == "ok"

    def run(self, count: int) -> Throughput:
        """Pages 0..count-1 of what was given, dealt round-robin to the processes."""
        shares = [list(range(k, count, len(self.conns))) for k in range(len(self.conns))]
        began = time.perf_counter()
        for conn, share in zip(self.conns, shares, strict=True):
            conn.send(("run", share))
        latencies = [s for conn in self.conns for s in conn.recv()]
        return Throughput(count, time.perf_counter() - began, latencies)

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)
