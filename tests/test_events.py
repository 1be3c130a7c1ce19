"""Storage events and our own request events, built with the cloudevents SDK in binary and structured
mode, POSTed to the function built by `create_app` in process with a fake engine, storing results in
S3 (moto over HTTP); plus MinIO's plain-JSON webhook and its HEAD probe. Each asserts the result in
the bucket and the reply CloudEvent; the fake engine's text names the pixels it was given, so each
test sees that its own object was read. Real OCR of an event runs in tests/test_ocr_e2e.py."""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

from function import events
from function.config import load_settings
from function.store import S3Store
from tests.conftest import BUCKET, RESULT_PREFIX, engine_calls
from tests.fakes import AppServer, fake_markdown_of
from tests.server import FunctionServer
from tests.test_http_inputs import text_image

MODES = [pytest.param(to_binary, id="binary"), pytest.param(to_structured, id="structured")]
TRICKY_KEY = "inbox/Скан 100% + отчёт.png"  # space, '%', '+', Cyrillic


def post(server: AppServer, event: CloudEvent, mode: Any) -> requests.Response:
    headers, body = mode(event)
    return requests.post(server.url + "/", headers=headers, data=body, timeout=180)


def reply_of(resp: requests.Response, kind: str = "completed") -> CloudEvent:
    """The reply event: binary mode, the expected type, JSON data."""
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("ce-specversion") == "1.0", resp.headers
    # ce-* values are percent-encoded on the wire (CloudEvents HTTP binding); the v1 SDK leaves them so.
    headers = {k: unquote(v) if k.lower().startswith("ce-") else v for k, v in resp.headers.items()}
    reply = from_http(headers, resp.content)
    assert reply["type"] == f"ocr.document.{kind}", reply.data
    assert reply["datacontenttype"] == "application/json"
    return reply


def assert_result(reply: CloudEvent, event_id: str, subject: str, text: str) -> dict[str, Any]:
    """Correlated to the event, results in the bucket under the output prefix, read from the image
    of `text`."""
    text = fake_markdown_of(text_image(text))
    assert reply["subject"] == subject and reply["correlationid"] == event_id
    data = reply.data
    assert data["status"] == "success" and data["input_type"] == "cloudevent"
    for part in ("markdown", "json", "manifest"):
        assert data["results"][part]["uri"].startswith(f"s3://{BUCKET}/{RESULT_PREFIX}/")
    markdown = requests.get(data["results"]["markdown"]["url"], timeout=10)
    assert markdown.status_code == 200 and text in markdown.text, markdown.text
    return data


def upload(s3, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key=key, Body=text_image(text), ContentType="image/png")


def s3_record(key: str, event_name: str = "ObjectCreated:Put", source: str = "aws:s3", **obj: Any) -> dict:
    """An S3-style record; `key` must already be encoded the way the sender encodes it."""
    return {
        "eventVersion": "2.1",
        "eventSource": source,
        "awsRegion": "us-east-1",
        "eventName": event_name,
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1024, **obj}},
    }


def aws_event(key: str, event_name: str = "ObjectCreated:Put") -> CloudEvent:
    attrs = {"type": f"com.amazonaws.s3.{event_name}", "source": f"aws:s3.us-east-1.{BUCKET}"}
    # AWS form-encodes the key: space -> '+', but leaves '/' alone.
    return CloudEvent(attrs, {"Records": [s3_record(quote_plus(key, safe="/"), event_name)]})


