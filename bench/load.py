"""A bounded load test on loopback: the real function (gunicorn) storing in S3 (moto over HTTP).

    .venv/bin/python -m bench.load [--requests 200] [--concurrency 8] [--distinct 16] ...

`--requests` documents are sent by `--concurrency` client threads, each on its own keep-alive
connection: `--distinct` small generated pages (PNG and one-page PDF, alternately), the rest repeats
of them (answered from the stored result, `cached: true`), in a shuffled order. A client that is told
429 or 503 waits as Retry-After says (capped at `--retry-after-cap`) and sends the same document again;
every answer counts in the status table. At the end every 200 is checked against the bucket: its
manifest and every part the manifest lists exist, with the sha256 and size it names. The worker's
resident memory is sampled throughout: after a warm-up (start), when half the documents are done
(halfway), the highest (peak), and after the load has settled (end). The server runs on the allocator
the CPU image preloads (tcmalloc; `--allocator glibc` for glibc's malloc with `--malloc-arena-max`).

moto runs in this process, so its work shares the CPU (and the GIL) with the clients; the latencies
include it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.perf.server import preload_env, tcmalloc_installed
from tests.server import FunctionServer
from tests.synthetic import make_pdf, page_with_text

BUCKET = "ocr-load"
PREFIX = "results"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}
MIB = 1024 * 1024
WORDS = ["invoice", "receipt", "order", "delivery", "contract", "payment", "account", "statement"]


@dataclass(frozen=True)
class Params:
    requests: int = 200
    concurrency: int = 8  # client threads
    distinct: int = 12  # different documents among the requests; the rest are repeats
    ocr_concurrency: int = 1  # OCR_CONCURRENCY of the server
    queue_size: int = 2  # OCR_QUEUE_SIZE
    threads: int = 8  # gunicorn THREADS: more than concurrency + queue, so that 429 can happen
    retry_after_cap: float = 5.0  # seconds a client waits at most on a 429/503 before sending again
    max_attempts: int = 100  # per document, then the document counts as failed
    seed: int = 7
    serve: bool = False  # run `python -m function serve` instead of `functions-framework`
    # The server's allocator: "tcmalloc" (preloaded, as the CPU image and `make run` run it) or "glibc".
    allocator: str = "tcmalloc"
    # glibc's MALLOC_ARENA_MAX for the server (0: glibc's default of 8 per core). With the default, each
    # of the THREADS request threads that allocates page images gets an arena of its own, and RSS grows
    # by hundreds of MiB that are never given back; 2 keeps it flat.
    malloc_arena_max: int = 2


@dataclass
class Answer:
    job: int
    status: int
    seconds: float
    cached: bool | None = None


@dataclass
class Report:
    params: Params
    answers: list[Answer] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)  # job -> its 200 body
    failed_jobs: list[int] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # 200s whose objects are missing or differ
    wall_sec: float = 0.0
    rss_start: int = 0
    rss_half: int = 0  # when half the documents were done
    rss_peak: int = 0
    rss_end: int = 0
    worker_restarted: bool = False
    engine_calls: float = 0.0  # OCR runs during the load (not the warm-up)
    ready_sec: float = 0.0

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    def latencies(self, cached: bool | None = None) -> list[float]:
        return [a.seconds for a in self.answers if a.status == 200 and (cached is None or a.cached is cached)]


def documents(count: int, seed: int) -> list[tuple[str, bytes, str]]:
    """`count` small distinct pages (A4 at 72 dpi, a title and two lines): PNG, then PDF, alternately."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        word = rng.choice(WORDS)
        lines = [
            f"Load test {word} number {1000 + n * 37} of seed {seed}.",
            f"Amount due {rng.randint(10, 999)}.",
        ]
        image = page_with_text(lines, title=f"Document {n} {word.title()}", dpi=72).image
        if n % 2:
            out.append((f"load-{seed}-{n}.pdf", make_pdf([image], dpi=72), "application/pdf"))
        else:
            buf = io.BytesIO()
            image.save(buf, "PNG")
            out.append((f"load-{seed}-{n}.png", buf.getvalue(), "image/png"))
    return out


