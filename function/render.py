"""Markdown and JSON renderings of a `Document`. Pure functions: no I/O, no engine knowledge."""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any

from function.document import BBox, Block, Cell, Document, Page, Table, TextLine

SCHEMA_VERSION = 1

_PARAGRAPH_LABELS_KEEPING_LINES = frozenset({"content"})  # a table of contents reads line by line
_CAPTION_LABELS = frozenset({"figure_title", "vision_footnote"})
_FORMULA_LABELS = frozenset({"display_formula", "formula"})
_PICTURE_LABELS = frozenset({"image", "chart", "seal"})

# Line starts that Markdown would read as structure (heading, list, quote, fence, rule); HTML
# anywhere in a line is escaped by `_escape_inline`.
_BLOCK_START = re.compile(r"^(?:#|[-+*](?=\s|$)|>|```|~~~|[-*_=][-*_=\s]*$)")
_ORDERED_ITEM = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_CLOSING_HASHES = re.compile(r"(^|\s)(#+)$")  # an ATX heading would drop these
# Text a renderer would take for inline HTML or an entity and not show: "<lazy>", "</b>", "&amp;".
_INLINE_HTML = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?\w+;)")
_WHITESPACE = re.compile(r"\s+")
_EXCESS_NEWLINES = re.compile(r"\n{3,}")


# --- Markdown -------------------------------------------------------------------------------


def render_markdown(doc: Document) -> str:
    """The document as Markdown: the engine's own if it brought one, else rendered from blocks."""
    if doc.markdown is not None:
        return doc.markdown
    pages = (_render_page(page) for page in _pages_in_order(doc))
    body = "\n\n".join(p for p in pages if p)
    body = _EXCESS_NEWLINES.sub("\n\n", body).strip("\n")
    return body + "\n" if body else ""


def _pages_in_order(doc: Document) -> list[Page]:
    return sorted(doc.pages, key=lambda p: p.index)


def _render_page(page: Page) -> str:
    rendered = (_render_block(b) for b in page.ordered_blocks())
    return "\n\n".join(r for r in rendered if r)


def _render_block(block: Block) -> str:
    label = block.label
    if label == "doc_title":
        return _heading(1, block.text)
    if label == "paragraph_title":
        return _heading(2, block.text)
    if label in _CAPTION_LABELS:
        return _caption(block.text)
    if label in _FORMULA_LABELS:
        return _formula(block.text)
    if label in _PICTURE_LABELS:
        return _picture(block)
    if label == "table":
        return _table_block(block)
    return _paragraph(block.text, keep_lines=label in _PARAGRAPH_LABELS_KEEPING_LINES)


def _collapse(text: str) -> str:
    return _escape_inline(_WHITESPACE.sub(" ", text).strip())


def _escape_inline(line: str) -> str:
    """Backslash-escape what would render as HTML or an entity, so the text shows as read."""
    return _INLINE_HTML.sub(r"\\\g<0>", line)


def _heading(level: int, text: str) -> str:
    line = _collapse(text)
    if not line:
        return ""
    # Trailing hashes would be taken as the optional closing sequence and vanish.
    line = _CLOSING_HASHES.sub(lambda m: m.group(1) + "\\" + m.group(2), line)
    return "#" * level + " " + line


def _escape_line_start(line: str) -> str:
    """Backslash-escape a line start that Markdown would read as structure; leave the rest alone."""
    if _BLOCK_START.match(line):
        return "\\" + line
    return _ORDERED_ITEM.sub(r"\1\\\2", line, count=1)


