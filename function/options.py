"""Request options (form field, JSON field or query parameter), parsed and validated."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from function.config import boolean
from function.errors import BadRequest
from function.fetch import check_url

# Every run of spaces has one place to go (no backtracking blow-up on long values); 9 digits at most.
_PAGE_RANGE = r"\s*\d{1,9}\s*(-\s*(\d{1,9}\s*)?)?"
PAGES_RE = re.compile(f"{_PAGE_RANGE}(,{_PAGE_RANGE})*")  # or "all"; the contract takes these patterns
LANG_RE = re.compile(r"[A-Za-z_]{2,16}(\+[A-Za-z_]{2,16})*")


@dataclass(frozen=True)
class PageSelection:
    """1-based inclusive ranges; `None` as an end means "to the last page"."""

    ranges: tuple[tuple[int, int | None], ...]

    def __str__(self) -> str:
        return ",".join(f"{a}" if a == b else f"{a}-{'' if b is None else b}" for a, b in self.ranges)

    def _clipped(self, page_count: int) -> Iterator[tuple[int, int]]:
        """The ranges as 0-based half-open spans within a document of `page_count` pages."""
        for start, end in self.ranges:
            stop = page_count if end is None else min(end, page_count)
            if start <= stop:
                yield start - 1, stop

    def count(self, page_count: int) -> int:
        """How many distinct pages `indices` would give, without listing them (ranges may overlap)."""
        total, reached = 0, 0
        for start, stop in sorted(self._clipped(page_count)):
            start = max(start, reached)
            if stop > start:
                total += stop - start
                reached = stop
        return total

    def indices(self, page_count: int) -> list[int]:
        """0-based page indices selected from a document of `page_count` pages, in order, each once.
        Linear in the pages selected: callers bound that with `count` first."""
        seen: set[int] = set()
        chosen: list[int] = []
        for start, stop in self._clipped(page_count):
            for index in range(start, stop):
                if index not in seen:
                    seen.add(index)
                    chosen.append(index)
        return chosen


def parse_pages(value: str) -> PageSelection:
    if not PAGES_RE.fullmatch(value):
        raise BadRequest(f"option 'pages' must look like '1-3,7' (1-based), got {value!r}")
    ranges = []
    for part in re.sub(r"\s", "", value).split(","):
        start_s, _, end_s = part.partition("-")
        start = int(start_s)
        end: int | None = start if "-" not in part else (int(end_s) if end_s else None)
        if start < 1 or (end is not None and end < start):
            raise BadRequest(f"option 'pages' has an empty or reversed range {part!r}")
        ranges.append((start, end))
    return PageSelection(tuple(ranges))


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        return boolean(text) if text else False  # an empty form field is "not set"
    except ValueError:
        raise BadRequest(f"option {name!r} must be true or false, got {value!r}") from None


@dataclass(frozen=True)
class Options:
    return_content: bool = False
    pages: PageSelection | None = None
    lang: str | None = None
    force: bool = False
    visualize: bool = False  # also a layout picture per page
    callback_url: str | None = None  # an async job's result is POSTed here (function/jobs.py)

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> Options:
        """Options from request fields; unknown option values are a 400 naming the option."""
        pages = fields.get("pages")
        lang = fields.get("lang")
        if lang is not None and lang != "" and not LANG_RE.fullmatch(str(lang)):
            raise BadRequest(f"option 'lang' must look like 'en', 'ru' or 'rus+eng', got {lang!r}")
        return cls(
            return_content=parse_bool("return_content", fields.get("return_content", False)),
            pages=parse_pages(str(pages)) if pages not in (None, "", "all") else None,
            lang=str(lang) if lang else None,
            force=parse_bool("force", fields.get("force", False)),
            visualize=parse_bool("visualize", fields.get("visualize", False)),
            callback_url=_callback_url(fields.get("callback_url")),
        )

    def fields(self) -> dict[str, str]:
        """The options as request fields (`parse` reads them back): how a job keeps them."""
        out = {
            "return_content": str(self.return_content).lower(),
            "force": str(self.force).lower(),
            "visualize": str(self.visualize).lower(),
        }
        for name, value in (("pages", self.pages), ("lang", self.lang), ("callback_url", self.callback_url)):
            if value is not None:
                out[name] = str(value)
        return out

    def output_affecting(self, selected: list[int] | None = None, page_count: int = 0) -> dict[str, str]:
        """The options that change the result (part of the cache key). Given the pages they select
        from the document, `pages` is keyed by that selection, not its spelling: `1-3` of a 3-page PDF
        is the whole document, and `1,2,3` is `1-3`."""
        out = {}
        if self.pages is not None:
            spelled = str(self.pages) if selected is None else spell_selection(selected, page_count)
            if spelled is not None:
                out["pages"] = spelled
        if self.lang:
            out["lang"] = self.lang
        if self.visualize:  # adds parts; absent when false so existing results keep their keys
            out["visualize"] = "true"
        return out


def _callback_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 2048:
        raise BadRequest("option 'callback_url' must be an http(s) URL of at most 2048 characters")
    check_url(value, "callback_url")
    return value


def spell_selection(indices: list[int], page_count: int) -> str | None:
    """0-based page indices as 1-based ranges in their order (`[0, 1, 2, 6]` -> `1-3,7`); None for the
    whole document in order."""
    if indices == list(range(page_count)):
        return None
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in runs)
