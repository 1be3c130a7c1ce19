"""Property tests (hypothesis) of what the function parses from untrusted input: storage events and
CloudEvents (`function/events.py`) and request options (`function/options.py`).

Whatever arrives, a parser either returns a valid result or raises an `OCRError` with a 4xx status:
never another exception, which the transport would answer as a 500 (or, for an event, a broker
would retry forever). Keys survive their senders' encodings, page selections round-trip, and the
cache key of the options does not depend on the order of the fields.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from function import events
from function.config import Settings
from function.errors import BadRequest, OCRError
from function.options import Options, PageSelection, parse_pages
from function.results import result_prefix
from function.store import S3Store

# A hundred examples each keep the file at a few seconds; OCR_PROPERTY_EXAMPLES=5000 digs deeper.
EXAMPLES = int(os.environ.get("OCR_PROPERTY_EXAMPLES", "100"))
PROPERTIES = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

BUCKET = "inbox"
SETTINGS = Settings(store="s3://ocr-results/results", event_skip_prefixes=("inbox/tmp", "scratch"))
STORES = {
    "prefixed": S3Store("ocr-results", "results", SETTINGS),
    "shared-bucket": S3Store(BUCKET, "results", SETTINGS),
}
KNOWN_TYPES = [
    SETTINGS.event_request_type,
    SETTINGS.event_completed_type,
    SETTINGS.event_failed_type,
    events.GCS_FINALIZED,
    events.GCS_PREFIX + "deleted",
    events.KNATIVE_S3,
    "com.amazonaws.s3.ObjectCreated:Put",
    "s3:ObjectCreated:Put",
    "s3:ObjectRemoved:Delete",
]
# Names the parsers look for, so that arbitrary structures reach past the first `.get`.
FIELD_NAMES = [
    "Records",
    "EventName",
    "EventType",
    "Key",
    "eventName",
    "eventSource",
    "responseElements",
    "x-amz-request-id",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "sequencer",
    "userMetadata",
    "metadata",
    "val",
    "ocr-output",
    "X-Amz-Meta-Ocr-Output",
    "image_base64",
    "filename",
    "pages",
]

# Every code point, lone surrogates too: JSON's "\ud800" escapes decode to them.
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=12)
# Text a sender can actually encode (S3 keys are UTF-8).
utf8_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
    | st.sampled_from(["ObjectCreated:Put", "s3:ObjectCreated:Post", "1", "results/a.png", ""])
)
keys = st.sampled_from(FIELD_NAMES) | any_text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)


def s3_record(key: str, bucket: str = BUCKET, name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1024, "sequencer": "0A1B", **obj}},
    }


def minio_webhook(key: str) -> dict[str, Any]:
    """MinIO's notify_webhook body: `Key` is bucket/key, the record's key is URL-encoded ('/' too)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{BUCKET}/{key}",
        "Records": [s3_record(quote(key, safe=""), userMetadata={"content-type": "image/png"})],
    }


def structured(attributes: dict[str, Any], data: Any = None) -> tuple[dict[str, str], bytes, str]:
    """A structured-mode CloudEvent as it arrives over HTTP: (headers, body, mimetype)."""
    body = {"specversion": "1.0", "id": "ev-1", "source": "/test", **attributes}
    if data is not None:
        body["data"] = data
    return (
        {"Content-Type": "application/cloudevents+json"},
        json.dumps(body).encode(),
        "application/cloudevents+json",
    )


def templates(key: str = "scans/a.png") -> dict[str, tuple[str, Any, dict[str, Any]]]:
    """Valid events of every kind: name -> (type, data, extra attributes)."""
    return {
        "aws": (
            "com.amazonaws.s3.ObjectCreated:Put",
            {"Records": [s3_record(quote_plus(key, safe="/"))]},
            {},
        ),
        "ceph": (
            "com.amazonaws.ObjectCreated:Put",
            {"Records": [s3_record(key, metadata=[{"key": "x-amz-meta-a", "val": "1"}], tags=[])]},
            {"subject": key},
        ),
        "gcs": (events.GCS_FINALIZED, {"bucket": BUCKET, "name": key, "metadata": {"a": "b"}}, {}),
        "knative": (events.KNATIVE_S3, {"some": "bytes"}, {"key": key, "subject": "aws-s3-source"}),
        "requested": (SETTINGS.event_request_type, {"image_base64": "iVBORw0K", "filename": "a.png"}, {}),
    }


