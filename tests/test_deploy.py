"""The deployment manifests (knative/, stack.yml, openfaas/) are valid and agree with the code.

Offline: JSON schemas (check-jsonschema), yamllint, kustomize when kubectl is installed, and checks
against `function.config.ENV`, the PaddleOCR-VL engine's settings, the function's routes and its
event types. The slow test runs the function as the CPU manifest's container would and delivers the
events the Trigger lets through, against S3 on a moto server.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from function import events
from function.config import ENV, SECRET_FILES, Settings, load_settings
from function.engines import paddleocr_vl
from function.errors import ERRORS
from tests import deploy_manifests as m
from tests.conftest import S3_KEYS
from tests.server import FunctionServer

STACK = m.ROOT / "stack.yml"
OPENFAAS = m.ROOT / "openfaas"
# Read by functions-framework / gunicorn, not by function/config.py.
SERVING_VARS = {"WORKERS", "THREADS", "PORT", "GUNICORN_LOG_LEVEL", "CLOUD_RUN_TIMEOUT_SECONDS"}
# Read by of-watchdog in the OpenFaaS image (serverless.md §5.5).
WATCHDOG_VARS = {
    "mode", "upstream_url", "exec_timeout", "read_timeout", "write_timeout", "max_inflight",
    "ready_path", "healthcheck_interval", "fprocess", "prefix_logs",
}  # fmt: skip
KNOWN_VARS = set(ENV) | set(paddleocr_vl.ENV) | {f"{v}_FILE" for v in SECRET_FILES} | SERVING_VARS


def bin_path(name: str) -> str:
    """A console script of this interpreter's environment, else from PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed (requirements-dev.txt)"
    return found


def stack() -> dict[str, Any]:
    return yaml.safe_load(STACK.read_text())


def stack_fn() -> dict[str, Any]:
    functions = stack()["functions"]
    assert list(functions) == ["ocr"], functions
    return functions["ocr"]


def concurrency(env: dict[str, str]) -> int:
    return load_settings(with_secret_files(env, Path("/dev/null"))).concurrency


def with_secret_files(env: dict[str, str], directory: Path) -> dict[str, str]:
    """The env with every *_FILE pointing into `directory` (same file names), for loading locally."""
    out = dict(env)
    for var in SECRET_FILES:
        if f"{var}_FILE" in env:
            out[f"{var}_FILE"] = str(directory / Path(env[f"{var}_FILE"]).name) if directory.is_dir() else ""
    return out


def kustomize_image(kustomization: Path) -> tuple[str, str]:
    """(image name the transformer matches, the image it writes) of a kustomization."""
    (image,) = yaml.safe_load(kustomization.read_text())["images"]
    return image["name"], f"{image['newName']}:{image['newTag']}"


# --- schemas, lint, kustomize ----------------------------------------------------------------------


def check_jsonschema(
    docs: list[tuple[str, dict[str, Any]]], schema: Path, tmp: Path
) -> subprocess.CompletedProcess:
    """check-jsonschema on each document (it reads one document per file, so each gets a file)."""
    files = []
    for i, (label, doc) in enumerate(docs):
        path = tmp / f"{i}-{re.sub(r'[^A-Za-z0-9]+', '-', label)}.json"
        path.write_text(json.dumps(doc))
        files.append(str(path))
    cmd = [bin_path("check-jsonschema"), "--schemafile", str(schema), *files]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_knative_manifest_validates_against_its_schema(tmp_path: Path) -> None:
    by_schema: dict[Path, list[tuple[str, dict[str, Any]]]] = {}
    for path, doc in m.manifests():
        key = (doc["apiVersion"], doc["kind"])
        if key in m.NO_SCHEMA:
            continue
        assert key in m.SCHEMA_FOR, f"{path}: no schema known for {key}; add one or list it in NO_SCHEMA"
        by_schema.setdefault(m.SCHEMA_FOR[key], []).append((f"{path.relative_to(m.ROOT)}-{doc['kind']}", doc))
    assert len(by_schema) == len(m.SCHEMA_FOR), "every schema is used by some manifest"
    for schema, docs in by_schema.items():
        result = check_jsonschema(docs, schema, tmp_path)
        assert result.returncode == 0, f"{schema.name}:\n{result.stdout}\n{result.stderr}"


