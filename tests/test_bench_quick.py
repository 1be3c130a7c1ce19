"""The performance benchmark's quick mode runs end to end, so `bench/perf` cannot rot unnoticed.

No figure is asserted: a CI machine's timings say nothing. What is checked is that every section ran,
that both sides did real work on the same pages, and that the report and plots were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT

pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.perf", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert {"cold", "seq", "par", "cache", "memory"} <= set(results)
    for doc in results["seq"].values():
        assert doc["rounds"] and all(r["bare"] > 0 and r["function"] > 0 for r in doc["rounds"])
    assert all(row["ratio"] > 0 for row in results["par"]["rounds"])
    assert all(len(c["hits"]) > 0 for c in results["cache"].values())
    cold = results["cold"][0]
    assert cold["function"]["ready"] > 0 and cold["bare"]["to_models"] > 0
    assert {"engine_import", "models", "warm_up"} <= set(cold["function"]["split"])
    assert results["memory"]["peak_long_mb"] > 0
    assert results["allocator"] == "libtcmalloc_minimal.so.4", "both sides on the images' allocator"
    assert results["zlib"].endswith("zlib-ng"), "and on their zlib"
    report = (out / "report.md").read_text()
    assert "function ÷ bare" in report and "python -m bench.perf --quick" in report
    for plot in ("throughput", "latency", "memory"):
        assert (out / f"{plot}-rapidocr.png").stat().st_size > 0


def test_gpu_benchmark_script_runs_against_a_running_function(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """bench/gpu.py is meant for a GPU machine; the function answers the same API whatever its
    engine. Here the app in process with the FAKE engine (tests/fakes.py): the script is tested."""
    from bench import gpu

    out = tmp_path / "gpu.json"
    argv = ["--target", f"cpu={app.url}", "--concurrency", "1,2", "--docs", "2", "--dpi", "72"]
    rows = gpu.main([*argv, "--warm", "0", "--out", str(out)])
    assert [(r["concurrency"], r["docs"], r["errors"]) for r in rows] == [(1, 2, 0), (2, 4, 0)]
    assert all(r["pages_per_sec"] > 0 and r["ocr_s_per_page"] > 0 for r in rows)
    assert json.loads(out.read_text())["targets"]["cpu"]["engine"] == "fake"


def test_allocator_benchmark_runs_and_the_preload_takes_effect() -> None:
    """bench/perf/allocator.py, one fresh Tesseract process per allocator. A preload that did not take
    effect would leave the page faults where glibc has them (measured: about 12 400 per page on glibc,
    2 400 with tcmalloc), so far fewer faults with tcmalloc is the check; no timing is asserted."""
    from bench.perf import allocator

    rows = allocator.main(["--engine", "tesseract", "--processes", "1", "--reads", "1"])
    by_name = {row["allocator"]: row for row in rows}
    assert set(by_name) == set(allocator.ALLOCATORS)
    assert all(row["main"] > 0 and row["pool"] > 0 for row in rows)
    assert by_name["tcmalloc"]["faults"] < by_name["glibc, MALLOC_ARENA_MAX=2"]["faults"] / 2


def test_decode_benchmark_runs_under_both_zlibs() -> None:
    """bench/perf/decode.py: the system's zlib, then zlib-ng (a preload that did not take effect would
    report the system's version twice); no timing is asserted."""
    from bench.perf import decode

    rows = decode.main()
    assert not rows[0]["zlib"].endswith("zlib-ng") and rows[1]["zlib"].endswith("zlib-ng")
    assert all(row["inflate_ms"] > 0 and row["pillow_decode_ms"] > 0 for row in rows)
