"""PDF pages rendered in a child process that a hostile PDF cannot take the worker down with.

PDFium has no limits of its own: a 6 KB PDF whose form XObjects draw each other grows without end,
and a broken page tree can spin. Each document therefore gets a child process of its own
(`python -m function.pdf_render`) that opens it and renders the pages asked for, with its address
space capped (`RLIMIT_AS`) and every answer waited for with a timeout; a child that passes either is
killed, and the request gets a clear 422, 413 or 504 instead of an OOM-killed pod. There is no lock
shared between documents: each child holds the only PDFium of its process.

The protocol is length-framed bytes over two pipes (`multiprocessing.connection.Connection`):
JSON headers and raw pixels, never pickles, so a child subverted by a PDF cannot run code in the
worker through its answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from PIL import Image

from function.errors import DeadlineExceeded, OCRError, TooLarge, Undecodable

MB = 1024 * 1024
# Python, pypdfium2 and PDFium's own working set before a page bitmap (VmSize of an idle child is
# ~90 MB on glibc, ~110 MB with tcmalloc preloaded; the rest is headroom for fonts and page parsing).
BASE_ADDRESS_SPACE = 512 * MB
PIPE_BUFFER = 1024 * 1024
_ERRORS: dict[str, type[OCRError]] = {"too_large": TooLarge, "undecodable": Undecodable}


def memory_limit(max_pixels: int) -> int:
    """Address space a child may use: its base plus one page at the pixel limit (3 bytes a pixel),
    twice over for PDFium's scratch buffers while it draws."""
    return BASE_ADDRESS_SPACE + 2 * 3 * max_pixels


class PdfRenderer:
    """One PDF opened in a child process: `page_count` now, pages one at a time by `render`.

    `timeout` caps each answer (opening, one page); `deadline` (a `time.monotonic()` value) caps
    them all. Close it (or let it be collected) to end the child.
    """

    def __init__(self, data: bytes, *, max_pixels: int, timeout: float, deadline: float | None = None):
        self.max_pixels = max_pixels
        self.timeout = timeout
        self.deadline = deadline
        self.limit = memory_limit(max_pixels)
        self._proc, self._conn = _take(self.limit, cpu_seconds=max(int(timeout) * 4, 60))
        try:
            self._conn.send_bytes(data)
            self.page_count: int = self._answer("opening the PDF")["pages"]
        except BaseException:
            self.close()
            raise

    def render(self, index: int, scale: float) -> Image.Image:
        """Page `index` (0-based) as an RGB image at `scale` × 72 dpi."""
        self._send({"index": index, "scale": scale, "max_pixels": self.max_pixels})
        header = self._answer(f"rendering page {index + 1}")
        pixels = self._receive(f"rendering page {index + 1}")
        size = (header["width"], header["height"])
        return Image.frombytes("RGB", size, pixels, "raw", "RGB", header["stride"], 1)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._conn.close()

    def __enter__(self) -> PdfRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the child is gone; _answer says why
            self._conn.send_bytes(json.dumps(message).encode())

    def _answer(self, doing: str) -> dict[str, Any]:
        answer = json.loads(self._receive(doing))
        if "error" in answer:
            raise _ERRORS[answer["error"]](answer["message"])
        return answer

    def _receive(self, doing: str) -> bytes:
        wait, by_deadline = self._wait()
        if not self._conn.poll(wait):
            self.close()
            if by_deadline:
                raise DeadlineExceeded(f"the document ran past its deadline while {doing}")
            raise Undecodable(f"the PDF took longer than {self.timeout:g} s {doing}; it was stopped")
        try:
            # Never more than a page at the pixel limit could be, whatever the child claims.
            return self._conn.recv_bytes(4 * self.max_pixels + MB)
        except (EOFError, OSError):
            self._proc.wait()
            raise Undecodable(
                f"the PDF stopped its renderer while {doing} ({_how(self._proc.returncode)}); "
                f"a PDF page may use at most {self.limit // MB} MB to render"
            ) from None

    def _wait(self) -> tuple[float, bool]:
        """How long the next answer may take, and whether the deadline (not the timeout) sets it."""
        if self.deadline is None:
            return self.timeout, False
        left = max(self.deadline - time.monotonic(), 0.0)
        return (left, True) if left < self.timeout else (self.timeout, False)


# The child imports this package from wherever the worker did (the CLI may run from any directory).
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
}


