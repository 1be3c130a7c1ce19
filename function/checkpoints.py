"""Page checkpoints: each page, once read, is stored under its document's result prefix, so a run cut
short — a deadline, a killed pod, a redelivered event, a chunk on another pod — never reads it again.

A checkpoint is `<prefix>/pages/<00000-based page index>.json`: the page's part of the document model
(blocks, lines, tables, boxes), the engine's own Markdown of the page when it brings one, the page's
warnings, and the descriptions of its crops and layout picture, which are stored as final parts as
soon as they exist. The result prefix is content-addressed (document, engine, output options), so a
checkpoint is only ever reused for the very page it was read from; it also carries the document's
hash, checked on reading, like a manifest. `manifest.json` stays the only proof of a finished result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from function.document import Block, Cell, Document, Page, Table, TextLine
from function.errors import NotFound, OCRError
from function.store import ResultStore

log = logging.getLogger(__name__)

DIRECTORY = "pages"
VERSION = 1


@dataclass
class Checkpoint:
    """One page as read, as stored: enough to assemble the document without reading it again."""

    page: Page
    markdown: dict[str, Any] | None = None  # the engine's own Markdown of the page (PaddleOCR-VL)
    warnings: list[str] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # crop path -> stored part
    layout: dict[str, Any] | None = None  # the stored layout picture's part, when asked for

    def to_json(self, sha256: str) -> bytes:
        body = {
            "version": VERSION,
            "sha256": sha256,
            "page": dataclasses.asdict(self.page),
            "markdown": self.markdown,
            "warnings": self.warnings,
            "images": self.images,
            "layout": self.layout,
        }
        return json.dumps(body, ensure_ascii=False).encode()

    def document(self) -> Document:
        """The page as the engine's `read` handed it over (its crops already stored, so not held)."""
        markdown_pages = [self.markdown] if self.markdown is not None else []
        return Document(pages=[self.page], warnings=list(self.warnings), markdown_pages=markdown_pages)

    @classmethod
    def from_json(cls, data: bytes, sha256: str) -> Checkpoint:
        body = json.loads(data)
        if body.get("version") != VERSION or body.get("sha256") != sha256:
            raise ValueError("another document's checkpoint, or another version's")
        return cls(
            page=_page(body["page"]),
            markdown=body.get("markdown"),
            warnings=list(body.get("warnings") or []),
            images=dict(body.get("images") or {}),
            layout=body.get("layout"),
        )


def key(prefix: str, index: int) -> str:
    return f"{prefix}/{DIRECTORY}/{index:05d}.json"


def write(store: ResultStore, prefix: str, sha256: str, checkpoint: Checkpoint) -> None:
    store.put(key(prefix, checkpoint.page.index), checkpoint.to_json(sha256), "application/json")


def done(store: ResultStore, prefix: str) -> set[int]:
    """The 0-based indices of the pages with a checkpoint (one listing of the result's directory)."""
    indices = set()
    for stored in store.listing(f"{prefix}/{DIRECTORY}"):
        name = stored.rsplit("/", 1)[-1]
        stem, _, ext = name.partition(".")
        if ext == "json" and stem.isdigit():
            indices.add(int(stem))
    return indices


def clear(store: ResultStore, prefix: str) -> None:
    for index in done(store, prefix):
        store.delete(key(prefix, index))


class BrokenCheckpoint(OCRError):
    """A stored page could not be read back: it is removed, and a retry reads that page again."""

    status, code = 503, "checkpoint_unreadable"


def load(store: ResultStore, prefix: str, sha256: str, indices: Iterable[int]) -> Iterable[Checkpoint]:
    """The pages' checkpoints in the order asked, read one at a time; a broken one is deleted and
    raises (retryable), so the next run reads that page again instead of assembling without it."""
    for index in indices:
        name = key(prefix, index)
        try:
            yield Checkpoint.from_json(store.get(name), sha256)
        except (NotFound, ValueError, KeyError, TypeError) as exc:
            log.warning("checkpoint %s unreadable (%s); removed, the page will be read again", name, exc)
            store.delete(name)
            raise BrokenCheckpoint(
                f"page {index + 1}'s stored result could not be read back; retry to read it again"
            ) from None


def _bbox(raw: Any) -> tuple[int, int, int, int] | None:
    return None if raw is None else (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))


def _page(raw: dict[str, Any]) -> Page:
    return Page(
        index=raw["index"],
        width=raw["width"],
        height=raw["height"],
        blocks=[_block(b) for b in raw["blocks"]],
    )


def _block(raw: dict[str, Any]) -> Block:
    table = raw.get("table")
    return Block(
        **{k: v for k, v in raw.items() if k not in ("bbox", "lines", "table")},
        bbox=_bbox(raw["bbox"]),  # type: ignore[arg-type]
        lines=[TextLine(line["text"], _bbox(line["bbox"]), line.get("score")) for line in raw["lines"]],  # type: ignore[arg-type]
        table=None
        if table is None
        else Table(
            table["n_rows"],
            table["n_cols"],
            [Cell(**{**c, "bbox": _bbox(c.get("bbox"))}) for c in table["cells"]],
        ),
    )
