"""The document model: the one structure every engine returns and every renderer reads.

Labels follow PP-DocLayoutV2's vocabulary (what PaddleOCR-VL emits); the CPU engines map
their own labels into it. Coordinates are pixels of the page image the engine saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BBox = tuple[int, int, int, int]  # x0, y0, x1, y1

# Kept in JSON, but without a reading order and left out of the Markdown body
# (PaddleOCR-VL's default `markdown_ignore_labels`).
MARGINAL_LABELS = frozenset(
    {"header", "header_image", "footer", "footer_image", "number", "footnote", "aside_text"}
)
TITLE_LABELS = frozenset({"doc_title", "paragraph_title"})
IMAGE_LABELS = frozenset({"image", "chart", "seal", "header_image", "footer_image"})


@dataclass
class TextLine:
    text: str
    bbox: BBox
    score: float | None = None
    # The line's words, where the OCR gives them (Tesseract): the layout stage cuts a line that
    # runs from one region into another between them. Not part of the output.
    words: tuple[TextLine, ...] = field(default=(), repr=False, compare=False)


@dataclass
class Cell:
    row: int
    col: int
    text: str = ""
    rowspan: int = 1
    colspan: int = 1
    bbox: BBox | None = None


@dataclass
class Table:
    n_rows: int
    n_cols: int
    cells: list[Cell]

    @property
    def has_spans(self) -> bool:
        return any(c.rowspan > 1 or c.colspan > 1 for c in self.cells)

    def grid(self) -> list[list[str]]:
        """Rows of cell texts; a spanned cell's text sits in its top-left slot."""
        rows = [["" for _ in range(self.n_cols)] for _ in range(self.n_rows)]
        for c in self.cells:
            if c.row < self.n_rows and c.col < self.n_cols:
                rows[c.row][c.col] = c.text
        return rows


@dataclass
class Block:
    id: int
    label: str
    bbox: BBox
    text: str = ""
    order: int | None = None
    score: float | None = None
    html: str | None = None  # tables: the engine's own HTML (PaddleOCR-VL) or ours
    table: Table | None = None
    lines: list[TextLine] = field(default_factory=list)
    image: str | None = None  # relative path of a crop stored next to the Markdown

    @property
    def is_marginal(self) -> bool:
        return self.label in MARGINAL_LABELS


@dataclass
class Page:
    index: int  # 0-based page of the source document
    width: int
    height: int
    blocks: list[Block] = field(default_factory=list)

    def ordered_blocks(self) -> list[Block]:
        """Blocks of the body in reading order (marginalia excluded); blocks an engine left
        unordered follow the ordered ones, in list order, rather than being lost."""
        body = [b for b in self.blocks if not b.is_marginal]
        return sorted(body, key=lambda b: (b.order is None, b.order or 0))


@dataclass(frozen=True)
class SourceInfo:
    filename: str
    media_type: str
    sha256: str
    pages: int


@dataclass(frozen=True)
class EngineInfo:
    name: str
    version: str
    fingerprint: str


@dataclass
class Document:
    pages: list[Page]
    source: SourceInfo | None = None
    engine: EngineInfo | None = None
    # An engine may bring its own Markdown (PaddleOCR-VL does); otherwise it is rendered
    # from the blocks.
    markdown: str | None = None
    # Such an engine's Markdown of each page (JSON-able, as the engine joins them: `Engine.join`).
    markdown_pages: list[dict[str, Any]] = field(default_factory=list)
    # The crops the Markdown links to (`Block.image`): relative path -> PIL image, stored next to
    # the Markdown so the links resolve. Not part of the JSON.
    images: dict[str, Any] = field(default_factory=dict)
    # What the client should know about the result, one sentence each (a page in a script the
    # engine cannot read, say); in document.json when there are any.
    warnings: list[str] = field(default_factory=list)
