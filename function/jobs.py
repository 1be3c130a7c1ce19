"""Async jobs: a document accepted now (`Prefer: respond-async`, RFC 7240) and read later, by this
process or by whichever pod a broker delivers it to, its state readable by anyone with its id.

A job's id is derived from the document's content-addressed result prefix, so the same document with
the same options is one job, whoever asks and however often. Everything about a job lives in the
result store, never in a pod's memory: its record (`jobs/<id>/job.json`: state, document, options,
callback), its document's bytes until it is done or failed (`jobs/<id>/source`), its pages as they are read
(the result's page checkpoints) and, last, the result's manifest — the only proof it completed. A
pod killed part-way leaves all of that behind; the next delivery goes on from the stored pages.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from function import checkpoints, fetch, results
from function.errors import NotFound, OCRError, UpstreamFailed
from function.options import Options
from function.reading import Plan
from function.service import Job, Result, Service
from function.sources import Source
from function.store import ResultStore

log = logging.getLogger(__name__)

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
ID_DIGITS = 32
CALLBACK_TIMEOUT_SEC = 10.0
CALLBACK_TRIES = 3


def job_id(prefix: str) -> str:
    return hashlib.sha256(prefix.encode()).hexdigest()[:ID_DIGITS]


def is_job_id(text: str) -> bool:
    return len(text) == ID_DIGITS and all(c in "0123456789abcdef" for c in text)


@dataclass
class Record:
    """What the store keeps of a job (`jobs/<id>/job.json`)."""

    id: str
    prefix: str
    state: str  # queued | running | completed | failed
    document: dict[str, Any]  # filename, media_type, sha256, pages
    total: int  # pages selected
    options: dict[str, str]  # the request's options as fields (Options.fields)
    input_type: str
    request_id: str
    created: str
    updated: str
    error: dict[str, str] | None = None
    cached: bool = False  # complete when it was asked for: its result was read before, not by it

    @property
    def key(self) -> str:
        return record_key(self.id)

    @property
    def source_key(self) -> str:
        return f"jobs/{self.id}/source"


def record_key(job: str) -> str:
    return f"jobs/{job}/job.json"


class Dispatch(Protocol):
    """Where accepted jobs are read: a broker (function/dispatch.py) or this process."""

    def send(self, record: Record) -> None: ...


# A finished job's result as the synchronous answer shows it (responses.success_body): result,
# request id, input type, the store, this function's base URL.
Answer = Callable[[Result, str, str, ResultStore, str], dict[str, Any]]


class Jobs:
    def __init__(self, service: Service, store: ResultStore, answer: Answer) -> None:
        self.service = service
        self.store = store
        self.answer = answer
        self.settings = service.settings
        self.dispatch: Dispatch | None = None  # set by create_app (the dispatcher needs `work`)

    # --- accepting ---------------------------------------------------------------------------

    def submit(self, source: Source, options: Options, request_id: str) -> Record:
        """The job of this document: accepted now (its bytes and record stored, then sent on), or
        the one that already exists for it. A finished or running job is not started again; a
        failed one, or one not heard of for twice the deadline, is."""
        plan = self.service.prepare(Job.start(source, options, request_id, 0))
        plan.pages.close()
        return self._submit(plan, source, options, request_id, self._done(plan, options))

    def fan_out(self, source: Source, options: Options, request_id: str) -> Record | None:
        """With a broker, a document of more than OCR_CHUNK_PAGES pages that an event names is not
        read in that event's delivery (it would outlast any delivery timeout): it becomes a job whose
        chunks the broker spreads over the pods. None: read it here (short, no broker, or done)."""
        size = self.settings.chunk_pages
        if not self.settings.k_sink or not size:
            return None
        plan = self.service.prepare(Job.start(source, options, request_id, 0))
        plan.pages.close()
        if len(plan.pages.selected) <= size or self._done(plan, options):
            return None
        return self._submit(plan, source, options, request_id, False)

    def _done(self, plan: Plan, options: Options) -> bool:
        """Whether the document's result is stored already (and not to be read again: `force`)."""
        return (
            not options.force and results.read(self.store, plan.prefix, plan.source.sha256, False) is not None
        )

    def _submit(self, plan: Plan, source: Source, options: Options, request_id: str, done: bool) -> Record:
        ident = job_id(plan.prefix)
        known = self.read(ident)
        if known is not None and (done or (known.state in (QUEUED, RUNNING) and not self._stale(known))):
            return known
        stamp = results.now()
        record = Record(
            ident, plan.prefix, COMPLETED if done else QUEUED, asdict(plan.source), len(plan.pages.selected),
            options.fields(), source.input_type, request_id, stamp, stamp, cached=done,
        )  # fmt: skip
        if done:  # read before (synchronously, say): a job that is complete from the start
            self._save(record)
            return record
        if options.force:  # read again from the first page: the pages stored before are not this job's
            checkpoints.clear(self.store, plan.prefix)
        self.store.put(record.source_key, source.data, "application/octet-stream")
        self._save(record)
        assert self.dispatch is not None
        try:
            self.dispatch.send(record)
        except OCRError as exc:
            self._save(replace(record, state=FAILED, error={"code": exc.code, "message": exc.message}))
            raise
        log.info("job %s accepted: %d page(s) of %s", ident, record.total, record.document["filename"])
        return record

    def _stale(self, record: Record) -> bool:
        """A queued or running job nobody has touched for longer than any run may take: its pod died."""
        age = time.time() - _epoch(record.updated)
        return age > 2 * max(self.settings.deadline_sec, 300.0)

    # --- reading a job -----------------------------------------------------------------------

    def work(
        self, ident: str, chunk: tuple[int, int] | None, request_id: str, budget: float
    ) -> Result | None:
        """Read the job's pages (all, or the chunk's), each stored as it is done; the result once the
        document is complete (then the job is marked done, its bytes dropped and its callback
        called), None while other chunks are still missing."""
        record = self.read(ident)
        if record is None:
            raise NotFound(f"no job {ident!r} (never accepted, or its record was removed)")
        options = Options.parse(record.options)
        try:
            data = self.store.get(record.source_key)
        except NotFound:  # done and cleaned up: answer from the result
            stored = self.service.stored(record.prefix, record.document["sha256"], options.return_content)
            if stored is None:
                raise
            return stored
        if record.state != RUNNING:
            self._save(replace(record, state=RUNNING, updated=results.now()))
        source = Source(data, record.document["filename"], record.input_type)
        job = replace(Job.start(source, options, request_id, budget), resume=True)
        try:
            result = self.service.run(job) if chunk is None else self.service.run_chunk(job, *chunk)
        except OCRError as exc:
            if not exc.retryable:
                self.fail(record, exc)
            raise
        if result is not None:
            self._complete(record, options)
        return result

    def fail(self, record: Record, exc: OCRError) -> None:
        failed = replace(
            record, state=FAILED, updated=results.now(), error={"code": exc.code, "message": exc.message}
        )
        self._save(failed)
        self.store.delete(record.source_key)  # sending the document again stores it again
        log.warning("job %s failed: %s", record.id, exc.message)
        self._call_back(failed, Options.parse(record.options).callback_url)

    def _complete(self, record: Record, options: Options) -> None:
        done = replace(record, state=COMPLETED, updated=results.now())
        self._save(done)
        self.store.delete(record.source_key)
        log.info("job %s completed: %d page(s)", record.id, record.total)
        self._call_back(done, options.callback_url)

    # --- state -------------------------------------------------------------------------------

    def read(self, ident: str) -> Record | None:
        try:
            return Record(**json.loads(self.store.get(record_key(ident))))
        except NotFound:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("job %s: unreadable record (%s)", ident, exc)
            return None

    def _save(self, record: Record) -> None:
        self.store.put(record.key, json.dumps(asdict(record)).encode(), "application/json")

    def status(self, record: Record, base_url: str, with_content: bool = False) -> dict[str, Any]:
        """The job as `GET /jobs/<id>` shows it: completed once its result's manifest exists (its
        `result` with the content when `with_content`)."""
        found = self.service.stored(record.prefix, record.document["sha256"], with_content)
        state = COMPLETED if found is not None else record.state
        if state == COMPLETED and found is None:
            state = RUNNING  # the record says done, but the result is gone: it is being read again
        done = record.total if found is not None else len(checkpoints.done(self.store, record.prefix))
        out: dict[str, Any] = {
            "job_id": record.id,
            "state": state,
            "pages": {"done": min(done, record.total), "total": record.total},
            "document": record.document,
            "created": record.created,
            "updated": record.updated,
        }
        if found is not None:
            answer = self.answer(found, record.request_id, record.input_type, self.store, base_url)
            out["result"] = answer | {"cached": record.cached}  # read back from the store either way
        elif state == FAILED and record.error:
            out["error"] = record.error
        return out

    # --- callback ----------------------------------------------------------------------------

    def _call_back(self, record: Record, url: str | None) -> None:
        """POST the job's final state to its `callback_url`, signed when OCR_CALLBACK_SECRET is set;
        tried a few times, then logged (the state stays readable at /jobs/<id>)."""
        if not url:
            return
        body = self.status(record, self.settings.public_base_url or "")
        payload = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "X-OCR-Job": record.id, **self._signature(payload)}
        for attempt in range(CALLBACK_TRIES):
            try:
                status = fetch.post(
                    url,
                    payload,
                    headers,
                    timeout=CALLBACK_TIMEOUT_SEC,
                    allow_private=self.settings.url_allow_private,
                )
                if 200 <= status < 300:
                    log.info("job %s: callback answered %d", record.id, status)
                    return
                log.warning("job %s: callback answered %d (try %d)", record.id, status, attempt + 1)
            except UpstreamFailed as exc:
                log.warning("job %s: callback failed (try %d): %s", record.id, attempt + 1, exc.message)
            if attempt + 1 < CALLBACK_TRIES:  # no wait after the last try: nothing follows it
                time.sleep(2**attempt)
        log.error("job %s: callback to its callback_url gave up after %d tries", record.id, CALLBACK_TRIES)

    def _signature(self, payload: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        out = {"X-OCR-Timestamp": stamp}
        secret = self.settings.callback_secret
        if secret:
            mac = hmac.new(secret.encode(), stamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
            out["X-OCR-Signature"] = f"sha256={mac}"
        return out


def _epoch(stamp: str) -> float:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
