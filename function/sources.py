"""Where a document's bytes come from: upload, base64, URL, S3 object. Each yields a `Source` within
the size limit."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from function.config import Settings
from function.errors import BadRequest, NotFound, check_size, clip
from function.fetch import fetch
from function.s3 import S3

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_UNSAFE_NAME = re.compile(r"[^\w.+-]+")
# A stored result's directory is `<name>-<hash>` (function/results.py): under 255 bytes with room.
MAX_NAME_BYTES = 120


# How a document arrived, as answers name it (`input_type`; the contract lists them).
INPUT_TYPES = ("multipart", "base64", "url", "raw", "s3", "cloudevent")


@dataclass(frozen=True)
class Source:
    data: bytes
    filename: str
    input_type: str  # one of INPUT_TYPES (the CLI's own: "cli")


def safe_filename(name: str | None, default: str = "document") -> str:
    """A file name fit for an object key and a file system: the last path part, odd characters
    replaced, at most `MAX_NAME_BYTES` bytes of UTF-8 (file systems count bytes: 120 CJK characters
    are 360) cut on a character boundary, its extension kept."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME.sub("_", base).strip("._")
    stem, dot, ext = cleaned.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, dot, ext = cleaned, "", ""
    room = MAX_NAME_BYTES - len(dot + ext)
    stem = stem.encode()[:room].decode(errors="ignore").rstrip("._")
    return (stem + dot + ext) if stem else default


def from_bytes(data: bytes, filename: str | None, input_type: str, max_bytes: int) -> Source:
    check_size(len(data), max_bytes)
    if not data:
        raise BadRequest("the document is empty (0 bytes)")
    return Source(data=data, filename=safe_filename(filename), input_type=input_type)


def from_base64(text: str, filename: str | None, input_type: str, max_bytes: int) -> Source:
    encoded = _DATA_URL.sub("", text.strip())
    encoded = "".join(encoded.split())  # line breaks are common in pasted base64
    check_size(len(encoded) * 3 // 4, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'image_base64' is not valid base64") from None
    return from_bytes(data, filename, input_type, max_bytes)


def fetch_url(url: str, filename: str | None, settings: Settings) -> Source:
    """The document at `url`, fetched under the settings' SSRF, redirect, time and size limits
    (see function/fetch.py)."""
    fetched = fetch(
        url,
        max_bytes=settings.max_bytes,
        timeout=settings.url_fetch_timeout_sec,
        max_redirects=settings.url_max_redirects,
        allow_private=settings.url_allow_private,
    )
    name = filename or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return from_bytes(fetched.data, name, "url", settings.max_bytes)


def from_s3(
    s3: S3 | None,
    bucket: str,
    key: str,
    filename: str | None,
    input_type: str,
    max_bytes: int,
    allowed: tuple[str, ...],
    version: str | None = None,
) -> Source:
    """An object at the S3 result store's endpoint, in one of the `allowed` places ("bucket" or
    "bucket/prefix", OCR_INPUT_BUCKETS); `s3` is None when the result store is not in S3. An object
    outside them, a forbidden one and a missing one get the same 404, so a caller learns nothing of
    what else the function's credentials could reach."""
    if s3 is None:
        raise BadRequest(
            f"reading s3://{bucket}/{key} needs an S3 result store (OCR_STORE=s3://bucket/prefix); "
            "this function uses 'local'"
        )
    unreadable = NotFound(
        f"s3://{bucket}/{clip(key)}: no such object, or not in a place this function reads "
        "documents from (OCR_INPUT_BUCKETS)"
    )
    if not _allowed(bucket, key, allowed):
        raise unreadable
    try:
        data = s3.read(bucket, key, max_bytes, version)
    except NotFound:
        raise unreadable from None
    return from_bytes(data, filename or key.rsplit("/", 1)[-1], input_type, max_bytes)


def _allowed(bucket: str, key: str, places: tuple[str, ...]) -> bool:
    for place in places:
        allowed_bucket, _, prefix = place.partition("/")
        if bucket == allowed_bucket and key.startswith(prefix.rstrip("/") + "/" if prefix else ""):
            return True
    return False
