"""The function as `make run` and the images start it (`python -m function serve`: functions-framework's
gunicorn, one worker, threads derived from admission, tcmalloc preloaded), its worker's memory, its
start-up log, and a client that times documents through it."""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


TCMALLOC = "libtcmalloc_minimal.so.4"
# zlib-ng as libz.so.1, where `make` built it (scripts/zlib-ng.sh): under the venv's lib/, as the CPU
# image has it under /usr/local/lib/.
ZLIB_NG = Path(sys.prefix) / "lib" / "zlib-ng" / "libz.so.1"


def tcmalloc_installed() -> bool:
    """Debian's libtcmalloc-minimal4 (scripts/system-deps.sh installs it). A missing LD_PRELOAD library is
    only the loader's warning, and the process would run on glibc's malloc unannounced."""
    return ctypes.util.find_library("tcmalloc_minimal") is not None


def preload_env(tcmalloc: bool, zlib_ng: bool = True) -> dict[str, str]:
    """LD_PRELOAD and its settings as `make run` and the CPU image start the function (Makefile,
    Dockerfile.cpu): tcmalloc, or else glibc's malloc with the 2 arenas the GPU image keeps, and zlib-ng
    where it was built (or the system's zlib, with `zlib_ng=False`). Always set, so that a preload this
    process was started with does not leak in."""
    libs = [TCMALLOC] if tcmalloc else []
    libs += [str(ZLIB_NG)] if zlib_ng and ZLIB_NG.exists() else []
    malloc = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**40)} if tcmalloc else {"MALLOC_ARENA_MAX": "2"}
    return {"LD_PRELOAD": " ".join(libs), **malloc}


def allocator_name(env: dict[str, str]) -> str:
    return TCMALLOC if TCMALLOC in env.get("LD_PRELOAD", "").split() else "glibc malloc, MALLOC_ARENA_MAX=2"


# How `make run` and the images start the function (Makefile, Dockerfile.cpu).
SERVER_ENV = {"WORKERS": "1", **preload_env(tcmalloc_installed())}  # THREADS: serve derives it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], workdir: Path, name: str, root: Path = ROOT) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.root = root
        self.env = {
            **os.environ,
            **SERVER_ENV,
            "PYTHONUNBUFFERED": "1",
            "OCR_STORE": f"file://{workdir}/{name}-out",
            "OCR_DEADLINE_SEC": "0",  # a 200-page document on a busy machine may need more than 600 s
            "OCR_QUEUE_SIZE": "16",
            "OCR_QUEUE_WAIT_SEC": "3600",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0.0  # time.time() just before the process was started

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "function", "serve", "--host", "127.0.0.1"]
        with open(self.log_path, "wb") as log:
            self.spawned = time.time()
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 300, poll: float = 0.01) -> float:
        """Seconds from spawning the process to the first 200 of /health/ready."""
        deadline = time.monotonic() + timeout
        session = requests.Session()
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"function exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if session.get(self.url + "/health/ready", timeout=5).status_code == 200:
                    return time.time() - self.spawned
            except requests.ConnectionError:
                pass
            time.sleep(poll)
        raise TimeoutError(f"not ready after {timeout}s:\n{self.log_tail()}")

    def worker_pid(self) -> int:
        return int(requests.get(self.url + "/health", timeout=30).json()["pid"])

    def startup(self, timeout: float = 10) -> dict[str, float]:
        """The worker's logged split of its cold start (function/runtime.py), waited for briefly."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if '"startup"' in line:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("event") == "startup":
                        return dict(record["startup"])
                elif " startup " in line and "=" in line:  # OCR_LOG_FORMAT=text
                    pairs = line.split(" startup ", 1)[1].split()
                    return {k: float(v) for k, v in (p.split("=", 1) for p in pairs if "=" in p)}
            time.sleep(0.05)
        return {}

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Answer:
    seconds: float  # the client's wall time: upload, everything the function does, the answer
    pages: int
    cached: bool
    stages: dict[str, float]
    body: dict[str, Any]


def post(
    session: requests.Session,
    url: str,
    filename: str,
    data: bytes,
    *,
    force: bool = True,
    content: bool = False,
) -> Answer:
    fields = {"force": "true" if force else "false", "return_content": "true" if content else "false"}
    began = time.perf_counter()
    resp = session.post(url + "/ocr", files={"file": (filename, data)}, data=fields, timeout=7200)
    seconds = time.perf_counter() - began
    if resp.status_code != 200:
        raise RuntimeError(f"{filename}: HTTP {resp.status_code}: {resp.text[:500]}")
    body = resp.json()
    doc = body["document"]
    return Answer(seconds, doc.get("pages_processed", doc["pages"]), body["cached"], body["timings"], body)


class RssSampler:
    """The resident memory of a process, sampled every `period` seconds in a thread of its own."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self.period)

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((rss for t, rss in self.samples if since <= t <= until), default=0)

    def reset_high_water(self) -> None:
        """Zero the kernel's own peak (VmHWM) of the process, where the kernel allows it."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def high_water(self) -> int | None:
        """VmHWM: the kernel's peak resident memory of the process, between samples too."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None
