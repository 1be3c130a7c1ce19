"""The OpenAPI contract (`GET /openapi.json`, function/openapi.py): a valid OpenAPI 3.0 document, and
the function keeps it — schemathesis generates requests for every operation (valid ones and ones
that break the schema) and checks each answer: no 5xx but 503 (and 502 for an unreachable
`image_url`), documented status codes, content types, headers and bodies. Those run in process
through `create_app` with a fake engine (the `app` fixture): the contract is the transport's. Real
OCR answers of a real function process (every input form) and the event replies are checked against
the same schemas."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_30

from function import errors, openapi
from function.responses import error_body
from tests.fakes import AppServer
from tests.server import FunctionServer
from tests.test_http_inputs import text_image

SPEC = openapi.spec()
OPERATIONS = [(method.upper(), path) for path, item in SPEC["paths"].items() for method in item]
# Generated requests per operation and mode: the OCR routes get the most (every body form).
# OCR_CONTRACT_EXAMPLES=300 digs deeper (and no longer repeats the same requests every run).
DEEP = int(os.environ.get("OCR_CONTRACT_EXAMPLES", "0"))
EXAMPLES = {"/": 30, "/ocr": 30}
DEFAULT_EXAMPLES = 10
# image_url values are pointed here so that no test fetches from the internet: nothing listens on
# port 9, so the fetch fails at once (502 upstream_failed, or 400 where private addresses are refused).
UNREACHABLE_URL = "http://127.0.0.1:9/scan.png"
PNG = text_image("Contract 7 check")
NAME = "contract.png"


def not_a_bug(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """No 5xx but 503 (the engine or store not ready) and a 502 for the unreachable image_url."""
    status = response.status_code
    fetches = isinstance(case.body, dict) and "image_url" in case.body
    assert status < 500 or status == 503 or (status == 502 and fetches), (
        f"{case.operation.label} answered {status}: {response.text[:500]}"
    )
    return None


CHECKS = [
    not_a_bug,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def with_hooks(schema: Any) -> Any:
    @schema.hook
    def map_body(context: Any, body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get("image_url"), str):
            return {**body, "image_url": UNREACHABLE_URL}
        return body

    return schema


@pytest.fixture(scope="module")
def api(app: AppServer) -> Any:
    """The contract as the function serves it."""
    return with_hooks(schemathesis.openapi.from_url(app.url + "/openapi.json"))


@pytest.fixture(scope="module")
def negative_api(api: Any) -> Any:
    """The same, less the multipart `file` part: schemathesis 4.32 fails to build negative cases of an
    object with a `format: binary` property (jsonschema_rs: "Unsupported type: 'Binary'"). Uploads are
    covered by the positive cases; raw binary bodies stay (any bytes are a valid raw body anyway)."""
    spec = openapi.spec()
    for path in ("/", "/ocr"):
        multipart = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        del multipart["properties"]["file"]
        multipart["oneOf"] = [one for one in multipart["oneOf"] if one["required"] != ["file"]]
    return with_hooks(schemathesis.openapi.from_dict(spec))


# --- the document itself --------------------------------------------------------------------------------


def test_spec_is_valid_openapi_3_0() -> None:
    """Against the OpenAPI 3.0 meta-schema schemathesis ships, and every $ref resolves."""
    jsonschema.Draft4Validator(OPENAPI_30).validate(SPEC)
    text = json.dumps(SPEC)
    for name in {ref.split('"')[0] for ref in text.split('"$ref": "')[1:]}:
        node: Any = SPEC
        for part in name.removeprefix("#/").split("/"):
            node = node[part]
    schemathesis.openapi.from_dict(SPEC)  # loads: every operation is usable
    assert len({op["operationId"] for item in SPEC["paths"].values() for op in item.values()}) == len(
        OPERATIONS
    )


def test_spec_passes_openapi_spec_validator() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(SPEC)


def test_served_spec_is_the_spec(server: FunctionServer) -> None:
    resp = requests.get(server.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.json() == SPEC


def error_schema(status: int) -> dict[str, Any]:
    """The body documented for `status` (the first operation that has it), as plain JSON Schema."""
    documented = (op["responses"].get(str(status)) for item in SPEC["paths"].values() for op in item.values())
    response = next(r for r in documented if r and "content" in r)
    return {**response["content"]["application/json"]["schema"], "components": SPEC["components"]}


@pytest.mark.parametrize(
    "exc_type", [e for e in vars(errors).values() if isinstance(e, type) and issubclass(e, errors.OCRError)]
)
def test_every_error_is_documented(exc_type: type[errors.OCRError]) -> None:
    """Each error class, as the transport writes it, fits the schema documented for its status."""
    exc = exc_type("a message", retry_after=5)
    body = error_body(exc, "req-1")
    jsonschema.Draft4Validator(error_schema(exc.status)).validate(body)
    if exc.status in (429, 503):
        documented = SPEC["paths"]["/ocr"]["post"]["responses"][str(exc.status)]
        assert documented["headers"]["Retry-After"]["$ref"].endswith("/Retry-After")
    wrong = {**body, "error": {**body["error"], "code": "something_else"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(error_schema(exc.status)).validate(wrong)


# --- schemathesis against the app --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_operation_keeps_the_contract(
    api: Any, negative_api: Any, app: AppServer, method: str, path: str, mode: GenerationMode
) -> None:
    operation = (api if mode == GenerationMode.POSITIVE else negative_api)[path][method]
    statuses: dict[int, int] = {}

    @settings(
        max_examples=DEEP or EXAMPLES.get(path, DEFAULT_EXAMPLES),
        deadline=None,
        database=None,
        derandomize=not DEEP,  # the same requests every run: a failure here is a regression, not luck
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=app.url, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    check()
    assert statuses, "no request was sent"
    print(f"{method} {path} {mode.value}: {dict(sorted(statuses.items()))}")


# --- real answers against the schemas -------------------------------------------------------------------


def call(
    api: Any, server: FunctionServer | AppServer, path: str, media_type: str, body: Any, **kwargs: Any
) -> Any:
    case = api[path]["POST"].Case(body=body, media_type=media_type, **kwargs)
    response = case.call(base_url=server.url, timeout=120)
    case.validate_response(response, checks=CHECKS)
    return response


def header(response: Any, name: str) -> str | None:
    """A header of a schemathesis response (its values are lists)."""
    values = {k.lower(): v for k, v in response.headers.items()}.get(name.lower())
    return values[0] if values else None


@pytest.mark.slow
def test_real_ocr_answers_keep_the_contract(api: Any, server: FunctionServer) -> None:
    """Every input form with a real image: the success schema, content and layout pictures included.
    One name and one set of options, so that two OCR runs answer all of them (the rest are cache hits)."""
    b64 = base64.b64encode(PNG).decode()
    multipart = {"file": PNG, "filename": NAME, "return_content": "true", "visualize": "true", "pages": "1"}
    first = call(api, server, "/ocr", "multipart/form-data", multipart)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (
        body["input_type"] == "multipart" and body["results"]["layout"] and body["content"]["json"]["pages"]
    )
    again = call(api, server, "/", "multipart/form-data", multipart)
    assert again.json()["cached"] is True
    answers = [
        call(
            api,
            server,
            "/ocr",
            "application/json",
            {"image_base64": b64, "filename": NAME, "return_content": True},
        ),
        call(
            api, server, "/ocr", "application/x-www-form-urlencoded", {"image_base64": b64, "filename": NAME}
        ),
        call(api, server, "/ocr", "image/png", PNG, query={"filename": NAME, "return_content": "true"}),
    ]
    assert [a.json()["input_type"] for a in answers] == ["base64", "base64", "raw"]
    assert [a.json()["cached"] for a in answers[1:]] == [True, True]
    listing = requests.get(server.url + "/files", timeout=10)
    api["/files"]["GET"].validate_response(listing)
    markdown = requests.get(body["results"]["markdown"]["url"], timeout=10)
    assert markdown.status_code == 200 and "Contract" in markdown.text
    api["/files/{path}"]["GET"].validate_response(markdown)


@pytest.mark.slow
def test_event_answers_keep_the_contract(api: Any, app: AppServer) -> None:
    """A skipped event (202), a failed one (the local store cannot read S3 objects) and a processed
    ocr.document.requested event: each reply's data fits the 200 or 202 schema."""
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "a.png"}},
    }
    failed = call(
        api, app, "/", "application/json", {"EventName": "s3:ObjectCreated:Put", "Records": [record]}
    )
    assert failed.status_code == 200 and header(failed, "ce-type") == "ocr.document.failed"
    assert failed.json()["subject"] == "a.png"
    deleted = {**record, "eventName": "s3:ObjectRemoved:Delete"}
    skipped = call(api, app, "/ocr", "application/json", {"Records": [deleted, deleted]})
    assert skipped.status_code == 202 and skipped.json()["status"] == "skipped"
    event = {
        "specversion": "1.0",
        "id": "contract-1",
        "source": "/tests",
        "type": "ocr.document.requested",
        "data": {"image_base64": base64.b64encode(PNG).decode(), "filename": NAME},
    }
    done = call(api, app, "/ocr", "application/cloudevents+json", event)
    assert done.status_code == 200 and header(done, "ce-type") == "ocr.document.completed"
    assert done.json()["input_type"] == "cloudevent"
    two = {"Records": [record, {**record, "s3": {"object": {"key": "b.png"}}}]}
    batch = call(api, app, "/", "application/json", two)
    assert batch.json()["status"] == "failed" and len(batch.json()["documents"]) == 2


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_undocumented_methods_are_405(app: AppServer, method: str) -> None:
    for path in {path.replace("{path}", "x.md") for _, path in OPERATIONS}:
        resp = requests.request(method, app.url + path, timeout=10)
        assert resp.status_code == 405, (method, path, resp.text)
        jsonschema.Draft4Validator(error_schema(405)).validate(resp.json())
        assert resp.headers["X-Request-Id"] == resp.json()["request_id"]