# --- what a valid result is ----------------------------------------------------------------------------


def attempt(parse: Callable[[], Any]) -> Any:
    """The parser's result, or None when it refused the input with a 4xx OCRError."""
    try:
        return parse()
    except OCRError as exc:
        assert 400 <= exc.status < 500, f"{type(exc).__name__} {exc.status}: {exc.message}"
        assert isinstance(exc.message, str) and exc.message
        return None


def check_incoming(incoming: events.Incoming) -> None:
    assert (
        isinstance(incoming.id, str) and isinstance(incoming.source, str) and isinstance(incoming.type, str)
    )
    assert incoming.subject is None or isinstance(incoming.subject, str)


def check_decision(incoming: events.Incoming, decision: events.Work | events.Skip) -> None:
    """A Skip says why; a Work names documents the transport can read, and its reply can be sent."""
    if isinstance(decision, events.Skip):
        assert isinstance(decision.reason, str) and decision.reason
        return
    assert isinstance(decision, events.Work) and decision.items
    for item in decision.items:
        assert isinstance(item.subject, str)
        if item.obj is not None:
            assert item.data is None and not item.fields
            assert isinstance(item.obj.key, str) and item.obj.key
            item.obj.key.encode()  # an S3 key is UTF-8: no lone surrogates
            assert item.obj.bucket is None or (isinstance(item.obj.bucket, str) and item.obj.bucket)
            assert isinstance(item.obj.filename, str)
        elif item.data is not None:
            assert isinstance(item.data, bytes) and not item.fields
            assert item.filename is None or isinstance(item.filename, str)
        else:
            assert isinstance(item.fields, dict) and item.fields, "an item must name a document"
    outcomes = [
        {"status": "success", "request_id": "r"}
        if n % 2 == 0
        else {"status": "error", "error": {"code": "bad_request", "message": "m"}, "subject": item.subject}
        for n, item in enumerate(decision.items)
    ]
    headers, body = events.reply(incoming, decision.items, outcomes, SETTINGS)
    for name, value in headers.items():
        assert isinstance(name, str) and isinstance(value, str)
        value.encode("latin-1")  # an HTTP header value
        assert "\n" not in value and "\r" not in value
    assert isinstance(body, bytes)
    json.loads(body)


def run_event(headers: dict[str, str], body: bytes, mimetype: str, store: str = "prefixed") -> Any:
    """HTTP request -> Incoming -> plan -> reply, as the transport does; the decision or None."""
    if not events.is_cloudevent(headers, mimetype):
        return None
    incoming = attempt(lambda: events.read_cloudevent(headers, body, mimetype))
    if incoming is None:
        return None
    check_incoming(incoming)
    decision = attempt(lambda: events.plan(incoming, SETTINGS, STORES[store]))
    if decision is not None:
        check_decision(incoming, decision)
    return decision


