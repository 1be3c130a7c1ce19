"""Stored results: where a document's result lives, how it is written, and reading it back (the cache).

Results are content-addressed (`result_prefix`): the parts (Markdown, JSON, image crops, layout
pictures) are written first and a small `manifest.json` last, so only a complete result ever counts
as present — two pods racing on one document, or a write that fails half-way, never leave a result
that a later request would take for finished. A request whose manifest exists is answered from it
without OCR, unless it asks for `force`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from PIL import Image

from function.errors import NotFound
from function.store import ResultStore, content_type

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


# Hex digits of the document's SHA-256 in its result's key: 128 bits, so two documents never share a
# key by chance (48 bits did, at ~2^24 documents); a hit is also checked against the full hash.
KEY_HASH_DIGITS = 32


def result_prefix(filename: str, sha256: str, fingerprint: str, options: dict[str, str]) -> str:
    """`<name>-<sha256[:32]>/<engine fingerprint>[-<options hash>]`: readable, and unique per output."""
    stem = filename.rsplit(".", 1)[0] or "document"
    prefix = f"{stem}-{sha256[:KEY_HASH_DIGITS]}/{fingerprint}"
    if options:
        blob = json.dumps(options, sort_keys=True).encode()
        prefix += "-" + hashlib.sha256(blob).hexdigest()[:8]
    return prefix


@dataclass(frozen=True)
class Part:
    name: str  # markdown | json | the image's path relative to the Markdown | layout/page-<n>.png
    key: str  # store key
    data: bytes
    content_type: str

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "size": len(self.data),
            "content_type": self.content_type,
        }


@dataclass(frozen=True)
class Keys:
    """The store keys of one stored result's parts."""

    markdown: str
    json: str
    manifest: str
    images: dict[str, str] = field(default_factory=dict)  # path relative to the Markdown -> key
    layout: list[tuple[int, str]] = field(default_factory=list)  # (1-based page, key)

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Keys:
        return cls(
            markdown=manifest["parts"]["markdown"]["key"],
            json=manifest["parts"]["json"]["key"],
            manifest=f"{manifest['prefix']}/{MANIFEST}",
            images={path: part["key"] for path, part in (manifest.get("images") or {}).items()},
            layout=[(part["page"], part["key"]) for part in manifest.get("layout") or []],
        )


@dataclass(frozen=True)
class Stored:
    """A complete result as its manifest says, with its content when it was asked for."""

    manifest: dict[str, Any]
    content: dict[str, Any] | None = None  # {"markdown": str, "json": dict}

    @property
    def keys(self) -> Keys:
        return Keys.of(self.manifest)


def parts(prefix: str, markdown: str, as_json: dict[str, Any]) -> list[Part]:
    """The Markdown and the JSON, as bytes to store."""
    as_bytes = json.dumps(as_json, ensure_ascii=False).encode()
    return [
        Part("markdown", f"{prefix}/document.md", markdown.encode(), content_type("document.md")),
        Part("json", f"{prefix}/document.json", as_bytes, "application/json"),
    ]


def image_part(prefix: str, path: str, image: Image.Image) -> Part | None:
    """A crop the Markdown links to, in the format its path promises; None for a path that would
    leave the result's directory."""
    if not _relative_path(path):
        log.warning("skipping image %r: not a relative path under the result", path)
        return None
    return Part(path, f"{prefix}/{path}", _encode_image(path, image), content_type(path))


def layout_part(prefix: str, page: int, png: bytes) -> Part:
    """A page's layout picture (1-based `page`)."""
    return Part(f"layout/page-{page}.png", f"{prefix}/layout/page-{page}.png", png, "image/png")


def _relative_path(path: str) -> bool:
    segments = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in segments


def _encode_image(path: str, image: Image.Image) -> bytes:
    """The crop in the format its file name promises, so the Markdown link and content type agree."""
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def manifest(
    prefix: str,
    as_json: dict[str, Any],
    options: dict[str, str],
    stored: list[Part],
    images: dict[str, dict[str, Any]],
    layout: list[dict[str, Any]],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The manifest of a result: what was read with what, and every part with its checksum (the
    crops and layout pictures as described when their pages were stored)."""
    out = {
        "manifest_version": MANIFEST_VERSION,
        "prefix": prefix,
        "created": now(),
        "document": {**as_json["source"], "pages_processed": len(as_json["pages"])},
        "engine": as_json["engine"],
        "options": options,
        "timings": dict(timings),
        "parts": {p.name: p.describe() for p in stored},
        "images": dict(sorted(images.items())),
    }
    if layout:
        out["layout"] = sorted(layout, key=lambda part: part["page"])
    return out


def write(store: ResultStore, prefix: str, stored: list[Part], manifest: dict[str, Any]) -> None:
    for part in stored:
        store.put(part.key, part.data, part.content_type)
    # Last: its presence is what makes the result count (a failure above leaves none).
    store.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, ensure_ascii=False).encode(), "application/json")


def read(store: ResultStore, prefix: str, sha256: str, with_content: bool) -> Stored | None:
    """The stored result of the document whose hash is `sha256` (and its content, checked against
    its checksums), or None if absent, broken or another document's."""
    try:
        found = json.loads(store.get(f"{prefix}/{MANIFEST}"))
    except NotFound:
        return None
    except ValueError:
        log.warning("unreadable manifest under %s; running OCR again", prefix)
        return None
    if not isinstance(found, dict) or (found.get("document") or {}).get("sha256") != sha256:
        log.warning("the result under %s is another document's (hash mismatch); running OCR again", prefix)
        return None
    if not with_content:
        return Stored(found)
    try:
        markdown = _read_checked(store, found["parts"]["markdown"])
        as_json = json.loads(_read_checked(store, found["parts"]["json"]))
    except (NotFound, KeyError, ValueError) as exc:
        log.warning("stored result under %s is incomplete (%s); running OCR again", prefix, exc)
        return None
    return Stored(found, {"markdown": markdown.decode(), "json": as_json})


def _read_checked(store: ResultStore, part: dict[str, Any]) -> bytes:
    data = store.get(part["key"])
    if hashlib.sha256(data).hexdigest() != part["sha256"]:
        raise ValueError(f"checksum mismatch for {part['key']}")
    return data


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
