"""Prometheus metrics of this process, served as text by `GET /metrics`.

functions-framework runs one worker process by default (`WORKERS=1`), so the default registry of
that process holds everything; with more workers each reports its own numbers.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter(
    "ocr_requests",
    "OCR requests and events by outcome: success, cached, skipped, failed, or the error code",
    ["outcome"],
)
PAGES = Counter("ocr_pages", "Pages read by the OCR engine")
ENGINE_CALLS = Counter("ocr_engine_calls", "OCR runs: calls of the engine's predict")
CACHE_HITS = Counter("ocr_cache_hits", "Requests answered from stored results without OCR")
STAGE_SECONDS = Histogram(
    "ocr_stage_seconds",
    "Seconds per processing stage",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("ocr_in_flight", "OCR requests being processed now (holding a slot or waiting for one)")
QUEUED = Gauge("ocr_queued", "OCR requests waiting for a free slot (OCR_CONCURRENCY)")
REQUEST_SECONDS = Histogram(
    "ocr_request_seconds",
    "Seconds per OCR request or event, by outcome",
    ["outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
ENGINE_LOAD_SECONDS = Gauge("ocr_engine_load_seconds", "Seconds the engine took to load in this process")
ENGINE_READY = Gauge("ocr_engine_ready", "1 once the engine is loaded in this process, else 0")


def observe_stages(stages: dict[str, float]) -> None:
    for stage, seconds in stages.items():
        STAGE_SECONDS.labels(stage=stage).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