def run_webhook(body: Any, store: str = "prefixed") -> Any:
    if not events.is_storage_webhook(body):
        return None
    incoming = attempt(lambda: events.read_webhook(body))
    if incoming is None:
        return None
    check_incoming(incoming)
    decision = attempt(lambda: events.plan(incoming, SETTINGS, STORES[store]))
    if decision is not None:
        check_decision(incoming, decision)
    return decision


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one to three changes deep inside: a value replaced by any JSON, or a key dropped."""
    value = json.loads(json.dumps(value))

    def change(node: Any) -> Any:
        if isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)) > 0:
            index = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if draw(st.integers(0, 4)) == 0:
                del node[index]
            else:
                node[index] = change(node[index])
            return node
        return draw(json_values)

    for _ in range(draw(st.integers(1, 3))):
        value = change(value)
    return value


# --- events: arbitrary structures ---------------------------------------------------------------------


@PROPERTIES
@given(body=json_values)
def test_is_storage_webhook_takes_anything(body: Any) -> None:
    assert events.is_storage_webhook(body) in (True, False)


@PROPERTIES
@given(records=st.lists(json_values, max_size=3), extra=st.dictionaries(keys, json_values, max_size=4))
@example(records=[{"s3": "x", "eventName": "ObjectCreated:Put"}], extra={})
@example(records=["x"], extra={"Key": 5, "EventName": SETTINGS.event_request_type})
@example(records=[{"responseElements": "x"}], extra={})
def test_webhook_of_any_records(records: list[Any], extra: dict[str, Any]) -> None:
    for store in STORES:
        run_webhook({**extra, "Records": records}, store)


@PROPERTIES
@given(
    type_=st.sampled_from(KNOWN_TYPES) | any_text,
    data=json_values,
    subject=st.none() | json_values,
    extensions=st.dictionaries(st.sampled_from(events.KEY_EXTENSIONS), json_values, max_size=2),
)
@example(type_=SETTINGS.event_request_type, data={}, subject=None, extensions={})
@example(type_=events.KNATIVE_S3, data=None, subject=5, extensions={})
@example(type_=events.GCS_FINALIZED, data={"name": "a", "bucket": ["b"]}, subject=None, extensions={})
@example(type_=events.GCS_FINALIZED, data={"name": "a", "metadata": "x"}, subject=None, extensions={})
def test_structured_cloudevent_of_any_data(type_: str, data: Any, subject: Any, extensions: dict) -> None:
    attributes: dict[str, Any] = {"type": type_, **extensions}
    if subject is not None:
        attributes["subject"] = subject
    for store in STORES:
        run_event(*structured(attributes, data), store)


@PROPERTIES
@given(
    headers=st.dictionaries(
        st.sampled_from(
            ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-key", "Content-Type"]
        )
        | st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
        st.sampled_from(["1.0", "0.3", "application/json", events.KNATIVE_S3, SETTINGS.event_request_type])
        | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12),
        max_size=6,
    ),
    body=st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()),
    mimetype=st.sampled_from(["application/cloudevents+json", "application/json", "", "text/plain"]),
)
@example(headers={}, body=b"'W\xce\x8a\xfb\xb3", mimetype="application/cloudevents+json")
@example(headers={}, body=b"[" * 100_000, mimetype="application/cloudevents+json")
@example(headers={}, body=b"[1]", mimetype="application/cloudevents-batch+json")
def test_cloudevent_of_any_request(headers: dict[str, str], body: bytes, mimetype: str) -> None:
    """Binary mode (ce-* headers, latin-1 as HTTP delivers them) or structured mode, any body."""
    if "ce-specversion" in headers or mimetype.startswith("application/cloudevents"):
        run_event(headers, body, mimetype)


# --- events: valid ones, mutated ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(templates()))
@PROPERTIES
@given(data=st.data())
def test_mutated_events(kind: str, data: st.DataObject) -> None:
    type_, payload, attributes = templates()[kind]
    event = data.draw(mutated({"type": type_, "data": payload, **attributes}))
    if not isinstance(event, dict):
        return
    headers, body, mimetype = structured({})
    body_obj = {**json.loads(body), **event}
    # run_event checks whatever comes back: a 4xx refusal, or a decision whose reply can be sent.
    run_event(headers, json.dumps(body_obj).encode(), mimetype, data.draw(st.sampled_from(sorted(STORES))))


@PROPERTIES
@given(body=mutated(minio_webhook("scans/Скан 1+1.png")), store=st.sampled_from(sorted(STORES)))
def test_mutated_minio_webhook(body: Any, store: str) -> None:
    run_webhook(body, store)


def test_templates_are_work() -> None:
    """The valid events the mutations start from are processed (else the tests above prove little)."""
    for kind, (type_, payload, attributes) in templates().items():
        decision = run_event(*structured({"type": type_, **attributes}, payload))
        assert isinstance(decision, events.Work), (kind, decision)
    assert isinstance(run_webhook(minio_webhook("scans/a.png")), events.Work)


# --- events: keys survive their senders' encodings ----------------------------------------------------

object_keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=24).filter(
    lambda k: not k.startswith(("tmp/", "results/")) and k != "results"
)


def only_item(decision: Any) -> events.Item:
    assert isinstance(decision, events.Work) and len(decision.items) == 1, decision
    return decision.items[0]


@PROPERTIES
@given(key=object_keys)
@example(key="inbox/Скан 100% + отчёт.png")
@example(key="a+b%2Bc d/%zz/é")
def test_record_keys_are_decoded_exactly_once(key: str) -> None:
    """AWS encodes space as '+' and keeps '/'; MinIO also encodes '/'; '%XX' for a space is read too."""
    for encoded in (quote_plus(key, safe="/"), quote_plus(key, safe=""), quote(key, safe="")):
        item = only_item(run_event(*structured({"type": "t"}, {"Records": [s3_record(encoded)]})))
        assert item.obj == events.ObjectRef(bucket=BUCKET, key=key)
        assert item.subject == key and item.obj.filename == key.rsplit("/", 1)[-1]
    webhook = minio_webhook(key)
    item = only_item(run_webhook(webhook))
    assert item.obj is not None and item.obj.key == key


@PROPERTIES
@given(key=object_keys)
@example(key="a+b%20c")
def test_ceph_keys_are_taken_as_sent(key: str) -> None:
    """Ceph RGW does not encode keys (rgw_notify.cc): '+' and '%20' are the key's own characters."""
    record = s3_record(key) | {"eventSource": "ceph:s3"}
    event = structured({"type": "com.amazonaws.ObjectCreated:Put"}, {"Records": [record]})
    item = only_item(run_event(*event))
    assert item.obj == events.ObjectRef(bucket=BUCKET, key=key)


