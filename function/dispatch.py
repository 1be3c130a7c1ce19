"""Where accepted jobs are read (function/jobs.py).

With a broker (`K_SINK`, which a Knative SinkBinding injects) a job leaves this pod as CloudEvents:
one `ocr.document.requested` event, or one `ocr.document.chunk` event per OCR_CHUNK_PAGES pages, which
the broker delivers — with its retries and dead-letter sink — to whichever pods it chooses. A
serverless pod may be stopped as soon as no request is in flight, so in a cluster the work must not
stay in the pod that answered 202.

Without one (`make run`, a laptop) the job runs in a thread of this process: it is lost if the
process stops, and sending the document again resumes it from its stored pages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from function.config import Settings
from function.errors import Busy, OCRError, UpstreamFailed
from function.jobs import Jobs, Record
from function.perprocess import PerProcess

log = logging.getLogger(__name__)

SEND_TIMEOUT_SEC = 10.0
LOCAL_TRIES = 5  # a job in this process retries what a broker would (a busy slot, S3 down)


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """1-based inclusive page ranges of at most `size` pages covering `total` (size 0: one)."""
    if not size or total <= size:
        return [(1, total)]
    return [(first, min(first + size - 1, total)) for first in range(1, total + 1, size)]


class ToBroker:
    """Sends a job's events to the broker at K_SINK (binary mode, the ids deterministic per job and
    chunk, so a consumer can drop the duplicates a resend makes)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.k_sink
        self.settings = settings
        self.sink = settings.k_sink
        self._session = requests.Session()
        retry = Retry(
            total=3, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504), allowed_methods=None
        )
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))

    def send(self, record: Record) -> None:
        ranges = chunks(record.total, self.settings.chunk_pages)
        for event in (self._event(record, r, len(ranges) > 1) for r in ranges):
            self._post(event)
        log.info("job %s sent to the broker as %d event(s)", record.id, len(ranges))

    def _event(self, record: Record, pages: tuple[int, int], chunked: bool) -> CloudEvent:
        s = self.settings
        attributes = {"source": s.event_source, "subject": record.document["filename"]}
        if chunked:
            attributes.update(type=s.event_chunk_type, id=f"{record.id}-{pages[0]}-{pages[1]}")
            return CloudEvent(attributes, {"job_id": record.id, "chunk": list(pages)})
        attributes.update(type=s.event_request_type, id=f"{record.id}-requested")
        return CloudEvent(attributes, {"job_id": record.id})

    def _post(self, event: CloudEvent) -> None:
        headers, body = to_binary(event)
        try:
            resp = self._session.post(self.sink, data=body, headers=headers, timeout=SEND_TIMEOUT_SEC)
        except requests.RequestException as exc:
            raise UpstreamFailed(f"the broker (K_SINK) cannot be reached: {exc}") from None
        if not resp.ok:
            raise UpstreamFailed(f"the broker (K_SINK) refused the job's event: HTTP {resp.status_code}")


class InProcess:
    """Runs jobs in threads of this process (as many at once as OCR_CONCURRENCY; the service's slots
    bound them together with the synchronous requests), at most OCR_JOBS_MAX accepted and unfinished."""

    def __init__(self, settings: Settings, jobs: Jobs) -> None:
        self.settings = settings
        self.jobs = jobs
        self._pending = threading.BoundedSemaphore(settings.jobs_max)
        # A forked worker starts a pool of its own: threads do not survive fork.
        self._pool = PerProcess(lambda: ThreadPoolExecutor(settings.concurrency, thread_name_prefix="job"))

    def send(self, record: Record) -> None:
        if not self._pending.acquire(blocking=False):
            raise Busy(
                f"{self.settings.jobs_max} jobs are waiting in this process (OCR_JOBS_MAX); retry later",
                retry_after=30,
            )
        self._pool.get().submit(self._run, record)

    def _run(self, record: Record) -> None:
        try:
            _retried(lambda: self.jobs.work(record.id, None, record.request_id, 0))
        except OCRError as exc:
            if exc.retryable:  # a permanent failure was recorded by the job itself
                self.jobs.fail(record, exc)
        except Exception:  # a bug: logged with its traceback; the job stays readable
            log.exception("job %s failed", record.id)
        finally:
            self._pending.release()


def _retried(run: Callable[[], object]) -> None:
    for attempt in range(LOCAL_TRIES):
        try:
            run()
            return
        except OCRError as exc:
            if not exc.retryable or attempt == LOCAL_TRIES - 1:
                raise
            log.info("job retried after %s (try %d)", exc.code, attempt + 1)
            time.sleep(min(2**attempt, 30))