def _paragraph(text: str, keep_lines: bool = False) -> str:
    lines = [_escape_inline(ln.strip()) for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    if keep_lines:
        # Hard breaks ("two spaces, newline") keep the lines apart when rendered.
        return "  \n".join(_escape_line_start(ln) for ln in lines)
    return _escape_line_start(" ".join(lines))


def _caption(text: str) -> str:
    # A bare `*` inside would close the emphasis early.
    line = _collapse(text).replace("*", "\\*")
    return f"*{line}*" if line else ""


def _formula(text: str) -> str:
    body = text.strip()
    if not body or body.startswith("$$"):
        return body
    return f"$$\n{body}\n$$"


def _picture(block: Block) -> str:
    if block.image:
        # Angle brackets let a path with spaces or parentheses stay one link destination.
        target = f"<{block.image}>" if re.search(r"[\s()<>]", block.image) else block.image
        return f"![{block.label}]({target})"
    return _paragraph(block.text)


def _table_block(block: Block) -> str:
    if block.table is not None and block.table.n_rows > 0 and block.table.n_cols > 0:
        return table_markdown(block.table)
    if block.html:
        # A blank line would end the HTML block in Markdown and spill the rest as text.
        return "\n".join(ln for ln in block.html.splitlines() if ln.strip())
    return _paragraph(block.text)


# --- Tables ---------------------------------------------------------------------------------


def table_markdown(table: Table) -> str:
    """A GitHub pipe table (row 0 is the header); HTML when cells span, which pipes cannot show."""
    if table.has_spans:
        return table_html(table)
    rows = table.grid()
    if not rows or table.n_cols == 0:
        return ""
    header, *body = ([_pipe_cell(t) for t in row] for row in rows)
    return "\n".join(_pipe_row(r) for r in [header, ["---"] * table.n_cols, *body])


def _pipe_cell(text: str) -> str:
    return _collapse(text).replace("|", "\\|")


def _pipe_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_html(table: Table) -> str:
    """An HTML table; spans as attributes, covered slots omitted, gaps filled with empty cells."""
    anchors, covered = _layout(table)
    rows = []
    for r in range(table.n_rows):
        tag = "th" if r == 0 else "td"
        cells = []
        for c in range(table.n_cols):
            if (r, c) in anchors:
                cells.append(_html_cell(tag, anchors[(r, c)], table))
            elif (r, c) not in covered:
                cells.append(f"<{tag}></{tag}>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _layout(table: Table) -> tuple[dict[tuple[int, int], Cell], set[tuple[int, int]]]:
    """Which cell starts at each slot, and which slots another cell's span already covers."""
    anchors: dict[tuple[int, int], Cell] = {}
    covered: set[tuple[int, int]] = set()
    for cell in table.cells:
        slot = (cell.row, cell.col)
        in_range = 0 <= cell.row < table.n_rows and 0 <= cell.col < table.n_cols
        if not in_range or slot in anchors or slot in covered:
            continue  # first cell claiming a slot wins, as in `Table.grid`'s reading of a row
        anchors[slot] = cell
        rowspan, colspan = _clamped_spans(cell, table)
        covered.update(
            (r, c)
            for r in range(cell.row, cell.row + rowspan)
            for c in range(cell.col, cell.col + colspan)
            if (r, c) != slot
        )
    return anchors, covered


def _clamped_spans(cell: Cell, table: Table) -> tuple[int, int]:
    return (
        max(1, min(cell.rowspan, table.n_rows - cell.row)),
        max(1, min(cell.colspan, table.n_cols - cell.col)),
    )


def _html_cell(tag: str, cell: Cell, table: Table) -> str:
    rowspan, colspan = _clamped_spans(cell, table)
    attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (
        f' colspan="{colspan}"' if colspan > 1 else ""
    )
    lines = [html.escape(ln.strip()) for ln in cell.text.strip().splitlines()]
    return f"<{tag}{attrs}>{'<br>'.join(ln for ln in lines if ln)}</{tag}>"


# --- JSON -----------------------------------------------------------------------------------


def render_json(doc: Document) -> dict[str, Any]:
    """The document as a JSON-serialisable dict (schema_version 1; key order is part of it).
    `warnings` is there only when the engine had any."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": dataclasses.asdict(doc.source) if doc.source else None,
        "engine": dataclasses.asdict(doc.engine) if doc.engine else None,
        "pages": [_page_json(p) for p in _pages_in_order(doc)],
        "markdown": render_markdown(doc),
    }
    if doc.warnings:
        out["warnings"] = list(doc.warnings)
    return out


def _page_json(page: Page) -> dict[str, Any]:
    return {
        "index": int(page.index),
        "width": int(page.width),
        "height": int(page.height),
        "blocks": [_block_json(b) for b in page.blocks],
    }


def _block_json(block: Block) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": int(block.id),
        # Marginalia have no place in the reading order, whatever an engine said.
        "order": None if block.is_marginal or block.order is None else int(block.order),
        "label": block.label,
        "bbox": _bbox(block.bbox),
        "text": block.text,
        "score": _score(block.score),
    }
    if block.html or block.table is not None:
        out["html"] = block.html or table_html(block.table)  # type: ignore[arg-type]
    if block.table is not None:
        out["table"] = _table_json(block.table)
    if block.image:
        out["image"] = block.image
    if block.lines:
        out["lines"] = [_line_json(ln) for ln in block.lines]
    return out


def _table_json(table: Table) -> dict[str, Any]:
    return {
        "n_rows": int(table.n_rows),
        "n_cols": int(table.n_cols),
        "cells": [
            {
                "row": int(c.row),
                "col": int(c.col),
                "rowspan": int(c.rowspan),
                "colspan": int(c.colspan),
                "text": c.text,
                "bbox": _bbox(c.bbox) if c.bbox is not None else None,
            }
            for c in table.cells
        ],
    }


def _line_json(line: TextLine) -> dict[str, Any]:
    return {"text": line.text, "bbox": _bbox(line.bbox), "score": _score(line.score)}


def _bbox(bbox: BBox) -> list[int]:
    # Engines hand over numpy scalars or floats; JSON wants plain ints.
    return [round(float(v)) for v in bbox]


def _score(score: float | None) -> float | None:
    return None if score is None else round(float(score), 4)