def test_schema_check_catches_a_number_annotation(tmp_path: Path) -> None:
    """The trap from serverless.md §0.10: annotation values must be strings; the check must see it."""
    service = m.gpu_service()
    m.annotations(service)["autoscaling.knative.dev/max-scale"] = 4  # type: ignore[assignment]
    result = check_jsonschema(
        [("gpu", service)], m.SCHEMA_FOR[("serving.knative.dev/v1", "Service")], tmp_path
    )
    assert result.returncode != 0 and "is not of type 'string'" in result.stdout, result.stdout


def test_yamllint_passes_on_all_yaml() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.yaml", "*.yml"],
        cwd=m.ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert {"stack.yml", "knative/service-gpu.yaml", "knative/common/trigger.yaml"} <= set(listed)
    result = subprocess.run(
        [bin_path("yamllint"), "--strict", *listed], cwd=m.ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize(
    "directory, service", [("knative", m.gpu_service), ("knative/cpu", m.cpu_service)], ids=["gpu", "cpu"]
)
def test_kustomize_builds_the_lot_with_the_chosen_image(directory: str, service: Any) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", directory], cwd=m.ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Broker", "ConfigMap", "Secret", "Service", "Service", "SinkBinding", "Trigger"], kinds
    name, image = kustomize_image(m.ROOT / directory / "kustomization.yaml")
    # The transformer only rewrites images whose name matches: the Service's image must carry it.
    assert m.container(service())["image"].rsplit(":", 1)[0] == name
    built = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "ocr")
    assert m.container(built)["image"] == image


# --- manifests agree with the code -----------------------------------------------------------------

SERVICES = [pytest.param(m.gpu_service, id="gpu"), pytest.param(m.cpu_service, id="cpu")]


@pytest.mark.parametrize("service", SERVICES)
def test_env_names_exist_in_the_config(service: Any) -> None:
    env = m.service_env(service())
    unknown = sorted(set(env) - KNOWN_VARS)
    assert not unknown, f"not read by the function or its server: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_env_values_load(service: Any, tmp_path: Path) -> None:
    """The settings the pod would start with pass the function's own validation."""
    env = m.service_env(service())
    for var in SECRET_FILES:
        if f"{var}_FILE" in env:
            (tmp_path / Path(env[f"{var}_FILE"]).name).write_text("x")
    settings = load_settings(with_secret_files(env, tmp_path))
    assert settings.store.startswith("s3://") and settings.aws_access_key_id == "x"
    if settings.engine == "paddleocr-vl":
        paddleocr_vl.load_vl_settings(env)


@pytest.mark.parametrize("service", SERVICES)
def test_container_concurrency_is_the_function_concurrency(service: Any) -> None:
    svc = service()
    env = m.service_env(svc)
    conc = concurrency(env)
    assert svc["spec"]["template"]["spec"]["containerConcurrency"] == conc
    notes = m.annotations(svc)
    assert notes["autoscaling.knative.dev/metric"] == "concurrency"
    assert int(notes["autoscaling.knative.dev/target"]) == conc
    assert notes["autoscaling.knative.dev/target-utilization-percentage"] == "100"
    # One worker (one model copy); threads enough for the documents plus probes.
    queue = int(env.get("OCR_QUEUE_SIZE", Settings().queue_size))
    assert env["WORKERS"] == "1" and int(env["THREADS"]) >= conc + queue + 2
    if env.get("OCR_ENGINE") == "paddleocr-vl":
        assert paddleocr_vl.load_vl_settings(env).pipelines == conc


def startup_budget(probe: dict[str, Any]) -> int:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )


