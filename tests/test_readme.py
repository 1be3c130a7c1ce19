"""Every shell example in README.md, run as written against real function processes, so the README
cannot drift from what works.

The examples' `http://localhost:8080` becomes a test server's address, `https://example.com/` a local
file server (the function runs with OCR_URL_ALLOW_PRIVATE so it may fetch from 127.0.0.1), and
`s3://inbox/…` an object in a moto S3 server that a function storing its results there can read. The
files are real pages from the development set: `scan.png` is a court opinion page re-encoded as a
300 KB greyscale PNG at 200 DPI (its base64 is over the 128 KiB a single shell argument may have),
`scan.pdf` three pages, `report.pdf` one. An example that no rule below knows fails the fast test:
add how to run it, or why it is not run.

The servers and the CLI read with the `tesseract` engine (OCR_ENGINE): what is tested is that each
command works as written, whatever the engine; `tesseract` reads these pages about six times faster
than `rapidocr` on two cores. Recognition is tested in tests/test_ocr_e2e.py and tests/test_engine_*.py.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import devset
from tests.conftest import S3_KEYS, s3_env
from tests.server import ROOT, FunctionServer, free_port

README = ROOT / "README.md"
MAX_ARG_STRLEN = 128 * 1024  # Linux: the longest single argument a command may get
ENGINE = {"OCR_ENGINE": "tesseract"}


def readme_commands() -> list[str]:
    """The commands of README.md's ```sh blocks: comment lines dropped, lines continued with `\\` or
    a trailing `|` joined to the next."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL):
        pending = ""
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1]
            elif pending.endswith("|"):
                pending += " "
            else:
                commands.append(pending)
                pending = ""
    return commands


# --- how each kind of example runs, or why it does not -------------------------------------------


@dataclass(frozen=True)
class Rule:
    pattern: str
    run: str | None = None  # the name of a check below; None: not run, for `reason`
    reason: str = ""


RULES = [
    Rule(
        r"^make (run|test)$",
        reason="`make test` is this suite; `make run` is `ocr-function serve`, run below",
    ),
    Rule(
        r"^docker (build|run) ",
        reason="needs Docker and an NVIDIA GPU; tests/test_dockerfiles.py lints the files",
    ),
    Rule(r"^ocr-function ocr ", run="cli_ocr"),
    Rule(r"^ocr-function serve ", run="cli_serve"),
    Rule(r"^ocr-function invoke ", run="cli_invoke"),
    Rule(r"^ocr-function event ", run="cli_event"),
    Rule(r"s3_uri", run="curl_s3"),
    Rule(r"\bcurl\b.*localhost:8080/ocr", run="curl_local"),
]


def rule_for(command: str) -> Rule | None:
    matching = [rule for rule in RULES if re.search(rule.pattern, command)]
    return matching[0] if matching else None


def test_every_readme_example_is_run_or_says_why_not() -> None:
    commands = readme_commands()
    assert len(commands) >= 12, commands  # the parser found the blocks
    unknown = [c for c in commands if rule_for(c) is None]
    assert not unknown, f"README examples no rule runs or excuses (add one in {__file__}): {unknown}"
    assert not [c for c in commands if re.search(r"\$\(base64", c)], "base64 in an argument hits ARG_MAX"


# --- the world the examples run in -----------------------------------------------------------------


