"""A storage notification -> the objects it names, each with its bucket, its key decoded the way
its producer encodes it, and the version it names; or why it is not a document (skipped).

Recognised (docs/events.md has the table, tests/fixtures/events/ the real payloads):
- S3-style records (`Records[]` or one record as data): AWS, MinIO, Ceph RGW, TriggerMesh's AWSS3Source,
  the Knative CephSource; inside an SQS message (Knative AwsSqsSource `aws.sqs.message`, Body a JSON
  string, single or batched; TriggerMesh `com.amazon.sqs.message`, Body an object) or an SNS envelope;
- EventBridge `Object Created` (`detail.bucket`/`detail.object`), plain or TriggerMesh's
  `com.amazon.events.event`;
- Google Cloud Storage `google.cloud.storage.object.v1.*`;
- events that carry the object's bytes: the Camel aws-s3 Kamelet and Knative's aws-s3 IntegrationSource.

Keys are decoded per producer and never guessed: `aws:s3` and `minio:s3` records are URL-encoded
(`unquote_plus`), and so is a record from a producer not named here (the record format is AWS's and
AWS documents its keys as encoded); Ceph, EventBridge, GCS and Camel keys are taken as sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from function.config import Settings
from function.errors import BadRequest, TooLarge, clip
from function.store import OUTPUT_MARKER, ResultStore

GCS_PREFIX = "google.cloud.storage.object.v1."
GCS_FINALIZED = GCS_PREFIX + "finalized"
# Knative's aws-s3 IntegrationSource: the default type changed between versions.
KNATIVE_S3 = "dev.knative.eventing.aws-s3"
KNATIVE_S3_TYPES = (KNATIVE_S3, "dev.knative.connector.event.aws-s3")
KNATIVE_S3_SUBJECT = "aws-s3-source"  # the source's fixed default subject: not a key
CAMEL_S3 = "org.apache.camel.event.aws.s3.getObject"
CAMEL_SOURCE_PREFIX = "aws.s3.bucket."
SQS_TYPES = ("aws.sqs.message", "com.amazon.sqs.message")  # Knative AwsSqsSource, TriggerMesh
# Extensions that may carry the object key of a Knative S3 source event (ceOverrides, Camel headers).
KEY_EXTENSIONS = ("key", "objectkey", "camelawss3key", "awss3key")
# Producers whose keys are taken as sent (every other record is URL-encoded, as AWS documents;
# AWS does not say for EventBridge, and moto does not encode there).
RAW_KEYS = frozenset({"ceph:s3", "eventbridge"})
# MinIO files metadata changes under ObjectCreated: the object's bytes did not change.
NOT_NEW_CONTENT = frozenset({"PutTagging", "DeleteTagging", "PutRetention", "PutLegalHold"})
EVENTBRIDGE_CREATED = "Object Created"
MAX_KEY_BYTES = 1024  # S3's and GCS's longest object key
NESTING = 4  # SQS message -> SNS envelope -> notification: never deeper than this
KNOWN = (
    "S3 notifications (Records[], or one record as data: AWS, MinIO, Ceph, TriggerMesh "
    "com.amazon.s3.*, Knative CephSource com.amazonaws.*), SQS messages carrying one "
    f"({', '.join(SQS_TYPES)}), EventBridge 'Object Created' (also com.amazon.events.event), "
    f"{GCS_PREFIX}*, {CAMEL_S3}, {', '.join(KNATIVE_S3_TYPES)}"
)


@dataclass(frozen=True)
class Incoming:
    """An event as received: a CloudEvent, or a plain-JSON notification (`extensions` empty)."""

    id: str
    source: str
    type: str
    subject: str | None
    data: Any
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def extension(self, name: str) -> Any:
        return self.extensions.get(name)


@dataclass(frozen=True)
class ObjectRef:
    bucket: str | None
    key: str
    version: str | None = None  # the S3 object version the event names

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
    job: str | None = None  # an async job to read (function/jobs.py)
    chunk: tuple[int, int] | None = None  # ... only these of its pages (1-based, inclusive)


@dataclass(frozen=True)
class Work:
    items: list[Item]


@dataclass(frozen=True)
class Skip:
    reason: str
    known: bool = True  # False: a format this function does not know (logged as a warning)


@dataclass(frozen=True)
class Notice:
    """One object event as its producer described it, before deciding."""

    producer: str  # a record's eventSource ("aws:s3", "ceph:s3", ...) or "eventbridge"
    event: str  # "ObjectCreated:Put" (no "s3:" prefix), or EventBridge's detail-type
    bucket: Any
    key: Any  # as sent
    version: Any
    size: Any
    meta: Mapping[str, Any]  # the object's user metadata, where the producer reports it


# --- the objects an event names ----------------------------------------------------------------------


def plan(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    """The documents a storage event names, or why it is acknowledged and skipped."""
    if incoming.type.startswith(GCS_PREFIX):
        return _gcs(incoming, settings, store)
    if incoming.type in KNATIVE_S3_TYPES:
        return _knative_s3(incoming, settings, store)
    if incoming.type == CAMEL_S3:
        return _camel(incoming, settings, store)
    found = _found(incoming.type, json_data(incoming.data), NESTING)
    if found is None:
        return Skip(unknown(incoming), known=False)
    if len(found) > settings.event_max_records:
        raise TooLarge(
            f"the event carries {len(found)} records; this function takes at most "
            f"{settings.event_max_records} per event (OCR_EVENT_MAX_RECORDS): send fewer per event"
        )
    items, skipped = [], [n for n in found if isinstance(n, str)]
    for notice in (n for n in found if isinstance(n, Notice)):
        decided = _decide(notice, settings, store)
        if isinstance(decided, str):
            skipped.append(decided)
        else:
            items.append(Item(subject=decided.key, obj=decided))
    return Work(items) if items else Skip("; ".join(skipped) or "the notification has no records")


def is_notification(body: Any) -> bool:
    """Whether a plain JSON body is a storage notification (MinIO's webhook, an S3 notification, its
    test message, an EventBridge event) rather than an OCR request."""
    return _found("", body, 1) is not None


def unknown(incoming: Incoming) -> str:
    parsed = json_data(incoming.data)
    data = incoming.data if parsed is None else parsed
    return (
        f"event type {clip(incoming.type)!r} with {shape(data)} is not a "
        f"storage notification this function knows; known: {KNOWN}"
    )


def shape(data: Any) -> str:
    """A short description of an event's data, for messages."""
    if data is None:
        return "no data"
    if isinstance(data, dict):
        keys = ", ".join(clip(k, 40) for k in list(data)[:8]) + (", …" if len(data) > 8 else "")
        return f"data of shape object {{{keys}}}"
    if isinstance(data, list):
        return f"data of shape array of {len(data)}"
    if isinstance(data, (bytes, str)):
        return f"data of {len(data)} bytes, not JSON"
    return f"data of shape {type(data).__name__}"


