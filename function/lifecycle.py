"""The serving process's life: worker recycling, and a gunicorn worker that drains on SIGTERM.

Recycling: a long-lived worker's memory only grows (allocator fragmentation, an engine's caches), so
after `OCR_RECYCLE_AFTER_DOCS` documents or above `OCR_RECYCLE_RSS_MB` of resident memory the worker
asks to be replaced. It sends itself SIGTERM once the response that crossed the line has been sent:
gunicorn's worker then stops accepting, finishes the requests it holds, and exits; the arbiter forks
a fresh worker, which loads the engine again (the at-fork hook in handler.py) while readiness says
503. Only gunicorn replaces a worker that exits, so under any other server recycling is refused with
one warning.

Shutdown: SIGTERM to the gunicorn master closes its listening sockets and passes SIGTERM on to the
workers, which finish what they hold within `graceful_timeout` (`drain_seconds`). `DrainingWorker`
also closes the worker's own copies of the listening sockets at once, so a connection made after the
SIGTERM is refused straight away instead of waiting in the kernel's backlog until the drain ends and
then being reset.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from functools import partial
from typing import Any

from function import front
from function.config import Settings
from function.perprocess import PerProcess

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Answers that did no work on a document: no key, busy, or the engine not ready; they do not count.
NOT_PROCESSED = frozenset({401, 429, 503})
# What SIGTERM leaves to requests in flight when OCR_DRAIN_SEC is unset and there is no deadline.
DEFAULT_DRAIN_SEC = 630.0
DRAIN_MARGIN_SEC = 30.0
PROBE_THREADS = 2  # threads beyond admission's, for liveness and readiness probes and metrics


def drain_seconds(settings: Settings) -> float:
    """How long SIGTERM waits for requests in flight: OCR_DRAIN_SEC, else the per-document deadline
    plus a margin for reading the body and storing the results."""
    if settings.drain_sec is not None:
        return settings.drain_sec
    if settings.deadline_sec:
        return settings.deadline_sec + DRAIN_MARGIN_SEC
    return DEFAULT_DRAIN_SEC


def serving_threads(settings: Settings, configured: str | None = None) -> int:
    """Threads for the worker: enough for every document admission lets in or keeps waiting, plus
    room for probes, so that admission answers 429 instead of requests queueing unseen in the
    server (THREADS=4 with the defaults left 20 uploads waiting in gunicorn and liveness failing).
    A THREADS below that is kept, with a warning."""
    needed = settings.concurrency + settings.queue_size + PROBE_THREADS
    if configured is None or not configured.strip():
        return needed
    threads = int(configured)
    if threads < needed:
        log.warning(
            "THREADS=%d is below OCR_CONCURRENCY + OCR_QUEUE_SIZE + %d = %d: requests past it wait "
            "in the server, unseen by admission, and probes may wait behind them",
            threads,
            PROBE_THREADS,
            needed,
        )
    return threads


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The gunicorn settings `python -m function serve` adds to functions-framework's own (and the
    front's limits, which the worker inherits through the fork)."""
    front.configure(front.FrontLimits.of(settings))
    return {
        "graceful_timeout": math.ceil(drain_seconds(settings)),  # gunicorn takes whole seconds
        "worker_class": f"{__name__}.{DrainingWorker.__name__}",
    }


def is_gunicorn(environ: dict[str, Any]) -> bool:
    return str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")


class Recycler:
    """Counts the documents this worker process answered and watches its resident memory; when a
    watermark is crossed, the worker exits gracefully after the current response (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.after_docs = settings.recycle_after_docs
        self.rss_bytes = settings.recycle_rss_mb * MB
        self._lock = threading.Lock()
        self._worker: PerProcess[_Worker] = PerProcess(_Worker)  # a forked worker starts from zero
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.after_docs or self.rss_bytes)

    def after_document(self, response: Any, environ: dict[str, Any]) -> None:
        """Called after every OCR request with its response (a flask.Response) and WSGI environ."""
        if not self.enabled or response.status_code in NOT_PROCESSED:
            return
        reason = self._crossed()
        if reason is None:
            return
        if not is_gunicorn(environ):
            if not self._warned:
                self._warned = True
                log.warning(
                    "worker recycling is configured but the server is %r, not gunicorn: not recycling (%s)",
                    environ.get("SERVER_SOFTWARE", "unknown"),
                    reason,
                )
            return
        pid = os.getpid()
        log.info("recycling worker pid %d after this response: %s", pid, reason)
        # After the response has been written; gunicorn's worker then drains and exits, and the
        # arbiter forks a fresh one.
        response.call_on_close(partial(os.kill, pid, signal.SIGTERM))

    def _crossed(self) -> str | None:
        """Why this worker should go, the first time a watermark is crossed; else None."""
        with self._lock:
            worker = self._worker.get()
            worker.docs += 1
            if worker.armed:
                return None
            reason = None
            if self.after_docs and worker.docs >= self.after_docs:
                reason = f"{worker.docs} documents (OCR_RECYCLE_AFTER_DOCS={self.after_docs})"
            elif self.rss_bytes:
                rss = worker.rss()
                if rss >= self.rss_bytes:
                    reason = (
                        f"resident memory {rss / MB:.0f} MiB >= OCR_RECYCLE_RSS_MB={self.rss_bytes // MB} "
                        f"after {worker.docs} documents"
                    )
            worker.armed = reason is not None
            return reason


class _Worker:
    """What the recycler knows of this worker process."""

    def __init__(self) -> None:
        self.docs = 0
        self.armed = False  # this process has decided to go (once)
        self._process: Any = None

    def rss(self) -> int:
        import psutil

        if self._process is None:
            self._process = psutil.Process()
        return int(self._process.memory_info().rss)


class DrainingWorker(front.BufferingWorker):
    """gunicorn's gthread worker, behind the front that reads whole requests first (front.py), that,
    once told to stop, also closes its copies of the listening sockets: new connections are refused at
    once while the requests in flight finish."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive and not getattr(self, "_draining", False):
            self._draining = time.monotonic()
            for listener in self.sockets:
                listener.close()
            log.info(
                "worker pid %d stopping: new connections refused, draining %d connection(s) for up to %d s",
                os.getpid(),
                self.nr_conns,
                self.cfg.graceful_timeout,
                extra={"event": "drain", "connections": self.nr_conns},
            )

    def run(self) -> None:
        super().run()
        began = getattr(self, "_draining", None)
        seconds = time.monotonic() - began if began else 0.0
        log.info(
            "worker pid %d drained in %.1f s, %d connection(s) left; exiting",
            os.getpid(),
            seconds,
            self.nr_conns,
            extra={"event": "drained", "seconds": round(seconds, 3), "connections_left": self.nr_conns},
        )
