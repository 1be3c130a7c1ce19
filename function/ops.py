"""The routes an operator and the platform use, beside OCR: health, readiness, the result store's
probe, the local store's files, and the metrics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import flask

from function import metrics
from function.errors import BadRequest, NotFound, OCRError, UpstreamFailed, clip
from function.runtime import Runtime
from function.store import LocalStore, ResultStore, content_type

LIST_LIMIT = 1000  # result keys in one page of `GET /files`


class Ops:
    def __init__(self, runtime: Runtime, store: ResultStore) -> None:
        self.runtime = runtime
        self.store = store

    def health(self) -> flask.Response:
        rt = self.runtime
        body: dict[str, Any] = {
            "status": "ok",
            "engine": rt.engine.name if rt.engine else rt.settings.engine,  # the one built
            "fingerprint": rt.engine.fingerprint if rt.engine else None,
            "ready": rt.ready,
            "reason": None if rt.ready else rt.not_ready_reason(),
            "model_load_sec": rt.load_seconds,
            "uptime_sec": rt.uptime(),
            "store": self.store.kind,
            "pid": os.getpid(),
        }
        return flask.jsonify(body)

    def ready(self) -> flask.Response:
        rt = self.runtime
        reason = None if rt.ready else rt.not_ready_reason()
        if reason is None:
            try:
                self.store.check()
            except Exception as exc:
                reason = f"result store unusable: {exc}"
        if reason is None:
            return flask.jsonify({"status": "ready", "engine": rt.engine.fingerprint if rt.engine else None})
        response = flask.jsonify({"status": "not_ready", "reason": reason})
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    def probe_store(self) -> flask.Response:
        """Write, read back and delete a probe object; 502 naming the step that failed."""
        store = self.store
        key = f".probe/{uuid.uuid4().hex}.txt"
        payload = f"ocr-function probe {key}".encode()
        steps: dict[str, str] = {}
        for step, action in (
            ("put", lambda: store.put(key, payload, "text/plain")),
            ("get", lambda: _expect(store.get(key), payload)),
            ("delete", lambda: store.delete(key)),
        ):
            try:
                action()
            except OCRError as exc:
                message = f"store probe failed at {step} of {store.uri(key)}: {exc.message}"
                raise UpstreamFailed(message) from exc
            steps[step] = "ok"
        return flask.jsonify({"status": "ok", "store": store.kind, "uri": store.uri(key), "steps": steps})

    def files(self, key: str, args: Mapping[str, str], base_url: str) -> flask.Response:
        """One stored result file (served from the local store; a redirect to its presigned URL in
        S3), or with no key a page of the stored files' keys: `?limit=` (at most LIST_LIMIT) after
        `?after=`, and the next page's link. Listing is off while OCR_API_KEYS is set: every key
        would list every caller's results; each answer's own URLs still reach them."""
        store = self.store
        if key:
            if isinstance(store, LocalStore):
                return flask.Response(store.get(key), content_type=content_type(key))
            if not store.exists(key):
                raise NotFound(f"no result at {clip(key)!r}")
            return flask.Response(status=302, headers={"Location": store.url(key, base_url)})
        if self.runtime.settings.api_keys:
            raise NotFound(
                "listing results is off while OCR_API_KEYS is set (it would show every caller's "
                "results); the URLs in each answer reach its own"
            )
        limit = _limit(args.get("limit"))
        after = args.get("after", "")
        keys = store.page(after, limit + 1)
        body: dict[str, Any] = {"files": keys[:limit], "next": None}
        if len(keys) > limit:
            body["next"] = "/files?" + urlencode({"after": keys[limit - 1], "limit": limit})
        return flask.jsonify(body)

    @staticmethod
    def metrics() -> flask.Response:
        body, ctype = metrics.exposition()
        return flask.Response(body, content_type=ctype)


def _limit(raw: str | None) -> int:
    if raw is None:
        return LIST_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_LIMIT:
        raise BadRequest(f"'limit' must be a whole number from 1 to {LIST_LIMIT}, got {clip(raw)!r}")
    return int(raw)


def _expect(got: bytes, want: bytes) -> None:
    if got != want:
        raise UpstreamFailed(f"read back {len(got)} bytes that differ from the {len(want)} written")
