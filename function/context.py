"""What the transport knows of one request while it is answered: its id, its trace, and what the
one log line and the metrics will say about it. Passed along explicitly (no `flask.g`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from function.service import Result
from function.tracing import Trace


@dataclass
class RequestContext:
    request_id: str
    trace: Trace
    ocr: bool = False  # POST / or /ocr: a document or an event, counted and logged as one
    outcome: str = "unknown"  # success, cached, skipped, failed, or an error code
    log: dict[str, Any] = field(default_factory=dict)  # fields of the request's log line
    # Whether the client has closed its connection (the server's socket says; never, elsewhere).
    client_gone: Callable[[], bool] = lambda: False

    def record(self, result: Result, input_type: str) -> None:
        """One document answered: its outcome and what the log line says of it."""
        self.outcome = "cached" if result.cached else "success"
        self.log.update(
            input_type=input_type,
            pages=result.pages,
            engine=result.engine["name"],
            cached=result.cached,
            stages=result.timings,
        )
