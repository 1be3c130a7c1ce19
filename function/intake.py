"""The one parser of a request: form fields, a JSON body or an `ocr.document.requested` event's data,
raw bytes, or an object a storage event names, in; a `Source` (the document's bytes within the size
limit) and the `Options` out. The transport only says where the fields came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from function.config import Settings
from function.errors import BadRequest
from function.options import Options
from function.s3 import S3, parse_uri
from function.sources import Source, fetch_url, from_base64, from_bytes, from_s3

DOCUMENT_FIELDS = ("file", "image_base64", "image_url", "s3_uri")
NO_DOCUMENT = (
    "no document in the request: send a multipart field 'file', or 'image_base64', or 'image_url' "
    "(form or JSON), or the raw bytes with Content-Type image/* or application/pdf"
)


class Upload(Protocol):
    """A multipart file field (werkzeug's FileStorage)."""

    filename: str | None

    def read(self) -> bytes: ...


class Intake:
    def __init__(self, settings: Settings, s3: S3 | None) -> None:
        self.settings = settings
        self.s3 = s3  # where `s3_uri` documents are read; None without an S3 result store

    def fields(
        self,
        fields: Mapping[str, Any],
        files: Mapping[str, Upload] | None = None,
        query: Mapping[str, Any] | None = None,
        input_type: str | None = None,
    ) -> tuple[Source, Options]:
        """The one document named by the fields (or uploaded as `file`), and the options of the
        fields over those of the query string. `input_type` overrides the field's own (events)."""
        source = self._document(fields, files or {})
        if input_type is not None:
            source = replace(source, input_type=input_type)
        return source, Options.parse({**(query or {}), **fields})

    def raw(
        self, data: bytes, filename: str | None, input_type: str, query: Mapping[str, Any] | None = None
    ) -> tuple[Source, Options]:
        """The document sent as the body itself (or carried by an event), options from the query."""
        return from_bytes(data, filename, input_type, self.settings.max_bytes), Options.parse(query or {})

    def s3_object(
        self, bucket: str, key: str, filename: str | None, input_type: str, version: str | None = None
    ) -> Source:
        """An object (`version`: that version of it, as a storage event names it) in a place
        documents may be read from (`input_places`)."""
        max_bytes = self.settings.max_bytes
        return from_s3(self.s3, bucket, key, filename, input_type, max_bytes, self.input_places, version)

    @property
    def input_places(self) -> tuple[str, ...]:
        """Where documents may be read from S3: OCR_INPUT_BUCKETS, else the result store's bucket."""
        if self.settings.input_buckets:
            return self.settings.input_buckets
        store = self.settings.store
        return (store[len("s3://") :].split("/", 1)[0],) if store.startswith("s3://") else ()

    def _document(self, fields: Mapping[str, Any], files: Mapping[str, Upload]) -> Source:
        max_bytes = self.settings.max_bytes
        present = [name for name in DOCUMENT_FIELDS if fields.get(name) or name in files]
        extra_files = [name for name in files if name != "file"]
        if extra_files:
            raise BadRequest(
                f"send the document in the field 'file'; unexpected file field(s): {', '.join(extra_files)}"
            )
        if not present:
            raise BadRequest(NO_DOCUMENT)
        if len(present) > 1:
            raise BadRequest(f"send exactly one document; got {', '.join(present)}")
        name = present[0]
        filename = fields.get("filename")
        if filename is not None and not isinstance(filename, str):
            raise BadRequest("'filename' must be a string")
        if name == "file":
            upload = files["file"]
            return from_bytes(upload.read(), filename or upload.filename, "multipart", max_bytes)
        value = fields[name]
        if not isinstance(value, str):
            raise BadRequest(f"'{name}' must be a string")
        if name == "image_base64":
            return from_base64(value, filename, "base64", max_bytes)
        if name == "image_url":
            return fetch_url(value, filename, self.settings)
        bucket, key = parse_uri(value)
        return self.s3_object(bucket, key, filename, "s3")