def schedule(params: Params) -> list[int]:
    """Which document each request sends: every distinct one once, the rest repeats, shuffled."""
    rng = random.Random(params.seed)
    order = list(range(params.distinct))
    order += [rng.randrange(params.distinct) for _ in range(params.requests - params.distinct)]
    rng.shuffle(order)
    return order


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.stopped = threading.Event()

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.Error:
                return
            self.stopped.wait(self.every)


def run(params: Params, workdir: Path) -> Report:
    """Start moto and the function, warm up, send the load, check every result; the report."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEYS)
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    env = {
        "OCR_ENGINE": "rapidocr",
        "OCR_STORE": f"s3://{BUCKET}/{PREFIX}",
        "S3_ENDPOINT_URL": endpoint,
        "S3_FORCE_PATH_STYLE": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": KEYS["aws_secret_access_key"],
        "OCR_CONCURRENCY": str(params.ocr_concurrency),
        "OCR_QUEUE_SIZE": str(params.queue_size),
        "THREADS": str(params.threads),
    }
    env.update(_allocator(params))
    report = Report(params)
    try:
        with FunctionServer(env, workdir / "server.log", serve=params.serve) as srv:
            report.ready_sec = srv.ready_seconds
            _load(srv, s3, params, report)
    finally:
        moto.stop()
    return report


def _load(srv: FunctionServer, s3: Any, params: Params, report: Report) -> None:
    docs = documents(params.distinct, params.seed)
    # Warm-up, outside the measurement: two documents of their own (one PNG, one PDF) and a repeat.
    warm = documents(2, params.seed + 1000)
    for name, data, ctype in [*warm, warm[0]]:
        resp = _post(requests.Session(), srv.url, name, data, ctype)
        if resp.status_code != 200:
            raise RuntimeError(f"warm-up failed: {resp.status_code} {resp.text}")
    pid = srv.worker_pid()
    calls_before = _engine_calls(srv)
    sampler = RssSampler(pid)
    time.sleep(1.0)
    report.rss_start = sampler.rss()
    sampler.start()

    lock = threading.Lock()
    local = threading.local()

    def job(index: int, doc: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        name, data, ctype = docs[doc]
        for _ in range(params.max_attempts):
            began = time.perf_counter()
            try:
                resp = _post(session, srv.url, name, data, ctype)
            except requests.RequestException:
                with lock:
                    report.answers.append(Answer(index, 0, time.perf_counter() - began))
                session = local.session = requests.Session()
                continue
            seconds = time.perf_counter() - began
            body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
            with lock:
                report.answers.append(Answer(index, resp.status_code, seconds, body.get("cached")))
            if resp.status_code in (429, 503):
                wait = min(float(resp.headers.get("Retry-After") or 1), params.retry_after_cap)
                time.sleep(wait * random.uniform(0.5, 1.0))
                continue
            if resp.status_code == 200:
                with lock:
                    report.results[index] = body
                return
            break
        with lock:
            report.failed_jobs.append(index)

    finished = 0

    def halfway(_: object) -> None:  # the RSS once half the documents are done
        nonlocal finished
        with lock:
            finished += 1
            if finished == params.requests // 2:
                report.rss_half = sampler.rss()

    began = time.perf_counter()
    with ThreadPoolExecutor(params.concurrency) as pool:
        futures = [pool.submit(job, i, doc) for i, doc in enumerate(schedule(params))]
        for future in futures:
            future.add_done_callback(halfway)
        for future in futures:
            future.result()
    report.wall_sec = time.perf_counter() - began
    time.sleep(2.0)  # let the worker settle: requests done, buffers freed
    sampler.stopped.set()
    sampler.join()
    report.rss_end = sampler.rss()
    report.rss_peak = max(sampler.peak, report.rss_end, report.rss_start)
    report.worker_restarted = srv.worker_pid() != pid
    report.engine_calls = _engine_calls(srv) - calls_before
    report.lost = verify(s3, report.results.values())


def _post(session: requests.Session, url: str, name: str, data: bytes, ctype: str) -> requests.Response:
    return session.post(
        url + "/ocr", data=data, headers={"Content-Type": ctype}, params={"filename": name}, timeout=300
    )


def _engine_calls(srv: FunctionServer) -> float:
    text = requests.get(srv.url + "/metrics", timeout=30).text
    match = re.search(r"^ocr_engine_calls_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def verify(s3: Any, bodies: Any) -> list[str]:
    """Problems with the stored results of these 200 answers: missing objects, wrong checksums."""
    problems: list[str] = []
    checked: set[str] = set()
    for body in bodies:
        uri = body["results"]["manifest"]["uri"]
        if uri in checked:
            continue
        checked.add(uri)
        key = uri[len(f"s3://{BUCKET}/") :]
        try:
            manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        except Exception as exc:
            problems.append(f"{key}: {exc}")
            continue
        if manifest["document"]["sha256"] != body["document"]["sha256"]:
            problems.append(f"{key}: the manifest is of another document")
        for part in [*manifest["parts"].values(), *manifest.get("images", {}).values()]:
            try:
                data = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{part['key']}")["Body"].read()
            except Exception as exc:
                problems.append(f"{part['key']}: {exc}")
                continue
            if hashlib.sha256(data).hexdigest() != part["sha256"] or len(data) != part["size"]:
                problems.append(f"{part['key']}: differs from the manifest")
    return problems


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _allocator(params: Params) -> dict[str, str]:
    if params.allocator == "tcmalloc":
        if not tcmalloc_installed():
            raise SystemExit("tcmalloc is not installed: bash scripts/system-deps.sh, or --allocator glibc")
        return preload_env(tcmalloc=True)
    if params.allocator != "glibc":
        raise SystemExit(f"--allocator is tcmalloc or glibc, not {params.allocator!r}")
    env = {k: v for k, v in preload_env(tcmalloc=False).items() if k != "MALLOC_ARENA_MAX"}
    if params.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(params.malloc_arena_max)
    return env


def table(report: Report) -> str:
    p, r = report.params, report
    statuses = ", ".join(f"{code or 'conn. error'}: {n}" for code, n in sorted(report.statuses.items()))
    done = len(report.results)
    rows = [
        ("documents sent (distinct / repeats)", f"{p.requests} ({p.distinct} / {p.requests - p.distinct})"),
        ("client concurrency", str(p.concurrency)),
        (
            "server",
            f"OCR_CONCURRENCY={p.ocr_concurrency}, OCR_QUEUE_SIZE={p.queue_size}, THREADS={p.threads}, "
            + (
                p.allocator
                if p.allocator == "tcmalloc"
                else f"glibc, MALLOC_ARENA_MAX={p.malloc_arena_max or 'unset'}"
            ),
        ),
        ("HTTP answers by status", statuses),
        ("documents answered 200 / failed", f"{done} / {len(report.failed_jobs)}"),
        (
            "OCR runs (engine calls) / cached answers",
            f"{report.engine_calls:.0f} / {len(report.latencies(True))}",
        ),
        ("results lost or differing in S3", str(len(report.lost))),
    ]
    for label, values in (
        ("latency of 200s, all", report.latencies()),
        ("latency of 200s, OCR", report.latencies(False)),
        ("latency of 200s, cached", report.latencies(True)),
    ):
        rows.append(
            (f"{label}: p50 / p95 / p99", " / ".join(f"{_pct(values, q):.3f}s" for q in (50, 95, 99)))
        )
    rows += [
        ("wall time / throughput", f"{report.wall_sec:.1f}s / {done / report.wall_sec:.2f} documents/s"),
        (
            "worker RSS start / halfway / peak / end",
            " / ".join(f"{v / MIB:.0f}" for v in (r.rss_start, r.rss_half, r.rss_peak, r.rss_end))
            + f" MiB (end - start {(r.rss_end - r.rss_start) / MIB:+.0f} MiB, "
            f"end - halfway {(r.rss_end - r.rss_half) / MIB:+.0f} MiB)",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {label:<{width}} | {value} |" for label, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = Params()
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=f"(default: {value})")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"(default: {value})")
    args = parser.parse_args(argv)
    params = Params(**vars(args))
    with tempfile.TemporaryDirectory() as tmp:
        report = run(params, Path(tmp))
    print(table(report))
    for problem in report.lost[:20]:
        print("lost:", problem, file=sys.stderr)
    unexpected = {code for code in report.statuses if code not in (200, 429, 503)}
    return 1 if report.lost or report.failed_jobs or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