@PROPERTIES
@given(key=object_keys)
@example(key="a+b%20c")
def test_gcs_names_are_not_decoded(key: str) -> None:
    data = {"bucket": BUCKET, "name": key, "size": "9"}  # not a folder marker even if it ends in '/'
    item = only_item(run_event(*structured({"type": events.GCS_FINALIZED}, data)))
    assert item.obj == events.ObjectRef(bucket=BUCKET, key=key)


@PROPERTIES
@given(key=object_keys, via=st.sampled_from(events.KEY_EXTENSIONS))
def test_knative_key_extension_names_the_file(key: str, via: str) -> None:
    decision = run_event(*structured({"type": events.KNATIVE_S3, via: key, "subject": "aws-s3-source"}, "x"))
    item = only_item(decision)
    assert item.subject == key and item.filename == key.rsplit("/", 1)[-1] and item.data == b"x"


@PROPERTIES
@given(key=object_keys)
def test_reply_subject_round_trips(key: str) -> None:
    """The reply's ce-subject is the decoded key, percent-encoded as the HTTP binding asks."""
    event = structured({"type": "t"}, {"Records": [s3_record(quote_plus(key, safe="/"))]})
    incoming = events.read_cloudevent(*event)
    decision = events.plan(incoming, SETTINGS, STORES["prefixed"])
    headers, _ = events.reply(incoming, decision.items, [{"status": "success"}], SETTINGS)
    assert unquote(headers["ce-subject"]) == key
    headers["ce-subject"].encode("ascii")


@PROPERTIES
@given(key=object_keys, where=st.sampled_from(["results/", "tmp/", "scratch-bucket"]))
def test_own_output_and_skip_prefixes_are_skipped(key: str, where: str) -> None:
    """Under the store's prefix in its bucket, or under an OCR_EVENT_SKIP_PREFIXES entry: no loop."""
    if where == "results/":
        record = s3_record(quote_plus("results/" + key, safe="/"), bucket="ocr-results")
    elif where == "tmp/":
        record = s3_record(quote_plus("tmp/" + key, safe="/"))  # inbox/tmp is a skip prefix
    else:
        record = s3_record(quote_plus(key, safe="/"), bucket="scratch")  # "scratch": a whole bucket
    assert isinstance(run_event(*structured({"type": "t"}, {"Records": [record]})), events.Skip)


# --- options --------------------------------------------------------------------------------------------

OPTION_NAMES = ["return_content", "pages", "lang", "force", "visualize", "filename", "image_base64"]
option_text = st.text(any_char, max_size=10) | st.sampled_from(
    ["true", "FALSE", " yes ", "off", "", "1-3,7", "2-", "all", "0", "3-1", "1-\t", "en", "rus+eng", "en\n"]
)


@PROPERTIES
@given(fields=st.dictionaries(st.sampled_from(OPTION_NAMES) | any_text, option_text, max_size=6))
@example(fields={"pages": "1-\t"})
@example(fields={"pages": "1" * 5000})
@example(fields={"lang": "en\n"})
def test_options_from_any_strings(fields: dict[str, str]) -> None:
    try:
        options = Options.parse(fields)
    except BadRequest:
        return
    assert options.lang is None or re.fullmatch(r"[A-Za-z_]{2,16}(\+[A-Za-z_]{2,16})*", options.lang)
    assert all(isinstance(v, str) for v in options.output_affecting().values())
    if options.pages is not None:
        assert options.pages == parse_pages(str(options.pages))


