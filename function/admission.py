"""Backpressure: at most `concurrency` documents at once in this process, a bounded number waiting
for a slot, and 429 with Retry-After for the rest — a full pod says so instead of queueing forever
(Knative's activator and a broker both retry a 429)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from function import metrics
from function.errors import Busy

RETRY_AFTER_SEC = 5


class Admission:
    def __init__(self, slots: int, queue_size: int, wait_sec: float) -> None:
        self.slots = slots
        self.queue_size = queue_size
        self.wait_sec = wait_sec
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Hold a slot for the block; yields whether it had to wait for one."""
        waited = not self._free.acquire(blocking=False)
        if waited:
            self._wait()
        try:
            yield waited
        finally:
            self._free.release()

    def _wait(self) -> None:
        with self._lock:
            if self._waiting >= self.queue_size:
                raise Busy(
                    self._busy(f"{self._waiting} more are waiting (OCR_QUEUE_SIZE)"),
                    retry_after=RETRY_AFTER_SEC,
                )
            self._waiting += 1
            metrics.QUEUED.inc()
        try:
            acquired = self._free.acquire(timeout=self.wait_sec)
        finally:
            with self._lock:
                self._waiting -= 1
                metrics.QUEUED.dec()
        if not acquired:
            raise Busy(
                self._busy(f"no slot freed within {self.wait_sec:g}s (OCR_QUEUE_WAIT_SEC)"),
                retry_after=RETRY_AFTER_SEC,
            )

    def _busy(self, why: str) -> str:
        in_progress = f"{self.slots} document(s) in progress (OCR_CONCURRENCY)"
        return f"the function is busy: {in_progress} and {why}; retry later"
