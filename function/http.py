"""HTTP transport: routes by method and path, turns a request into a Job, errors into JSON.

No OCR here: the service does the work, this module only speaks HTTP.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from function import auth, events, logs, metrics, openapi, service, tracing
from function.admission import Admission
from function.errors import BadRequest, MethodNotAllowed, NotFound, OCRError, TooLarge, UpstreamFailed
from function.lifecycle import Recycler
from function.options import Options
from function.responses import error_body, success_body
from function.runtime import Runtime
from function.s3 import parse_uri
from function.sources import Source, fetch_url, from_base64, from_bytes, from_s3
from function.store import LocalStore, content_type

log = logging.getLogger(__name__)

DOCUMENT_FIELDS = ("file", "image_base64", "image_url", "s3_uri")
RAW_TYPES = ("image/", "application/pdf", "application/octet-stream")
MULTIPART_OVERHEAD = 1024 * 1024
NO_DOCUMENT_BODY = 64 * 1024  # the most any route but POST / and /ocr reads
TRY_PAGE = Path(__file__).parent / "static" / "index.html"


class HttpApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.admission = Admission(settings.concurrency, settings.queue_size, settings.queue_wait_sec)
        self.recycler = Recycler(settings)
        self.service = service.Service(settings, runtime.wait_engine, runtime.store, self.admission.slot)
        metrics.ENGINE_LOAD_SECONDS.set_function(lambda: runtime.load_seconds or 0.0)
        metrics.ENGINE_READY.set_function(lambda: 1.0 if runtime.ready else 0.0)

    def dispatch(self, request: flask.Request) -> flask.Response:
        began = time.perf_counter()
        request_id = _request_id(request.headers.get("X-Request-Id"))
        flask.g.trace = tracing.from_header(request.headers.get("traceparent"))
        flask.g.ocr_request = request.method == "POST" and request.path.strip("/") in ("", "ocr")
        request.max_content_length = NO_DOCUMENT_BODY  # routes without a document; _ocr raises it
        self.runtime.start()
        with logs.context(request_id=request_id, trace_id=flask.g.trace.trace_id):
            response = _unbuffered(self._answer(request, request_id))
            response.headers["X-Request-Id"] = request_id
            if flask.g.get("ocr_request"):
                response.headers["traceparent"] = flask.g.trace.traceparent
                self._account(request, response, time.perf_counter() - began)
                self.recycler.after_document(response, request.environ)
        return response

    def _answer(self, request: flask.Request, request_id: str) -> flask.Response:
        try:
            auth.check(
                self.runtime.settings,
                request.method,
                "/" + request.path.strip("/"),
                request.headers.get("Authorization"),
                request.headers.get("X-API-Key"),
            )
            return self._route(request, request_id)
        except OCRError as exc:
            flask.g.ocr_outcome = exc.code
            return error_response(exc, request_id)
        except RequestEntityTooLarge:
            flask.g.ocr_outcome = TooLarge.code
            return error_response(TooLarge(self._too_large_message()), request_id)
        except Exception:  # a bug: logged with its traceback, never shown to the client
            log.exception("request %s failed", request_id)
            flask.g.ocr_outcome = OCRError.code
            return error_response(OCRError("internal error; see the function's logs"), request_id)

    def _account(self, request: flask.Request, response: flask.Response, seconds: float) -> None:
        """Metrics and the one log line of an OCR request or event."""
        outcome = flask.g.get("ocr_outcome", "unknown")
        metrics.REQUESTS.labels(outcome=outcome).inc()
        metrics.REQUEST_SECONDS.labels(outcome=outcome).observe(seconds)
        fields = {
            "event": "request",
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "outcome": outcome,
            "seconds": round(seconds, 3),
            **flask.g.get("ocr_log", {}),
        }
        level = logging.ERROR if response.status_code >= 500 and outcome != "not_ready" else logging.INFO
        log.log(
            level, "%s %s -> %s %s", request.method, request.path, response.status_code, outcome, extra=fields
        )

    def _route(self, request: flask.Request, request_id: str) -> flask.Response:
        path = "/" + request.path.strip("/")
        method = request.method
        if path in ("/", "/ocr"):
            if method == "POST":
                with metrics.IN_FLIGHT.track_inprogress():
                    return self._ocr(request, request_id)
            if method == "HEAD":  # endpoint probes (MinIO checks its webhook target this way)
                return flask.Response(status=200)
            if method == "GET" and path == "/" and self.runtime.settings.try_page:
                return flask.Response(TRY_PAGE.read_bytes(), mimetype="text/html")
            raise MethodNotAllowed(f"{path} takes POST with a document; see GET /health for status")
        if path == "/test/s3-upload":
            if method != "POST":
                raise MethodNotAllowed("/test/s3-upload takes POST")
            return self._probe_store()
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        if path == "/health":
            return flask.jsonify(self._health())
        if path == "/health/live":
            return flask.jsonify({"status": "alive"})
        if path == "/health/ready":
            return self._ready()
        if path == "/openapi.json":
            return flask.jsonify(openapi.spec())
        if path == "/metrics":
            body, ctype = metrics.exposition()
            return flask.Response(body, content_type=ctype)
        if path == "/files" or path.startswith("/files/"):
            return self._files(path[len("/files/") :] if path != "/files" else "")
        raise NotFound(f"no route {method} {path}")

    # --- OCR -------------------------------------------------------------------------------------

    def _ocr(self, request: flask.Request, request_id: str) -> flask.Response:
        settings = self.runtime.settings
        # Room for base64 and form framing; a base64 form field may be as large (Werkzeug's default
        # for non-file form fields is 500 kB).
        request.max_content_length = settings.max_bytes * 4 // 3 + MULTIPART_OVERHEAD
        request.max_form_memory_size = request.max_content_length
        if request.content_length and request.content_length > request.max_content_length:
            raise TooLarge(self._too_large_message())
        if events.is_cloudevent(request.headers, request.mimetype):
            incoming = events.read_cloudevent(request.headers, request.get_data(), request.mimetype)
            return self._event(incoming, request, request_id)
        if request.mimetype == "application/json":
            body = _json_body(request)
            if events.is_storage_webhook(body):
                return self._event(events.read_webhook(body), request, request_id)
        source, fields = self._read_document(request)
        options = Options.parse({**request.args.to_dict(), **fields})
        result = self._run(source, options, request, request_id)
        return flask.jsonify(result)

    def _run(
        self, source: Source, options: Options, request: flask.Request, request_id: str
    ) -> dict[str, Any]:
        settings = self.runtime.settings
        deadline = time.monotonic() + settings.deadline_sec if settings.deadline_sec else None
        job = service.Job(source=source, options=options, request_id=request_id, deadline=deadline)
        flask.g.setdefault("ocr_log", {})["input_type"] = source.input_type
        base_url = settings.public_base_url or request.host_url
        result = self.service.run(job)
        flask.g.ocr_outcome = "cached" if result.cached else "success"
        flask.g.ocr_log.update(
            pages=result.pages, engine=result.engine["name"], cached=result.cached, stages=result.timings
        )
        return success_body(result, request_id, source.input_type, self.runtime.store, base_url)

    # --- events ------------------------------------------------------------------------------------

    def _event(self, incoming: events.Incoming, request: flask.Request, request_id: str) -> flask.Response:
        """Skip (202, no reply), or process and reply with a CloudEvent. Transient errors propagate
        as 5xx/429 so the broker retries; permanent ones become an `ocr.document.failed` reply."""
        # The event's own trace (CloudEvents distributed-tracing extension) wins over the HTTP hop's.
        if incoming.extension("traceparent"):
            flask.g.trace = tracing.from_header(incoming.extension("traceparent"))
        flask.g.setdefault("ocr_log", {}).update(
            ce_id=incoming.id,
            ce_type=incoming.type,
            ce_source=incoming.source,
            trace_id=flask.g.trace.trace_id,
        )
        decision = events.plan(incoming, self.runtime.settings, self.runtime.store)
        if isinstance(decision, events.Skip):
            log.info("event %s (%s) skipped: %s", incoming.id, incoming.type, decision.reason)
            flask.g.ocr_outcome = "skipped"
            body = {"status": "skipped", "request_id": request_id, "reason": decision.reason}
            return flask.Response(flask.json.dumps(body), status=202, mimetype="application/json")
        outcomes = []
        for item in decision.items:
            try:
                source, fields = self._event_source(item)
                options = Options.parse(fields)
                outcomes.append(self._run(source, options, request, request_id))
            except OCRError as exc:
                if exc.retryable:
                    raise
                log.info("event %s: %s failed permanently: %s", incoming.id, item.subject, exc.message)
                outcomes.append(error_body(exc, request_id) | {"subject": item.subject})
        if any(o["status"] != "success" for o in outcomes):
            flask.g.ocr_outcome = "failed"
        headers, body = events.reply(incoming, decision.items, outcomes, self.runtime.settings)
        headers["ce-traceparent"] = flask.g.trace.traceparent
        return flask.Response(body, status=200, headers=headers)

    def _event_source(self, item: events.Item) -> tuple[Source, dict[str, Any]]:
        max_bytes = self.runtime.settings.max_bytes
        if item.fields:
            return replace(self._from_fields(item.fields, {}, "json"), input_type="cloudevent"), item.fields
        if item.data is not None:
            return from_bytes(item.data, item.filename, "cloudevent", max_bytes), {}
        assert item.obj is not None
        return self._read_event_object(item.obj), {}

    def _read_event_object(self, obj: events.ObjectRef) -> Source:
        store = self.runtime.store
        bucket = obj.bucket or getattr(store, "bucket", "")
        limit = self.runtime.settings.max_bytes
        try:
            return from_s3(store.s3, bucket, obj.key, obj.filename, "cloudevent", limit)
        except NotFound:
            # Senders that do not URL-encode keys (Ceph does not document it): try the key as sent.
            if not obj.raw_key or obj.raw_key == obj.key:
                raise
            return from_s3(store.s3, bucket, obj.raw_key, obj.raw_key.rsplit("/", 1)[-1], "cloudevent", limit)

    def _read_document(self, request: flask.Request) -> tuple[Source, dict[str, Any]]:
        """The one document of the request and its other fields, by content type."""
        ctype = request.mimetype
        if ctype == "multipart/form-data" or ctype == "application/x-www-form-urlencoded":
            fields: dict[str, Any] = request.form.to_dict()
            files = {name: f for name, f in request.files.items() if f.filename or name == "file"}
            return self._from_fields(
                fields, files, "multipart" if ctype.startswith("multipart") else "form"
            ), fields
        if ctype == "application/json":
            body = _json_body(request)
            if not isinstance(body, dict):
                raise BadRequest(
                    'the body is not a JSON object; send {"image_base64": "..."} or {"image_url": "..."}'
                )
            return self._from_fields(body, {}, "json"), body
        if ctype.startswith(RAW_TYPES):
            filename = request.args.get("filename") or _disposition_filename(request)
            return from_bytes(request.get_data(), filename, "raw", self.runtime.settings.max_bytes), {}
        if not request.content_length and not ctype:
            raise BadRequest(_NO_DOCUMENT)
        raise BadRequest(
            f"unsupported Content-Type {ctype!r}; use multipart/form-data, application/json, "
            "application/x-www-form-urlencoded, or a raw body with image/* or application/pdf"
        )

    def _from_fields(self, fields: dict[str, Any], files: dict[str, Any], form_kind: str) -> Source:
        settings = self.runtime.settings
        present = [name for name in DOCUMENT_FIELDS if fields.get(name) or name in files]
        extra_files = [name for name in files if name != "file"]
        if extra_files:
            raise BadRequest(
                f"send the document in the field 'file'; unexpected file field(s): {', '.join(extra_files)}"
            )
        if not present:
            raise BadRequest(_NO_DOCUMENT)
        if len(present) > 1:
            raise BadRequest(f"send exactly one document; got {', '.join(present)}")
        name = present[0]
        filename = fields.get("filename")
        if filename is not None and not isinstance(filename, str):
            raise BadRequest("'filename' must be a string")
        if name == "file":
            upload = files["file"]
            return from_bytes(upload.read(), filename or upload.filename, "multipart", settings.max_bytes)
        value = fields[name]
        if not isinstance(value, str):
            raise BadRequest(f"'{name}' must be a string")
        if name == "image_base64":
            return from_base64(value, filename, "base64", settings.max_bytes)
        if name == "image_url":
            return fetch_url(value, filename, settings)
        bucket, key = parse_uri(value)
        return from_s3(self.runtime.store.s3, bucket, key, filename, "s3", settings.max_bytes)

    def _too_large_message(self) -> str:
        limit = self.runtime.settings.max_bytes
        return f"the request body is too large; the document limit is {limit} bytes (OCR_MAX_BYTES)"

    # --- health and files --------------------------------------------------------------------------

    def _health(self) -> dict[str, Any]:
        rt = self.runtime
        return {
            "status": "ok",
            "engine": rt.settings.engine,
            "fingerprint": rt.engine.fingerprint if rt.engine else None,
            "ready": rt.ready,
            "reason": None if rt.ready else rt.not_ready_reason(),
            "model_load_sec": rt.load_seconds,
            "uptime_sec": rt.uptime(),
            "store": rt.store.kind,
            "pid": os.getpid(),
        }

    def _ready(self) -> flask.Response:
        rt = self.runtime
        reason = None if rt.ready else rt.not_ready_reason()
        if reason is None:
            try:
                rt.store.check()
            except Exception as exc:
                reason = f"result store unusable: {exc}"
        if reason is None:
            return flask.jsonify({"status": "ready", "engine": rt.engine.fingerprint if rt.engine else None})
        response = flask.jsonify({"status": "not_ready", "reason": reason})
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    def _probe_store(self) -> flask.Response:
        """Write, read back and delete a probe object; 502 naming the step that failed."""
        store = self.runtime.store
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

    def _files(self, key: str) -> flask.Response:
        store = self.runtime.store
        if not isinstance(store, LocalStore):
            raise NotFound("/files serves the local result store only; results are in " + store.kind)
        if not key:
            return flask.jsonify({"files": store.list()})
        data = store.get(key)
        return flask.Response(data, mimetype=content_type(key))


_NO_DOCUMENT = (
    "no document in the request: send a multipart field 'file', or 'image_base64', or 'image_url' "
    "(form or JSON), or the raw bytes with Content-Type image/* or application/pdf"
)


def _unbuffered(response: flask.Response) -> flask.Response:
    """The response as a stream. functions-framework reads the whole request body after every
    non-streamed response (its `read_request` hook): for a refused oversized body that read fails
    (an HTML 500) or buffers it all. A streamed response skips the hook; gunicorn then discards at
    most 64 KiB of the unread body and closes the connection."""
    if not response.is_streamed:
        response.response = iter([response.get_data()])
    return response


def _json_body(request: flask.Request) -> Any:
    """The parsed JSON body, or None if it is not JSON; 400 for JSON nested deeper than Python parses."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None


def _request_id(header: str | None) -> str:
    """The caller's X-Request-Id if it is a sane token (it lands in logs and keys), else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


_REQUEST_ID = re.compile(r"[\w.:-]{1,128}")


def _disposition_filename(request: flask.Request) -> str | None:
    header = request.headers.get("Content-Disposition")
    if not header:
        return None
    from werkzeug.http import parse_options_header

    return parse_options_header(header)[1].get("filename")


def _expect(got: bytes, want: bytes) -> None:
    if got != want:
        raise UpstreamFailed(f"read back {len(got)} bytes that differ from the {len(want)} written")


def error_response(exc: OCRError, request_id: str) -> flask.Response:
    response = flask.jsonify(error_body(exc, request_id))
    response.status_code = exc.status
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ocr-function"'
    return response


__all__ = ["HTTPException", "HttpApp", "error_response"]
