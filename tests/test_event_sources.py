"""Storage events as real sources send them: the payloads in tests/fixtures/events/ (taken from the
producers' own repositories, README there), read in process, and POSTed to a real function process
(gunicorn, with the FAKE engine of tests/fake_serve.py: which object was read is told by its
sha256, not by recognising it) that reads its objects from moto over HTTP, in a bucket
with versioning on. Each server test asserts the documented status and which object was read (the
reply's document sha256 against the bytes uploaded), and afterwards that the same worker process
still answers /health/live."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from function import events
from function.config import load_settings
from function.errors import TooLarge
from function.store import S3Store
from tests.conftest import RESULT_PREFIX, S3_KEYS, engine_calls, s3_env
from tests.server import FunctionServer
from tests.test_events import assert_skipped, reply_of
from tests.test_http_inputs import text_image

FIXTURES = Path(__file__).parent / "fixtures" / "events"
VBUCKET = "ocr-events-versioned"  # the module's own bucket and result store, versioning on


def aws(key: str) -> str:
    """AWS form-encodes keys (space -> '+'), keeping '/'."""
    return quote_plus(key, safe="/")


def minio(key: str) -> str:
    """MinIO (Go's url.QueryEscape) and moto encode '/' too."""
    return quote_plus(key, safe="")


def raw(key: str) -> str:
    return key


@dataclass(frozen=True)
class Names:
    """What a fixture names as it is, and how its producer writes keys."""

    bucket: str | None
    key: str | None  # decoded
    version: str | None  # as the fixture carries it ("" = Ceph's unversioned)
    encode: Callable[[str], str]


PAYLOADS = {
    "aws-s3-notification": Names("mybucket", "HappyFace.jpg", "096fKKXTRTtl3on89fVO.nfljtsv6qko", aws),
    "moto-s3-sqs-notification": Names("docs", "in/red flower.pdf", None, minio),
    "minio-webhook": Names("mybucket", "5cdfb588cea4de1db3034a87/colors.xml", "1", minio),
    "ceph-rgw-http-push": Names("mybucket1", "myimage1.jpg", "", raw),
    "ceph-rgw-http-push-cloudevents": Names("mybucket1", "myimage1.jpg", "", raw),
    "knative-cephsource-objectcreated": Names("fishbucket", "fish9.jpg", "", raw),
    "triggermesh-awss3-objectcreated": Names("demobkt-triggermesh", "00000018_kuj4a4e_1.jpg", None, aws),
    "triggermesh-awssqs-s3-notification": Names(
        "mybucket", "HappyFace.jpg", "096fKKXTRTtl3on89fVO.nfljtsv6qko", aws
    ),
    "knative-awssqssource-s3-notification": Names(
        "mybucket", "HappyFace.jpg", "096fKKXTRTtl3on89fVO.nfljtsv6qko", aws
    ),
    "knative-awssqssource-batched": Names(
        "mybucket", "HappyFace.jpg", "096fKKXTRTtl3on89fVO.nfljtsv6qko", aws
    ),
    "eventbridge-s3-object-created": Names(
        "DOC-EXAMPLE-BUCKET1", "example-key", "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", raw
    ),
    "triggermesh-awseventbridge-s3-object-created": Names(
        "DOC-EXAMPLE-BUCKET1", "example-key", "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", raw
    ),
    "gcs-object-finalized": Names("sample-bucket", "folder/Test.cs", None, raw),
    "camel-kamelet-aws-s3-source": Names("mybucket", "hello.txt", None, raw),
}
SKIPPED = {
    "aws-s3-testevent": "s3:TestEvent",
    "triggermesh-awss3-testevent": "s3:TestEvent",
}
# The CloudEvent type that the Knative CephSource gives current Ceph (no "s3:" in eventName).
CEPHSOURCE_CURRENT = "knative-cephsource-objectcreated (current Ceph)"


def payload(name: str) -> dict[str, Any]:
    if name == CEPHSOURCE_CURRENT:
        event = payload("knative-cephsource-objectcreated")
        event["type"], event["data"]["eventName"] = "com.amazonaws.ObjectCreated:Put", "ObjectCreated:Put"
        return event
    return json.loads((FIXTURES / f"{name}.json").read_text())


def structured(type_: str, data: Any, **attributes: str) -> dict[str, Any]:
    """A CloudEvent in the fixtures' (structured) form."""
    return {"specversion": "1.0", "id": "e1", "source": "/x", "type": type_, **attributes, "data": data}


def names(name: str) -> Names:
    return PAYLOADS["knative-cephsource-objectcreated" if name == CEPHSOURCE_CURRENT else name]


# --- every payload as it is, read in process ----------------------------------------------------------

SETTINGS = load_settings({"OCR_STORE": f"s3://{VBUCKET}/{RESULT_PREFIX}"})
STORE = S3Store(VBUCKET, RESULT_PREFIX, SETTINGS)


def plan(event: dict[str, Any]) -> events.Work | events.Skip:
    """The decision for a payload as the transport routes it: a CloudEvent (structured mode, the
    fixtures' own form) or a plain JSON notification."""
    if "specversion" in event:
        body = json.dumps(event).encode()
        incoming = events.read_cloudevent(
            {"Content-Type": "application/cloudevents+json"}, body, "application/cloudevents+json"
        )
    else:
        assert events.is_storage_webhook(event)
        incoming = events.read_webhook(event)
    return events.plan(incoming, SETTINGS, STORE)


@pytest.mark.parametrize("name", [*PAYLOADS, CEPHSOURCE_CURRENT])
def test_each_payload_names_its_object(name: str) -> None:
    """Bucket, key (decoded as its producer encodes it, once) and version, as docs/events.md's table says."""
    work = plan(payload(name))
    assert isinstance(work, events.Work) and len(work.items) == 1, work
    item, expected = work.items[0], names(name)
    if name == "camel-kamelet-aws-s3-source":  # the object's bytes are the data
        assert (item.subject, item.filename, item.data) == (
            "hello.txt",
            "hello.txt",
            b"Hello from S3 Kamelet",
        )
        return
    version = expected.version or None  # GCS `generation` is not an S3 version
    assert item.obj == events.ObjectRef(expected.bucket, str(expected.key), version)


@pytest.mark.parametrize("name,word", SKIPPED.items())
def test_test_events_are_skipped(name: str, word: str) -> None:
    skip = plan(payload(name))
    assert isinstance(skip, events.Skip) and word in skip.reason


def test_knative_integration_source_carries_the_bytes() -> None:
    work = plan(payload("knative-integrationsource-aws-s3"))
    assert isinstance(work, events.Work)
    assert work.items[0].data == b"Hello from AWS S3!" and work.items[0].obj is None


def record(key: str, name: str = "ObjectCreated:Put", source: str = "aws:s3", **obj: Any) -> dict[str, Any]:
    return {
        "eventSource": source,
        "eventName": name,
        "s3": {"bucket": {"name": VBUCKET}, "object": {"key": key, **obj}},
    }


@pytest.mark.parametrize(
    "body,word",
    [
        pytest.param({"Records": [record("inbox/folder/", size=0)]}, "folder marker", id="folder-aws"),
        pytest.param(
            {"Records": [record("inbox%2Ffolder%2F", "s3:ObjectCreated:Put", "minio:s3", size=0)]},
            "folder marker",
            id="folder-minio",
        ),
        pytest.param({"Records": [record("inbox/folder/")]}, "folder marker", id="folder-no-size"),
        pytest.param(
            {"Records": [record("inbox/big.pdf", "ObjectCreated:Post", "ceph:s3", size=0)]},
            "multipart upload starting",
            id="ceph-post",
        ),
        *(
            pytest.param(
                {"Records": [record("inbox/a.png", f"s3:ObjectCreated:{what}", "minio:s3", size=9)]},
                "metadata",
                id=f"minio-{what}",
            )
            for what in ("PutTagging", "DeleteTagging", "PutRetention", "PutLegalHold")
        ),
        pytest.param(
            {"Records": [record("inbox/a.png", "ObjectRemoved:Delete")]},
            "not an object creation",
            id="delete",
        ),
        pytest.param(
            {
                "source": "aws.s3",
                "detail-type": "Object Deleted",
                "detail": {"bucket": {"name": VBUCKET}, "object": {"key": "a.png"}},
            },
            "Object Deleted",
            id="eventbridge-delete",
        ),
    ],
)
def test_not_documents_are_skipped(body: dict[str, Any], word: str) -> None:
    skip = plan(body)
    assert isinstance(skip, events.Skip) and word in skip.reason, skip


def test_a_ceph_form_upload_with_bytes_is_a_document() -> None:
    """Ceph's ObjectCreated:Post is also a POST Object (browser form) upload: with bytes, it is read."""
    work = plan({"Records": [record("inbox/form.png", "ObjectCreated:Post", "ceph:s3", size="2048")]})
    assert isinstance(work, events.Work) and work.items[0].obj == events.ObjectRef(VBUCKET, "inbox/form.png")


def test_an_unknown_format_says_what_it_got_and_what_is_known() -> None:
    skip = plan(structured("com.example.thing", {"hello": 1}))
    assert isinstance(skip, events.Skip)
    assert "'com.example.thing'" in skip.reason and "{hello}" in skip.reason
    assert "not a storage notification this function knows; known: S3 notifications" in skip.reason
    sqs = payload("knative-awssqssource-s3-notification")
    sqs["data"]["Body"] = "an ordinary queue message"
    assert "not a storage notification" in plan(sqs).reason  # type: ignore[union-attr]


def test_unknown_bytes_and_a_batch_with_one_other_message() -> None:
    skip = plan(structured("com.example.blob", "not json at all"))
    assert "with data of 15 bytes, not JSON" in skip.reason  # type: ignore[union-attr]
    batch = payload("knative-awssqssource-batched")
    batch["data"].append({**batch["data"][0], "Body": "an ordinary queue message"})
    work = plan(batch)  # the notification in the batch is processed all the same
    assert isinstance(work, events.Work) and work.items[0].obj.key == "HappyFace.jpg"  # type: ignore[union-attr]


def test_an_sns_envelope_in_an_sqs_message() -> None:
    """S3 -> SNS -> SQS without raw delivery: the notification is the SNS envelope's `Message`."""
    notification = payload("aws-s3-notification")
    sqs = payload("knative-awssqssource-s3-notification")
    sqs["data"]["Body"] = json.dumps({"Type": "Notification", "Message": json.dumps(notification)})
    work = plan(sqs)
    assert isinstance(work, events.Work) and work.items[0].obj.key == "HappyFace.jpg"  # type: ignore[union-attr]


def test_a_key_longer_than_s3_allows_is_skipped() -> None:
    skip = plan({"Records": [record("k" * 1025, size=9)]})
    assert isinstance(skip, events.Skip) and "longer than an object key can be" in skip.reason
    assert len(skip.reason) < 300


def test_records_are_capped_before_any_work() -> None:
    body = {"Records": [record(f"inbox/{i}.png", size=9) for i in range(SETTINGS.event_max_records + 1)]}
    with pytest.raises(TooLarge, match="OCR_EVENT_MAX_RECORDS"):
        plan(body)
    body["Records"].pop()
    assert len(plan(body).items) == SETTINGS.event_max_records  # type: ignore[union-attr]


# --- against a real function process --------------------------------------------------------------


@pytest.fixture(scope="module")
def vserver(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3) -> Iterator[FunctionServer]:  # type: ignore[no-untyped-def]
    """A real function process whose result store (and input bucket) is VBUCKET, versioning on."""
    s3.create_bucket(Bucket=VBUCKET)
    s3.put_bucket_versioning(Bucket=VBUCKET, VersioningConfiguration={"Status": "Enabled"})
    tmp = tmp_path_factory.mktemp("function-events")
    secret = tmp / "aws-secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"] + "\n")
    env = {
        **s3_env(moto_endpoint, secret),
        "OCR_STORE": f"s3://{VBUCKET}/{RESULT_PREFIX}",
        "OCR_INPUT_BUCKETS": VBUCKET,
    }
    with FunctionServer(env, tmp / "server.log", fake=True) as srv:
        yield srv


