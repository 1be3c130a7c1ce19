"""Result stores: where Markdown, JSON and images land, and the URLs that reach them.

`LocalStore` (a directory, the embedded default) is served by this function's `GET /files/...`;
`S3Store` writes to any S3-compatible endpoint and hands out presigned (or public) URLs.
Keys are chosen by function/results.py.
"""

from __future__ import annotations

import errno
import logging
import mimetypes
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from function.config import Settings
from function.errors import BadRequest, ConfigError, InsufficientStorage, NotFound
from function.s3 import S3, s3_errors

log = logging.getLogger(__name__)
# Readiness fails below this much free space in the local store (a result is a few hundred KB).
MIN_FREE_BYTES = 16 * 1024 * 1024
# User metadata on every object we write, so storage events for our own results can be recognised.
OUTPUT_MARKER = ("ocr-output", "1")


def content_type(key: str) -> str:
    if key.endswith(".md"):
        return "text/markdown; charset=utf-8"
    if key.endswith(".json"):
        return "application/json"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class ResultStore(ABC):
    kind: str
    s3: S3 | None = None  # an S3 store's endpoint, where `s3_uri` documents are read too

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def page(self, after: str, limit: int) -> list[str]:
        """At most `limit` stored keys that come after `after` in the store's order (a page)."""

    @abstractmethod
    def listing(self, prefix: str) -> list[str]:
        """Every stored key under `prefix/` (a result's directory), sorted."""

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def url(self, key: str, base_url: str) -> str:
        """A URL a client can GET; `base_url` is this function's own address."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def check(self) -> None:  # noqa: B027 - optional for a store that cannot fail
        """Raise if the store cannot be used (readiness)."""

    def is_output(self, bucket: str | None, key: str) -> bool:
        """Whether an object named by a storage event is one this store wrote (or would write)."""
        return False


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
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    f"the result directory has no room left for {key!r}; retry once space is freed",
                    retry_after=30,
                ) from exc
            raise

    def get(self, key: str) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"no result at {key!r}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def page(self, after: str, limit: int) -> list[str]:
        """Keys in the order of a walk that visits each directory's entries by name, so a page needs
        no listing of the whole tree: directories wholly before `after` are not entered."""
        cursor = tuple(after.split("/")) if after else ()
        keys: list[str] = []

        def walk(directory: Path, parts: tuple[str, ...]) -> None:
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                if len(keys) >= limit:
                    return
                here = (*parts, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    if here >= cursor[: len(here)]:  # the cursor is inside it, or it comes later
                        walk(Path(entry.path), here)
                elif here > cursor and not entry.name.startswith(".tmp-") and entry.is_file():
                    keys.append("/".join(here))

        walk(self.root, ())
        return keys

    def listing(self, prefix: str) -> list[str]:
        top = self.path(prefix)
        if not top.is_dir():
            return []
        found = (p for p in top.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
        return sorted(p.relative_to(self.root).as_posix() for p in found)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/files/{quote(key)}"

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"result directory {self.root} is not writable")
        free = shutil.disk_usage(self.root).free
        if free < MIN_FREE_BYTES:
            raise OSError(f"result directory {self.root} is full: {free // 1024} KiB free")


class S3Store(ResultStore):
    """Results under `s3://bucket/prefix/`; its endpoint also serves input objects (any bucket)."""

    kind = "s3"
    s3: S3
    CHECK_TTL_SEC = 15.0  # readiness probes come every few seconds; one HEAD per window is enough

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.s3 = S3(settings)
        self._checked_at = 0.0

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def client(self) -> Any:
        return self.s3.client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with s3_errors(f"writing s3://{self.bucket}/{self.key(key)}", writing=True):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(key),
                Body=data,
                ContentType=content_type,
                Metadata=dict([OUTPUT_MARKER]),
            )

    def get(self, key: str) -> bytes:
        return self.s3.read(self.bucket, self.key(key), max_bytes=None)

    def exists(self, key: str) -> bool:
        try:
            with s3_errors(f"checking s3://{self.bucket}/{self.key(key)}"):
                self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with s3_errors(f"deleting s3://{self.bucket}/{self.key(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def page(self, after: str, limit: int) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        params: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": limit}
        if self.prefix:
            params["Prefix"] = self.prefix + "/"
        if after:
            params["StartAfter"] = self.key(after)
        with s3_errors(f"listing s3://{self.bucket}/{self.prefix}"):
            found = self.client.list_objects_v2(**params)
        return [obj["Key"][strip:] for obj in found.get("Contents", [])]

    def listing(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key(prefix.strip("/")) + "/"
        )
        # The store's own bucket missing is a broken deployment (502, retried), never "no keys".
        with s3_errors(f"listing s3://{self.bucket}/{self.key(prefix)}", writing=True):
            return sorted(obj["Key"][strip:] for page in pages for obj in page.get("Contents", []))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def url(self, key: str, base_url: str) -> str:
        public = self.settings.public_base_url
        if public:
            return f"{public.rstrip('/')}/{quote(self.key(key))}"
        with s3_errors("presigning a result URL"):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(key)},
                ExpiresIn=self.settings.url_expires_sec,
            )

    def check(self) -> None:
        if time.monotonic() - self._checked_at < self.CHECK_TTL_SEC:
            return
        with s3_errors(f"reaching bucket {self.bucket!r}"):
            self.client.head_bucket(Bucket=self.bucket)
        self._checked_at = time.monotonic()

    def is_output(self, bucket: str | None, key: str) -> bool:
        if bucket is not None and bucket != self.bucket:
            return False
        return not self.prefix or key == self.prefix or key.startswith(self.prefix + "/")


def create_store(spec: str, settings: Settings | None = None) -> ResultStore:
    """`file://dir` (relative to the working directory, or absolute) or `s3://bucket/prefix`."""
    if spec.startswith("file://"):
        raw = spec[len("file://") :]
        return LocalStore(raw or ".")
    if spec.startswith("s3://"):
        parts = urlsplit(spec)
        return S3Store(parts.netloc, parts.path, settings or Settings(store=spec))
    raise ConfigError(f"OCR_STORE must start with file:// or s3://, got {spec!r}")
