"""HTTP transport: routes by method and path, hands a document or an event on, maps errors to JSON.

One way through: a request comes in here once (auth, route, the body read by its content type) and
leaves here once (the response, its headers, the log line and metrics). The work is done by the one
parser (function/intake.py), the service, and for events function/events.py.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from function import auth, events, logs, metrics, openapi, tracing, trypage
from function.config import Settings
from function.context import RequestContext
from function.errors import BadRequest, MethodNotAllowed, NotFound, OCRError, TooLarge, clip
from function.intake import NO_DOCUMENT, Intake
from function.jobs import Jobs, is_job_id
from function.lifecycle import Recycler
from function.ops import Ops
from function.options import Options, parse_bool
from function.responses import answer, error_body
from function.sources import Source

log = logging.getLogger(__name__)

RAW_TYPES = ("image/", "application/pdf", "application/octet-stream")
NO_DOCUMENT_BODY = 64 * 1024  # the most any route but POST / and /ocr reads
OCR_PATHS = ("/", "/ocr")


class HttpTransport:
    def __init__(self, settings: Settings, intake: Intake, jobs: Jobs, ops: Ops, recycler: Recycler) -> None:
        self.settings = settings
        self.intake = intake
        self.jobs = jobs
        self.service = jobs.service
        self.ops = ops
        self.recycler = recycler

    def dispatch(self, request: flask.Request) -> flask.Response:
        began = time.perf_counter()
        path = "/" + request.path.strip("/")
        ctx = RequestContext(
            request_id=_request_id(request.headers.get("X-Request-Id")),
            trace=tracing.from_header(request.headers.get("traceparent")),
            ocr=request.method == "POST" and path in OCR_PATHS,
            client_gone=partial(_peer_closed, request.environ.get("gunicorn.socket")),
        )
        request.max_content_length = NO_DOCUMENT_BODY  # routes without a document; _ocr raises it
        self.ops.runtime.start()
        with logs.context(request_id=ctx.request_id, trace_id=ctx.trace.trace_id):
            response = _unbuffered(self._answer(request, path, ctx))
            response.headers["X-Request-Id"] = ctx.request_id
            if ctx.ocr:
                response.headers["traceparent"] = ctx.trace.traceparent
                _account(request, response, ctx, time.perf_counter() - began)
                self.recycler.after_document(response, request.environ)
        return response

    def _answer(self, request: flask.Request, path: str, ctx: RequestContext) -> flask.Response:
        try:
            headers = request.headers
            auth.check(
                self.settings, request.method, path, headers.get("Authorization"), headers.get("X-API-Key")
            )
            return self._route(request, path, ctx)
        except RequestEntityTooLarge:
            return self._error(TooLarge(self._too_large_message()), ctx)
        except OCRError as exc:
            return self._error(exc, ctx)
        except Exception:  # a bug: logged with its traceback, never shown to the client
            log.exception("request %s failed", ctx.request_id)
            return self._error(OCRError("internal error; see the function's logs"), ctx)

    def _error(self, exc: OCRError, ctx: RequestContext) -> flask.Response:
        ctx.outcome = exc.code
        return error_response(exc, ctx.request_id)

    def _route(self, request: flask.Request, path: str, ctx: RequestContext) -> flask.Response:
        method = request.method
        if path in OCR_PATHS:
            if method == "POST":
                with metrics.IN_FLIGHT.track_inprogress():
                    return self._ocr(request, ctx)
            if method == "HEAD":  # endpoint probes (MinIO checks its webhook target this way)
                return flask.Response(status=200)
            if method == "GET" and path == "/" and self.settings.try_page:
                return trypage.response(path)
            raise MethodNotAllowed(f"{path} takes POST with a document; see GET /health for status")
        if path == "/test/s3-upload":
            if method != "POST":
                raise MethodNotAllowed("/test/s3-upload takes POST")
            return self.ops.probe_store()
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        if path in trypage.FILES and self.settings.try_page:
            return trypage.response(path)
        if path.startswith("/jobs/"):
            return self._job(path[len("/jobs/") :], request)
        if path == "/files" or path.startswith("/files/"):
            key = path[len("/files/") :] if path != "/files" else ""
            return self.ops.files(key, request.args, self._base_url(request) if key else "")
        route = {
            "/health": self.ops.health,
            "/health/live": lambda: flask.jsonify({"status": "alive"}),
            "/health/ready": self.ops.ready,
            "/openapi.json": lambda: flask.jsonify(openapi.spec()),
            "/metrics": self.ops.metrics,
        }.get(path)
        if route is None:
            raise NotFound(f"no route {method} {path}")
        return route()

    def _ocr(self, request: flask.Request, ctx: RequestContext) -> flask.Response:
        # Room for base64 and form framing; a base64 form field may be as large (Werkzeug's default
        # for non-file form fields is 500 kB).
        request.max_content_length = self.settings.body_limit
        request.max_form_memory_size = request.max_content_length
        if request.content_length and request.content_length > request.max_content_length:
            raise TooLarge(self._too_large_message())
        base_url = self._base_url(request)
        if events.is_cloudevent(request.headers, request.mimetype):
            incoming = events.read_cloudevent(request.headers, request.get_data(), request.mimetype)
            return _reply(events.respond(incoming, ctx, self.intake, self.jobs, base_url))
        body = _json_body(request) if request.mimetype == "application/json" else None
        if events.is_storage_webhook(body):
            incoming = events.read_webhook(body)
            return _reply(events.respond(incoming, ctx, self.intake, self.jobs, base_url))
        source, options = self._document(request, body)
        if _prefers_async(request.headers.getlist("Prefer")):
            return self._accept(source, options, ctx, base_url)
        return flask.jsonify(answer(self.service, ctx, source, options, base_url))

    def _accept(self, source: Source, options: Options, ctx: RequestContext, base_url: str) -> flask.Response:
        """`Prefer: respond-async`: 202 with the job (function/jobs.py) to poll at `Location`."""
        ctx.log["input_type"] = source.input_type
        record = self.jobs.submit(source, options, ctx.request_id)
        ctx.outcome = "accepted"
        ctx.log["job_id"] = record.id
        response = flask.jsonify({"request_id": ctx.request_id, **self.jobs.status(record, base_url)})
        response.status_code = 202
        response.headers["Location"] = f"/jobs/{record.id}"
        response.headers["Preference-Applied"] = "respond-async"
        return response

    def _job(self, job: str, request: flask.Request) -> flask.Response:
        record = self.jobs.read(job) if is_job_id(job) else None
        if record is None:
            raise NotFound(f"no job {clip(job)!r}: its id is the `job_id` a 202 answer gave")
        # `?return_content=true`: a completed job's result carries the Markdown and JSON, as the
        # synchronous answer does with that option (the try-it page shows them from there).
        with_content = parse_bool("return_content", request.args.get("return_content", ""))
        return flask.jsonify(self.jobs.status(record, self._base_url(request), with_content))

    def _base_url(self, request: flask.Request) -> str:
        """This function's address for local result URLs: OCR_PUBLIC_BASE_URL, else the request's own
        host if it is one of OCR_TRUSTED_HOSTS — never an arbitrary Host header, which would point
        the answer's links at whoever sent it. S3 results need none (presigned or public URLs)."""
        if self.settings.public_base_url or self.service.store.kind != "local":
            return self.settings.public_base_url or ""
        host = urlsplit("//" + request.host).hostname or ""
        if host not in self.settings.trusted_hosts:
            raise BadRequest(
                f"the Host header {clip(request.host)!r} is not one of OCR_TRUSTED_HOSTS "
                f"({', '.join(self.settings.trusted_hosts)}), and local result URLs are built from it; "
                "set OCR_PUBLIC_BASE_URL to this function's public address, or add the host"
            )
        return request.host_url

    def _document(self, request: flask.Request, body: Any) -> tuple[Any, Any]:
        """The request's document and options, read by the one parser as its content type says."""
        ctype = request.mimetype
        query = request.args.to_dict()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            files = {name: f for name, f in request.files.items() if f.filename or name == "file"}
            return self.intake.fields(request.form.to_dict(), files, query)
        if ctype == "application/json":
            if not isinstance(body, dict):
                raise BadRequest(
                    'the body is not a JSON object; send {"image_base64": "..."} or {"image_url": "..."}'
                )
            return self.intake.fields(body, query=query)
        if ctype.startswith(RAW_TYPES):
            filename = request.args.get("filename") or _disposition_filename(request)
            return self.intake.raw(request.get_data(), filename, "raw", query)
        if not request.content_length and not ctype:
            raise BadRequest(NO_DOCUMENT)
        raise BadRequest(
            f"unsupported Content-Type {ctype!r}; use multipart/form-data, application/json, "
            "application/x-www-form-urlencoded, or a raw body with image/* or application/pdf"
        )

    def _too_large_message(self) -> str:
        limit = self.settings.max_bytes
        return f"the request body is too large; the document limit is {limit} bytes (OCR_MAX_BYTES)"


