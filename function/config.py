"""Settings: read once from the environment at start-up, validated, with errors naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from function.errors import ConfigError

MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    engine: str = "rapidocr"
    store: str = "file://./output"
    public_base_url: str | None = None  # base of result URLs; else the request's own host
    url_expires_sec: int = 3600
    max_bytes: int = 50 * MB
    max_pixels: int = 100_000_000
    max_pages: int = 200
    pdf_dpi: int = 200
    url_fetch_timeout_sec: float = 30.0
    ready_wait_sec: float = 30.0  # how long an early OCR request waits for the engine
    log_level: str = "INFO"


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
}
_POSITIVE = {"url_expires_sec", "max_bytes", "max_pixels", "max_pages", "pdf_dpi", "url_fetch_timeout_sec"}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, (name, parse) in ENV.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[name] = parse(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a valid {parse.__name__}") from None
        if name in _POSITIVE and values[name] <= 0:
            raise ConfigError(f"{var} must be greater than 0, got {raw!r}")
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if not (s.store.startswith("file://") or s.store.startswith("s3://")):
        raise ConfigError(f"OCR_STORE must start with file:// or s3://, got {s.store!r}")
    if s.ready_wait_sec < 0:
        raise ConfigError("OCR_READY_WAIT_SEC must be 0 or more")
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"OCR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")


def settings_fields() -> list[str]:
    return [f.name for f in fields(Settings)]