@dataclass
class World:
    work: Path  # the examples' current directory, with scan.png, scan.pdf, report.pdf
    local: FunctionServer  # the local store, image_url allowed to reach 127.0.0.1
    s3: FunctionServer  # results in the moto bucket; reads s3://inbox/…
    files_url: str  # a plain HTTP server over `work`
    path: str  # PATH with the installed `ocr-function` first


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3: Any, installed_bin: Path
) -> Iterator[World]:
    work = tmp_path_factory.mktemp("readme")
    scan = devset.page(devset.FILING).convert("L").resize((1700, 2200))  # US Letter at 200 DPI
    scan.save(work / "scan.png")
    devset.write_pdf(work / "scan.pdf", [devset.FILING, devset.PHOTO, devset.FIGURES])
    devset.write_pdf(work / "report.pdf", [devset.PHOTO])
    s3.create_bucket(Bucket="inbox")
    s3.upload_file(str(work / "scan.pdf"), "inbox", "scans/scan.pdf")
    s3.upload_file(str(work / "scan.png"), "inbox", "scans/a.png")
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(work)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    output = tmp_path_factory.mktemp("readme-output")
    (output / "aws-secret").write_text(S3_KEYS["aws_secret_access_key"] + "\n")
    env = {**ENGINE, "OCR_STORE": f"file://{output}", "OCR_URL_ALLOW_PRIVATE": "true"}
    s3_store = {**s3_env(moto_endpoint, output / "aws-secret"), **ENGINE}
    try:
        with (
            FunctionServer(env, output / "server.log") as local,
            FunctionServer(s3_store, output / "s3-server.log") as in_s3,
        ):
            yield World(
                work, local, in_s3, f"http://127.0.0.1:{files.server_port}",
                f"{installed_bin}{os.pathsep}{os.environ['PATH']}",
            )  # fmt: skip
    finally:
        files.shutdown()


@pytest.mark.slow
def test_the_scan_is_too_big_for_a_base64_argument(world: World) -> None:
    """The README's old `-F image_base64="$(base64 -w0 scan.png)"` failed with `Argument list too
    long` on a normal scan: this one is such a scan, so the piped forms are what is tested."""
    size = (world.work / "scan.png").stat().st_size
    assert 250_000 <= size <= 350_000, size
    assert size * 4 / 3 > MAX_ARG_STRLEN


def shell(world: World, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENGINE, "PATH": world.path}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=world.work, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def for_server(command: str, server: FunctionServer, world: World) -> str:
    return command.replace("http://localhost:8080", server.url).replace(
        "https://example.com", world.files_url
    )


def answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The function's JSON answer printed by curl, which must be a success."""
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "success", body
    return body


def curl_local(world: World, command: str) -> None:
    body = answer(shell(world, for_server(command, world.local, world)))
    assert body["document"]["filename"] in ("scan.png", "scan.pdf"), body["document"]
    if "pages=1-3" in command:
        assert body["document"]["pages_processed"] == 3
    if "return_content" in command:
        assert body["content"]["markdown"].strip()


def curl_s3(world: World, command: str) -> None:
    body = answer(shell(world, for_server(command, world.s3, world)))
    assert body["document"]["filename"] == "scan.pdf" and body["document"]["pages"] == 3


def cli_ocr(world: World, command: str) -> None:
    done = shell(world, command)
    assert done.returncode == 0, done.stderr
    for name in ("scan", "report"):
        assert (world.work / "out" / f"{name}.md").read_text().strip()
        assert json.loads((world.work / "out" / f"{name}.json").read_text())["pages"]
    assert (world.work / "out" / "scan.page-1.png").is_file()


def cli_serve(world: World, command: str) -> None:
    """Started from the examples' directory, ready, then stopped with SIGTERM as a pod would be."""
    port = free_port()
    env = {**os.environ, **ENGINE, "PATH": world.path}
    proc = subprocess.Popen(
        ["bash", "-c", "exec " + command.replace("--port 8080", f"--port {port}")],
        cwd=world.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        ready_within(proc, url + "/health/ready", 180)
        assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def ready_within(proc: subprocess.Popen[bytes], url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {seconds} s")


def cli_invoke(world: World, command: str) -> None:
    done = shell(world, for_server(command, world.local, world))
    assert done.returncode == 0, done.stderr
    assert re.search(r"markdown: http://127\.0\.0\.1:\d+/files/.+/document\.md", done.stdout), done.stdout


def cli_event(world: World, command: str) -> None:
    done = shell(world, for_server(command, world.s3, world))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ocr.document.completed"), done.stdout


CHECKS: dict[str, Callable[[World, str], None]] = {
    f.__name__: f for f in (curl_local, curl_s3, cli_ocr, cli_serve, cli_invoke, cli_event)
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [c for c in readme_commands() if (r := rule_for(c)) and r.run], ids=lambda c: c[:60]
)
def test_readme_example(world: World, command: str) -> None:
    rule = rule_for(command)
    assert rule and rule.run
    CHECKS[rule.run](world, command)
