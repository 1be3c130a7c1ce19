"""A value of this process: built on first use, and built again in a forked child.

gunicorn forks its workers after the app is imported, and what the parent built does not carry over
as it was: its threads are gone, a client's sockets would be shared with the parent, its counters
are the parent's. Whatever holds such a value asks `PerProcess.get()` instead of comparing PIDs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._value: T | None = None

    def get(self) -> T:
        """This process's value; the first call in a process builds it (once, whatever the threads)."""
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._value = self._build()
                    self._pid = pid
        return self._value  # type: ignore[return-value]  # built above, in this process

    @property
    def built_elsewhere(self) -> bool:
        """Built, but in another process (the parent of this fork)."""
        return self._pid is not None and self._pid != os.getpid()
