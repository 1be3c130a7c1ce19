"""W3C Trace Context: the `traceparent` of a request or event, carried into logs and reply events.

No tracer runs here; the function only keeps the caller's trace id and names its own span, so log
lines and the reply event can be joined with the trace the caller (or the broker) started.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

# version-traceid-parentid-flags; all-zero ids are invalid (https://www.w3.org/TR/trace-context/).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class Trace:
    trace_id: str
    span_id: str  # this request's span: the parent of anything it sends on
    parent_id: str | None  # the caller's span, if there was one
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def from_header(value: str | None) -> Trace:
    """A child span of the incoming `traceparent`, or a new trace when it is absent or malformed."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    if match and match[1] != "ff" and set(match[2]) != {"0"} and set(match[3]) != {"0"}:
        return Trace(trace_id=match[2], span_id=secrets.token_hex(8), parent_id=match[3], flags=match[4])
    return Trace(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8), parent_id=None)
