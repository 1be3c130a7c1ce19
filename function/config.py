"""Settings: read once from the environment at start-up, validated, with errors naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from function import memory
from function.errors import ConfigError

MB = 1024 * 1024
MULTIPART_OVERHEAD = MB


@dataclass(frozen=True)
class Settings:
    engine: str = "cpu"  # per page: Cyrillic to tesseract, other scripts to rapidocr
    store: str = "file://./output"
    public_base_url: str | None = None  # base of result URLs; else the request's own host
    url_expires_sec: int = 3600
    max_bytes: int = 50 * MB
    max_pixels: int = 100_000_000  # lowered at load to what the memory limit allows (memory.py)
    max_pages: int = 200
    pdf_dpi: int = 200
    url_fetch_timeout_sec: float = 30.0
    ready_wait_sec: float = 30.0  # how long an early OCR request waits for the engine
    log_level: str = "INFO"
    concurrency: int = 1  # documents processed at once per pod; deployments set containerConcurrency to it
    # Threads each inference may use (onnxruntime intra-op); 0: the pod's CPUs divided by `concurrency`.
    engine_threads: int = 0
    queue_size: int = 8  # requests that may wait for a slot beyond `concurrency`; more get 429
    queue_wait_sec: float = 60.0  # how long a request waits for a slot before 429
    deadline_sec: float = 600.0  # per-document budget, checked between pages; 0 = none (504 when over)
    # The longest a PDF may take to open, or one of its pages to render, in its renderer process.
    render_timeout_sec: float = 60.0
    # The pod's memory in MiB (0: the cgroup's limit); the largest page is derived from it (memory.py).
    memory_limit_mb: int = 0
    # The front (`python -m function serve`) reads each request whole before a thread takes it: the
    # head within header_timeout_sec, the body pausing at most body_idle_timeout_sec and taking at
    # most body_timeout_sec in all (408 past any of them).
    header_timeout_sec: float = 10.0
    body_idle_timeout_sec: float = 30.0
    body_timeout_sec: float = 300.0
    # Recycle the worker process between requests after N documents or above an RSS watermark (0 = off).
    recycle_after_docs: int = 0
    recycle_rss_mb: int = 0
    # Seconds SIGTERM gives in-flight requests before workers are killed (`python -m function serve`);
    # unset = deadline_sec + 30 (630 without a deadline).
    drain_sec: float | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # bearer tokens; empty = no auth
    metrics_auth: bool = False  # whether /metrics needs a key too (health routes never do)
    url_allow_private: bool = False  # let image_url reach private, loopback and link-local addresses
    url_max_redirects: int = 5
    log_format: str = "json"  # json: one object per line; text: for people at a terminal
    # S3-compatible object storage (AWS, MinIO, Ceph, Cloud.ru); unset values fall back to boto3's chain.
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    s3_force_path_style: bool = False  # MinIO/Ceph behind one host name need path-style URLs
    try_page: bool = True  # GET / serves a page to drop a file on and see what the engine saw
    # Events: objects under these extra prefixes ("bucket/prefix" or "prefix") are never processed,
    # on top of the result store's own location (no loops when input and output share a bucket).
    event_skip_prefixes: tuple[str, ...] = ()
    # Where `s3_uri` and storage events may read documents ("bucket" or "bucket/prefix"); empty: the
    # result store's bucket only. The function's credentials may reach more than its callers should.
    input_buckets: tuple[str, ...] = ()
    # Host names whose `Host` header may become the base of local result URLs when
    # OCR_PUBLIC_BASE_URL is unset; another host is refused (400), not echoed into the answer.
    trusted_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    event_source: str = "/ocr-function"
    event_request_type: str = "ocr.document.requested"
    event_completed_type: str = "ocr.document.completed"
    event_failed_type: str = "ocr.document.failed"
    event_max_records: int = 100  # records one event may name; more is refused (413)
    event_chunk_type: str = "ocr.document.chunk"  # a page range of an async job, sent to the broker
    # Async jobs (`Prefer: respond-async`). With a broker (`K_SINK`, injected by a SinkBinding) they are
    # sent to it as events, a document of more than `chunk_pages` selected pages as chunks of that
    # many (0: never split); without one they run in this process, at most `jobs_max` queued.
    k_sink: str | None = None
    chunk_pages: int = 20
    jobs_max: int = 16
    callback_secret: str | None = field(default=None, repr=False)  # HMAC key of `callback_url` posts

    @property
    def body_limit(self) -> int:
        """The largest request body: a document of `max_bytes` as base64, in a multipart envelope."""
        return self.max_bytes * 4 // 3 + MULTIPART_OVERHEAD


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def boolean(raw: str) -> bool:
    """The one reading of a yes/no value: settings, engine settings and request options alike."""
    text = raw.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(raw)


def keys(raw: str) -> tuple[str, ...]:
    """Comma- or newline-separated tokens (a mounted file may hold one per line)."""
    return tuple(k.strip() for k in raw.replace("\n", ",").split(",") if k.strip())


def prefixes(raw: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("/") for p in raw.split(",") if p.strip().strip("/"))


# variable -> (field, parser); one table so docs, manifests and tests can check names.
ENV: dict[str, tuple[str, Any]] = {
    "OCR_ENGINE": ("engine", str),
    "OCR_STORE": ("store", str),
    "OCR_PUBLIC_BASE_URL": ("public_base_url", str),
    "OCR_URL_EXPIRES_SEC": ("url_expires_sec", int),
    "OCR_MAX_BYTES": ("max_bytes", int),
    "OCR_MAX_PIXELS": ("max_pixels", int),
    "OCR_MAX_PAGES": ("max_pages", int),
    "OCR_PDF_DPI": ("pdf_dpi", int),
    "OCR_URL_FETCH_TIMEOUT_SEC": ("url_fetch_timeout_sec", float),
    "OCR_READY_WAIT_SEC": ("ready_wait_sec", float),
    "OCR_LOG_LEVEL": ("log_level", str),
    "OCR_CONCURRENCY": ("concurrency", int),
    "OCR_ENGINE_THREADS": ("engine_threads", int),
    "OCR_QUEUE_SIZE": ("queue_size", int),
    "OCR_QUEUE_WAIT_SEC": ("queue_wait_sec", float),
    "OCR_DEADLINE_SEC": ("deadline_sec", float),
    "OCR_RENDER_TIMEOUT_SEC": ("render_timeout_sec", float),
    "OCR_MEMORY_LIMIT_MB": ("memory_limit_mb", int),
    "OCR_HEADER_TIMEOUT_SEC": ("header_timeout_sec", float),
    "OCR_BODY_IDLE_TIMEOUT_SEC": ("body_idle_timeout_sec", float),
    "OCR_BODY_TIMEOUT_SEC": ("body_timeout_sec", float),
    "OCR_RECYCLE_AFTER_DOCS": ("recycle_after_docs", int),
    "OCR_RECYCLE_RSS_MB": ("recycle_rss_mb", int),
    "OCR_DRAIN_SEC": ("drain_sec", float),
    "OCR_API_KEYS": ("api_keys", keys),
    "OCR_METRICS_AUTH": ("metrics_auth", boolean),
    "OCR_URL_ALLOW_PRIVATE": ("url_allow_private", boolean),
    "OCR_URL_MAX_REDIRECTS": ("url_max_redirects", int),
    "OCR_LOG_FORMAT": ("log_format", str),
    "S3_ENDPOINT_URL": ("s3_endpoint_url", str),
    "AWS_REGION": ("aws_region", str),
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", str),
    "AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", str),
    "AWS_SESSION_TOKEN": ("aws_session_token", str),
    "S3_FORCE_PATH_STYLE": ("s3_force_path_style", boolean),
    "OCR_TRY_PAGE": ("try_page", boolean),
    "OCR_EVENT_SKIP_PREFIXES": ("event_skip_prefixes", prefixes),
    "OCR_INPUT_BUCKETS": ("input_buckets", prefixes),
    "OCR_TRUSTED_HOSTS": ("trusted_hosts", keys),
    "OCR_EVENT_SOURCE": ("event_source", str),
    "OCR_EVENT_REQUEST_TYPE": ("event_request_type", str),
    "OCR_EVENT_COMPLETED_TYPE": ("event_completed_type", str),
    "OCR_EVENT_FAILED_TYPE": ("event_failed_type", str),
    "OCR_EVENT_MAX_RECORDS": ("event_max_records", int),
    "OCR_EVENT_CHUNK_TYPE": ("event_chunk_type", str),
    "K_SINK": ("k_sink", str),
    "OCR_CHUNK_PAGES": ("chunk_pages", int),
    "OCR_JOBS_MAX": ("jobs_max", int),
    "OCR_CALLBACK_SECRET": ("callback_secret", str),
}
# Engine settings: each engine's own variables (variable -> (field, parser)), registered here by the
# engine's settings module when it is imported, so that names can be checked in one place.
ENGINE_ENV: dict[str, dict[str, tuple[str, Any]]] = {}


def register_engine_env(engine: str, table: dict[str, tuple[str, Any]]) -> dict[str, tuple[str, Any]]:
    """Record an engine's variables; a name another table already uses is a bug, caught at import."""
    taken = set(ENV).union(*(t for name, t in ENGINE_ENV.items() if name != engine))
    clash = taken & set(table)
    if clash:
        raise ConfigError(f"engine {engine!r} reuses variable(s) {', '.join(sorted(clash))}")
    ENGINE_ENV[engine] = table
    return table


