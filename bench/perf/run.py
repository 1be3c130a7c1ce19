"""The function against its bare engine, side by side in one run, on the same pages.

    python -m bench.perf --engine rapidocr                 # the full run (tens of minutes on 2 cores)
    python -m bench.perf --engine tesseract --rounds 5
    python -m bench.perf --quick --out /tmp/perf           # seconds-to-a-minute smoke run (CI)

"Bare engine" is the engine's own `predict` on pages already decoded, in a process of its own: what
the function would cost if HTTP, document decoding, the cache and the result store were free.
"Function" is the real thing as `make run` starts it (functions-framework, one gunicorn worker, 4
threads), timed by an HTTP client from upload to answer. Every comparison interleaves the two sides
in the same round, alternating which goes first, so the noise of a shared machine falls on both
alike. Each round of seq and par starts new processes on both sides, because the same code runs up
to ±6% faster or slower from one process to the next; ratios are taken per round and reported as
the median with the spread (min–max) across rounds.
`python -m bench.perf` re-runs itself with the preloads the function runs with (tcmalloc, or glibc with
MALLOC_ARENA_MAX=2 where it is not installed, and zlib-ng where it was built; as `make run` and the CPU
image do), so the bare engine here has them too.

Sections (`--only`):
- seq: s/page, function vs bare, at OCR_CONCURRENCY=1, on a 1-page PNG and a multi-page PDF; also
  the in-process service path (render + engine + Markdown/JSON) with and without page prefetch.
- par: pages/s with parallel clients against the function at OCR_CONCURRENCY=2, and the bare engine
  run every way it can run in parallel (one engine, one or two callers; a slot per caller; two
  processes); the function at concurrency 2 against the best of them.
- cache: a repeated document (answered from its stored result) against the OCR it saves.
- cold: process start to ready, function vs a fresh process that only loads the bare models.
- memory: the worker's resident memory over a long PDF of light pages against a 1-page one.

Writes `results.json`, `report.md` (tables, each with the command) and PNG plots to `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.perf import report
from bench.perf.bare import Host, Processes, Spec, Throughput, drain
from bench.perf.server import ROOT, SERVER_ENV, RssSampler, Server, allocator_name, post
from bench.perf.workloads import Workload, image_doc, light_pdf, pdf_doc
from function.engines.layout import cpu_threads

log = logging.getLogger("bench.perf")
SECTIONS = ("cold", "seq", "par", "cache", "memory")
ONE = "bare: one engine, all CPUs per inference"
MB = 1024 * 1024


@dataclass
class Plan:
    engine: str
    quick: bool
    light: bool  # light pages instead of prose ones (--quick: a smoke run, where OCR time is not looked at)
    rounds: int
    dpi: int
    pdf_pages: int
    long_pages: int
    par_pages: int  # one-page documents per throughput measurement
    clients: list[int]  # client concurrency against the function at OCR_CONCURRENCY=N
    slots: int  # N
    cache_hits: int
    # A new process reads its first pages slower (lazy set-up, the allocator's caches filling): with
    # one warm-up page, rapidocr's second page in a process took 2.26-2.33 s and its third 1.98-2.01 s.
    # Each side of seq and par reads this many pages first, so that both are measured warm.
    warm_reads: int
    cold_rounds: int
    processes: bool
    sections: list[str]
    out: Path
    command: str
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the function and engine
    before: Path | None = None  # another source tree (the code before a change), run as a third side

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> Plan:
        p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
        p.add_argument("--engine", default="rapidocr", choices=["rapidocr", "tesseract"])
        p.add_argument(
            "--quick", action="store_true", help="tiny sizes, light pages, one round: a smoke run for CI"
        )
        p.add_argument("--rounds", type=int, help="rounds of each interleaved comparison (default 3)")
        p.add_argument("--pdf-pages", type=int, help="pages of the multi-page PDF (default 10)")
        p.add_argument("--long-pages", type=int, help="pages of the long light PDF (default 200)")
        p.add_argument("--par-pages", type=int, help="one-page documents per throughput block (default 6)")
        p.add_argument("--dpi", type=int, help="page resolution, OCR_PDF_DPI (default 200)")
        p.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
        p.add_argument("--no-processes", action="store_true", help="skip the bare engine in 2 processes")
        p.add_argument("--out", type=Path, help="where results.json, report.md and plots go")
        p.add_argument(
            "--before",
            type=Path,
            help="a copy of the repository before a change: its function runs as a third side, "
            "'function (before)', in the cold, seq and par sections",
        )
        p.add_argument(
            "--env", action="append", default=[], metavar="VAR=VALUE", help="more environment, both sides"
        )
        a = p.parse_args(argv)
        quick = a.quick
        cpus = cpu_threads()
        sections = a.only.split(",") if a.only else list(SECTIONS)
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
        return cls(
            engine=a.engine,
            quick=quick,
            light=quick,
            rounds=a.rounds or (1 if quick else 3),
            dpi=a.dpi or (72 if quick else 200),
            pdf_pages=a.pdf_pages or (2 if quick else 10),
            long_pages=a.long_pages or (2 if quick else 200),
            par_pages=a.par_pages or (2 if quick else 6),
            clients=[1, 2] if quick else sorted({1, 2, cpus, 2 * cpus}),
            slots=cpus,
            cache_hits=3 if quick else 15,
            warm_reads=0 if quick else 3,  # quick: nothing timed is looked at
            cold_rounds=1 if quick else a.rounds or 3,
            processes=not (quick or a.no_processes),
            sections=[s for s in SECTIONS if s in sections],
            out=a.out or ROOT / "bench" / "results" / a.engine,
            command="python -m bench.perf " + " ".join(argv if argv is not None else sys.argv[1:]),
            env=dict(item.split("=", 1) for item in a.env),
            before=a.before,
        )


class Bench:
    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan = plan
        self.work = work
        self.results: dict[str, Any] = {
            "engine": plan.engine,
            "command": plan.command,
            "cpus": cpu_threads(),
            "dpi": plan.dpi,
            "quick": plan.quick,
            "allocator": allocator_name(SERVER_ENV),
            "zlib": zlib.ZLIB_RUNTIME_VERSION,  # this process runs with SERVER_ENV's preload too
        }
        self.env = {"OCR_ENGINE": plan.engine, "OCR_PDF_DPI": str(plan.dpi), **plan.env}
        self.servers: list[Server] = []
        self._docs: list[Workload] = []

    # ------------------------------------------------------------ set-up

    def server(self, name: str, concurrency: int, root: Path = ROOT) -> Server:
        srv = Server({**self.env, "OCR_CONCURRENCY": str(concurrency)}, self.work, name, root).start()
        self.servers.append(srv)
        return srv

    def spec(self, key: str) -> Spec:
        """`one`: the engine as the function builds it at OCR_CONCURRENCY=1 (all CPUs per inference);
        `slots`: at OCR_CONCURRENCY=N (N slots, CPUs/N threads each); `wide`: N slots, all CPUs each."""
        concurrency = 1 if key == "one" else self.plan.slots
        env = {**self.env, "OCR_CONCURRENCY": str(concurrency)}
        return Spec(env, threads=cpu_threads() if key == "wide" else None)

    def fresh(self, name: str, concurrency: int, engines: Sequence[str]) -> tuple[Host, list[Server]]:
        """A new bare-engine process and new function servers (and the code before a change, if
        given) for one round; see `Host` for why every round starts new ones."""
        servers = [self.server(name, concurrency)]
        if self.plan.before is not None:
            servers.append(self.server(f"{name}-before", concurrency, self.plan.before))
        host = Host(self.plan.engine, {key: self.spec(key) for key in engines})
        for srv in servers:
            srv.wait_ready()
        return host, servers

    def retire(self, host: Host, servers: Sequence[Server]) -> None:
        host.close()
        for srv in servers:
            srv.stop()
            self.servers.remove(srv)

    def close(self) -> None:
        for srv in self.servers:
            srv.stop()

    # ------------------------------------------------------------ sections

    def cold(self) -> None:
        """Spawn to ready, the function against a process that loads only the bare models."""
        rows = []
        threads = max(1, cpu_threads())  # OCR_CONCURRENCY=1: the function's engine uses every CPU
        for r in range(self.plan.cold_rounds):
            sides = ["bare", "function"] if r % 2 == 0 else ["function", "bare"]
            row: dict[str, Any] = {}
            if self.plan.before is not None:
                sides.insert(1, "function_before")
            for side in sides:
                if side == "bare":
                    row["bare"] = _bare_cold(self.plan.engine, threads)
                elif side == "function":
                    row["function"] = self._function_cold(f"cold-{r}", ROOT)
                else:
                    row[side] = self._function_cold(f"cold-before-{r}", self.plan.before)
            rows.append(row)
            log.info("cold %d: %s", r, row)
        self.results["cold"] = rows

    def _function_cold(self, name: str, root: Path | None) -> dict[str, Any]:
        srv = Server({**self.env, "OCR_CONCURRENCY": "1"}, self.work, name, root or ROOT).start()
        try:
            ready = srv.wait_ready()
            split = srv.startup()
            doc = image_doc(self.plan.engine, self.plan.dpi, light=self.plan.light)
            session = requests.Session()
            first = post(session, srv.url, doc.filename, doc.data).seconds
            second = post(session, srv.url, doc.filename, doc.data).seconds
            return {"ready": ready, "split": split, "first_request": first, "second_request": second}
        finally:
            srv.stop()

    def docs(self) -> list[Workload]:
        """The 1-page image and the multi-page PDF, made once (a PDF's bytes carry its creation time)."""
        if not self._docs:
            plan = self.plan
            self._docs = [
                image_doc(plan.engine, plan.dpi, light=plan.light),
                pdf_doc(plan.engine, plan.pdf_pages, plan.dpi, light=plan.light),
            ]
        return self._docs

    def seq(self) -> None:
        docs = self.docs()
        out: dict[str, Any] = {}
        for doc in docs:
            out[doc.name] = {"what": doc.what, "pages": len(doc.pages()), "rounds": []}
        for r in range(self.plan.rounds):
            host, servers = self.fresh(f"seq-{r}", 1, ["one"])
            try:
                self._seq_round(r, host, servers, out)
            finally:
                self.retire(host, servers)
        self.results["seq"] = out

    def _seq_round(self, r: int, host: Host, servers: list[Server], out: dict[str, Any]) -> None:
        docs = self.docs()
        session = requests.Session()
        fn, before = servers[0], (servers[1] if len(servers) > 1 else None)
        for doc in docs:
            host.pages(doc.name, doc.pages())
        warm = docs[0]
        for _ in range(self.plan.warm_reads):
            host.predict("one", warm.name)
            for srv in servers:
                post(session, srv.url, warm.filename, warm.data)
        service_env = {**self.env, "OCR_CONCURRENCY": "1"}
        for doc in docs:
            n = len(doc.pages())
            sides: list[tuple[str, Callable[[], float]]] = [
                ("bare", partial(host.predict, "one", doc.name)),
                ("function", partial(_fn_seconds, session, fn.url, doc, out)),
            ]
            if before is not None:
                sides.append(("function_before", partial(_fn_seconds, session, before.url, doc, None)))
            # The function's own steps in the bare engine's process, pages rendered ahead or not (a
            # 1-page document has nothing to render ahead).
            for name, prefetch in (("service", True), ("service_no_prefetch", False))[: 2 if n > 1 else 1]:
                ask = partial(host.ask, "service", "one", doc.data, doc.filename, service_env, prefetch)
                sides.append((name, ask))
            if r % 2:
                sides.reverse()
            row = {name: run() / n for name, run in sides}
            row["ratio"] = row["function"] / row["bare"]
            if before is not None:
                row["ratio_before"] = row["function_before"] / row["bare"]
            out[doc.name]["rounds"].append(row)
            log.info("seq %d %s: %s", r, doc.name, {k: round(v, 3) for k, v in row.items()})

    def par(self) -> None:
        plan = self.plan
        docs = [image_doc(plan.engine, plan.dpi, seed, light=plan.light) for seed in range(plan.par_pages)]
        pages = [d.pages()[0] for d in docs]
        function = f"function: OCR_CONCURRENCY={plan.slots}"
        rounds: list[dict[str, Any]] = []
        for r in range(plan.rounds):
            host, servers = self.fresh(f"par-{r}", plan.slots, ["one", "slots", "wide"])
            procs = None
            try:
                host.pages("par", pages)
                if plan.processes:
                    one_env = {**self.env, "OCR_CONCURRENCY": "1"}
                    procs = Processes(plan.slots, plan.engine, one_env, threads=1)
                    procs.give(pages)
                configs = self._par_configs(host, procs, servers, docs)
                host.pages("warm", pages[: plan.slots])
                for _ in range(plan.warm_reads):  # every slot of every engine, and both processes
                    for key in ("one", "slots", "wide"):
                        host.threaded(key, "warm", plan.slots)
                    if procs is not None:
                        procs.run(min(len(pages), plan.slots))
                    for srv in servers:
                        _fn_throughput(srv.url, docs[: plan.slots], plan.slots)
                row: dict[str, Any] = {}
                k = r % len(configs)
                for name, parallel, run in configs[k:] + configs[:k]:
                    result = run()
                    row[f"{name} @{parallel}"] = {
                        "config": name,
                        "parallel": parallel,
                        "pages_per_sec": result.pages_per_sec,
                        "latencies": result.latencies,
                    }
            finally:
                if procs is not None:
                    procs.close()
                self.retire(host, servers)
            bare_best = max(v["pages_per_sec"] for v in row.values() if v["config"].startswith("bare"))
            fn = next(
                v["pages_per_sec"]
                for v in row.values()
                if (v["config"], v["parallel"]) == (function, plan.slots)
            )
            row["ratio"] = fn / bare_best
            rounds.append(row)
            log.info(
                "par %d: %s ratio %.3f",
                r,
                {k: round(v["pages_per_sec"], 3) for k, v in row.items() if k != "ratio"},
                row["ratio"],
            )
        what = docs[0].what
        self.results["par"] = {"slots": plan.slots, "pages": len(pages), "what": what, "rounds": rounds}

    def _par_configs(
        self, host: Host, procs: Processes | None, servers: Sequence[Server], docs: Sequence[Workload]
    ) -> list[tuple[str, int, Callable[[], Throughput]]]:
        n = self.plan.slots
        configs: list[tuple[str, int, Callable[[], Throughput]]] = [
            (ONE, 1, lambda: host.threaded("one", "par", 1)),
            (ONE, n, lambda: host.threaded("one", "par", n)),
            (f"bare: {n} slots, CPUs/{n} threads each", n, lambda: host.threaded("slots", "par", n)),
            (f"bare: {n} slots, all CPUs each", n, lambda: host.threaded("wide", "par", n)),
        ]
        if procs is not None:
            configs.append((f"bare: {n} processes, 1 thread each", n, lambda: procs.run(len(docs))))
        function = f"function: OCR_CONCURRENCY={n}"
        for c in self.plan.clients:
            configs.append((function, c, lambda c=c: _fn_throughput(servers[0].url, docs, c)))
        if len(servers) > 1:
            for c in (1, n):
                configs.append(
                    (
                        f"function (before): OCR_CONCURRENCY={n}",
                        c,
                        lambda c=c: _fn_throughput(servers[1].url, docs, c),
                    )
                )
        return configs

    def cache(self) -> None:
        docs = self.docs()
        session = requests.Session()
        srv = self.server("cache", 1)
        srv.wait_ready()
        out = {}
        for doc in docs:
            seq = self.results.get("seq", {}).get(doc.name)
            if seq:
                ocr = [row["function"] * seq["pages"] for row in seq["rounds"]]
                post(session, srv.url, doc.filename, doc.data)  # stored, for the hits below
            else:
                ocr = [post(session, srv.url, doc.filename, doc.data).seconds]
            hits, hits_content = [], []
            for _ in range(self.plan.cache_hits):
                answer = post(session, srv.url, doc.filename, doc.data, force=False)
                assert answer.cached, f"{doc.name}: not answered from the cache"
                hits.append(answer.seconds)
                answer = post(session, srv.url, doc.filename, doc.data, force=False, content=True)
                assert answer.cached
                hits_content.append(answer.seconds)
            out[doc.name] = {"ocr": ocr, "hits": hits, "hits_with_content": hits_content}
            med = statistics.median
            log.info("cache %s: OCR %.3fs, hit %.4fs", doc.name, med(ocr), med(hits))
        srv.stop()
        self.results["cache"] = out

    def memory(self) -> None:
        plan = self.plan
        one_page = light_pdf(1, plan.dpi)
        long = light_pdf(plan.long_pages, plan.dpi)
        pages = long.pages()
        half = len(pages) // 2
        host, servers = self.fresh("memory", 1, ["one"])
        srv = servers[0]
        host.pages("first", pages[:half])
        host.pages("second", pages[half:])
        host.pages("warm", one_page.pages())
        host.predict("one", "warm")
        session = requests.Session()
        post(session, srv.url, one_page.filename, one_page.data)  # warm
        with RssSampler(srv.worker_pid()) as rss:
            rss.reset_high_water()
            t0 = time.monotonic()
            small = [post(session, srv.url, one_page.filename, one_page.data).seconds for _ in range(3)]
            t1 = time.monotonic()
            hwm_small = rss.high_water()
            bare_first = host.predict("one", "first")
            rss.reset_high_water()
            t2 = time.monotonic()
            answer = post(session, srv.url, long.filename, long.data)
            t3 = time.monotonic()
            hwm_long = rss.high_water()
            bare_second = host.predict("one", "second")
        self.retire(host, servers)
        assert answer.pages == len(pages)
        peak_small = max(rss.peak(t0, t1), hwm_small or 0)
        peak_long = max(rss.peak(t2, t3), hwm_long or 0)
        bare = (bare_first + bare_second) / len(pages)
        self.results["memory"] = {
            "one_page": one_page.what,
            "long": long.what,
            "pages": len(pages),
            "upload_mb": {"one_page": len(one_page.data) / MB, "long": len(long.data) / MB},
            "peak_one_page_mb": peak_small / MB,
            "peak_long_mb": peak_long / MB,
            "delta_mb": (peak_long - peak_small) / MB,
            "function_s_per_page": answer.seconds / len(pages),
            "bare_s_per_page": bare,
            "one_page_seconds": small,
            # Idle RSS just before the long PDF and after its answer: memory the document left behind.
            "idle_before_long_mb": min((v for t, v in rss.samples if t1 <= t <= t2), default=0) / MB,
            "idle_after_long_mb": min((v for t, v in rss.samples if t >= t3), default=0) / MB,
            "timeline": [(t - t0, v / MB) for t, v in rss.samples if t >= t0],
            "phases": {"one_page": [0, t1 - t0], "long": [t2 - t0, t3 - t0]},
        }
        log.info("memory: %s", {k: v for k, v in self.results["memory"].items() if k != "timeline"})


def _fn_seconds(session: requests.Session, url: str, doc: Workload, out: dict[str, Any] | None) -> float:
    answer = post(session, url, doc.filename, doc.data)
    assert answer.pages == len(doc.pages()), answer.body
    if out is not None:
        out[doc.name].setdefault("stages", []).append(answer.stages)
    return answer.seconds


def _fn_throughput(url: str, docs: Sequence[Workload], clients: int) -> Throughput:
    def client() -> Callable[[Workload], float]:
        session = requests.Session()
        return lambda doc: post(session, url, doc.filename, doc.data).seconds

    return drain(docs, clients, client)


def _bare_cold(engine: str, threads: int) -> dict[str, float]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "bench.perf.coldbare", engine, str(threads)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    )
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "import": marks["imported"] - spawned,
        "models": marks["models"] - marks["imported"],
        "warm_up": marks["warm"] - marks["models"],
        "to_models": marks["models"] - spawned,
        "to_warm": marks["warm"] - spawned,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("RapidOCR", "rapid_layout", "function"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = Plan.from_args(argv)
    plan.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a CI timeout, `kill`) ends the run through the `finally` below, servers included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        bench = Bench(plan, Path(tmp))
        try:
            needs = set(plan.sections)
            if "cold" in needs:  # first, while nothing else of this run is loading
                bench.cold()
            if "seq" in needs:
                bench.seq()
            if "par" in needs:
                bench.par()
            if "cache" in needs:
                bench.cache()
            if "memory" in needs:
                bench.memory()
        finally:
            bench.close()
    results = bench.results
    (plan.out / "results.json").write_text(json.dumps(results, indent=1))
    text = report.markdown(results, plan.out)
    (plan.out / "report.md").write_text(text)
    print(text)
    return results
