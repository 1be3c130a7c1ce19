"""Long documents through a real server with a real engine: how soon `Prefer: respond-async` answers,
what an async job costs against the synchronous read of the same document, and the worker's peak
RSS for a long job against a one-page one (issue 19).

Each run starts `python -m function serve` (one worker, the engine at one thread) on a fresh local
store, and sends light PDFs (one line of text a page, tests/pdfs.py):

1. a one-page job, then the worker's peak RSS (VmHWM);
2. an N-page job (`--pages`, default 300): the 202's latency, pages done seen while polling, the
   wall time to completed, then the peak RSS again;
3. the same document read synchronously (`force`): its wall time, and whether its Markdown and JSON
   equal the job's byte for byte.

    python -m bench.jobs                        # tesseract, 300 pages
    python -m bench.jobs --pages 1000 --no-sync --json    # the memory run
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.pdfs import light_pdf
from tests.server import FunctionServer

ASYNC = {"Prefer": "respond-async"}


def peak_rss_mb(pid: int) -> float:
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert found
    return int(found.group(1)) / 1024


def run_job(url: str, document: bytes, name: str) -> dict[str, Any]:
    began = time.perf_counter()
    resp = requests.post(url + "/ocr", files={"file": (name, document)}, headers=ASYNC, timeout=120)
    accepted = time.perf_counter() - began
    resp.raise_for_status()
    seen = []
    while True:
        status = requests.get(url + resp.headers["Location"], timeout=30).json()
        seen.append(status["pages"]["done"])
        if status["state"] in ("completed", "failed"):
            break
        time.sleep(0.5)
    return {
        "accepted_sec": round(accepted, 3),
        "wall_sec": round(time.perf_counter() - began, 1),
        "state": status["state"],
        "progress_seen": len(set(seen)),
        "result": status.get("result"),
    }


def measure(engine: str, pages: int, sync: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "OCR_ENGINE": engine,
            "OCR_ENGINE_THREADS": "1",
            "OCR_STORE": f"file://{tmp}/out",
            "OCR_MAX_PAGES": str(max(pages, 200)),
            "OCR_LOG_LEVEL": "WARNING",
        }
        with FunctionServer(env, Path(tmp) / "server.log", serve=True) as srv:
            worker = srv.worker_pid()
            one = run_job(srv.url, light_pdf(1, "One"), "one.pdf")
            rss_one = peak_rss_mb(worker)
            document = light_pdf(pages)
            job = run_job(srv.url, document, "long.pdf")
            rss_long = peak_rss_mb(worker)
            compared = _read_sync(srv.url, document, job["result"]) if sync else {}
            assert srv.worker_pid() == worker
    return {
        "engine": engine,
        "pages": pages,
        "accepted_sec": job["accepted_sec"],
        "job_wall_sec": job["wall_sec"],
        "job_state": job["state"],
        "progress_values_seen": job["progress_seen"],
        **compared,
        "peak_rss_one_page_mb": round(rss_one),
        "peak_rss_long_mb": round(rss_long),
        "one_page_job_sec": one["wall_sec"],
    }


def _read_sync(url: str, document: bytes, job_result: dict[str, Any]) -> dict[str, Any]:
    """The document read again synchronously (`force`): its seconds, and whether it equals the job's."""
    began = time.perf_counter()
    files = {"file": ("long.pdf", document)}
    sync = requests.post(url + "/ocr", files=files, data={"force": "true"}, timeout=7200).json()
    seconds = time.perf_counter() - began
    same = all(
        requests.get(job_result["results"][part]["url"], timeout=60).content
        == requests.get(sync["results"][part]["url"], timeout=60).content
        for part in ("markdown", "json")
    )
    return {"sync_wall_sec": round(seconds, 1), "same_bytes": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="tesseract")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--no-sync", action="store_true", help="skip the synchronous read (memory runs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = measure(args.engine, args.pages, sync=not args.no_sync)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