Found = list[Notice | str]  # what a notification names, and skip reasons for messages that name nothing


def _found(ce_type: str, data: Any, depth: int) -> Found | None:
    """The object events in `data`, or None if it is no storage notification this function knows."""
    if depth <= 0:
        return None
    if isinstance(data, list) and ce_type in SQS_TYPES:  # AwsSqsSource's batched mode
        parts = [_found(ce_type, message, depth) for message in data]
        if all(p is None for p in parts):
            return None
        other = "an SQS message in the batch is not a storage notification"
        return [n for p in parts for n in (p if p is not None else [other])]
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Records"), list):
        return [_record(r) for r in data["Records"]]
    if data.get("Event") == "s3:TestEvent":
        return ["an S3 test event (s3:TestEvent) names no document"]
    if _mapping(data.get("s3")) and "eventName" in data:  # one record as data
        return [_record(data)]
    if data.get("source") == "aws.s3" and isinstance(data.get("detail"), dict):
        return [_eventbridge(data)]
    if ce_type in SQS_TYPES and "Body" in data:
        return _found("", json_data(data["Body"]), depth - 1)
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):  # SNS envelope
        return _found("", json_data(data["Message"]), depth - 1)
    return None


def _record(record: Any) -> Notice | str:
    if not isinstance(record, dict):
        return f"a record is not a JSON object: {clip(record, 60)}"
    s3 = _mapping(record.get("s3"))
    obj = _mapping(s3.get("object"))
    meta = obj.get("userMetadata") or obj.get("metadata") or {}
    if isinstance(meta, list):  # Ceph: [{"key": ..., "val"|"value": ...}]
        meta = {str(m.get("key")): m.get("val", m.get("value")) for m in meta if isinstance(m, dict)}
    return Notice(
        producer=str(record.get("eventSource") or ""),
        event=str(record.get("eventName") or "").removeprefix("s3:"),
        bucket=_mapping(s3.get("bucket")).get("name"),
        key=obj.get("key"),
        version=obj.get("versionId"),
        size=obj.get("size"),
        meta=_mapping(meta),
    )


def _eventbridge(event: Mapping[str, Any]) -> Notice:
    detail = _mapping(event.get("detail"))
    obj = _mapping(detail.get("object"))
    return Notice(
        producer="eventbridge",
        event=str(event.get("detail-type") or ""),
        bucket=_mapping(detail.get("bucket")).get("name"),
        key=obj.get("key"),
        version=obj.get("version-id"),
        size=obj.get("size"),
        meta={},
    )


