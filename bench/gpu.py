"""Pages/s and latency of running functions on the GPU, at several client concurrencies, backend by backend.

Run it on (or next to) a GPU machine against functions that are already up, one per backend:

    # the VLM inside the pod (one document at a time; let the queue hold the clients)
    docker run -d --gpus all -p 8080:8080 -e OCR_QUEUE_SIZE=32 -e OCR_DEADLINE_SEC=0 ocr-function:gpu
    # the VLM in a shared vLLM server (docs/gpu.md), 4 documents at once per pod
    docker run -d --gpus all -p 8081:8080 -e PADDLEOCR_VL_BACKEND=vllm-server \\
        -e PADDLEOCR_VL_SERVER_URL=http://vlm-server:8118/v1 -e PADDLEOCR_VL_PIPELINE_VERSION=v1.5 \\
        -e PADDLEOCR_VL_SERVER_MODEL_NAME=PaddleOCR-VL-1.5-0.9B -e PADDLEOCR_VL_CONCURRENCY=4 \\
        -e OCR_CONCURRENCY=4 -e THREADS=6 -e OCR_QUEUE_SIZE=32 -e OCR_DEADLINE_SEC=0 ocr-function:gpu

    python -m bench.gpu --target native=http://localhost:8080 --target vllm=http://localhost:8081 \\
        --concurrency 1,4,16 --docs 32 --pages 1 --out gpu-results.json

Run the targets one after the other, never at once, when they share a GPU (the vLLM server and a
native pod on one card measure each other). Every document is sent with `force=true`, so each one
is real OCR, not a cache hit. Documents are generated A4 pages (prose, a ruled table, two columns, in
turn; `--pages` per document, as a PDF when more than one) unless `--file` names your own; use
real documents of your traffic for capacity planning. A 429 (the pod's queue is full) is retried
after its Retry-After and counted; `--warm` documents per concurrency go first and are not counted.

Reported per target and concurrency: pages/s, documents/s, latency p50/p90/p99 per document (client
side, so queueing included), the function's own `ocr` stage per page (median), 429s and errors; and
"GPU s/page" = 1 / pages/s at the best concurrency, the figure docs/capacity.md needs. With
`--nvidia-smi` (same machine) the GPU's utilisation and memory are sampled too.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests


@dataclass
class Doc:
    filename: str
    data: bytes
    pages: int


@dataclass
class Run:
    target: str
    concurrency: int
    docs: int = 0
    pages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ocr_per_page: list[float] = field(default_factory=list)
    busy: int = 0  # 429 answers (retried)
    errors: list[str] = field(default_factory=list)
    gpu_util: list[float] = field(default_factory=list)
    gpu_mem_mb: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "docs": self.docs,
            "pages": self.pages,
            "pages_per_sec": self.pages / self.seconds if self.seconds else 0.0,
            "docs_per_sec": self.docs / self.seconds if self.seconds else 0.0,
            "p50": _pct(lat, 0.5),
            "p90": _pct(lat, 0.9),
            "p99": _pct(lat, 0.99),
            "ocr_s_per_page": statistics.median(self.ocr_per_page) if self.ocr_per_page else None,
            "busy_429": self.busy,
            "errors": len(self.errors),
            "gpu_util_pct": statistics.mean(self.gpu_util) if self.gpu_util else None,
            "gpu_mem_mb_max": max(self.gpu_mem_mb) if self.gpu_mem_mb else None,
        }


def _pct(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def generated_docs(count: int, pages: int, dpi: int) -> list[Doc]:
    from bench.quality.synthetic import english_page, make_pdf, table_page, two_column_page

    makers = (
        lambda k: english_page(k, dpi).image,
        lambda k: table_page(seed=k, dpi=dpi).image,
        lambda k: two_column_page(k, dpi).image,
    )
    docs = []
    for d in range(count):
        images = [makers[(d * pages + p) % 3](d * pages + p) for p in range(pages)]
        if pages == 1:
            buf = io.BytesIO()
            images[0].save(buf, "PNG")
            docs.append(Doc(f"gen-{d}.png", buf.getvalue(), 1))
        else:
            docs.append(Doc(f"gen-{d}.pdf", make_pdf(images, dpi=dpi), pages))
    return docs


def file_docs(paths: list[Path]) -> list[Doc]:
    return [Doc(p.name, p.read_bytes(), 0) for p in paths]  # pages: from the answer


class GpuSampler:
    """`nvidia-smi` every 0.5 s, while a run is in progress."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.mem: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            cmd = [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "500",
            ]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.util.append(util)
            self.mem.append(mem)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)