@PROPERTIES
@given(fields=st.dictionaries(st.sampled_from(OPTION_NAMES), json_values, max_size=5))
def test_options_from_any_json(fields: dict[str, Any]) -> None:
    """The JSON input form and event data hand over any JSON value, not only strings."""
    attempt(lambda: Options.parse(fields))


ranges = st.lists(
    st.tuples(st.integers(1, 400), st.none() | st.integers(0, 50)).map(
        lambda r: (r[0], None if r[1] is None else r[0] + r[1])
    ),
    min_size=1,
    max_size=6,
)


def spell(selection: list[tuple[int, int | None]], draw: st.DrawFn) -> str:
    """A page selection as a person might type it: single pages, ranges, open ends, spaces."""
    space = st.sampled_from(["", "", " ", "  "])
    parts = []
    for start, end in selection:
        if end == start and draw(st.booleans()):
            parts.append(f"{draw(space)}{start}{draw(space)}")
        else:
            tail = "" if end is None else str(end)
            parts.append(f"{draw(space)}{start}{draw(space)}-{draw(space)}{tail}{draw(space)}")
    return ",".join(parts)


@PROPERTIES
@given(selection=ranges, data=st.data())
@example(selection=[(1, 3), (7, 7)], data=None)
def test_page_selections_round_trip(
    selection: list[tuple[int, int | None]], data: st.DataObject | None
) -> None:
    text = spell(selection, data.draw) if data is not None else "1-3,7"
    parsed = Options.parse({"pages": text}).pages
    assert parsed == PageSelection(tuple(selection))
    assert parse_pages(str(parsed)) == parsed
    assert str(parse_pages(str(parsed))) == str(parsed)
    assert re.fullmatch(r"[0-9]+(-[0-9]*)?(,[0-9]+(-[0-9]*)?)*", str(parsed))


@PROPERTIES
@given(selection=ranges, page_count=st.integers(0, 500))
def test_page_indices_stay_within_the_document(
    selection: list[tuple[int, int | None]], page_count: int
) -> None:
    indices = PageSelection(tuple(selection)).indices(page_count)
    assert all(0 <= i < page_count for i in indices)
    assert len(indices) == len(set(indices))
    wanted = {p - 1 for a, b in selection for p in range(a, (page_count if b is None else b) + 1)}
    assert set(indices) == {i for i in wanted if i < page_count}
    # In the order asked for: each page where its first range puts it.
    firsts = [p - 1 for a, b in selection for p in range(a, min(page_count, b or page_count) + 1)]
    assert indices == list(dict.fromkeys(firsts))
    # Counted without listing (a PDF may claim a million pages), and the same number.
    assert PageSelection(tuple(selection)).count(page_count) == len(indices)


option_values = st.fixed_dictionaries(
    {},
    optional={
        "return_content": st.sampled_from(["true", "false", "1", "no"]),
        "pages": st.sampled_from(["1", "1-3,7", "2-", "all", ""]),
        "lang": st.sampled_from(["en", "rus+eng", "ch", ""]),
        "force": st.sampled_from(["yes", "off"]),
        "visualize": st.sampled_from(["true", "0"]),
        "filename": st.sampled_from(["a.png", "scan.pdf"]),
    },
)


@PROPERTIES
@given(fields=option_values, order=st.randoms(use_true_random=False))
def test_output_affecting_is_stable_under_key_order(fields: dict[str, str], order: Any) -> None:
    items = list(fields.items())
    order.shuffle(items)
    first, second = Options.parse(fields), Options.parse(dict(items))
    assert first == second
    assert first.output_affecting() == second.output_affecting()
    prefix = result_prefix("scan.pdf", "0" * 64, "engine-1", first.output_affecting())
    assert prefix == result_prefix(
        "scan.pdf", "0" * 64, "engine-1", dict(reversed(second.output_affecting().items()))
    )
    # Only options that change the result are in the key: return_content and force never are.
    assert set(first.output_affecting()) <= {"pages", "lang", "visualize"}