def _decide(notice: Notice, settings: Settings, store: ResultStore) -> ObjectRef | str:
    """The object a notice names, or why it is skipped."""
    event, created = notice.event, notice.event.startswith("ObjectCreated:")
    if notice.producer == "eventbridge":
        created = event == EVENTBRIDGE_CREATED
    if not created:
        return f"{clip(event) or 'an unnamed record'} is not an object creation"
    if event.removeprefix("ObjectCreated:") in NOT_NEW_CONTENT:
        return f"{event} changes the object's metadata, not its content"
    if notice.producer == "ceph:s3" and event == "ObjectCreated:Post" and not _size(notice.size):
        return "ObjectCreated:Post from Ceph with no size: a multipart upload starting, no object yet"
    raw, bucket = notice.key, notice.bucket
    if not isinstance(raw, str) or not raw or not _utf8(raw):
        return "a record's key is not UTF-8" if isinstance(raw, str) and raw else "a record names no key"
    if bucket is not None and not (isinstance(bucket, str) and _utf8(bucket)):
        return f"a record's bucket name is not a string: {clip(bucket, 60)}"
    key = raw if notice.producer in RAW_KEYS else unquote_plus(raw)
    version = notice.version if isinstance(notice.version, str) and notice.version else None
    ref = ObjectRef(bucket=bucket or None, key=key, version=version)
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"a record's key is longer than an object key can be ({MAX_KEY_BYTES} bytes): {clip(key, 60)}"
    if key.endswith("/") and not _size(notice.size):
        return f"{clip(key)!r} is a folder marker (a key ending in '/', no bytes)"
    return own_output(ref, settings, store) or _marked(notice.meta) or ref


def _gcs(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    if incoming.type != GCS_FINALIZED:
        return Skip(f"{clip(incoming.type)} is not an object creation")
    data = _mapping(json_data(incoming.data))
    name, bucket = data.get("name"), data.get("bucket") or None
    if (
        not name
        or not _utf8(str(name))
        or len(str(name).encode()) > MAX_KEY_BYTES
        or not (bucket is None or (isinstance(bucket, str) and _utf8(bucket)))
    ):
        raise BadRequest("a storage.object.v1.finalized event needs data with 'bucket' and 'name'")
    # GCS names are not encoded; `generation` is GCS's, not an S3 version: the object is read as is.
    ref = ObjectRef(bucket=bucket, key=str(name))
    if ref.key.endswith("/") and not _size(data.get("size")):
        return Skip(f"{clip(ref.key)!r} is a folder marker (a name ending in '/', no bytes)")
    reason = own_output(ref, settings, store) or _marked(_mapping(data.get("metadata")))
    return Skip(reason) if reason else Work([Item(subject=ref.key, obj=ref)])


def _knative_s3(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    key = next((str(incoming.extension(n)) for n in KEY_EXTENSIONS if incoming.extension(n)), None)
    if key is None and incoming.subject and incoming.subject != KNATIVE_S3_SUBJECT:
        key = incoming.subject
    return _carried(incoming, None, key, settings, store)


def _camel(incoming: Incoming, settings: Settings, store: ResultStore) -> Work | Skip:
    """The Kamelet's event carries the object's bytes; the key is the subject (as listed, not
    encoded) and the bucket ends the source."""
    bucket = (
        incoming.source.removeprefix(CAMEL_SOURCE_PREFIX)
        if incoming.source.startswith(CAMEL_SOURCE_PREFIX)
        else None
    )
    return _carried(incoming, bucket or None, incoming.subject, settings, store)


def _carried(
    incoming: Incoming, bucket: str | None, key: str | None, settings: Settings, store: ResultStore
) -> Work | Skip:
    """An event whose data is the object itself."""
    data = raw_bytes(incoming.data)
    if key is not None:
        if key.endswith("/") and not data:
            return Skip(f"{clip(key)!r} is a folder marker (a key ending in '/', no bytes)")
        reason = own_output(ObjectRef(bucket=bucket, key=key), settings, store)
        if reason:
            return Skip(reason)
    filename = key.rsplit("/", 1)[-1] if key else incoming.id
    return Work([Item(subject=key or incoming.id, data=data, filename=filename)])


def own_output(ref: ObjectRef, settings: Settings, store: ResultStore) -> str | None:
    """A reason to skip an object this function wrote, or one under a configured skip prefix."""
    if store.is_output(ref.bucket, ref.key):
        return f"{clip(ref.key)!r} is under the result store's output prefix"
    for prefix in settings.event_skip_prefixes:
        full = f"{ref.bucket}/{ref.key}" if ref.bucket else ref.key
        if ref.key.startswith(prefix + "/") or full.startswith(prefix + "/"):
            return f"{clip(ref.key)!r} is under OCR_EVENT_SKIP_PREFIXES entry {prefix!r}"
    return None


def _marked(meta: Mapping[str, Any]) -> str | None:
    """Objects we wrote carry user metadata `ocr-output: 1` (MinIO, GCS and Ceph report it)."""
    name, value = OUTPUT_MARKER
    for k, v in meta.items():
        if str(k).lower().removeprefix("x-amz-meta-") == name and str(v) == value:
            return "the object carries this function's output marker"
    return None


# --- senders' values ---------------------------------------------------------------------------------


def json_data(data: Any) -> Any:
    if isinstance(data, (bytes, str)):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
    return data


def raw_bytes(data: Any) -> bytes:
    """The object's bytes; the SDK hands back JSON-looking bodies parsed, so undo that."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if data is None:
        return b""
    return json.dumps(data).encode()


def _size(value: Any) -> int:
    """A reported object size (Ceph and GCS send it as a string); 0 when absent or unreadable."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one: senders' fields may hold anything."""
    return value if isinstance(value, dict) else {}


def _utf8(text: str) -> bool:
    """Whether `text` can be an S3 key (JSON's lone-surrogate escapes cannot)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
