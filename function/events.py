"""Events in, reply events out: CloudEvents (binary and structured) and MinIO's plain-JSON webhook.

An incoming event becomes either `Skip` (acknowledged, nothing to do: a delete, our own output, an
unknown type) or `Work`: the documents it names — an object to read from S3, bytes it carries, or
the JSON request body of our own request type. `respond` runs the work, one record after another,
through the one parser (function/intake.py) and the service, and builds the reply event.

Storage notifications handled (see docs/events.md):
- `Records[].s3` (AWS S3, MinIO, Ceph RGW, Cloud.ru), as CloudEvent data or MinIO's webhook body;
  keys are URL-encoded by the sender and decoded here exactly once (`unquote_plus`);
- Google Cloud Storage `google.cloud.storage.object.v1.finalized` (names not encoded);
- Knative's AWS S3 IntegrationSource `dev.knative.eventing.aws-s3`, whose data is the object itself.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard
from urllib.parse import quote, unquote_plus

from cloudevents.conversion import to_binary
from cloudevents.exceptions import GenericException as CloudEventError
from cloudevents.http import CloudEvent, from_http

from function import tracing
from function.config import Settings
from function.context import RequestContext
from function.errors import BadRequest, NotFound, OCRError
from function.intake import Intake
from function.options import Options
from function.responses import answer, error_body
from function.service import Service
from function.sources import Source
from function.store import OUTPUT_MARKER, ResultStore

log = logging.getLogger(__name__)

GCS_PREFIX = "google.cloud.storage.object.v1."
GCS_FINALIZED = GCS_PREFIX + "finalized"
KNATIVE_S3 = "dev.knative.eventing.aws-s3"
KNATIVE_S3_SUBJECT = "aws-s3-source"  # the source's fixed default subject: not a key
# Extensions that may carry the object key of a Knative S3 source event (ceOverrides, Camel headers).
KEY_EXTENSIONS = ("key", "objectkey", "camelawss3key", "awss3key")
MINIO_KEYS = ("EventName", "EventType", "Key")


@dataclass(frozen=True)
class Incoming:
    """An event as received: a CloudEvent, or MinIO's webhook body (`event` None)."""

    id: str
    source: str
    type: str
    subject: str | None
    data: Any
    event: CloudEvent | None = None

    def extension(self, name: str) -> Any:
        return self.event.get(name) if self.event is not None else None


@dataclass(frozen=True)
class ObjectRef:
    bucket: str | None
    key: str
    raw_key: str | None = None  # as the sender wrote it, if it was encoded

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Item:
    """One document an event asks for: an object to read, bytes carried, or request fields."""

    subject: str
    obj: ObjectRef | None = None
    data: bytes | None = None
    filename: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Work:
    items: list[Item]


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Reply:
    """What the transport sends back for an event."""

    status: int
    headers: dict[str, str]
    body: bytes


# --- answering -------------------------------------------------------------------------------------


def respond(
    incoming: Incoming, ctx: RequestContext, intake: Intake, service: Service, base_url: str
) -> Reply:
    """Skip (202, no reply event), or process each document and reply with a CloudEvent. Transient
    errors propagate (5xx/429, so the broker retries); permanent ones become an `ocr.document.failed`
    reply."""
    # The event's own trace (CloudEvents distributed-tracing extension) wins over the HTTP hop's.
    if incoming.extension("traceparent"):
        ctx.trace = tracing.from_header(incoming.extension("traceparent"))
    ctx.log.update(
        ce_id=incoming.id, ce_type=incoming.type, ce_source=incoming.source, trace_id=ctx.trace.trace_id
    )
    decision = plan(incoming, service.settings, service.store)
    if isinstance(decision, Skip):
        log.info("event %s (%s) skipped: %s", incoming.id, incoming.type, decision.reason)
        ctx.outcome = "skipped"
        skipped = {"status": "skipped", "request_id": ctx.request_id, "reason": decision.reason}
        return Reply(202, {"Content-Type": "application/json"}, json.dumps(skipped).encode())
    outcomes = []
    for item in decision.items:
        try:
            source, options = _document(item, intake, getattr(service.store, "bucket", ""))
            outcomes.append(answer(service, ctx, source, options, base_url))
        except OCRError as exc:
            if exc.retryable:
                raise
            log.info("event %s: %s failed permanently: %s", incoming.id, item.subject, exc.message)
            outcomes.append(error_body(exc, ctx.request_id) | {"subject": item.subject})
    if any(o["status"] != "success" for o in outcomes):
        ctx.outcome = "failed"
    headers, body = reply(incoming, decision.items, outcomes, service.settings)
    headers["ce-traceparent"] = ctx.trace.traceparent
    return Reply(200, headers, body)


