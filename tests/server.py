"""A real function process (functions-framework + gunicorn) on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FunctionServer:
    """Starts `functions-framework --source handler.py --target handle` as the README does."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        serve: bool = False,
        fake: bool = False,
        own_session: bool = False,
    ) -> None:
        """`serve=True` runs `python -m function serve` instead (the app under gunicorn with the
        drain settings of function/lifecycle.py); `fake=True` runs that with the FAKE engine
        (tests/fake_serve.py: `OCR_ENGINE=fake`). `own_session=True` starts it in a session of its
        own: with the kernel's autogroup scheduling a session shares the CPU with other sessions as
        one, so processes that stand for separate pods (bench/fanout.py) each get a share."""
        self.serve = serve or fake
        self.fake = fake
        self.own_session = own_session
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # `serve` derives THREADS from admission (function/lifecycle.py) as the images do.
        threads = {} if serve else {"THREADS": "4"}
        engine = {"OCR_ENGINE": "fake"} if fake else {}
        self.env = {**os.environ, "WORKERS": "1", **threads, "PYTHONUNBUFFERED": "1", **env, **engine}
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> FunctionServer:
        exe = Path(sys.executable).with_name("functions-framework")
        cmd = [str(exe), "--source", "handler.py", "--target", "handle", "--host", "127.0.0.1"]
        if self.serve:
            module = "tests.fake_serve" if self.fake else "function"
            cmd = [sys.executable, "-m", module, *([] if self.fake else ["serve"]), "--host", "127.0.0.1"]
        self.started_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        return self

    def __enter__(self) -> FunctionServer:
        """Started and ready; `ready_seconds` is the time from process start to ready."""
        self.start()
        try:
            self.ready_seconds = self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_live(self, timeout: float = 60) -> None:
        self._wait(lambda r: r.status_code == 200, "/health/live", timeout)

    def wait_ready(self, timeout: float = 180) -> float:
        """Seconds from process start to a 200 from /health/ready."""
        self._wait(lambda r: r.status_code == 200, "/health/ready", timeout)
        return time.monotonic() - self.started_at

    def _wait(self, ok, path: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"function exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if ok(requests.get(self.url + path, timeout=5)):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} not OK after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def worker_pid(self) -> int:
        """The pid of the worker process that answers (`GET /health`)."""
        return int(requests.get(self.url + "/health", timeout=30).json()["pid"])

    def in_flight(self) -> float:
        """OCR requests in progress now (the `ocr_in_flight` gauge of `GET /metrics`)."""
        text = requests.get(self.url + "/metrics", timeout=30).text
        match = re.search(r"^ocr_in_flight (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def wait_in_flight(self, count: int = 1, timeout: float = 60) -> None:
        """Until at least `count` OCR requests are being processed."""
        deadline = time.monotonic() + timeout
        while self.in_flight() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} request(s) in flight after {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
