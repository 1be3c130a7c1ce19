"""The serving process's state: settings, store, and the engine loaded once per process.

functions-framework imports the handler in the gunicorn *parent* and forks workers from it, so a
model loaded at import would live in the wrong process (fatal for CUDA). The load therefore starts
in a background thread of the process that serves: right after the fork (an at-fork hook), or on
the first request where nothing forks. Readiness is 503 until it has finished.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from function.config import Settings
from function.engines import ENGINES, Engine, create_engine
from function.errors import ConfigError, NotReady
from function.store import ResultStore, create_store

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        if settings.engine not in ENGINES:
            raise ConfigError(
                f"OCR_ENGINE={settings.engine!r} is not an engine; known: {', '.join(sorted(ENGINES))}"
            )
        self.settings = settings
        self.store: ResultStore = create_store(settings.store, settings)
        self.started_at = time.time()
        self._pid: int | None = None
        self._reset()

    def _reset(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._ready = threading.Event()
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Begin loading the engine in this process, once (idempotent, cheap to call per request)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # a forked child: nothing of the parent's load applies
                self._reset()
            self._pid = os.getpid()
            threading.Thread(target=self._load, name="engine-load", daemon=True).start()

    def _load(self) -> None:
        began = time.monotonic()
        log.info("loading engine %s in pid %s", self.settings.engine, os.getpid())
        try:
            engine = create_engine(self.settings.engine, self.settings)
            engine.load()
        except Exception as exc:  # the reason is served by readiness; never fall back silently
            self.error = f"engine {self.settings.engine!r} failed to load: {exc}"
            log.error("%s", self.error, exc_info=not isinstance(exc, (ImportError, RuntimeError)))
            return
        self.engine = engine
        self.load_seconds = round(time.monotonic() - began, 3)
        self._ready.set()
        log.info("engine %s ready in %.2fs (%s)", engine.name, self.load_seconds, engine.fingerprint)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def not_ready_reason(self) -> str:
        return self.error or f"engine {self.settings.engine!r} is still loading"

    def wait_engine(self, timeout: float | None = None) -> Engine:
        """The loaded engine; an early request waits up to OCR_READY_WAIT_SEC, then gets 503."""
        self.start()
        wait = self.settings.ready_wait_sec if timeout is None else timeout
        if self.error is None and self._ready.wait(wait) and self.engine is not None:
            return self.engine
        raise NotReady(self.not_ready_reason(), retry_after=30 if self.error else 5)

    def uptime(self) -> float:
        return round(time.time() - self.started_at, 3)
