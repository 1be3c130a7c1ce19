"""Events in, reply events out: CloudEvents (binary and structured) and plain-JSON storage
notifications (MinIO's webhook, an S3 or EventBridge event POSTed as is).

An incoming event becomes either `Skip` (acknowledged, nothing to do: a delete, our own output, a
format this function does not know) or `Work`: the documents it names — an object to read from S3,
bytes it carries, or the JSON request body of our own request type. Which objects a storage
notification names, and how its keys are decoded, is function/notifications.py's job. `respond` runs
the work, one record after another, through the one parser (function/intake.py) and the service,
and builds the reply event. See docs/events.md.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard
from urllib.parse import quote, unquote

from cloudevents.conversion import to_binary
from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import CloudEvent, from_http

from function import notifications, tracing
from function.config import Settings
from function.context import RequestContext
from function.errors import BadRequest, OCRError, clip
from function.intake import Intake
from function.jobs import Jobs, is_job_id
from function.notifications import (
    GCS_FINALIZED,
    GCS_PREFIX,
    KEY_EXTENSIONS,
    KNATIVE_S3,
    Incoming,
    Item,
    ObjectRef,
    Skip,
    Work,
    json_data,
)
from function.options import Options
from function.responses import answer, error_body, success_body
from function.sources import Source
from function.store import ResultStore

# The event vocabulary of function/notifications.py is named through this module too (tests, deploy checks).
__all__ = [
    "GCS_FINALIZED",
    "GCS_PREFIX",
    "KEY_EXTENSIONS",
    "KNATIVE_S3",
    "Incoming",
    "Item",
    "ObjectRef",
    "Reply",
    "Skip",
    "Work",
    "is_cloudevent",
    "is_storage_webhook",
    "plan",
    "read_cloudevent",
    "read_webhook",
    "reply",
    "respond",
]

log = logging.getLogger(__name__)

SUBJECT_ECHO = 1024  # an S3 key's own limit: a real key is echoed whole, a 5 MB subject is not


@dataclass(frozen=True)
class Reply:
    """What the transport sends back for an event."""

    status: int
    headers: dict[str, str]
    body: bytes


# --- answering -------------------------------------------------------------------------------------


def respond(incoming: Incoming, ctx: RequestContext, intake: Intake, jobs: Jobs, base_url: str) -> Reply:
    """Skip (202, no reply event), or process each document and reply with a CloudEvent. Transient
    errors propagate (5xx/429, so the broker retries); permanent ones become an `ocr.document.failed`
    reply."""
    # The event's own trace (CloudEvents distributed-tracing extension) wins over the HTTP hop's.
    if incoming.extension("traceparent"):
        ctx.trace = tracing.from_header(str(incoming.extension("traceparent")))
    ctx.log.update(
        ce_id=clip(incoming.id),
        ce_type=clip(incoming.type),
        ce_source=clip(incoming.source),
        trace_id=ctx.trace.trace_id,
    )
    service = jobs.service
    decision = plan(incoming, service.settings, service.store)
    if isinstance(decision, Skip):
        level = logging.INFO if decision.known else logging.WARNING
        log.log(level, "event %s (%s) skipped: %s", clip(incoming.id), clip(incoming.type), decision.reason)
        ctx.outcome = "skipped"
        skipped = {"status": "skipped", "request_id": ctx.request_id, "reason": decision.reason}
        return Reply(202, {"Content-Type": "application/json"}, json.dumps(skipped).encode())
    outcomes = []
    for item in decision.items:
        try:
            if item.job is not None:
                outcomes.append(_job(item, jobs, ctx, base_url))
                continue
            source, options = _document(item, intake, getattr(service.store, "bucket", ""))
            if (job := jobs.fan_out(source, options, ctx.request_id)) is not None:
                ctx.log["job_id"] = job.id
                accepted = {"status": "accepted", "request_id": ctx.request_id, "job_id": job.id}
                outcomes.append(accepted | {"subject": clip(item.subject, SUBJECT_ECHO)})
                continue
            outcomes.append(answer(service, ctx, source, options, base_url))
        except OCRError as exc:
            if exc.retryable:
                raise
            log.info(
                "event %s: %s failed permanently: %s", clip(incoming.id), clip(item.subject), exc.message
            )
            outcomes.append(error_body(exc, ctx.request_id) | {"subject": clip(item.subject, SUBJECT_ECHO)})
    # Nothing finished here: a chunk read while others are missing, or long documents sent on as jobs
    # (their reply comes from the pod that completes them).
    if all(o["status"] in ("pending", "accepted") for o in outcomes):
        ctx.outcome = "chunk_done" if outcomes[0]["status"] == "pending" else "accepted"
        data = outcomes[0] if len(outcomes) == 1 else {"status": "accepted", "documents": outcomes}
        return Reply(202, {"Content-Type": "application/json"}, json.dumps(data).encode())
    if any(o["status"] == "error" for o in outcomes):
        ctx.outcome = "failed"
    headers, body = reply(incoming, decision.items, outcomes, service.settings)
    headers["ce-traceparent"] = ctx.trace.traceparent
    return Reply(200, headers, body)


def _job(item: Item, jobs: Jobs, ctx: RequestContext, base_url: str) -> dict[str, Any]:
    """Read an async job's pages (all, or a chunk's): its answer once the document is complete, or
    `pending` while other chunks are missing."""
    assert item.job is not None
    ctx.log["job_id"] = item.job
    result = jobs.work(item.job, item.chunk, ctx.request_id, jobs.settings.deadline_sec)
    if result is None:
        return {"status": "pending", "request_id": ctx.request_id, "job_id": item.job, "chunk": item.chunk}
    ctx.record(result, "cloudevent")
    return success_body(result, ctx.request_id, "cloudevent", jobs.store, base_url) | {"job_id": item.job}


def _document(item: Item, intake: Intake, store_bucket: str) -> tuple[Source, Options]:
    """The document an item names, read by the one parser; an object without a bucket is in the
    result store's. The key is the one the event names, decoded as its producer encodes it: never
    another key tried in its place."""
    if item.fields:
        return intake.fields(item.fields, input_type="cloudevent")
    if item.data is not None:
        return intake.raw(item.data, item.filename, "cloudevent")
    assert item.obj is not None
    obj = item.obj
    source = intake.s3_object(obj.bucket or store_bucket, obj.key, obj.filename, "cloudevent", obj.version)
    return source, Options()


# --- reading ---------------------------------------------------------------------------------------


class Headers(Protocol):
    """HTTP headers as Flask (werkzeug) or a dict holds them."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def is_cloudevent(headers: Headers, mimetype: str) -> bool:
    """Binary mode (`ce-*` headers) or structured mode; a plain JSON body is never taken for one."""
    return _binary(headers) or mimetype.startswith("application/cloudevents")