# --- every source, both modes ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_aws_s3_notification(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/aws-{mode.__name__}.png"
    upload(s3, key, f"Aws {len(mode.__name__)}81 note")
    event = aws_event(key)
    reply = reply_of(post(s3_app, event, mode))
    assert_result(reply, event["id"], key, f"Aws {len(mode.__name__)}81 note")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_ceph_rgw_cloudevent(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/ceph {mode.__name__}.png"
    upload(s3, key, f"Ceph {len(mode.__name__)}92 note")
    record = s3_record(key, source="ceph:s3", metadata=[], tags=[])  # Ceph does not encode keys
    record["s3"]["object"]["size"] = "1024"  # Ceph documents it as a string
    attrs = {
        "type": "com.amazonaws.ObjectCreated:Put",
        "source": f"ceph:s3.zg1.{BUCKET}",
        "subject": key,
        "id": "tx000.zone-1",
    }
    reply = reply_of(post(s3_app, CloudEvent(attrs, {"Records": [record]}), mode))
    assert_result(reply, "tx000.zone-1", key, f"Ceph {len(mode.__name__)}92 note")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_gcs_object_finalized(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/gcs+{mode.__name__}.png"  # GCS names are not encoded: '+' stays '+'
    upload(s3, key, f"Gcs {len(mode.__name__)}37 note")
    attrs = {
        "type": "google.cloud.storage.object.v1.finalized",
        "source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
        "subject": f"objects/{key}",
    }
    data = {"bucket": BUCKET, "name": key, "contentType": "image/png", "size": "1024", "generation": "1"}
    event = CloudEvent(attrs, data)
    assert_result(reply_of(post(s3_app, event, mode)), event["id"], key, f"Gcs {len(mode.__name__)}37 note")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_knative_aws_s3_integration_source_carries_the_bytes(s3_app: AppServer, mode) -> None:  # type: ignore[no-untyped-def]
    attrs = {
        "type": "dev.knative.eventing.aws-s3",
        "source": "dev.knative.eventing.aws-s3-source",
        "subject": "aws-s3-source",  # the fixed default: no key, so the event id names the file
        "datacontenttype": "application/octet-stream",
    }
    event = CloudEvent(attrs, text_image(f"Knative {len(mode.__name__)}46 body"))
    reply = reply_of(post(s3_app, event, mode))
    data = assert_result(reply, event["id"], event["id"], f"Knative {len(mode.__name__)}46 body")
    assert data["document"]["filename"] == event["id"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_own_request_type_carries_the_json_body(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/request-{mode.__name__}.png"
    upload(s3, key, f"Request {len(mode.__name__)}55 body")
    attrs = {"type": "ocr.document.requested", "source": "/tests", "subject": key}
    body = {"s3_uri": f"s3://{BUCKET}/{key}", "return_content": True}
    event = CloudEvent(attrs, body)
    data = assert_result(
        reply_of(post(s3_app, event, mode)), event["id"], key, f"Request {len(mode.__name__)}55 body"
    )
    assert fake_markdown_of(text_image(f"Request {len(mode.__name__)}55 body")) in data["content"]["markdown"]
    inline = {"image_base64": base64.b64encode(text_image("Inline 2718 doc")).decode(), "filename": "in.png"}
    event = CloudEvent({"type": "ocr.document.requested", "source": "/tests"}, inline)
    assert_result(reply_of(post(s3_app, event, mode)), event["id"], "in.png", "Inline 2718 doc")


@pytest.mark.slow
def test_minio_webhook_plain_json_with_the_tricky_key(s3_app: AppServer, s3) -> None:  # type: ignore[no-untyped-def]
    key = "inbox/minio/Скан 100% + отчёт.png"
    upload(s3, key, "Minio 6161 hook")
    record = s3_record(quote_plus(key), "s3:ObjectCreated:Put", "minio:s3")  # Go QueryEscape: '/' -> %2F
    record["responseElements"] = {"x-amz-request-id": "17A0MINIO"}
    body = {"EventName": "s3:ObjectCreated:Put", "Key": f"{BUCKET}/{key}", "Records": [record]}
    assert requests.head(s3_app.url + "/", timeout=10).status_code == 200  # MinIO's liveness probe
    resp = requests.post(s3_app.url + "/", json=body, timeout=180)
    data = assert_result(reply_of(resp), "17A0MINIO", key, "Minio 6161 hook")
    assert data["document"]["filename"] == "Скан_100_+_отчёт.png"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_tricky_key_decoded_once_and_redelivery_runs_no_ocr(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = TRICKY_KEY.replace(".png", f" {mode.__name__}.png")
    upload(s3, key, f"Tricky {len(mode.__name__)}24 key")
    event = aws_event(key)
    assert "%25" in event.data["Records"][0]["s3"]["object"]["key"]  # '%' arrives encoded
    first = assert_result(
        reply_of(post(s3_app, event, mode)), event["id"], key, f"Tricky {len(mode.__name__)}24 key"
    )
    calls = engine_calls(s3_app)
    again = reply_of(post(s3_app, event, mode)).data  # the broker delivers it again
    assert again["cached"] is True and engine_calls(s3_app) == calls
    assert again["results"]["markdown"]["uri"] == first["results"]["markdown"]["uri"]
    assert again["document"] == first["document"]


@pytest.mark.slow
def test_an_s3_event_is_read_by_the_real_engine_in_a_real_process(s3_server: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    """End to end: the event through functions-framework and gunicorn, the object read from S3 and
    recognised by RapidOCR, the reply event carrying the text."""
    key = "inbox/real-engine 7 + one.png"
    upload(s3, key, "Real 4711 event")
    event = aws_event(key)
    event["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    resp = post(s3_server, event, to_binary)
    reply = reply_of(resp)
    assert reply["subject"] == key and reply["correlationid"] == event["id"]
    assert resp.headers["ce-traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    markdown = requests.get(reply.data["results"]["markdown"]["url"], timeout=10)
    assert markdown.status_code == 200 and "4711" in markdown.text, markdown.text


# --- skipped, failed, malformed --------------------------------------------------------------------


def assert_skipped(resp: requests.Response, word: str) -> None:
    assert resp.status_code == 202, resp.text
    assert "ce-type" not in {k.lower() for k in resp.headers}  # no reply event
    body = resp.json()
    assert body["status"] == "skipped" and word in body["reason"], body


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_event_for_the_output_prefix_is_skipped(s3_app: AppServer, s3, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"{RESULT_PREFIX}/loop-{mode.__name__}/document.md"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"# not for OCR")
    calls = engine_calls(s3_app)
    assert_skipped(post(s3_app, aws_event(key), mode), "output prefix")
    assert engine_calls(s3_app) == calls


@pytest.mark.slow
def test_deletes_and_other_events_are_acknowledged_and_skipped(s3_app: AppServer) -> None:
    assert_skipped(
        post(s3_app, aws_event("inbox/gone.png", "ObjectRemoved:Delete"), to_binary), "ObjectRemoved"
    )
    gcs = CloudEvent(
        {"type": "google.cloud.storage.object.v1.deleted", "source": "//storage.googleapis.com/x"},
        {"bucket": BUCKET, "name": "inbox/gone.png"},
    )
    assert_skipped(post(s3_app, gcs, to_structured), "not an object creation")
    other = CloudEvent({"type": "com.example.unrelated", "source": "/x"}, {"hello": "world"})
    assert_skipped(post(s3_app, other, to_binary), "com.example.unrelated")
    mine = CloudEvent({"type": "ocr.document.completed", "source": "/ocr-function"}, {"status": "success"})
    assert_skipped(post(s3_app, mine, to_binary), "own reply")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_missing_object_gives_a_failed_reply(s3_app: AppServer, mode) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/missing {uuid.uuid4().hex}.png"
    event = aws_event(key)
    reply = reply_of(post(s3_app, event, mode), "failed")
    assert reply["subject"] == key and reply["correlationid"] == event["id"]
    assert reply.data["status"] == "error" and reply.data["error"]["code"] == "not_found"


@pytest.mark.slow
def test_bad_document_gives_a_failed_reply(s3_app: AppServer, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key="inbox/notes.png", Body=b"plain text, not an image")
    reply = reply_of(post(s3_app, aws_event("inbox/notes.png"), to_binary), "failed")
    assert reply.data["error"]["code"] == "unsupported_media_type"


@pytest.mark.slow
def test_malformed_cloudevent_is_a_json_400(s3_app: AppServer) -> None:
    headers = {"Content-Type": "application/cloudevents+json"}
    resp = requests.post(s3_app.url + "/", data=b'{"type": "x"}', headers=headers, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_request"
    assert "Traceback" not in resp.text


# --- parsing, in process ---------------------------------------------------------------------------


SETTINGS = load_settings(
    {"OCR_STORE": f"s3://{BUCKET}/{RESULT_PREFIX}", "OCR_EVENT_SKIP_PREFIXES": "archive"}
)
STORE = S3Store(BUCKET, RESULT_PREFIX, SETTINGS)


def plan_records(*records: dict) -> events.Work | events.Skip:
    incoming = events.read_webhook({"Records": list(records)})
    return events.plan(incoming, SETTINGS, STORE)


@pytest.mark.parametrize(
    "encoded",
    [
        quote_plus(TRICKY_KEY, safe="/"),  # AWS
        quote_plus(TRICKY_KEY),  # MinIO: '/' as %2F too
        quote(TRICKY_KEY, safe="/"),  # %20 for spaces
    ],
)
def test_keys_are_decoded_exactly_once(encoded: str) -> None:
    work = plan_records(s3_record(encoded))
    assert isinstance(work, events.Work)
    assert work.items[0].obj == events.ObjectRef(BUCKET, TRICKY_KEY)


def test_literal_plus_and_percent_survive() -> None:
    work = plan_records(s3_record("a%2Bb%2525.png"))  # the key "a+b%25.png"
    assert isinstance(work, events.Work) and work.items[0].obj.key == "a+b%25.png"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "record,word",
    [
        (s3_record("archive/x.png"), "OCR_EVENT_SKIP_PREFIXES"),
        (s3_record("results/x/document.md"), "output prefix"),
        (s3_record("in/x.png", userMetadata={"X-Amz-Meta-Ocr-Output": "1"}), "output marker"),
        (s3_record("in/x.png", metadata=[{"key": "x-amz-meta-ocr-output", "val": "1"}]), "output marker"),
        (s3_record("in/x.png", "s3:ObjectAccessed:Get"), "not an object creation"),
    ],
)
def test_records_that_are_skipped(record: dict, word: str) -> None:
    skip = plan_records(record)
    assert isinstance(skip, events.Skip) and word in skip.reason


def test_output_prefix_in_another_bucket_is_processed() -> None:
    record = s3_record("results/x.png")
    record["s3"]["bucket"]["name"] = "uploads"
    assert isinstance(plan_records(record), events.Work)


def test_knative_source_key_from_an_extension() -> None:
    event = CloudEvent(
        {"type": "dev.knative.eventing.aws-s3", "source": "s", "key": "scans/a.png"}, b"\x89PNG..."
    )
    headers, body = to_binary(event)
    incoming = events.read_cloudevent(headers, body, "application/octet-stream")
    work = events.plan(incoming, SETTINGS, STORE)
    assert isinstance(work, events.Work)
    assert (work.items[0].filename, work.items[0].subject, work.items[0].data) == (
        "a.png",
        "scans/a.png",
        b"\x89PNG...",
    )


def test_reply_for_several_records_lists_them_all() -> None:
    incoming = events.read_webhook({"Records": [s3_record("a.png"), s3_record("b.png")]})
    work = events.plan(incoming, SETTINGS, STORE)
    assert isinstance(work, events.Work) and len(work.items) == 2
    outcomes = [{"status": "success"}, {"status": "error", "error": {"code": "not_found"}}]
    headers, body = events.reply(incoming, work.items, outcomes, SETTINGS)
    reply = from_http(headers, body)
    assert reply["type"] == "ocr.document.failed" and reply.data["documents"] == outcomes
