"""The routes an operator and the platform use, beside OCR: health, readiness, the result store's
probe, the local store's files, and the metrics."""

from __future__ import annotations

import os
import uuid
from typing import Any

import flask

from function import metrics
from function.errors import NotFound, OCRError, UpstreamFailed
from function.runtime import Runtime
from function.store import LocalStore, ResultStore, content_type


class Ops:
    def __init__(self, runtime: Runtime, store: ResultStore) -> None:
        self.runtime = runtime
        self.store = store

    def health(self) -> flask.Response:
        rt = self.runtime
        body: dict[str, Any] = {
            "status": "ok",
            "engine": rt.settings.engine,
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

    def files(self, key: str) -> flask.Response:
        store = self.store
        if not isinstance(store, LocalStore):
            raise NotFound("/files serves the local result store only; results are in " + store.kind)
        if not key:
            return flask.jsonify({"files": store.list()})
        return flask.Response(store.get(key), mimetype=content_type(key))

    @staticmethod
    def metrics() -> flask.Response:
        body, ctype = metrics.exposition()
        return flask.Response(body, content_type=ctype)


def _expect(got: bytes, want: bytes) -> None:
    if got != want:
        raise UpstreamFailed(f"read back {len(got)} bytes that differ from the {len(want)} written")
