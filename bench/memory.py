"""Memory per page: the figures behind function/memory.py's models, measured as the CPU image runs.

For each engine and page size, a new process (tcmalloc and zlib-ng preloaded, as `make run` does)
loads the engine, then reads one blank PNG page through the service's open and the engine's predict;
the peak RSS (VmHWM) over the loaded engine's RSS is the page's cost. A blank page is the worst case
per pixel that the limits allow: the pixels cost the same whatever they show, and no text stops early.

    python -m bench.memory                      # rapidocr and tesseract at 4, 16 and 48 Mpx
    python -m bench.memory --engine tesseract --mpx 16 --json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.perf.server import preload_env, tcmalloc_installed

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure_here(engine_name: str, mpx: float) -> dict[str, float]:
    """In this process: the loaded engine's RSS and one blank page's peak over it."""
    from PIL import Image, ImageDraw

    from function import service
    from function.config import load_settings
    from function.engines import create_engine
    from function.options import Options

    settings = load_settings({"OCR_ENGINE": engine_name, "OCR_MAX_PIXELS": str(10**9)})
    width = int((mpx * 1e6 / 1.414) ** 0.5)
    page = Image.new("RGB", (width, int(width * 1.414)), "white")
    ImageDraw.Draw(page).text((100, 100), "Memory per page", fill="black")
    buf = io.BytesIO()
    page.save(buf, "PNG")
    pixels = page.width * page.height
    del page
    engine = create_engine(engine_name, settings)
    engine.load()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    idle = _status("VmRSS")
    pages = service.open_pages(buf.getvalue(), Options(), settings)
    engine.predict(pages, Options())
    peak = _status("VmHWM") - idle
    return {"engine": engine_name, "pixels": pixels, "idle_mb": idle / MB, "page_mb": peak / MB}


def measure(engine_name: str, mpx: float) -> dict[str, float]:
    """`measure_here` in a new process started as `make run` starts the function."""
    env = {**os.environ, **preload_env(tcmalloc_installed())}
    cmd = [sys.executable, "-m", "bench.memory", "--engine", engine_name, "--mpx", str(mpx), "--json"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", action="append", help="rapidocr, tesseract (default: both)")
    parser.add_argument("--mpx", type=float, action="append", help="page size in megapixels")
    parser.add_argument("--json", action="store_true", help="measure in this process, print one JSON line")
    args = parser.parse_args()
    engines, sizes = args.engine or ["rapidocr", "tesseract"], args.mpx or [4, 16, 48]
    if args.json:
        print(json.dumps(measure_here(engines[0], sizes[0])))
        return
    print("| engine | page Mpx | loaded engine RSS, MB | page peak over it, MB | bytes/pixel |")
    print("|---|---:|---:|---:|---:|")
    for engine_name in engines:
        for mpx in sizes:
            r = measure(engine_name, mpx)
            print(
                f"| {engine_name} | {r['pixels'] / 1e6:.1f} | {r['idle_mb']:.0f} | {r['page_mb']:.0f} "
                f"| {r['page_mb'] * MB / r['pixels']:.1f} |"
            )


if __name__ == "__main__":
    main()
