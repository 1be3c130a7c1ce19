"""S3-compatible object storage (AWS, MinIO, Ceph, Cloud.ru): the client, its errors mapped to the
error vocabulary, reading an object within a size limit, and `s3://` URIs. Used by the S3 result
store and the S3 document source alike.

The boto3 client is built lazily, once per process: functions-framework imports the handler in the
gunicorn parent and forks, and a client (its connection pool) must not cross a fork.
"""

from __future__ import annotations

import logging
from typing import Any

from function.config import Settings
from function.errors import BadRequest, NotFound, UpstreamFailed, check_size, clip
from function.perprocess import PerProcess

log = logging.getLogger(__name__)


class S3:
    """The S3 endpoint of the settings, with their credentials."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: PerProcess[Any] = PerProcess(self._build_client)

    @property
    def client(self) -> Any:
        return self._client.get()

    def _build_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self.settings
        config = Config(
            # Standard mode: exponential backoff with jitter on throttling, 5xx and connection errors.
            # 3 attempts x (5 s connect + 20 s read) bounds a failed put at about 80 s, well inside the
            # deadline; a put of a few MB to a healthy S3 answers in well under 20 s.
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
            signature_version="s3v4",
            s3={"addressing_style": "path" if s.s3_force_path_style else "auto"},
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=s.s3_endpoint_url,
            region_name=s.aws_region,
            aws_access_key_id=s.aws_access_key_id,
            aws_secret_access_key=s.aws_secret_access_key,
            aws_session_token=s.aws_session_token,
            config=config,
        )

    def read(self, bucket: str, key: str, max_bytes: int | None, version: str | None = None) -> bytes:
        """An object's bytes (any bucket at this endpoint), refusing more than `max_bytes`;
        `version`: that version of the object (a storage event names the one it is about)."""
        where = f"s3://{bucket}/{key}" + (f" version {version}" if version else "")
        with s3_errors(f"reading {where}"):
            extra = {"VersionId": version} if version else {}
            obj = self.client.get_object(Bucket=bucket, Key=key, **extra)
            body = obj["Body"]
            try:
                if max_bytes is None:
                    return body.read()
                check_size(int(obj.get("ContentLength") or 0), max_bytes)
                data = body.read(max_bytes + 1)
                check_size(len(data), max_bytes)
                return data
            finally:
                body.close()


class s3_errors:
    """Maps botocore failures to the error vocabulary. Reading: a missing or forbidden object -> 404
    (what a caller may not read is not told apart from what does not exist). Writing (`writing=True`):
    every failure, a missing bucket included, is a retryable 502 — the result store is this
    function's own, and a bucket that is not there yet is an outage, not the caller's mistake."""

    # NoSuchVersion: an event named a version that is gone; InvalidArgument: a malformed version id.
    MISSING = frozenset(
        {
            "NoSuchKey",
            "NoSuchBucket",
            "NoSuchVersion",
            "InvalidArgument",
            "404",
            "NotFound",
            "AccessDenied",
            "403",
        }
    )

    def __init__(self, action: str, *, writing: bool = False) -> None:
        self.action = clip(action)  # it may name a caller's key
        self.writing = writing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in self.MISSING and not self.writing:
                raise NotFound(f"{self.action}: not found ({code})") from exc
            log.warning("%s failed: %s", self.action, exc)
            raise UpstreamFailed(f"{self.action} failed: {code or 'error'}", retry_after=5) from exc
        if isinstance(exc, BotoCoreError):
            log.warning("%s failed: %s", self.action, exc)
            raise UpstreamFailed(f"{self.action} failed: {type(exc).__name__}", retry_after=5) from exc


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); the key is taken as written (no URL decoding)."""
    if not uri.startswith("s3://"):
        raise BadRequest(f"'s3_uri' must look like s3://bucket/key, got {uri[:200]!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise BadRequest(f"'s3_uri' must name a bucket and a key, got {uri[:200]!r}")
    return bucket, key
