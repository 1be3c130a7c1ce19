"""The benchmark's 1-page PNG decoded under each zlib: the system's and zlib-ng, which `make run` and the
CPU image preload (scripts/zlib-ng.sh).

    python -m bench.perf.decode

Why it exists: Pillow's Linux wheels inflate PNGs with the system's libz.so.1 (Debian 12: zlib 1.2.13),
and that inflate was most of the function's own time per page for a fast engine (BENCHMARKS.md). Each
zlib runs in a fresh process (the loader reads LD_PRELOAD when a process starts), both on the allocator
the function runs with; figures are medians of 21 reads, in milliseconds.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

from bench.perf.server import ROOT, preload_env, tcmalloc_installed

READS = 21


def _idat(png: bytes) -> bytes:
    """The PNG's compressed pixels: its IDAT chunks, joined."""
    parts, pos = [], 8
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            parts.append(png[pos + 8 : pos + 8 + size])
        pos += 12 + size
    return b"".join(parts)


def _median_ms(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(READS):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 1)


def _child() -> dict[str, object]:
    from PIL import Image

    from bench.perf.workloads import image_doc

    png = image_doc("tesseract", 200).data
    stream = _idat(png)
    return {
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "inflate_ms": _median_ms(lambda: zlib.decompress(stream)),
        "pillow_decode_ms": _median_ms(lambda: Image.open(io.BytesIO(png)).load()),
    }


def main() -> list[dict[str, object]]:
    rows = []
    for zlib_ng in (False, True):
        out = subprocess.run(
            [sys.executable, "-m", "bench.perf.decode", "--child"],
            cwd=ROOT,
            env={**os.environ, **preload_env(tcmalloc_installed(), zlib_ng)},
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.splitlines()[-1]))
    print("| zlib | inflate of the page's pixels, ms | Pillow's decode of the PNG, ms |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['zlib']} | {row['inflate_ms']} | {row['pillow_decode_ms']} |")
    return rows


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_child()))
    else:
        main()
