"""The bare engine: the engine's own `predict` on pages already decoded, in processes of its own —
no HTTP, no document decoding, no storage."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from function.config import load_settings
from function.engines import Engine, PageImage, create_engine
from function.options import Options

T = TypeVar("T")


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
    pool = getattr(engine, "_apis", None) or getattr(engine, "_readers", None)  # the engine's Slots
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


def drain(items: Sequence[T], workers: int, reader: Callable[[], Callable[[T], float]]) -> Throughput:
    """`workers` threads take the next of `items` until none is left. `reader()` makes each thread's
    reader (with an HTTP session of its own, say), which returns the seconds one item took."""
    todo = list(reversed(items))
    lock = threading.Lock()
    latencies: list[float] = []

    def work() -> None:
        read = reader()
        while True:
            with lock:
                if not todo:
                    return
                item = todo.pop()
            seconds = read(item)
            with lock:
                latencies.append(seconds)

    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return Throughput(len(items), time.perf_counter() - began, latencies)


def threaded(engine: Engine, pages: Sequence[PageImage], workers: int) -> Throughput:
    """`workers` threads share one engine, each taking the next page (one-page documents)."""
    return drain(pages, workers, lambda: lambda page: predict(engine, [page]))


@dataclass(frozen=True)
class Spec:
    """An engine to build in a host: the function's settings from `env`, slots/threads overridden."""

    env: dict[str, str]
    slots: int | None = None
    threads: int | None = None


def _host(conn, name: str, specs: dict[str, Spec]) -> None:  # type: ignore[no-untyped-def]
    engines = {key: load_engine(name, s.env, slots=s.slots, threads=s.threads) for key, s in specs.items()}
    docs: dict[str, list[PageImage]] = {}
    conn.send("ready")
    while (message := conn.recv()) is not None:
        command, args = message[0], message[1:]
        if command == "pages":  # (name, pages)
            docs[args[0]] = args[1]
            conn.send("ok")
        elif command == "predict":  # (engine, doc): one document of all its pages
            conn.send(predict(engines[args[0]], docs[args[1]]))
        elif command == "threaded":  # (engine, doc, workers): its pages as one-page documents
            result = threaded(engines[args[0]], docs[args[1]], args[2])
            conn.send((result.pages, result.seconds, result.latencies))
        elif command == "each":  # (engine, doc, indices): those pages, one at a time
            conn.send([predict(engines[args[0]], [docs[args[1]][i]]) for i in args[2]])
        else:  # ("service", engine, data, filename, env, prefetch)
            conn.send(_service(engines[args[0]], *args[1:]))


def _service(engine: Engine, data: bytes, filename: str, env: dict[str, str], prefetch: bool) -> float:
    """The function's own steps, no HTTP and no store: open, render pages, OCR, Markdown/JSON."""
    from function import service
    from function.document import SourceInfo

    began = time.perf_counter()
    options = Options()
    pages = service.open_pages(data, options, load_settings(env))
    pages.prefetch = prefetch
    info = SourceInfo(filename, pages.media_type, "0" * 64, pages.page_count)
    service.recognise(engine, pages, options, info, service.Timings())  # OCR, then Markdown and JSON
    return time.perf_counter() - began


class Host:
    """A fresh process with the bare engines of `specs` loaded, run on pages it is sent.

    The benchmark starts new ones every round: the same code runs up to ±6% faster or slower from
    one process to the next (where its buffers land, how its threads share the cores), so a single
    process on either side would decide a ratio by luck."""

    def __init__(self, name: str, specs: dict[str, Spec]) -> None:
        parent, child = mp.get_context("spawn").Pipe()
        self.conn = parent
        self.proc = mp.get_context("spawn").Process(target=_host, args=(child, name, specs), daemon=True)
        self.proc.start()
        if self.conn.recv() != "ready":
            raise RuntimeError("the bare engine's process did not start")

    def ask(self, *message: object) -> Any:
        self.conn.send(message)
        return self.conn.recv()

    def pages(self, doc: str, pages: Sequence[PageImage]) -> None:
        assert self.ask("pages", doc, list(pages)) == "ok"

    def predict(self, engine: str, doc: str) -> float:
        return float(self.ask("predict", engine, doc))

    def threaded(self, engine: str, doc: str, workers: int) -> Throughput:
        return Throughput(*self.ask("threaded", engine, doc, workers))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


class Processes:
    """Hosts with one engine each (one slot, `threads` threads): the bare engine's other way to run
    pages in parallel."""

    def __init__(self, count: int, name: str, env: dict[str, str], threads: int = 1) -> None:
        self.hosts = [Host(name, {"one": Spec(env, slots=1, threads=threads)}) for _ in range(count)]

    def give(self, pages: Sequence[PageImage]) -> None:
        for host in self.hosts:
            host.pages("par", pages)

    def run(self, count: int) -> Throughput:
        """Pages 0..count-1 of what was given, dealt round-robin to the processes."""
        shares = [list(range(k, count, len(self.hosts))) for k in range(len(self.hosts))]
        began = time.perf_counter()
        for host, share in zip(self.hosts, shares, strict=True):
            host.conn.send(("each", "one", "par", share))
        latencies = [s for host in self.hosts for s in host.conn.recv()]
        return Throughput(count, time.perf_counter() - began, latencies)

    def close(self) -> None:
        for host in self.hosts:
            host.close()
