"""Tables (Markdown) and plots (PNG) from `bench.perf`'s results."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGES = ("open", "wait_engine", "queue", "ocr", "render", "store")


def _med(values: Sequence[float]) -> float:
    return statistics.median(values)


def _spread(values: Sequence[float], fmt: str = ".3f") -> str:
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{_med(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def markdown(results: dict[str, Any], out: Path) -> str:
    lines = [
        f"Engine `{results['engine']}`, {results['cpus']} CPUs, pages at {results['dpi']} dpi, "
        f"allocator {results.get('allocator', 'glibc malloc, MALLOC_ARENA_MAX=2')} and zlib "
        f"{results.get('zlib', '(not recorded)')} on both sides. "
        f"Command: `{results['command']}`. Figures are medians with [min–max] over rounds; "
        "ratios are taken within each round.",
        "",
    ]
    for section in ("seq", "par", "cache", "cold", "memory"):
        if section in results:
            lines += globals()[f"_{section}"](results[section], results)
            lines.append("")
    plots = _plots(results, out)
    if plots:
        lines.append("Plots: " + ", ".join(f"`{p.name}`" for p in plots))
    return "\n".join(lines)


def _seq(seq: dict[str, Any], results: dict[str, Any]) -> list[str]:
    before = any("function_before" in r for d in seq.values() for r in d["rounds"])
    extra = " function (before) s/page | before ÷ bare |" if before else ""
    lines = [
        "Sequential, OCR_CONCURRENCY=1 (s/page; function = HTTP upload to answer, bare = `engine.predict`; "
        "new processes on both sides every round):",
        "",
        f"| workload | pages | bare s/page | function s/page | function ÷ bare |{extra} rounds |",
        "|---|---:|---:|---:|---:|" + ("---:|---:|" if before else "") + "---:|",
    ]
    for name, doc in seq.items():
        rows = doc["rounds"]
        cells = ""
        if before:
            cells = (
                f" {_spread([r['function_before'] for r in rows])} "
                f"| {_spread([r['ratio_before'] for r in rows])} |"
            )
        lines.append(
            f"| {name} | {doc['pages']} | {_spread([r['bare'] for r in rows])} "
            f"| {_spread([r['function'] for r in rows])} | **{_spread([r['ratio'] for r in rows])}** "
            f"|{cells} {len(rows)} |"
        )
    lines += ["", "Where the function's time goes (median seconds per document, from its `timings`):", ""]
    lines += [
        "| workload | " + " | ".join(STAGES) + " | HTTP and the rest |",
        "|---|" + "---:|" * (len(STAGES) + 1),
    ]
    for name, doc in seq.items():
        stages = doc.get("stages", [])
        if not stages:
            continue
        cells = [_med([s.get(k, 0.0) for s in stages]) for k in STAGES]
        total = _med([r["function"] * doc["pages"] for r in doc["rounds"]])
        cells.append(total - sum(cells))
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    multi = {n: d for n, d in seq.items() if "service" in d["rounds"][0]}
    if multi:
        lines += [
            "",
            "The function's own steps (open, decode or render pages, OCR, Markdown/JSON; no HTTP, no "
            "store) in the bare engine's process, pages rendered ahead or not (s/page; a 1-page "
            "document has nothing to render ahead):",
            "",
            "| workload | bare | service, prefetch | service, no prefetch | prefetch ÷ bare "
            "| no prefetch ÷ bare |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, doc in multi.items():
            rows = doc["rounds"]
            ahead = "service_no_prefetch" in rows[0]
            lines.append(
                f"| {name} | {_spread([r['bare'] for r in rows])} | {_spread([r['service'] for r in rows])} "
                f"| {_spread([r['service_no_prefetch'] for r in rows]) if ahead else '—'} "
                f"| {_spread([r['service'] / r['bare'] for r in rows])} "
                f"| {_spread([r['service_no_prefetch'] / r['bare'] for r in rows]) if ahead else '—'} |"
            )
    return lines


def _par(par: dict[str, Any], results: dict[str, Any]) -> list[str]:
    by: dict[str, list[float]] = defaultdict(list)
    for row in par["rounds"]:
        for key, value in row.items():
            if key != "ratio":
                by[key].append(value["pages_per_sec"])
    lines = [
        f"Parallel: {par['pages']} one-page documents per measurement ({par['what']}), pages/s:",
        "",
        "| how | in parallel | pages/s |",
        "|---|---:|---:|",
    ]
    for key, values in by.items():
        name, parallel = key.rsplit(" @", 1)
        lines.append(f"| {name} | {parallel} | {_spread(values)} |")
    ratios = [row["ratio"] for row in par["rounds"]]
    lines += [
        "",
        f"Function at concurrency {par['slots']} ÷ the best bare way in the same round: "
        f"**{_spread(ratios)}**.",
    ]
    before = f"function (before): OCR_CONCURRENCY={par['slots']} @{par['slots']}"
    if all(before in row for row in par["rounds"]):
        fn = f"function: OCR_CONCURRENCY={par['slots']} @{par['slots']}"
        gain = [row[fn]["pages_per_sec"] / row[before]["pages_per_sec"] for row in par["rounds"]]
        lines[-1] += f" The function now ÷ before, both at concurrency {par['slots']}: {_spread(gain)}."
    return lines


def _cache(cache: dict[str, Any], results: dict[str, Any]) -> list[str]:
    lines = [
        "Cache hits (the same document again, answered from its stored result), seconds:",
        "",
        "| workload | OCR (median) | hit | hit with `return_content` | OCR ÷ hit (medians) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in cache.items():
        ocr, hit = _med(c["ocr"]), _med(c["hits"])
        lines.append(
            f"| {name} | {ocr:.3f} | {_spread(c['hits'], '.4f')} | {_spread(c['hits_with_content'], '.4f')} "
            f"| **{ocr / hit:.0f}x** |"
        )
    return lines


def _cold(cold: list[dict[str, Any]], results: dict[str, Any]) -> list[str]:
    bare = [r["bare"] for r in cold]
    fn = [r["function"] for r in cold]
    keys = sorted({k for f in fn for k in f["split"]}, key=list(_SPLIT).index) if fn else []
    lines = [
        "Cold start, seconds from spawning the process:",
        "",
        "| bare engine (fresh process) | import | models | warm-up | spawn → models loaded | spawn → warm |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {len(bare)} round(s) | {_spread([b['import'] for b in bare])} "
        f"| {_spread([b['models'] for b in bare])} "
        f"| {_spread([b['warm_up'] for b in bare])} | {_spread([b['to_models'] for b in bare])} "
        f"| {_spread([b['to_warm'] for b in bare])} |",
        "",
        "| function | " + " | ".join(_SPLIT.get(k, k) for k in keys) + " | spawn → ready (client) |",
        "|---|" + "---:|" * (len(keys) + 1),
        f"| {len(fn)} round(s) | "
        + " | ".join(_spread([f["split"].get(k, 0.0) for f in fn]) for k in keys)
        + f" | {_spread([f['ready'] for f in fn])} |",
        "",
    ]
    over = [r["function"]["ready"] - r["bare"]["to_models"] for r in cold]
    first = [f["first_request"] / f["second_request"] for f in fn]
    lines += [
        f"Function ready − bare models loaded: **{_spread(over)} s**. First request after ready ÷ the "
        f"second: {_spread(first, '.2f')}.",
    ]
    if all("function_before" in r for r in cold):
        old = [r["function_before"] for r in cold]
        old_first = [o["first_request"] / o["second_request"] for o in old]
        lines[-1] += (
            f" Before: spawn → ready {_spread([o['ready'] for o in old])} s, ready − bare models "
            f"{_spread([r['function_before']['ready'] - r['bare']['to_models'] for r in cold])} s, "
            f"first request ÷ second {_spread(old_first, '.2f')}."
        )
    return lines


_SPLIT = {
    "import": "interpreter + handler import",
    "to_load": "to the load in the worker",
    "engine_import": "engine import",
    "models": "models",
    "warm_up": "warm-up",
    "load": "load (engine import + models + warm-up)",
    "total": "process start → ready (server)",
}


def _memory(mem: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [
        "Memory (worker RSS, sampled every 50 ms, and the kernel's VmHWM): "
        f"{mem['long']}, against {mem['one_page']}:",
        "",
        "| document | peak RSS MB | function s/page | bare s/page |",
        "|---|---:|---:|---:|",
        f"| 1 page (3 requests) | {mem['peak_one_page_mb']:.0f} | {_med(mem['one_page_seconds']):.3f} | |",
        f"| {mem['pages']} pages | {mem['peak_long_mb']:.0f} | {mem['function_s_per_page']:.3f} "
        f"| {mem['bare_s_per_page']:.3f} |",
        "",
        f"Peak growth for {mem['pages']} pages over 1 page: **{mem['delta_mb']:.0f} MB**; "
        f"function ÷ bare s/page on the long PDF: {mem['function_s_per_page'] / mem['bare_s_per_page']:.3f}."
        + _upload(mem)
        + _left_behind(mem),
    ]


def _left_behind(mem: dict[str, Any]) -> str:
    if "idle_after_long_mb" not in mem:  # absent from results made before it was recorded
        return ""
    before, after = mem["idle_before_long_mb"], mem["idle_after_long_mb"]
    return f" Idle worker RSS before the long PDF {before:.0f} MB, after its answer {after:.0f} MB."


def _upload(mem: dict[str, Any]) -> str:
    sizes = mem.get("upload_mb")  # absent from results made before it was recorded
    if not sizes:
        return ""
    return (
        f" The uploads were {sizes['one_page']:.1f} MB and {sizes['long']:.1f} MB; the function holds "
        "the upload in memory while it reads it."
    )


# ---------------------------------------------------------------- plots


def _plots(results: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    engine = results["engine"]
    if "par" in results:
        made += [_throughput(plt, results["par"], out / f"throughput-{engine}.png", engine)]
        made += [_latency(plt, results["par"], out / f"latency-{engine}.png", engine)]
    if "memory" in results:
        made += [_memory_plot(plt, results["memory"], out / f"memory-{engine}.png", engine)]
    return made


def _by_config(par: dict[str, Any]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    by: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in par["rounds"]:
        for key, value in row.items():
            if key != "ratio":
                by[value["config"]][value["parallel"]].append(value)
    return by


def _throughput(plt: Any, par: dict[str, Any], path: Path, engine: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for config, points in _by_config(par).items():
        xs = sorted(points)
        meds = [_med([v["pages_per_sec"] for v in points[x]]) for x in xs]
        lo = [m - min(v["pages_per_sec"] for v in points[x]) for m, x in zip(meds, xs, strict=True)]
        hi = [max(v["pages_per_sec"] for v in points[x]) - m for m, x in zip(meds, xs, strict=True)]
        style = "o-" if config.startswith("function") else "s--"
        ax.errorbar(xs, meds, yerr=[lo, hi], fmt=style, capsize=3, label=config)
    ax.set_xlabel("documents in parallel (clients / callers / processes)")
    ax.set_ylabel("pages/s")
    ax.set_title(f"{engine}: throughput vs concurrency ({par['slots']} CPUs; median, min–max)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(plt: Any, par: dict[str, Any], path: Path, engine: str) -> Path:
    labels, p50, p90, p99 = [], [], [], []
    for config, points in _by_config(par).items():
        for parallel in sorted(points):
            lat = [s for v in points[parallel] for s in v["latencies"]]
            labels.append(f"{config.split(':')[0]} @{parallel}\n{config.split(': ', 1)[1][:28]}")
            p50.append(_pct(lat, 0.5))
            p90.append(_pct(lat, 0.9))
            p99.append(_pct(lat, 0.99))
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(labels)), 4.5))
    xs = range(len(labels))
    width = 0.27
    ax.bar([x - width for x in xs], p50, width, label="p50")
    ax.bar(list(xs), p90, width, label="p90")
    ax.bar([x + width for x in xs], p99, width, label="p99")
    ax.set_xticks(list(xs), labels, fontsize=6)
    ax.set_ylabel("seconds per one-page document")
    ax.set_title(f"{engine}: latency percentiles (function: client-side, incl. queueing)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _memory_plot(plt: Any, mem: dict[str, Any], path: Path, engine: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    ts = [t for t, _ in mem["timeline"]]
    mb = [m for _, m in mem["timeline"]]
    ax.plot(ts, mb, lw=1)
    for name, (start, end) in mem["phases"].items():
        label = "3 x 1 page" if name == "one_page" else f"{mem['pages']} pages"
        ax.axvspan(start, end, alpha=0.12, color="C1" if name == "long" else "C2", label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("worker RSS, MB")
    ax.set_title(f"{engine}: memory over a long PDF (gaps: the bare engine's turn)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