def _document(item: Item, intake: Intake, store_bucket: str) -> tuple[Source, Options]:
    """The document an item names, read by the one parser; an object without a bucket is in the
    result store's."""
    if item.fields:
        return intake.fields(item.fields, input_type="cloudevent")
    if item.data is not None:
        return intake.raw(item.data, item.filename, "cloudevent")
    assert item.obj is not None
    obj = item.obj
    bucket = obj.bucket or store_bucket
    try:
        return intake.s3_object(bucket, obj.key, obj.filename, "cloudevent"), Options()
    except NotFound:
        # Senders that do not URL-encode keys (Ceph does not document it): try the key as sent.
        if not obj.raw_key or obj.raw_key == obj.key:
            raise
        filename = obj.raw_key.rsplit("/", 1)[-1]
        return intake.s3_object(bucket, obj.raw_key, filename, "cloudevent"), Options()


# --- reading ---------------------------------------------------------------------------------------


class Headers(Protocol):
    """HTTP headers as Flask (werkzeug) or a dict holds them."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def is_cloudevent(headers: Headers, mimetype: str) -> bool:
    """Binary mode (`ce-*` headers) or structured mode; a plain JSON body is never taken for one."""
    binary = any(name.lower() == "ce-specversion" for name, _ in headers.items())
    return binary or mimetype.startswith("application/cloudevents")


def is_storage_webhook(body: Any) -> TypeGuard[dict[str, Any]]:
    """MinIO's webhook (`EventName`, `Key`, `Records`) or a bare S3 notification POSTed as JSON."""
    return isinstance(body, dict) and isinstance(body.get("Records"), list)


def read_cloudevent(headers: Headers, body: bytes, mimetype: str) -> Incoming:
    if mimetype.startswith("application/cloudevents-batch"):
        raise BadRequest("batched CloudEvents are not supported; send one event per request")
    try:
        event = from_http(dict(headers.items()), body)
    # The SDK lets a body that is not UTF-8 JSON, one nested too deeply, or a null attribute through.
    except (CloudEventError, ValueError, RecursionError) as exc:
        raise BadRequest(f"not a valid CloudEvent: {exc}") from None
    return Incoming(
        id=str(event["id"]),
        source=str(event["source"]),
        type=str(event["type"]),
        subject=_text(event.get("subject")),
        data=event.data,
        event=event,
    )


def read_webhook(body: dict[str, Any]) -> Incoming:
    records = body.get("Records") or [{}]
    first = _mapping(records[0])
    response = _mapping(first.get("responseElements"))
    event_id = response.get("x-amz-request-id") or _mapping(_mapping(first.get("s3")).get("object")).get(
        "sequencer"
    )
    return Incoming(
        id=str(event_id or uuid.uuid4().hex),
        source=str(first.get("eventSource") or "minio:s3"),
        type=str(body.get("EventName") or body.get("EventType") or first.get("eventName") or ""),
        subject=_text(body.get("Key")),
        data=body,
    )


# --- deciding --------------------------------------------------------------------------------------