def is_storage_webhook(body: Any) -> TypeGuard[dict[str, Any]]:
    """A storage notification POSTed as plain JSON: MinIO's webhook (`EventName`, `Key`, `Records`),
    a bare S3 notification or its test message, an EventBridge event."""
    return isinstance(body, dict) and notifications.is_notification(body)


def read_cloudevent(headers: Headers, body: bytes, mimetype: str) -> Incoming:
    if mimetype.startswith("application/cloudevents-batch"):
        raise BadRequest("batched CloudEvents are not supported; send one event per request")
    try:
        event = from_http(dict(headers.items()), body)
    # The SDK lets a body that is not UTF-8 JSON, one nested too deeply, or a null attribute through.
    except (CloudEventError, ValueError, RecursionError) as exc:
        raise BadRequest(f"not a valid CloudEvent: {clip(exc)}") from None
    # The HTTP binding percent-encodes `ce-*` header values and the SDK does not decode them: decode
    # once here, so that the reply (encoded once, `_header_value`) echoes what was received.
    text = unquote if _binary(headers) else str
    return Incoming(
        id=text(str(event["id"])),
        source=text(str(event["source"])),
        type=text(str(event["type"])),
        subject=_text(event.get("subject"), text),
        data=event.data,
        extensions=dict(event.get_attributes()),
    )


def read_webhook(body: dict[str, Any]) -> Incoming:
    """A plain-JSON notification as an event: its id, source and type from the first record (or
    the EventBridge envelope, or the test message)."""
    records = body.get("Records") or [{}]
    first = _mapping(records[0]) if isinstance(records, list) else {}
    response = _mapping(first.get("responseElements"))
    obj = _mapping(_mapping(first.get("s3")).get("object"))
    event_id = body.get("id") or response.get("x-amz-request-id") or obj.get("sequencer")
    return Incoming(
        id=clip(event_id or uuid.uuid4().hex),
        source=clip(body.get("source") or first.get("eventSource") or "minio:s3"),
        type=clip(
            body.get("EventName")
            or body.get("EventType")
            or body.get("detail-type")
            or body.get("Event")
            or first.get("eventName")
            or ""
        ),
        subject=_text(body.get("Key"), str),
        data=body,
    )