@pytest.fixture
def ocr(vserver: FunctionServer) -> Iterator[FunctionServer]:
    """The server; after the test, the same worker process still answers /health/live."""
    pid = vserver.worker_pid()
    yield vserver
    assert requests.get(vserver.url + "/health/live", timeout=10).status_code == 200, vserver.log()
    assert vserver.worker_pid() == pid, vserver.log()


def put(s3, key: str, text: str) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    """Uploads an image of `text`: (its bytes, the version id)."""
    data = text_image(text)
    version = s3.put_object(Bucket=VBUCKET, Key=key, Body=data, ContentType="image/png")["VersionId"]
    return data, version


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(server: FunctionServer, event: dict[str, Any], mode: Any = to_binary) -> requests.Response:
    """A fixture-shaped payload as its producer sends it: a CloudEvent (binary mode by default), or
    a plain JSON POST."""
    if "specversion" not in event:
        return requests.post(server.url + "/", json=event, timeout=300)
    attributes = {k: v for k, v in event.items() if k not in ("data", "specversion")}
    headers, body = mode(CloudEvent(attributes, event.get("data")))
    return requests.post(server.url + "/", headers=headers, data=body, timeout=300)


def retarget(name: str, bucket: str, key: str, version: str) -> dict[str, Any]:
    """The payload naming `bucket`, `key` (written as its producer writes keys) and `version`
    instead of its own, wherever they appear (attributes, data, a JSON string inside it)."""
    was = names(name)
    text = json.dumps(payload(name), ensure_ascii=False)
    if was.key is not None:
        text = text.replace(was.encode(was.key), was.encode(key)).replace(was.key, key)
    if was.bucket is not None:
        text = text.replace(was.bucket, bucket)
    if was.version in ("", "1"):
        text = text.replace(f'"versionId": "{was.version}"', f'"versionId": "{version}"')
    elif was.version:
        text = text.replace(was.version, version)
    return json.loads(text)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in [*PAYLOADS, CEPHSOURCE_CURRENT] if not n.startswith("moto")])