def plan(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    """What to do with an event: the documents to process, or why it is acknowledged and skipped."""
    if incoming.type == settings.event_request_type:
        return Work([_request_item(incoming)])
    if incoming.type in (settings.event_completed_type, settings.event_failed_type):
        return Skip(f"{incoming.type} is this function's own reply")
    if incoming.type.startswith(GCS_PREFIX):
        return _gcs(incoming, settings, store)
    if incoming.type == KNATIVE_S3:
        return _knative_s3(incoming, settings, store)
    data = _json_data(incoming.data)
    if is_storage_webhook(data):
        return _records(data["Records"], settings, store)
    return Skip(f"event type {incoming.type!r} is not one this function handles")


def _request_item(incoming: Incoming) -> Item:
    body = _json_data(incoming.data)
    if not isinstance(body, dict) or not body:
        raise BadRequest(f"a {incoming.type} event carries a JSON object like the JSON input form")
    return Item(subject=incoming.subject or str(body.get("filename") or incoming.id), fields=body)


def _records(records: list[Any], settings: Settings, store: ResultStore) -> Work | Skip:
    items, skipped = [], []
    for record in records:
        name = str(record.get("eventName", "")) if isinstance(record, dict) else ""
        if "ObjectCreated" not in name:
            skipped.append(f"{name or 'an unnamed record'} is not an object creation")
            continue
        s3 = _mapping(record.get("s3"))
        obj = _mapping(s3.get("object"))
        raw_key = str(obj.get("key") or "")
        bucket = _mapping(s3.get("bucket")).get("name") or None
        if not raw_key or not _utf8(raw_key):
            skipped.append("a record names no object key" if not raw_key else "a record's key is not UTF-8")
            continue
        if bucket is not None and not (isinstance(bucket, str) and _utf8(bucket)):
            skipped.append(f"a record's bucket name is not a string: {bucket!r}")
            continue
        ref = ObjectRef(bucket=bucket, key=unquote_plus(raw_key), raw_key=raw_key)
        reason = _own_output(ref, settings, store) or _marked(obj)
        if reason:
            skipped.append(reason)
            continue
        items.append(Item(subject=ref.key, obj=ref))
    return Work(items) if items else Skip("; ".join(skipped) or "no records")


def _gcs(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    if incoming.type != GCS_FINALIZED:
        return Skip(f"{incoming.type} is not an object creation")
    data = _mapping(_json_data(incoming.data))
    name, bucket = data.get("name"), data.get("bucket") or None
    if (
        not name
        or not _utf8(str(name))
        or not (bucket is None or (isinstance(bucket, str) and _utf8(bucket)))
    ):
        raise BadRequest("a storage.object.v1.finalized event needs data with 'bucket' and 'name'")
    ref = ObjectRef(bucket=bucket, key=str(name))  # GCS names are not encoded
    reason = _own_output(ref, settings, store) or _marked(data)
    return Skip(reason) if reason else Work([Item(subject=ref.key, obj=ref)])


def _knative_s3(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    key = next((str(incoming.extension(n)) for n in KEY_EXTENSIONS if incoming.extension(n)), None)
    if key is None and incoming.subject and incoming.subject != KNATIVE_S3_SUBJECT:
        key = incoming.subject
    if key is not None:
        reason = _own_output(ObjectRef(bucket=None, key=key), settings, store)
        if reason:
            return Skip(reason)
    filename = key.rsplit("/", 1)[-1] if key else incoming.id
    return Work([Item(subject=key or incoming.id, data=_raw_bytes(incoming.data), filename=filename)])


def _own_output(ref: ObjectRef, settings: Settings, store: ResultStore) -> str | None:
    """A reason to skip an object this function wrote, or one under a configured skip prefix."""
    if store.is_output(ref.bucket, ref.key):
        return f"{ref.key!r} is under the result store's output prefix"
    for prefix in settings.event_skip_prefixes:
        full = f"{ref.bucket}/{ref.key}" if ref.bucket else ref.key
        if ref.key.startswith(prefix + "/") or full.startswith(prefix + "/"):
            return f"{ref.key!r} is under OCR_EVENT_SKIP_PREFIXES entry {prefix!r}"
    return None


def _marked(obj: Mapping[str, Any]) -> str | None:
    """Objects we wrote carry user metadata `ocr-output: 1` (MinIO, GCS and Ceph report it)."""
    meta = obj.get("userMetadata") or obj.get("metadata") or {}
    if isinstance(meta, list):  # Ceph: [{"key": ..., "val": ...}]
        meta = {str(m.get("key")): m.get("val") for m in meta if isinstance(m, dict)}
    meta = _mapping(meta)
    name, value = OUTPUT_MARKER
    for k, v in meta.items():
        if str(k).lower().removeprefix("x-amz-meta-") == name and str(v) == value:
            return "the object carries this function's output marker"
    return None


def _json_data(data: Any) -> Any:
    if isinstance(data, (bytes, str)):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
    return data


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one: senders' fields may hold anything."""
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """An optional string attribute (a structured event or a webhook may carry any JSON there)."""
    return None if value is None or value == "" else str(value)


def _utf8(text: str) -> bool:
    """Whether `text` can be an S3 key (JSON's lone-surrogate escapes cannot)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _raw_bytes(data: Any) -> bytes:
    """The object's bytes; the SDK hands back JSON-looking bodies parsed, so undo that."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if data is None:
        return b""
    return json.dumps(data).encode()


# --- replying --------------------------------------------------------------------------------------


def reply(
    incoming: Incoming, items: list[Item], outcomes: list[dict[str, Any]], settings: Settings
) -> tuple[dict[str, str], bytes]:
    """The reply CloudEvent in binary mode: (headers, body). One document: its response or error;
    several (a notification with several records): all of them under `documents`."""
    failed = any(o.get("status") != "success" for o in outcomes)
    if len(outcomes) == 1:
        data: dict[str, Any] = outcomes[0]
    else:
        data = {"status": "failed" if failed else "success", "documents": outcomes}
    attributes = {
        "type": settings.event_failed_type if failed else settings.event_completed_type,
        "source": settings.event_source,
        "subject": items[0].subject if items else (incoming.subject or incoming.id),
        "datacontenttype": "application/json",
        # Correlation with the event that caused this one (CloudEvents has no standard attribute).
        "correlationid": incoming.id,
        "correlationsource": incoming.source,
    }
    headers, body = to_binary(CloudEvent(attributes, data))
    return {name: _header_value(value) for name, value in headers.items()}, body


def _header_value(value: str) -> str:
    """CloudEvents HTTP binding: in `ce-*` headers, percent-encode space, '"', '%' and anything outside
    printable ASCII (as UTF-8) — the SDK does not, and a Cyrillic object key would break the response."""
    return quote(value, safe=_HEADER_SAFE, errors="backslashreplace")


_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
