"""The error vocabulary shared by every room: each error knows its HTTP status and code."""

from __future__ import annotations


class OCRError(Exception):
    """An error a client can act on. `message` is shown to the client as it is."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True where the same request may succeed later (events: let the broker retry)."""
        return self.status in (429, 503) or self.status >= 500


class BadRequest(OCRError):
    status, code = 400, "bad_request"


class Unauthorized(OCRError):
    status, code = 401, "unauthorized"


class NotFound(OCRError):
    status, code = 404, "not_found"


class MethodNotAllowed(OCRError):
    status, code = 405, "method_not_allowed"


class TooLarge(OCRError):
    status, code = 413, "too_large"


class UnsupportedType(OCRError):
    status, code = 415, "unsupported_media_type"


class Undecodable(OCRError):
    status, code = 422, "undecodable_document"


class Busy(OCRError):
    status, code = 429, "busy"


class UpstreamFailed(OCRError):
    status, code = 502, "upstream_failed"


class InsufficientStorage(OCRError):
    """The result store has no room (a full disk): retryable, and readiness says so meanwhile."""

    status, code = 507, "insufficient_storage"


class NotReady(OCRError):
    status, code = 503, "not_ready"


class DeadlineExceeded(OCRError):
    status, code = 504, "deadline_exceeded"


# Every error a client may see, one class per status (the contract documents each: function/openapi.py).
ERRORS: tuple[type[OCRError], ...] = (
    OCRError,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    TooLarge,
    UnsupportedType,
    Undecodable,
    Busy,
    UpstreamFailed,
    InsufficientStorage,
    NotReady,
    DeadlineExceeded,
)


ECHO_LIMIT = 256  # at most this many characters of any caller's value in a message, header or log


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """A caller's value as text short enough to echo, cut with an ellipsis: a 5 MB attribute, key or
    header never comes back whole in an answer or a log line."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigError(Exception):
    """Invalid configuration, raised at start-up; the message names the variable."""


def check_size(size: int, max_bytes: int) -> None:
    """413 for a document over OCR_MAX_BYTES (wherever its bytes come from)."""
    if size > max_bytes:
        raise TooLarge(f"the document is {size} bytes, the limit is {max_bytes} (OCR_MAX_BYTES)")