def test_each_source_reads_the_object_and_version_it_names(ocr: FunctionServer, s3, name: str) -> None:  # type: ignore[no-untyped-def]
    """Two versions of a key with a space and a '+': an event that names version 1 reads version 1;
    one that names no version reads the latest. The Kamelet carries the bytes itself."""
    tag = uuid.uuid4().hex[:6]
    key = f"inbox/{tag}/scan +1.png"
    first, v1 = put(s3, key, f"First {tag[:4]} 11")
    latest, _ = put(s3, key, f"Latest {tag[:4]} 22")
    event = retarget(name, VBUCKET, key, v1)
    if name.startswith("camel"):
        event["data"] = first
    reply = reply_of(send(ocr, event))
    assert reply["subject"] == key and reply["correlationid"] == event.get("id", reply["correlationid"])
    expected = first if (names(name).version is not None or name.startswith("camel")) else latest
    assert reply.data["status"] == "success" and reply.data["document"]["sha256"] == sha(expected), reply.data


@pytest.mark.slow
def test_ceph_plus_key_reads_that_object_not_the_space_one(ocr: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    """With `scan 1.png` and `scan+1.png` both present, each producer's event reads the object it
    names: Ceph sends keys raw, AWS and MinIO encode them."""
    tag = uuid.uuid4().hex[:6]
    space, _ = put(s3, f"inbox/{tag}/scan 1.png", f"Space {tag[:4]} 31")
    plus, _ = put(s3, f"inbox/{tag}/scan+1.png", f"Plus {tag[:4]} 47")
    cases = [
        ("ceph-rgw-http-push", "scan+1.png", plus),
        ("ceph-rgw-http-push", "scan 1.png", space),
        (CEPHSOURCE_CURRENT, "scan+1.png", plus),
        ("aws-s3-notification", "scan+1.png", plus),  # arrives as scan%2B1.png
        ("aws-s3-notification", "scan 1.png", space),  # arrives as scan+1.png
        ("minio-webhook", "scan+1.png", plus),
    ]
    for name, filename, data in cases:
        event = retarget(name, VBUCKET, f"inbox/{tag}/{filename}", "")
        reply = reply_of(send(ocr, event))
        assert reply.data["document"]["sha256"] == sha(data), (name, filename, reply.data)


@pytest.mark.slow
def test_a_version_that_is_gone_is_a_failed_reply(ocr: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/{uuid.uuid4().hex[:6]}/gone.png"
    put(s3, key, "Gone 5 version")
    event = retarget("aws-s3-notification", VBUCKET, key, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    reply = reply_of(send(ocr, event), "failed")
    assert reply.data["error"]["code"] == "not_found"


@pytest.mark.slow
def test_not_documents_are_acknowledged_without_ocr(ocr: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=VBUCKET, Key="inbox/folder/", Body=b"")
    calls = engine_calls(ocr)
    cases = [
        ({"Records": [record(aws("inbox/folder/"), size=0)]}, "folder marker"),
        ({"Records": [record("inbox/x.png", "ObjectCreated:Post", "ceph:s3", size=0)]}, "multipart"),
        (
            {"Records": [record("inbox%2Fx.png", "s3:ObjectCreated:PutTagging", "minio:s3", size=9)]},
            "metadata",
        ),
        (payload("aws-s3-testevent"), "s3:TestEvent"),
        (payload("triggermesh-awss3-testevent"), "s3:TestEvent"),
        (
            retarget("eventbridge-s3-object-created", VBUCKET, "inbox/x.png", "")
            | {"detail-type": "Object Deleted"},
            "Object Deleted",
        ),
    ]
    for body, word in cases:
        assert_skipped(send(ocr, body), word)
    deleted = payload("triggermesh-awss3-objectcreated")
    deleted["type"], deleted["data"]["eventName"] = "com.amazon.s3.objectremoved", "ObjectRemoved:Delete"
    assert_skipped(send(ocr, deleted), "ObjectRemoved:Delete")
    assert engine_calls(ocr) == calls


@pytest.mark.slow
def test_unknown_format_is_acknowledged_with_what_it_was(ocr: FunctionServer) -> None:
    event = structured("com.example.invoice", {"no": 1})
    for mode in (to_binary, to_structured):
        resp = send(ocr, event, mode)
        assert_skipped(resp, "event type 'com.example.invoice' with data of shape object {no}")
        assert "known: S3 notifications" in resp.json()["reason"]


@pytest.mark.slow
def test_too_many_records_is_a_413_and_nothing_runs(ocr: FunctionServer) -> None:
    calls = engine_calls(ocr)
    body = {"Records": [record(f"inbox/many/{i}.png", size=9) for i in range(2000)]}
    resp = send(ocr, body)
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert error["code"] == "too_large" and "2000 records" in error["message"]
    assert "OCR_EVENT_MAX_RECORDS" in error["message"] and engine_calls(ocr) == calls


@pytest.mark.slow
def test_a_percent_encoded_subject_comes_back_as_it_came(ocr: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/{uuid.uuid4().hex[:6]}/scan 1 100%.png"
    put(s3, key, "Subject 73 echo")
    event = CloudEvent(
        {"type": "ocr.document.requested", "source": "/tests"}, {"s3_uri": f"s3://{VBUCKET}/{key}"}
    )
    headers, body = to_binary(event)
    headers["ce-subject"] = "inbox/scan%201%20100%25.png"  # the HTTP binding's encoding of the subject
    resp = requests.post(ocr.url + "/", headers=headers, data=body, timeout=300)
    assert resp.status_code == 200, resp.text
    assert resp.headers["ce-subject"] == "inbox/scan%201%20100%25.png"
    assert reply_of(resp)["subject"] == "inbox/scan 1 100%.png"


def headers_size(resp: requests.Response) -> int:
    return sum(len(k) + len(v) for k, v in resp.headers.items())


@pytest.mark.slow
def test_huge_attributes_are_not_echoed(ocr: FunctionServer, s3) -> None:  # type: ignore[no-untyped-def]
    """A structured event with 5 MB attributes: the reply headers and messages carry a few hundred
    bytes of each, cut with an ellipsis."""
    huge = "x" * (5 * 1024 * 1024)
    key = f"inbox/{uuid.uuid4().hex[:6]}/huge.png"
    put(s3, key, "Huge 19 attrs")
    data = record(aws(key), size=9)
    resp = send(
        ocr,
        structured("com.amazon.s3.objectcreated", data, id=huge, source=huge, subject=huge),
        to_structured,
    )
    assert resp.status_code == 200 and headers_size(resp) < 4000, resp.headers
    assert resp.headers["ce-correlationid"].endswith("%E2%80%A6")  # '…', percent-encoded
    missing = {"s3_uri": f"s3://{VBUCKET}/inbox/missing-{uuid.uuid4().hex}.png"}
    resp = send(ocr, structured("ocr.document.requested", missing, id=huge, subject=huge), to_structured)
    assert reply_of(resp, "failed").data["error"]["code"] == "not_found"
    assert headers_size(resp) < 4000 and len(resp.content) < 4000, resp.content[:500]
    unknown = structured(huge, {huge: 1}, source=huge, subject=huge)
    resp = send(ocr, unknown, to_structured)
    assert resp.status_code == 202 and len(resp.content) < 2000, resp.content[:500]
    assert headers_size(resp) < 2000
