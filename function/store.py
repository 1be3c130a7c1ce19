"""Result stores: where Markdown, JSON and images land, and the URLs that reach them.

`LocalStore` (a directory, the embedded default) is served by this function's `GET /files/...`.
Keys are deterministic per (content hash, engine fingerprint, output-changing options).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import quote, urlsplit

from function.errors import BadRequest, ConfigError, NotFound


def result_prefix(filename: str, sha256: str, fingerprint: str, options: dict[str, str]) -> str:
    """`<name>-<sha12>/<engine fingerprint>[-<options hash>]`: readable, and unique per output."""
    stem = filename.rsplit(".", 1)[0] or "document"
    prefix = f"{stem}-{sha256[:12]}/{fingerprint}"
    if options:
        blob = json.dumps(options, sort_keys=True).encode()
        prefix += "-" + hashlib.sha256(blob).hexdigest()[:8]
    return prefix


def content_type(key: str) -> str:
    if key.endswith(".md"):
        return "text/markdown; charset=utf-8"
    if key.endswith(".json"):
        return "application/json"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class ResultStore(ABC):
    kind: str

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def url(self, key: str, base_url: str) -> str:
        """A URL a client can GET; `base_url` is this function's own address."""

    def check(self) -> None:  # noqa: B027 - optional for a store that cannot fail
        """Raise if the store cannot be used (readiness)."""


class LocalStore(ResultStore):
    kind = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file for `key`, refusing anything that would leave the root (path traversal)."""
        if not key or key.startswith("/") or "\\" in key or "\x00" in key:
            raise BadRequest(f"invalid result path {key!r}")
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise BadRequest(f"invalid result path {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half a file, even if this process dies mid-write.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"no result at {key!r}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(".tmp-"))

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/files/{quote(key)}"

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"result directory {self.root} is not writable")


def create_store(spec: str) -> ResultStore:
    """`file://dir` (relative to the working directory, or absolute) or `s3://bucket/prefix`."""
    if spec.startswith("file://"):
        raw = spec[len("file://") :]
        return LocalStore(raw or ".")
    if spec.startswith("s3://"):
        bucket = urlsplit(spec).netloc
        raise ConfigError(f"OCR_STORE={spec!r}: the S3 store (bucket {bucket!r}) is not built yet")
    raise ConfigError(f"OCR_STORE must start with file:// or s3://, got {spec!r}")
