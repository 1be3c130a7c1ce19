"""The serving process's state: settings, store, and the engine loaded once per process.

functions-framework imports the handler in the gunicorn *parent* and forks workers from it, so a
model loaded at import would live in the wrong process (fatal for CUDA). The load therefore starts
in a background thread of the process that serves: right after the fork (an at-fork hook), or on
the first request where nothing forks. Readiness is 503 until it has finished.

The cold start is logged once it is over (`startup`: seconds from the process's start to the handler
imported, to the load beginning in the serving process, the engine's import, its models, its warm-up
and the total), and kept in `Runtime.startup`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from function import metrics
from function.config import Settings
from function.engines import ENGINES, Engine, create_engine
from function.errors import ConfigError, NotReady
from function.perprocess import PerProcess
from function.store import ResultStore, create_store

log = logging.getLogger(__name__)


class Runtime:
    """`engine` and `store` replace the ones the settings name (tests: a fake engine, a given store)."""

    def __init__(
        self, settings: Settings, engine: Engine | None = None, store: ResultStore | None = None
    ) -> None:
        if engine is None and settings.engine not in ENGINES:
            raise ConfigError(
                f"OCR_ENGINE={settings.engine!r} is not an engine; known: {', '.join(sorted(ENGINES))}"
            )
        self.settings = settings
        self.store: ResultStore = store or create_store(settings.store, settings)
        self._given = engine
        self.started_at = time.time()  # the handler is imported (this object is built at its import)
        self._created_in = os.getpid()
        self._loading: PerProcess[None] = PerProcess(self._begin_loading)
        self._reset()

    def _reset(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.startup: dict[str, float] = {}
        self._ready = threading.Event()
        metrics.ENGINE_READY.set(0)
        metrics.ENGINE_LOAD_SECONDS.set(0)

    def start(self) -> None:
        """Begin loading the engine in this process, once (idempotent, cheap to call per request)."""
        self._loading.get()

    def _begin_loading(self) -> None:
        if self._loading.built_elsewhere:  # a forked child: nothing of the parent's load applies
            self._reset()
        threading.Thread(target=self._load, name="engine-load", daemon=True).start()

    def _load(self) -> None:
        began = time.monotonic()
        load_began = time.time()
        log.info("loading engine %s in pid %s", self.settings.engine, os.getpid())
        try:
            engine = self._given or create_engine(self.settings.engine, self.settings)
            imported = time.monotonic() - began
            if not engine.ready:
                engine.load()
        except Exception as exc:  # the reason is served by readiness; never fall back silently
            self.error = f"engine {self.settings.engine!r} failed to load: {exc}"
            log.error("%s", self.error, exc_info=not isinstance(exc, (ImportError, RuntimeError)))
            return
        self.engine = engine
        self.load_seconds = round(time.monotonic() - began, 3)
        self._ready.set()
        metrics.ENGINE_READY.set(1)
        metrics.ENGINE_LOAD_SECONDS.set(self.load_seconds)
        log.info("engine %s ready in %.2fs (%s)", engine.name, self.load_seconds, engine.fingerprint)
        self._log_startup(load_began, imported, engine)

    def _log_startup(self, load_began: float, engine_import: float, engine: Engine) -> None:
        """Where the cold start went, from the start of the process that was launched (the gunicorn
        parent, when this worker was forked from it) to ready. A worker forked later (one replacing a
        recycled worker) is timed from its own fork: the parent's import is long past."""
        launched = _process_start(self._created_in)
        forked = _process_start(os.getpid()) if os.getpid() != self._created_in else None
        if forked is not None and forked - self.started_at > REFORK_AFTER_SEC:
            launched, imported_at = forked, forked
        else:
            imported_at = self.started_at
        ready = time.time()
        steps = {
            "import": self.started_at - launched if launched and imported_at == self.started_at else None,
            "to_load": load_began - imported_at,
            "engine_import": engine_import,
            **{k: engine.load_timings.get(k) for k in ("models", "warm_up")},
            "load": self.load_seconds,
            "total": ready - launched if launched else None,
        }
        self.startup = {k: round(v, 3) for k, v in steps.items() if v is not None}
        text = " ".join(f"{k}={v:.3f}" for k, v in self.startup.items())
        log.info("startup %s", text, extra={"event": "startup", "startup": self.startup})

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


# The first worker is forked right after the import; one forked later than this replaces another.
REFORK_AFTER_SEC = 2.0


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds, to the kernel's 10 ms tick; Linux), or None.

    From /proc: the process's start in ticks since boot against the uptime now (psutil's
    create_time rounds the boot time to whole seconds)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