# Secrets may come from mounted files instead: `<VAR>_FILE` names the file (it wins over `<VAR>`).
SECRET_FILES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OCR_API_KEYS",
    "OCR_CALLBACK_SECRET",
)
_POSITIVE = {
    "concurrency",
    "url_expires_sec",
    "max_bytes",
    "max_pixels",
    "max_pages",
    "pdf_dpi",
    "url_fetch_timeout_sec",
    "queue_wait_sec",
    "render_timeout_sec",
    "header_timeout_sec",
    "body_idle_timeout_sec",
    "body_timeout_sec",
    "event_max_records",
    "jobs_max",
}
_NOT_NEGATIVE = {
    "queue_size",
    "deadline_sec",
    "recycle_after_docs",
    "recycle_rss_mb",
    "url_max_redirects",
    "drain_sec",
    "engine_threads",
    "memory_limit_mb",
    "chunk_pages",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    secrets = {var: raw for var in SECRET_FILES if (raw := _secret_file(var, env)) is not None}
    values = parse_env(ENV, {**env, **secrets})
    for var, (name, _) in ENV.items():
        if name in _POSITIVE and name in values and values[name] <= 0:
            raise ConfigError(f"{var} must be greater than 0, got {values[name]!r}")
        if name in _NOT_NEGATIVE and name in values and values[name] < 0:
            raise ConfigError(f"{var} must be 0 or more, got {values[name]!r}")
    settings = Settings(**values)
    _check(settings)
    return _within_memory(settings)


def _within_memory(s: Settings) -> Settings:
    """`s` with `max_pixels` no larger than the pod's memory allows at its concurrency (memory.py)."""
    model = memory.MODELS.get(s.engine)
    limit = s.memory_limit_mb * MB if s.memory_limit_mb else memory.cgroup_limit()
    if model is None or limit is None:
        return s
    budget = model.pixel_budget(limit, s.concurrency)
    if budget < memory.MIN_PAGE_PIXELS:
        raise ConfigError(
            f"a memory limit of {limit // MB} MiB leaves {budget} pixels a page for {s.concurrency} "
            f"document(s) at once on {s.engine} (an A4 page at 150 dpi has {memory.MIN_PAGE_PIXELS}); "
            "raise the limit (OCR_MEMORY_LIMIT_MB or the container's) or lower OCR_CONCURRENCY"
        )
    return replace(s, max_pixels=min(s.max_pixels, budget), memory_limit_mb=limit // MB)


def parse_env(table: Mapping[str, tuple[str, Any]], env: Mapping[str, str]) -> dict[str, Any]:
    """Settings fields from the variables of `table` that are set; a bad value names its variable."""
    values: dict[str, Any] = {}
    for var, (name, parse) in table.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[name] = parse(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a valid {parse.__name__}") from None
    return values


def _secret_file(var: str, env: Mapping[str, str]) -> str | None:
    path = env.get(f"{var}_FILE", "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{var}_FILE={path!r} cannot be read: {exc.strerror or exc}") from None


def _check(s: Settings) -> None:
    if not (s.store.startswith("file://") or s.store.startswith("s3://")):
        raise ConfigError(f"OCR_STORE must start with file:// or s3://, got {s.store!r}")
    if s.ready_wait_sec < 0:
        raise ConfigError("OCR_READY_WAIT_SEC must be 0 or more")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"OCR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    if s.log_format not in ("json", "text"):
        raise ConfigError(f"OCR_LOG_FORMAT must be json or text, got {s.log_format!r}")
    if s.s3_endpoint_url and not s.s3_endpoint_url.startswith(("http://", "https://")):
        raise ConfigError(f"S3_ENDPOINT_URL must be an http(s) URL, got {s.s3_endpoint_url!r}")
    if s.store.startswith("s3://") and not s.store[len("s3://") :].split("/", 1)[0]:
        raise ConfigError(f"OCR_STORE={s.store!r} names no bucket; use s3://bucket/prefix")
    if (s.aws_access_key_id is None) != (s.aws_secret_access_key is None):
        raise ConfigError(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their *_FILE) must be set together"
        )
    # A reply of the request type would be delivered back to this function by the broker: a loop.
    if s.k_sink and not s.k_sink.startswith(("http://", "https://")):
        raise ConfigError(f"K_SINK must be an http(s) URL (the broker's address), got {s.k_sink!r}")
    for var, value in (
        ("OCR_EVENT_CHUNK_TYPE", s.event_chunk_type),
        ("OCR_EVENT_COMPLETED_TYPE", s.event_completed_type),
        ("OCR_EVENT_FAILED_TYPE", s.event_failed_type),
    ):
        if value == s.event_request_type:
            raise ConfigError(f"{var}={value!r} equals OCR_EVENT_REQUEST_TYPE: replies would loop back")


def settings_fields() -> list[str]:
    return [f.name for f in fields(Settings)]
