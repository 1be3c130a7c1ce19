"""The engine protocol: load once per serving process, then turn page images into a Document."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import queue
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

from function.config import Settings
from function.document import Document
from function.model import PageImage
from function.options import Options

T = TypeVar("T")


class Engine(ABC):
    """One OCR engine. Subclasses set `name` and implement `_load`, `version`, `predict`."""

    name: ClassVar[str]
    # Render the next page while this one is read (function/pages.py). Worth it only where the
    # engine leaves the CPU idle (a GPU model). A CPU engine's threads already take every core, so
    # a render ahead only time-slices them; with MALLOC_ARENA_MAX=2 it also raised a 40-page PDF's
    # peak RSS by 57 MB over rendering in turn (BENCHMARKS.md, "Function overhead").
    prefetch_pages: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.config = settings
        self._loaded = False
        # Seconds of the load's steps ("models", "warm_up"), as the engine reports them (cold start).
        self.load_timings: dict[str, float] = {}

    @property
    def ready(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load models (at cold start). Raises `EngineLoadError` with a reason a person can act on."""
        self._load()
        self._loaded = True

    def _timed(self, step: str, fn: Callable[[], T]) -> T:
        """`fn()`, its seconds kept in `load_timings[step]`."""
        began = time.perf_counter()
        try:
            return fn()
        finally:
            self.load_timings[step] = round(time.perf_counter() - began, 3)

    @abstractmethod
    def _load(self) -> None: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    def settings(self) -> dict[str, object]:
        """Settings that change the output; they go into the fingerprint."""
        return {}

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"name": self.name, "version": self.version, "settings": self.settings()},
            sort_keys=True,
        )
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def languages(self) -> list[str] | None:
        """Languages this engine can be asked for with `lang`; None if it takes no hint."""
        return None

    @abstractmethod
    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        """OCR the pages (consumed one at a time) into a Document (source/engine unset)."""

    @property
    def pages_independent(self) -> bool:
        """Whether a page reads the same whatever pages are read with it, so pages read in separate
        runs (checkpoints, chunks) join into the document one run would give."""
        return True

    def read(self, pages: Iterable[PageImage], options: Options) -> Iterator[Document]:
        """Each page as a one-page Document, in order, as soon as it is read (page checkpoints)."""
        for page in pages:
            yield self.predict([page], options)

    def join(self, parts: Iterable[Document]) -> Document:
        """The document that pages read one by one (`read`) make, in the order given."""
        out = Document(pages=[])
        for part in parts:
            out.pages.extend(part.pages)
            out.images.update(part.images)
            out.warnings.extend(part.warnings)
            out.markdown_pages.extend(part.markdown_pages)
        if out.markdown_pages:
            out.markdown = self.join_markdown(out.markdown_pages)
        return out

    def join_markdown(self, markdown_pages: list[dict[str, Any]]) -> str | None:
        """An engine that brings its own Markdown (`Document.markdown_pages`) joins its pages here."""
        return None


@functools.cache
def package_version(name: str) -> str:
    """An installed distribution's version, for `Engine.version`. Read once: the fingerprint is needed
    on every request, and each read of a package's metadata took 0.35 ms (holding the GIL)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def slot_threads(settings: Settings, cpus: int) -> int:
    """Threads one inference may use: OCR_ENGINE_THREADS, else the CPUs shared out between the
    OCR_CONCURRENCY documents that run at once, so parallel documents never oversubscribe the cores."""
    if settings.engine_threads:
        return settings.engine_threads
    return max(1, cpus // max(1, settings.concurrency))


class Slots(Generic[T]):
    """Independent copies of an engine's stateful parts, one per document that may run at once.

    A page borrows a copy for its run and gives it back, so documents in parallel never wait on
    one another's lock; the admission slots (OCR_CONCURRENCY) keep a borrower from waiting at all.
    Copies loaded after the first (`add`) join the pool when ready.
    """

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[T] = queue.SimpleQueue()
        self.count = 0

    def add(self, item: T) -> None:
        self.count += 1
        self._idle.put(item)

    @contextmanager
    def borrow(self) -> Iterator[T]:
        if not self.count:
            raise RuntimeError("engine used before load()")
        item = self._idle.get()
        try:
            yield item
        finally:
            self._idle.put(item)


# PageImage is a model type (function/model.py); the engines import it from here.
__all__ = ["Engine", "EngineLoadError", "PageImage", "Slots", "package_version", "slot_threads"]


class EngineLoadError(RuntimeError):
    """The engine cannot start: a missing package or model file. The message says which."""