# One child started ahead, per limits: Python and PDFium take ~80 ms to start, which a document would
# otherwise wait for (a cached PDF too: its page count is read first).
_spare_lock = threading.Lock()
_spares: dict[tuple[int, int], tuple[subprocess.Popen[bytes], Connection]] = {}


def _take(limit: int, cpu_seconds: int) -> tuple[subprocess.Popen[bytes], Connection]:
    """A started child for a document, and another one started for the next."""
    with _spare_lock:
        ready = _spares.pop((limit, cpu_seconds), None)
        _spares[(limit, cpu_seconds)] = _spawn(limit, cpu_seconds)
    if ready is None or ready[0].poll() is not None:
        if ready is not None:
            ready[1].close()
        ready = _spawn(limit, cpu_seconds)
    return ready


def _spawn(limit: int, cpu_seconds: int) -> tuple[subprocess.Popen[bytes], Connection]:
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    # A page is ~12 MB: 1 MB pipe buffers (Linux's default cap) take 16× fewer switches than 64 KB.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(from_child_w, fcntl.F_SETPIPE_SZ, PIPE_BUFFER)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "function.pdf_render"]
            + [str(n) for n in (to_child_r, from_child_w, limit, cpu_seconds)],
            pass_fds=(to_child_r, from_child_w),
            env=_CHILD_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
    # One duplex object over the two ends the parent keeps: reads from the child, writes to it.
    return proc, _Duplex(from_child_r, to_child_w)


class _Duplex(Connection):
    """A Connection reading one pipe and writing another (the stdlib's takes one fd for both)."""

    # Connection's private hooks (_send, _close) are where it writes and closes; overridden so writes
    # go to the other pipe and both are closed.

    def __init__(self, read_fd: int, write_fd: int) -> None:
        super().__init__(read_fd)
        self._read_fd = read_fd
        self._write_fd = write_fd

    def _send(self, buf: bytes, write: Any = os.write) -> None:
        view = memoryview(buf)
        while view:
            view = view[write(self._write_fd, view) :]

    def _close(self, _close: Any = os.close) -> None:
        _close(self._read_fd)
        _close(self._write_fd)


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}, most likely out of memory"
    return f"exit status {returncode}"


def _child(read_fd: int, write_fd: int, limit: int, cpu_seconds: int) -> None:
    """The child: limits first, then the document, then one page per request until EOF."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # A backstop for a worker that died without killing us: the CPU a stuck render may burn.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    conn = _Duplex(read_fd, write_fd)
    import pypdfium2 as pdfium  # after the limits (PDFium's allocations count too), before the wait

    try:
        data = conn.recv_bytes()
    except EOFError:  # a spare child whose worker ended
        return

    def fail(kind: str, message: str) -> None:
        conn.send_bytes(json.dumps({"error": kind, "message": message}).encode())

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        encrypted = "password" in str(exc).lower()
        fail(
            "undecodable",
            "the PDF is encrypted; send it without a password"
            if encrypted
            else f"the PDF could not be read: {exc}",
        )
        return
    conn.send_bytes(json.dumps({"pages": len(pdf)}).encode())
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            _render_page(pdf, request, conn, fail)
        except MemoryError:
            fail("too_large", f"page {request['index'] + 1} needs more than {limit // MB} MB to render")


def _render_page(pdf: Any, request: dict[str, Any], conn: Connection, fail: Any) -> None:
    import pypdfium2 as pdfium

    index, scale = request["index"], request["scale"]
    try:
        page = pdf[index]
    except pdfium.PdfiumError as exc:
        fail("undecodable", f"page {index + 1} of the PDF could not be loaded: {exc}")
        return
    try:
        width, height = page.get_size()
        pixels = int(width * scale) * int(height * scale)
        if pixels > request["max_pixels"]:
            fail(
                "too_large",
                f"page {index + 1} has {pixels} pixels, the limit is "
                f"{request['max_pixels']} (OCR_MAX_PIXELS)",
            )
            return
        bitmap = page.render(scale=scale, rev_byteorder=True)  # RGB, as the worker builds it
        try:
            size = {"width": bitmap.width, "height": bitmap.height, "stride": bitmap.stride}
            conn.send_bytes(json.dumps(size).encode())
            conn.send_bytes(memoryview(bitmap.buffer))
        finally:
            bitmap.close()
    finally:
        page.close()


if __name__ == "__main__":
    _child(*(int(arg) for arg in sys.argv[1:5]))