def test_router_rejected_paths_answer_json(server: FunctionServer) -> None:
    for path in ("/files/a%0Ab.md", "/robots.txt", "/apple-touch-icon.png"):  # /favicon.ico: the try page
        resp = requests.get(server.url + path, timeout=10)
        assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/json", path
        assert "X-Request-Id" in resp.headers


# --- inputs that answered 500 before ---------------------------------------------------------------------

NOT_AN_IMAGE = base64.b64encode(b"not an image").decode()  # options are read, then 415: no OCR runs
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
EVENT = {"specversion": "1.0", "id": "e-1", "source": "/tests"}
DEEP_JSON = b"[" * 100_000


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        pytest.param(
            {"params": {"pages": "1-\t"}, "data": {"image_base64": NOT_AN_IMAGE}}, 415, id="pages-tab"
        ),
        pytest.param(
            {"params": {"pages": "1" * 5000}, "data": {"image_base64": NOT_AN_IMAGE}}, 400, id="pages-long"
        ),
        pytest.param(
            {"params": {"lang": "en\n"}, "data": {"image_base64": NOT_AN_IMAGE}}, 400, id="lang-newline"
        ),
        pytest.param({"headers": STRUCTURED, "data": b"'W\xce\x8a\xfb\xb3"}, 400, id="event-not-utf8"),
        pytest.param({"headers": STRUCTURED, "data": DEEP_JSON}, 400, id="event-deep-json"),
        pytest.param({"headers": STRUCTURED, "json": {**EVENT, "type": None}}, 400, id="event-null-type"),
        pytest.param(
            {
                "headers": STRUCTURED,
                "data": json.dumps({**EVENT, "type": "ocr.document.requested", "data": {}}),
            },
            400,
            id="requested-empty",
        ),
        pytest.param(
            {"json": {"Records": [{"eventName": "ObjectCreated:Put", "s3": "x"}], "Key": 5}},
            202,
            id="webhook-odd",
        ),
        pytest.param(
            {
                "json": {
                    "Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "\ud800.png"}}}]
                }
            },
            202,
            id="webhook-surrogate-key",
        ),
        pytest.param(
            {"json": {"image_base64": NOT_AN_IMAGE, "filename": 5}},
            400,
            id="filename-not-a-string",
        ),
        pytest.param(
            {"headers": {"Content-Type": "application/json"}, "data": DEEP_JSON},
            400,
            id="json-deep",
        ),
    ],
)
def test_inputs_that_were_500s_are_4xx(app: AppServer, kwargs: dict[str, Any], status: int) -> None:
    resp = requests.post(app.url + "/ocr", timeout=60, **kwargs)
    assert resp.status_code == status, resp.text
    if status >= 400:
        jsonschema.Draft4Validator(error_schema(status)).validate(resp.json())


def test_async_answers_keep_the_contract(api: Any, app: AppServer) -> None:
    """`Prefer: respond-async`: the 202 job, then `GET /jobs/{job_id}` until completed, each fitting
    the Job schema."""
    body = {"image_base64": base64.b64encode(PNG).decode(), "filename": "async.png"}
    accepted = call(api, app, "/ocr", "application/json", body, headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["job_id"]
    assert header(accepted, "Location") == f"/jobs/{job}"
    for _ in range(200):
        case = api["/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job})
        status = case.call(base_url=app.url, timeout=30)
        case.validate_response(status, checks=CHECKS)
        if status.json()["state"] == "completed":
            break
        time.sleep(0.05)
    assert status.json()["result"]["document"]["pages_processed"] == 1
    case = api["/jobs/{job_id}"]["GET"].Case(
        path_parameters={"job_id": job}, query={"return_content": "true"}
    )
    with_content = case.call(base_url=app.url, timeout=30)
    case.validate_response(with_content, checks=CHECKS)
    assert with_content.json()["result"]["content"]["markdown"], with_content.text
