"""Reading the deployment manifests (knative/, stack.yml) and evaluating Knative Trigger filters.

The evaluator implements the filter dialects the manifests use (Knative SubscriptionsAPI `filters`:
exact, prefix, suffix, all, any, not; and the legacy `filter.attributes`), on CloudEvent attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KNATIVE = ROOT / "knative"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
DATREE = SCHEMAS / "datreeio-CRDs-catalog"
CORE = SCHEMAS / "yannh-kubernetes-json-schema" / "master-standalone-strict"

# (apiVersion, kind) -> schema file; kinds without a published schema are listed in NO_SCHEMA.
SCHEMA_FOR: dict[tuple[str, str], Path] = {
    ("serving.knative.dev/v1", "Service"): DATREE / "serving.knative.dev" / "service_v1.json",
    ("eventing.knative.dev/v1", "Broker"): DATREE / "eventing.knative.dev" / "broker_v1.json",
    ("eventing.knative.dev/v1", "Trigger"): DATREE / "eventing.knative.dev" / "trigger_v1.json",
    ("sources.knative.dev/v1alpha1", "IntegrationSource"): DATREE
    / "sources.knative.dev"
    / "integrationsource_v1alpha1.json",
    ("sources.knative.dev/v1", "SinkBinding"): DATREE / "sources.knative.dev" / "sinkbinding_v1.json",
    ("v1", "ConfigMap"): CORE / "configmap-v1.json",
    ("v1", "Secret"): CORE / "secret-v1.json",
}
NO_SCHEMA = {
    ("sources.knative.dev/v1", "KafkaSource"),  # not in the datree catalog (serverless.md §6)
    ("ceph.rook.io/v1", "CephBucketTopic"),
    ("ceph.rook.io/v1", "CephBucketNotification"),
}


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under knative/ (kustomizations are kustomize's input, not objects)."""
    return sorted(p for p in KNATIVE.rglob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in load_all(path):
            yield path, doc


def one(path: Path, kind: str) -> dict[str, Any]:
    docs = [d for d in load_all(path) if d["kind"] == kind]
    assert len(docs) == 1, f"{path}: expected one {kind}, found {len(docs)}"
    return docs[0]


def gpu_service() -> dict[str, Any]:
    return one(KNATIVE / "service-gpu.yaml", "Service")


def cpu_service() -> dict[str, Any]:
    return one(KNATIVE / "cpu" / "service.yaml", "Service")


def container(service: dict[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per function pod"
    return containers[0]


def annotations(service: dict[str, Any]) -> dict[str, str]:
    return service["spec"]["template"]["metadata"]["annotations"]


def config_map() -> dict[str, Any]:
    return one(KNATIVE / "common" / "config.yaml", "ConfigMap")


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom ConfigMaps first, then `env`."""
    c = container(service)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name == config_map()["metadata"]["name"], f"envFrom names an unknown ConfigMap {name}"
        env.update(config_map()["data"])
    for item in c.get("env", []):
        assert "value" in item, f"{item['name']}: only literal values are used here"
        env[item["name"]] = item["value"]
    return env


# --- Trigger filters -------------------------------------------------------------------------------


def filter_matches(expr: Mapping[str, Any], attrs: Mapping[str, str]) -> bool:
    """One SubscriptionsAPI filter expression (a single-key mapping) against event attributes."""
    assert len(expr) == 1, f"a filter expression has exactly one dialect: {expr}"
    ((dialect, arg),) = expr.items()
    if dialect in ("exact", "prefix", "suffix"):
        test = {"exact": str.__eq__, "prefix": str.startswith, "suffix": str.endswith}[dialect]
        return all(name in attrs and test(str(attrs[name]), value) for name, value in arg.items())
    if dialect == "all":
        return all(filter_matches(e, attrs) for e in arg)
    if dialect == "any":
        return any(filter_matches(e, attrs) for e in arg)
    if dialect == "not":
        return not filter_matches(arg, attrs)
    raise AssertionError(f"filter dialect {dialect!r} is not evaluated by these tests")


def trigger_matches(trigger: Mapping[str, Any], attrs: Mapping[str, str]) -> bool:
    """`filters` (all must hold) override the legacy `filter.attributes` (exact; "" = any value)."""
    spec = trigger["spec"]
    if spec.get("filters"):
        return all(filter_matches(e, attrs) for e in spec["filters"])
    wanted = (spec.get("filter") or {}).get("attributes") or {}
    return all(name in attrs and (value == "" or attrs[name] == value) for name, value in wanted.items())


# --- OpenFaaS --------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds in a Go duration such as `30m1s`; ValueError for anything else."""
    if not _DURATION.match(text):
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", text))


def iso_duration(text: str) -> float:
    """Seconds in the ISO-8601 durations Knative delivery uses (PT10S, PT1M30S)."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", text)
    if not match or text == "PT":
        raise ValueError(f"not an ISO-8601 time duration: {text!r}")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s