def _account(request: flask.Request, response: flask.Response, ctx: RequestContext, seconds: float) -> None:
    """Metrics and the one log line of an OCR request or event."""
    metrics.REQUESTS.labels(outcome=ctx.outcome).inc()
    metrics.REQUEST_SECONDS.labels(outcome=ctx.outcome).observe(seconds)
    fields = {
        "event": "request",
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "outcome": ctx.outcome,
        "seconds": round(seconds, 3),
        **ctx.log,
    }
    status = response.status_code
    level = logging.ERROR if status >= 500 and ctx.outcome != "not_ready" else logging.INFO
    log.log(level, "%s %s -> %s %s", request.method, request.path, status, ctx.outcome, extra=fields)


def _reply(reply: events.Reply) -> flask.Response:
    return flask.Response(reply.body, status=reply.status, headers=reply.headers)


def _unbuffered(response: flask.Response) -> flask.Response:
    """The response as a stream. functions-framework reads the whole request body after every
    non-streamed response (its `read_request` hook): for a refused oversized body that read fails
    (an HTML 500) or buffers it all. A streamed response skips the hook; gunicorn then discards at
    most 64 KiB of the unread body and closes the connection."""
    if not response.is_streamed:
        response.response = iter([response.get_data()])
    return response


def _prefers_async(prefer: list[str]) -> bool:
    """RFC 7240: `Prefer: respond-async` among the header's comma-separated preferences (with or
    without parameters, in any case)."""
    for header in prefer:
        for preference in header.split(","):
            if preference.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async":
                return True
    return False


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
    return parse_options_header(header)[1].get("filename")


def error_response(exc: OCRError, request_id: str) -> flask.Response:
    response = flask.jsonify(error_body(exc, request_id))
    response.status_code = exc.status
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ocr-function"'
    return response


def _peer_closed(sock: socket.socket | None) -> bool:
    """Whether the client has closed its side: the request was read whole before the app ran (the
    front, front.py), so the socket reads end-of-file only once the client has gone."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing more sent
    except OSError:
        return True  # reset