def send(session: requests.Session, url: str, doc: Doc, headers: dict[str, str], run: Run | None) -> None:
    while True:
        began = time.perf_counter()
        resp = session.post(
            url + "/ocr",
            files={"file": (doc.filename, doc.data)},
            data={"force": "true"},
            headers=headers,
            timeout=3600,
        )
        if resp.status_code == 429:
            if run is not None:
                run.busy += 1
            time.sleep(min(float(resp.headers.get("Retry-After", "1")), 5.0))
            continue
        seconds = time.perf_counter() - began
        if run is None:
            return
        if resp.status_code != 200:
            run.errors.append(f"{doc.filename}: HTTP {resp.status_code} {resp.text[:200]}")
            return
        body = resp.json()
        pages = body["document"].get("pages_processed") or body["document"].get("pages") or doc.pages
        run.docs += 1
        run.pages += pages
        run.latencies.append(seconds)
        if body.get("timings", {}).get("ocr") is not None:
            run.ocr_per_page.append(body["timings"]["ocr"] / pages)
        return


def measure(
    target: str, url: str, docs: list[Doc], concurrency: int, count: int, warm: int, headers: dict[str, str]
) -> Run:
    run = Run(target, concurrency)
    lock = threading.Lock()
    queue = [docs[i % len(docs)] for i in range(count)]
    warmups = [docs[i % len(docs)] for i in range(warm)]

    def client(items: list[Doc], record: Run | None) -> None:
        session = requests.Session()
        while True:
            with lock:
                if not items:
                    return
                doc = items.pop()
            try:
                send(session, url, doc, headers, record)
            except requests.RequestException as exc:
                if record is not None:
                    with lock:
                        record.errors.append(f"{doc.filename}: {exc}")

    with ThreadPoolExecutor(concurrency) as pool:  # warm-up: not counted
        list(pool.map(lambda _: client(warmups, None), range(concurrency)))
    with GpuSampler() as gpu, ThreadPoolExecutor(concurrency) as pool:
        began = time.perf_counter()
        list(pool.map(lambda _: client(queue, run), range(concurrency)))
        run.seconds = time.perf_counter() - began
    run.gpu_util, run.gpu_mem_mb = gpu.util, gpu.mem
    return run


def describe(url: str, headers: dict[str, str]) -> dict[str, Any]:
    health = requests.get(url + "/health", headers=headers, timeout=30).json()
    if not health.get("ready"):
        sys.exit(f"{url} is not ready: {health.get('reason')}")
    return {k: health.get(k) for k in ("engine", "fingerprint", "model_load_sec")}


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = [
        "| target | clients | docs | pages/s | docs/s | p50 s | p90 s | p99 s | ocr s/page | 429s | errors "
        "| GPU util % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['docs']} | {r['pages_per_sec']:.3f} "
            f"| {r['docs_per_sec']:.3f} | {f(r['p50'], '.2f')} | {f(r['p90'], '.2f')} | {f(r['p99'], '.2f')} "
            f"| {f(r['ocr_s_per_page'], '.3f')} | {r['busy_429']} | {r['errors']} "
            f"| {f(r['gpu_util_pct'], '.0f')} |"
        )
    best: dict[str, float] = {}
    for r in rows:
        best[r["target"]] = max(best.get(r["target"], 0.0), r["pages_per_sec"])
    lines.append("")
    for target, pps in best.items():
        if pps:
            lines.append(
                f"- {target}: best {pps:.3f} pages/s, i.e. **{1 / pps:.3f} GPU s/page** (docs/capacity.md)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", action="append", required=True, help="LABEL=URL of a running function")
    p.add_argument("--concurrency", default="1,4,16", help="client concurrencies, comma-separated")
    p.add_argument("--docs", type=int, default=32, help="documents per measurement (at least 2x clients)")
    p.add_argument("--pages", type=int, default=1, help="pages per generated document")
    p.add_argument("--dpi", type=int, default=200, help="resolution of generated pages")
    p.add_argument("--file", type=Path, action="append", default=[], help="send these documents instead")
    p.add_argument("--warm", type=int, default=2, help="uncounted documents first, per concurrency")
    p.add_argument("--api-key", help="bearer key, if the function has OCR_API_KEYS")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    a = p.parse_args(argv)
    headers = {"Authorization": f"Bearer {a.api_key}"} if a.api_key else {}
    concurrencies = [int(c) for c in a.concurrency.split(",")]
    docs = file_docs(a.file) if a.file else generated_docs(max(4, min(a.docs, 16)), a.pages, a.dpi)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for spec in a.target:
        label, _, url = spec.partition("=")
        url = url.rstrip("/")
        info[label] = describe(url, headers)
        for c in concurrencies:
            run = measure(label, url, docs, c, max(a.docs, 2 * c), a.warm, headers)
            rows.append(run.summary())
            print(json.dumps(rows[-1]), file=sys.stderr)
            for error in run.errors[:3]:
                print(f"  error: {error}", file=sys.stderr)
    print(table(rows))
    if a.out:
        a.out.write_text(json.dumps({"targets": info, "runs": rows, "argv": sys.argv}, indent=1))
    return rows


if __name__ == "__main__":
    main()