@pytest.mark.parametrize("service", SERVICES)
def test_scale_to_zero_probes_and_timeouts(service: Any) -> None:
    svc = service()
    notes, spec, c = m.annotations(svc), svc["spec"]["template"]["spec"], m.container(svc)
    assert notes["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"  # zero needs KPA
    assert notes["autoscaling.knative.dev/min-scale"] == "0"
    assert int(notes["autoscaling.knative.dev/max-scale"]) >= 1
    assert int(notes["autoscaling.knative.dev/initial-scale"]) >= 1
    assert m.go_duration(notes["autoscaling.knative.dev/scale-to-zero-pod-retention-period"]) > 0
    assert m.go_duration(notes["serving.knative.dev/progress-deadline"]) > startup_budget(c["startupProbe"])
    # The reply is sent when the results are stored: first byte = whole request. 600 = Knative's ceiling.
    assert spec["responseStartTimeoutSeconds"] == spec["timeoutSeconds"] <= 600
    assert c["startupProbe"]["httpGet"]["path"] == c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_gpu_service_gets_a_gpu_and_the_cpu_service_does_not() -> None:
    gpu, cpu = m.container(m.gpu_service()), m.container(m.cpu_service())
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in json.dumps(cpu["resources"])
    assert m.go_duration(m.annotations(m.gpu_service())["serving.knative.dev/progress-deadline"]) >= 600
    assert m.service_env(m.gpu_service())["OCR_ENGINE"] == "paddleocr-vl"
    assert m.service_env(m.cpu_service())["OCR_ENGINE"] == "cpu"


@pytest.mark.parametrize("service", SERVICES)
def test_credentials_come_from_the_secret_files(service: Any) -> None:
    svc = service()
    c, env = m.container(svc), m.service_env(svc)
    secret = m.one(m.KNATIVE / "common" / "secret.yaml", "Secret")
    (volume,) = [v for v in svc["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (mount,) = [v for v in c["volumeMounts"] if v["name"] == volume["name"]]
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        path = Path(env[f"{var}_FILE"])
        assert str(path.parent) == mount["mountPath"] and path.name in secret["stringData"], var
        assert var not in env, f"{var} as plain env would sit next to the file"


def test_probe_paths_are_routes_of_the_running_function(server: FunctionServer) -> None:
    paths = {
        probe["httpGet"]["path"]
        for svc in (m.gpu_service(), m.cpu_service())
        for probe in (m.container(svc)[k] for k in ("startupProbe", "readinessProbe", "livenessProbe"))
    }
    assert paths == {"/health/ready", "/health/live"}
    for path in sorted(paths):
        assert requests.get(server.url + path, timeout=10).status_code in (200, 503), path
    assert requests.get(server.url + "/health/nope", timeout=10).status_code == 404  # the check can fail


# --- eventing --------------------------------------------------------------------------------------


def triggers() -> list[dict[str, Any]]:
    return [doc for _, doc in m.manifests() if doc["kind"] == "Trigger"]


def main_trigger() -> dict[str, Any]:
    return m.one(m.KNATIVE / "common" / "trigger.yaml", "Trigger")


def accepted_events(settings: Settings) -> dict[str, dict[str, str]]:
    """Attributes of each kind of event the function processes (docs/events.md), as senders emit them."""
    return {
        "ceph-rgw": {"type": "com.amazonaws.ObjectCreated:Put", "source": "ceph:s3.zg1.ocr-bucket"},
        "ceph-multipart": {"type": "com.amazonaws.ObjectCreated:CompleteMultipartUpload", "source": "ceph"},
        "s3-adapter": {"type": "com.amazonaws.s3.ObjectCreated:Put", "source": "aws:s3.us-east-1.b"},
        "gcs": {"type": events.GCS_FINALIZED, "source": "//storage.googleapis.com/projects/_/buckets/b"},
        "knative-s3": {"type": events.KNATIVE_S3, "source": "dev.knative.eventing.aws-s3-source"},
        "request": {"type": settings.event_request_type, "source": "/client"},
        **{kind: {"type": kind, "source": settings.event_source} for kind in job_types(settings)},
    }


def job_types(settings: Settings) -> tuple[str, str]:
    """What the function sends to K_SINK for itself (function/dispatch.py): jobs and their chunks."""
    return settings.event_request_type, settings.event_chunk_type


def reply_types(settings: Settings) -> list[str]:
    return [settings.event_completed_type, settings.event_failed_type]


@pytest.mark.parametrize("service", SERVICES)
def test_trigger_accepts_what_the_function_handles_and_never_its_replies(service: Any) -> None:
    settings = load_settings(with_secret_files(m.service_env(service()), Path("/dev/null")))
    trigger = main_trigger()
    for name, attrs in accepted_events(settings).items():
        assert m.trigger_matches(trigger, attrs), f"the Trigger drops {name} events: {attrs}"
    for kind in reply_types(settings):
        for t in triggers():
            reply = {"type": kind, "source": settings.event_source, "subject": "inbox/a.png"}
            assert not m.trigger_matches(t, reply), f"{t['metadata']['name']} loops replies of type {kind}"
    for other in ("com.amazonaws.ObjectRemoved:Delete", "google.cloud.storage.object.v1.deleted"):
        assert not m.trigger_matches(trigger, {"type": other, "source": "x"}), other


def test_filter_evaluator_dialects() -> None:
    """The evaluator itself: each dialect can say no."""
    attrs = {"type": "a.b.c", "source": "/x/y"}
    assert m.filter_matches({"prefix": {"type": "a.b"}}, attrs)
    assert not m.filter_matches({"suffix": {"type": "a.b"}}, attrs)
    assert not m.filter_matches({"exact": {"subject": "a"}}, attrs)  # absent attribute
    assert m.filter_matches({"not": {"exact": {"type": "a"}}}, attrs)
    assert not m.filter_matches({"all": [{"prefix": {"type": "a"}}, {"exact": {"source": "/x"}}]}, attrs)
    assert m.filter_matches({"any": [{"exact": {"type": "z"}}, {"suffix": {"source": "/y"}}]}, attrs)
    legacy = {"spec": {"filter": {"attributes": {"type": "a.b.c", "source": ""}}}}
    assert m.trigger_matches(legacy, attrs) and not m.trigger_matches(legacy, {"type": "a.b.c"})


def test_kafka_trigger_takes_only_its_source() -> None:
    (trigger,) = [t for t in triggers() if t["metadata"]["name"] == "ocr-minio-kafka"]
    source = "/apis/v1/namespaces/default/kafkasources/ocr-minio#ocr-minio-events"
    ours = {"type": "dev.knative.kafka.event", "source": source}
    assert m.trigger_matches(trigger, ours)
    assert not m.trigger_matches(trigger, {**ours, "source": ours["source"].replace("ocr-minio#", "other#")})


def test_triggers_subscribe_the_function_with_retries_and_dead_letters() -> None:
    services = {doc["metadata"]["name"] for _, doc in m.manifests() if doc["kind"] == "Service"}
    brokers = {doc["metadata"]["name"] for _, doc in m.manifests() if doc["kind"] == "Broker"}
    for t in triggers():
        spec, name = t["spec"], t["metadata"]["name"]
        assert spec["broker"] in brokers, name
        assert spec["subscriber"]["ref"]["name"] == m.gpu_service()["metadata"]["name"] == "ocr", name
        delivery = spec["delivery"]
        assert delivery["retry"] >= 3 and delivery["backoffPolicy"] == "exponential", name
        assert m.iso_duration(delivery["backoffDelay"]) >= 1, name
        assert delivery["deadLetterSink"]["ref"]["name"] in services, name


def test_sink_binding_sends_the_function_s_own_events_to_the_broker_that_brings_them_back() -> None:
    """K_SINK of the function (GPU or CPU Service: both are `ocr`) is the Broker; the job and chunk
    events it sends there are routed back to the function by a Trigger on that Broker."""
    binding = m.one(m.KNATIVE / "common" / "sinkbinding.yaml", "SinkBinding")
    subject, sink = binding["spec"]["subject"], binding["spec"]["sink"]["ref"]
    assert "namespace" not in subject and "namespace" not in sink and "selector" not in subject
    for svc in (m.gpu_service(), m.cpu_service()):
        assert (subject["apiVersion"], subject["kind"], subject["name"]) == (
            svc["apiVersion"], svc["kind"], svc["metadata"]["name"]
        )  # fmt: skip
    broker = m.one(m.KNATIVE / "common" / "broker.yaml", "Broker")
    assert (sink["apiVersion"], sink["kind"], sink["name"]) == (
        broker["apiVersion"], broker["kind"], broker["metadata"]["name"]
    )  # fmt: skip
    settings = load_settings(with_secret_files(m.service_env(m.cpu_service()), Path("/dev/null")))
    for kind in job_types(settings):
        routed = [
            t for t in triggers()
            if t["spec"]["broker"] == sink["name"]
            and m.trigger_matches(t, {"type": kind, "source": settings.event_source})
        ]  # fmt: skip
        assert [t["spec"]["subscriber"]["ref"]["name"] for t in routed] == [subject["name"]], kind


def test_integration_source_keeps_the_objects() -> None:
    source = m.one(m.KNATIVE / "sources" / "integrationsource-s3.yaml", "IntegrationSource")
    s3 = source["spec"]["aws"]["s3"]
    assert s3["deleteAfterRead"] is False and s3.get("moveAfterRead", False) is False
    secret = m.one(m.KNATIVE / "common" / "secret.yaml", "Secret")
    assert source["spec"]["aws"]["auth"]["secret"]["ref"]["name"] == secret["metadata"]["name"]
    assert {"aws.accessKey", "aws.secretKey"} <= set(secret["stringData"])  # the keys the source reads
    assert source["spec"]["sink"]["ref"]["kind"] == "Broker"


# --- OpenFaaS --------------------------------------------------------------------------------------

STACK_FN_KEYS = {
    "lang", "handler", "image", "fprocess", "environment", "environment_file", "secrets", "skip_build",
    "constraints", "labels", "annotations", "limits", "requests", "readonly_root_filesystem",
    "build_options", "build_args", "build_secrets", "platforms", "namespace",
}  # fmt: skip
SCALE_LABELS = {"min", "max", "factor", "type", "target", "target-proportion", "zero", "zero-duration"}


def test_stack_follows_the_openfaas_schema() -> None:
    """The rules of faas-cli's stack.go / schema.go (serverless.md §5.1-5.3); there is no JSON schema."""
    doc = stack()
    assert doc["version"] == "1.0" and isinstance(doc["version"], str)
    assert doc["provider"]["name"] == "openfaas"
    for name, fn in doc["functions"].items():
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
        assert set(fn) <= STACK_FN_KEYS, set(fn) - STACK_FN_KEYS
        for section in ("environment", "labels", "annotations", "build_args"):
            bad = {k: v for k, v in fn.get(section, {}).items() if not isinstance(v, str)}
            assert not bad, f"{section} values must be strings: {bad}"
        for section in ("limits", "requests"):
            assert set(fn.get(section, {})) <= {"memory", "cpu"}, f"{section}: a GPU needs a Profile"
        scale = {k.removeprefix("com.openfaas.scale."): v for k, v in fn["labels"].items()}
        assert set(scale) <= SCALE_LABELS, set(scale) - SCALE_LABELS
        assert scale["type"] == "capacity" and scale["zero"] == "true"
        assert m.go_duration(scale["zero-duration"]) >= 300  # the docs recommend 5-10 min or more
        assert int(scale["min"]) >= 1 and int(scale["max"]) >= int(scale["min"])


def test_stack_timeouts_fit_the_gateway() -> None:
    env = stack_fn()["environment"]
    gateway = yaml.safe_load((OPENFAAS / "values-timeouts.yaml").read_text())["gateway"]
    exec_timeout = m.go_duration(env["exec_timeout"])
    assert exec_timeout <= m.go_duration(gateway["upstreamTimeout"])
    assert (
        m.go_duration(env["read_timeout"]) > exec_timeout
        and m.go_duration(env["write_timeout"]) > exec_timeout
    )
    assert m.go_duration(gateway["readTimeout"]) >= m.go_duration(gateway["upstreamTimeout"])
    # A long PDF gets at least as long as on Knative.
    assert exec_timeout >= m.gpu_service()["spec"]["template"]["spec"]["timeoutSeconds"]


def test_stack_retries_async_invocations_on_the_statuses_the_function_calls_transient() -> None:
    """The OpenFaaS Pro queue-worker's per-function retries (docs.openfaas.com/openfaas-pro/retries):
    exactly the statuses of errors the function marks retryable, so a 504 past the deadline is retried
    (and resumes from the page checkpoints) and a 400 is not."""
    notes = stack_fn()["annotations"]
    codes = {int(c) for c in notes["com.openfaas.retry.codes"].split(",")}
    assert codes == {cls.status for cls in ERRORS if cls("x").retryable}
    assert {429, 503, 504} <= codes and not codes & {400, 413, 415, 422}
    assert int(notes["com.openfaas.retry.attempts"]) >= 3
    assert (
        0
        < m.go_duration(notes["com.openfaas.retry.min_wait"])
        <= m.go_duration(notes["com.openfaas.retry.max_wait"])
    )
    # A message is in flight while its invocation runs: ack_wait above exec_timeout, or NATS delivers
    # a long document a second time while the first invocation still reads it.
    queue_worker = yaml.safe_load((OPENFAAS / "values-timeouts.yaml").read_text())["queueWorker"]
    assert m.go_duration(queue_worker["ackWait"]) > m.go_duration(stack_fn()["environment"]["exec_timeout"])


def test_stack_gets_the_gpu_through_its_profile() -> None:
    fn = stack_fn()
    profile = m.one(OPENFAAS / "profile-gpu.yaml", "Profile")
    assert fn["annotations"]["com.openfaas.profile"] == profile["metadata"]["name"]
    assert profile["apiVersion"] == "openfaas.com/v1" and profile["metadata"]["namespace"] == "openfaas"
    assert profile["spec"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_stack_agrees_with_the_knative_service() -> None:
    fn, svc = stack_fn(), m.gpu_service()
    _, knative_image = kustomize_image(m.KNATIVE / "kustomization.yaml")
    assert fn["build_args"]["BASE_IMAGE"] == knative_image == m.container(svc)["image"]
    assert fn["image"].startswith(knative_image.rsplit(":", 1)[0] + ":")
    knative_env = m.service_env(svc)
    env = {k: v for k, v in fn["environment"].items() if k not in WATCHDOG_VARS}
    assert set(env) == set(knative_env), set(env) ^ set(knative_env)
    for var, value in env.items():
        if var.endswith("_FILE"):  # same file of the same secret, mounted where OpenFaaS mounts secrets
            assert value == "/var/openfaas/secrets/" + Path(knative_env[var]).name, var
        else:
            assert value == knative_env[var], var
    conc = concurrency(knative_env)
    assert fn["environment"]["max_inflight"] == fn["labels"]["com.openfaas.scale.target"] == str(conc)
    assert fn["labels"]["com.openfaas.scale.max"] == m.annotations(svc)["autoscaling.knative.dev/max-scale"]
    assert fn["secrets"] == [m.one(m.KNATIVE / "common" / "secret.yaml", "Secret")["metadata"]["name"]]


def dockerfile_cmd(path: Path) -> list[str]:
    (line,) = [ln for ln in path.read_text().splitlines() if ln.startswith("CMD ")]
    return json.loads(line[4:])


def test_openfaas_image_runs_the_same_entrypoint_behind_the_watchdog() -> None:
    fn, text = stack_fn(), (OPENFAAS / "Dockerfile").read_text()
    fprocess = re.search(r'fprocess="([^"]+)"', text)
    assert fprocess, "openfaas/Dockerfile sets fprocess"
    args = shlex.split(fprocess.group(1))
    assert args[:4] == dockerfile_cmd(m.ROOT / "Dockerfile") == dockerfile_cmd(m.ROOT / "Dockerfile.cpu")
    port = args[args.index("--port") + 1]
    assert fn["environment"]["upstream_url"] == f"http://127.0.0.1:{port}"
    assert (
        fn["environment"]["ready_path"] == m.container(m.gpu_service())["readinessProbe"]["httpGet"]["path"]
    )
    assert dockerfile_cmd(OPENFAAS / "Dockerfile") == ["fwatchdog"]


# --- the CPU manifest's container, run locally, fed the Trigger's events ----------------------------


def container_env(tmp: Path, moto_endpoint: str) -> dict[str, str]:
    """The CPU Service's env with two local substitutions: the moto endpoint, and the secret's mount
    directory (the mounted files: the Secret's keys as shipped, the test credentials for S3)."""
    env = m.service_env(m.cpu_service())
    secret = m.one(m.KNATIVE / "common" / "secret.yaml", "Secret")["stringData"]
    files = {
        **secret,
        "aws.accessKey": S3_KEYS["aws_access_key_id"],
        "aws.secretKey": S3_KEYS["aws_secret_access_key"],
    }
    for name, value in files.items():
        (tmp / name).write_text(value + "\n")
    return {**with_secret_files(env, tmp), "S3_ENDPOINT_URL": moto_endpoint}


def store_location(env: dict[str, str]) -> tuple[str, str]:
    bucket, _, prefix = env["OCR_STORE"].removeprefix("s3://").partition("/")
    return bucket, prefix


def delivered_events(bucket: str, upload: Any) -> list[tuple[str, CloudEvent, Any]]:
    """One event per kind of sender, as the Broker delivers it after the Trigger let it through."""
    from tests.test_events import s3_record
    from tests.test_http_inputs import text_image

    out: list[tuple[str, CloudEvent, Any]] = []
    key = upload("inbox/ceph scan.png", "Ceph 4711 page")
    record = s3_record(key, source="ceph:s3")  # Ceph sends keys unencoded
    record["s3"]["bucket"]["name"] = bucket
    ceph = {"type": "com.amazonaws.ObjectCreated:Put", "source": f"ceph:s3.zg1.{bucket}", "subject": key}
    out.append(("4711", CloudEvent(ceph, {"Records": [record]}), to_binary))
    key = upload("inbox/gcs.png", "Gcs 5822 page")
    gcs = {"type": events.GCS_FINALIZED, "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}"}
    out.append(("5822", CloudEvent(gcs, {"bucket": bucket, "name": key}), to_structured))
    s3src = {
        "type": events.KNATIVE_S3,
        "source": "dev.knative.eventing.aws-s3-source",
        "subject": "aws-s3-source",
    }
    out.append(("6933", CloudEvent(s3src, text_image("Knative 6933 page")), to_binary))
    key = upload("inbox/request.png", "Request 7044 page")
    request = {"type": "ocr.document.requested", "source": "/client", "subject": key}
    out.append(("7044", CloudEvent(request, {"s3_uri": f"s3://{bucket}/{key}"}), to_structured))
    return out


@pytest.mark.slow
def test_cpu_container_processes_what_the_trigger_delivers(tmp_path: Path, moto_endpoint: str, s3) -> None:  # type: ignore[no-untyped-def]
    from tests.test_events import reply_of
    from tests.test_http_inputs import text_image

    env = container_env(tmp_path, moto_endpoint)
    bucket, prefix = store_location(env)
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)

    def upload(key: str, text: str) -> str:
        s3.put_object(Bucket=bucket, Key=key, Body=text_image(text), ContentType="image/png")
        return key

    # FunctionServer runs exactly the image's CMD (plus --host/--port, which Knative gives as PORT).
    srv = FunctionServer(env, tmp_path / "server.log", serve=True)
    entrypoint = ["python", "-m", "function", "serve"]
    assert dockerfile_cmd(m.ROOT / "Dockerfile.cpu") == entrypoint
    srv.start()
    try:
        srv.wait_ready()
        c = m.container(m.cpu_service())
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert requests.get(srv.url + c[probe]["httpGet"]["path"], timeout=10).status_code == 200, probe
        settings = load_settings(env)
        for digits, event, mode in delivered_events(bucket, upload):
            assert m.trigger_matches(main_trigger(), event.get_attributes()), event["type"]
            headers, body = mode(event)
            reply = reply_of(requests.post(srv.url + "/", headers=headers, data=body, timeout=300))
            assert reply["correlationid"] == event["id"] and reply["source"] == settings.event_source
            assert not m.trigger_matches(main_trigger(), reply.get_attributes()), "the reply would loop"
            manifest_uri = reply.data["results"]["manifest"]["uri"]
            assert manifest_uri.startswith(f"s3://{bucket}/{prefix}/"), manifest_uri
            md_key = reply.data["results"]["markdown"]["uri"].removeprefix(f"s3://{bucket}/")
            assert digits in s3.get_object(Bucket=bucket, Key=md_key)["Body"].read().decode(), event["type"]
            # Were the reply delivered back anyway, the function acknowledges it and does nothing.
            headers, body = to_binary(reply)
            again = requests.post(srv.url + "/", headers=headers, data=body, timeout=60)
            assert again.status_code == 202 and "ce-type" not in again.headers, again.text
    finally:
        srv.stop()
