"""The same engine under each malloc, in fresh processes taken in turn: seconds per page in the main
thread and in a pool thread, and the minor page faults and system time each page costs.

    python -m bench.perf.allocator --engine rapidocr --processes 3

Why it exists: glibc's malloc gives every freed block above its mmap threshold (32 MB at most) back
to the kernel, so an engine's page-sized buffers are faulted in again on every page, and a thread
other than the main one may get an arena of its own. `make run` and the CPU image preload tcmalloc
instead (BENCHMARKS.md). Each process loads the engine in a background thread, as the function does,
then reads the same 1-page image alternately in its main thread (where `bench.perf`'s bare engine
reads) and in a pool thread (where the function reads a request).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.perf.server import ROOT, preload_env

ALLOCATORS = {
    "glibc, MALLOC_ARENA_MAX=2": preload_env(tcmalloc=False),
    "tcmalloc": preload_env(tcmalloc=True),
}


def _child(engine_name: str, reads: int) -> dict[str, float]:
    from bench.perf.bare import load_engine, predict
    from bench.perf.workloads import image_doc

    pages = image_doc(engine_name, 200).pages()
    loaded: list = []
    loader = threading.Thread(target=lambda: loaded.append(load_engine(engine_name, {})))
    loader.start()
    loader.join()
    engine = loaded[0]
    predict(engine, pages)  # warm-up
    main, pool = [], []
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with ThreadPoolExecutor(1) as executor:
        for _ in range(reads):
            main.append(predict(engine, pages))
            pool.append(executor.submit(predict, engine, pages).result())
    after, n = resource.getrusage(resource.RUSAGE_SELF), 2 * reads
    return {
        "main": statistics.median(main),
        "pool": statistics.median(pool),
        "wall": (time.perf_counter() - began) / n,
        "faults": (after.ru_minflt - before.ru_minflt) / n,
        "system": (after.ru_stime - before.ru_stime) / n,
    }


def _run(engine: str, reads: int, env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.perf.allocator", "--child", engine, "--reads", str(reads)]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict[str, float | str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", default="rapidocr", choices=["rapidocr", "tesseract"])
    p.add_argument("--processes", type=int, default=3, help="fresh processes per allocator, in turn")
    p.add_argument("--reads", type=int, default=3, help="reads per thread in each process")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.reads)))
        return []
    print(f"`python -m bench.perf.allocator --engine {args.engine} --processes {args.processes}`\n")
    print(
        "| allocator | process | main thread s/page | pool thread s/page | pool ÷ main "
        "| minor faults/page | system s/page |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows: list[dict[str, float | str]] = []
    for k in range(args.processes):
        for name, env in ALLOCATORS.items():
            r = _run(args.engine, args.reads, env)
            rows.append({"allocator": name, **r})
            print(
                f"| {name} | {k + 1} | {r['main']:.3f} | {r['pool']:.3f} | {r['pool'] / r['main']:.3f} "
                f"| {r['faults']:.0f} | {r['system']:.3f} |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
