"""The page budget from the pod's memory (function/memory.py): the cgroup read, the arithmetic, the
settings that apply it, every manifest's worst case within its memory limit, and the engines' memory
models held against a real measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.memory import measure
from function.config import load_settings
from function.errors import ConfigError
from function.memory import HEADROOM, MIN_PAGE_PIXELS, MODELS, cgroup_limit
from tests import deploy_manifests as m
from tests.test_deploy import stack_fn

MB = 1024 * 1024
A4_300_DPI = 2480 * 3508


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "4294967296\n"}, 4294967296),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "2147483648\n"}, 2147483648),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # cgroup v1's "unlimited"
        ({}, None),
    ],
)
def test_cgroup_limit(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_limit(tmp_path) == expected


def test_the_budget_keeps_the_worst_case_within_the_limit() -> None:
    for model in MODELS.values():
        for limit_mb, concurrency in ((4096, 2), (16384, 1), (8192, 4)):
            budget = model.pixel_budget(limit_mb * MB, concurrency)
            if budget < MIN_PAGE_PIXELS:
                continue  # the settings refuse to start (below)
            assert model.worst_case(concurrency, budget) <= HEADROOM * limit_mb * MB
            assert model.worst_case(concurrency, budget + 1000) > HEADROOM * limit_mb * MB - 10**6


def test_settings_lower_the_pixel_limit_to_the_budget() -> None:
    s = load_settings({"OCR_ENGINE": "rapidocr", "OCR_CONCURRENCY": "2", "OCR_MEMORY_LIMIT_MB": "4096"})
    assert s.max_pixels == MODELS["rapidocr"].pixel_budget(4096 * MB, 2) < 100_000_000
    assert s.memory_limit_mb == 4096
    smaller = load_settings({"OCR_MEMORY_LIMIT_MB": "4096", "OCR_MAX_PIXELS": "5000000"})
    assert smaller.max_pixels == 5_000_000  # a lower configured limit stays
    one = load_settings({"OCR_ENGINE": "rapidocr", "OCR_CONCURRENCY": "1", "OCR_MEMORY_LIMIT_MB": "4096"})
    assert one.max_pixels > s.max_pixels  # fewer documents at once: larger pages


def test_a_limit_too_small_for_the_concurrency_stops_the_start() -> None:
    with pytest.raises(
        ConfigError, match=r"OCR_MEMORY_LIMIT_MB or the container's\) or lower OCR_CONCURRENCY"
    ):
        load_settings({"OCR_ENGINE": "rapidocr", "OCR_CONCURRENCY": "4", "OCR_MEMORY_LIMIT_MB": "2048"})


def quantity(text: str) -> int:
    units = {"Ki": 1024, "Mi": MB, "Gi": 1024 * MB}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def deployments() -> list[tuple[str, dict[str, str], int]]:
    """(name, environment, memory limit in bytes) of every deployment the repository ships."""
    out = []
    for name, svc in (("knative GPU", m.gpu_service()), ("knative CPU", m.cpu_service())):
        limits = m.container(svc)["resources"]["limits"]
        out.append((name, m.service_env(svc), quantity(limits["memory"])))
    fn: dict[str, Any] = stack_fn()
    out.append(
        ("OpenFaaS", {k: str(v) for k, v in fn["environment"].items()}, quantity(fn["limits"]["memory"]))
    )
    return out


@pytest.mark.parametrize(
    ("name", "env", "limit"), deployments(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_manifest_fits_its_worst_case_in_its_memory(name: str, env: dict[str, str], limit: int) -> None:
    plain = {k: v for k, v in env.items() if not k.endswith("_FILE")}  # secrets are mounted in the pod only
    settings = load_settings({**plain, "OCR_MEMORY_LIMIT_MB": str(limit // MB)})
    model = MODELS[settings.engine]
    worst = model.worst_case(settings.concurrency, settings.max_pixels)
    assert worst <= limit, f"{name}: {worst / MB:.0f} MiB worst case over a {limit / MB:.0f} MiB limit"
    # ... and still reads what people send: an A4 page at 300 dpi.
    assert settings.max_pixels >= A4_300_DPI, f"{name}: pages limited to {settings.max_pixels} pixels"
    assert settings.max_pixels >= MIN_PAGE_PIXELS


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["rapidocr", "tesseract", "cpu"])
def test_the_engine_memory_model_covers_a_measured_page(engine: str) -> None:
    """A blank 16 Mpx page read in a new process as the CPU image runs: its peak stays within the
    model the budget is computed from (so a change that makes an engine hungrier fails here)."""
    got = measure(engine, 16)
    model = MODELS[engine]
    predicted_mb = model.per_doc_mb + model.bytes_per_pixel * got["pixels"] / MB
    assert got["page_mb"] <= predicted_mb, (got, predicted_mb)
    assert got["idle_mb"] <= model.idle_mb, got