def _binary(headers: Headers) -> bool:
    return any(name.lower() == "ce-specversion" for name, _ in headers.items())


# --- deciding --------------------------------------------------------------------------------------


def plan(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    """What to do with an event: the documents to process, or why it is acknowledged and skipped."""
    if incoming.type == settings.event_request_type:
        body = json_data(incoming.data)
        if isinstance(body, dict) and "job_id" in body:
            return Work([_job_item(incoming, body, with_chunk=False)])
        return Work([_request_item(incoming)])
    if incoming.type == settings.event_chunk_type:
        return Work([_job_item(incoming, json_data(incoming.data), with_chunk=True)])
    if incoming.type in (settings.event_completed_type, settings.event_failed_type):
        return Skip(f"{incoming.type} is this function's own reply")
    return notifications.plan(incoming, settings, store)


def _job_item(incoming: Incoming, body: Any, with_chunk: bool) -> Item:
    """An async job's event (function/dispatch.py): `{"job_id"}`, and a chunk's `"chunk": [first, last]`."""
    shape = '{"job_id": "<32 hex digits>", "chunk": [first, last]}' if with_chunk else '{"job_id": "..."}'
    job = body.get("job_id") if isinstance(body, dict) else None
    if not isinstance(job, str) or not is_job_id(job):
        raise BadRequest(f"a {clip(incoming.type)} event carries {shape}")
    if not with_chunk:
        return Item(subject=incoming.subject or job, job=job)
    chunk = body.get("chunk")
    if not (isinstance(chunk, list) and len(chunk) == 2 and all(type(n) is int for n in chunk)):
        raise BadRequest(f"a {clip(incoming.type)} event carries {shape}")
    first, last = chunk
    if not 1 <= first <= last:
        raise BadRequest(f"the chunk [{first}, {last}] is empty or reversed (1-based pages)")
    return Item(subject=incoming.subject or job, job=job, chunk=(first, last))


def _request_item(incoming: Incoming) -> Item:
    body = json_data(incoming.data)
    if not isinstance(body, dict) or not body:
        raise BadRequest(f"a {incoming.type} event carries a JSON object like the JSON input form")
    return Item(subject=incoming.subject or str(body.get("filename") or incoming.id), fields=body)


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one: senders' fields may hold anything."""
    return value if isinstance(value, dict) else {}


def _text(value: Any, decode: Callable[[str], str]) -> str | None:
    """An optional string attribute (a structured event or a webhook may carry any JSON there)."""
    return None if value is None or value == "" else decode(str(value))


# --- replying --------------------------------------------------------------------------------------


def reply(
    incoming: Incoming, items: list[Item], outcomes: list[dict[str, Any]], settings: Settings
) -> tuple[dict[str, str], bytes]:
    """The reply CloudEvent in binary mode: (headers, body). One document: its response or error;
    several (a notification with several records): all of them under `documents`."""
    failed = any(o.get("status") == "error" for o in outcomes)
    if len(outcomes) == 1:
        data: dict[str, Any] = outcomes[0]
    else:
        data = {"status": "failed" if failed else "success", "documents": outcomes}
    attributes = {
        "type": settings.event_failed_type if failed else settings.event_completed_type,
        "source": settings.event_source,
        "subject": clip(items[0].subject if items else (incoming.subject or incoming.id), SUBJECT_ECHO),
        "datacontenttype": "application/json",
        # Correlation with the event that caused this one (CloudEvents has no standard attribute).
        "correlationid": clip(incoming.id),
        "correlationsource": clip(incoming.source),
    }
    job = items[0].job if len(items) == 1 else None
    if job is not None:  # one id per job's outcome: duplicates (races, redelivery) can be dropped
        attributes["id"] = job if not failed else f"{job}-failed"
    headers, body = to_binary(CloudEvent(attributes, data))
    return {name: _header_value(value) for name, value in headers.items()}, body


def _header_value(value: str) -> str:
    """CloudEvents HTTP binding: in `ce-*` headers, percent-encode space, '"', '%' and anything outside
    printable ASCII (as UTF-8) — the SDK does not, and a Cyrillic object key would break the response."""
    return quote(value, safe=_HEADER_SAFE, errors="backslashreplace")


_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
