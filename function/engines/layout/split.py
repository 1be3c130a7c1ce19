"""Lines cut where they run from one layout region into another.

Tesseract's page segmentation joins what lies on one baseline: a financial table's row and the
sidebar beside it come back as one line ("Revenue 915.9 1,382.7 Company Background"), which then
goes whole to the table, and the sidebar's paragraph is scattered through its rows (dev-set page
007: CER 0.51 against the bare CLI's 0.07). Where the OCR gives a line's words, the line is cut
between two words that lie in different regions (or one in a region, one in none) with a gap
wider than any word space between them: a column's gutter.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from function.document import TextLine
from function.engines.layout.geometry import area, box_height, covered, union
from function.engines.layout.model import Region

WHOLE = 0.9  # a line this much inside one region stays whole
# A gap of at least this many word heights between two words may be a gutter. A word space is a
# third of the type size and a median word is half to three quarters of it high (lowercase): at
# 72 dpi "Invoice number" stood 9 px apart with words 9.5 px high. The research note's gutter is
# 43-47 px between words 17-24 px high; the other cuts on the dev set, 113 px and more.
GUTTER = 1.5
_HOME = 0.5  # a word belongs to the region covering at least this much of it


def split_across_regions(lines: Sequence[TextLine], regions: Sequence[Region]) -> list[TextLine]:
    """The lines, those running across a region's edge cut into pieces; words are dropped (the
    layout stage needs them no further)."""
    out: list[TextLine] = []
    for line in lines:
        pieces = _pieces(line, regions)
        if len(pieces) > 1:
            out.extend(_joined(p) for p in pieces)
        else:
            out.append(_bare(line))
    return out


def _pieces(line: TextLine, regions: Sequence[Region]) -> list[list[TextLine]]:
    """The line's words in runs, cut at each gutter between two regions; one run (or none, without
    words) where the line stays whole."""
    words = line.words
    if len(words) < 2 or any(covered(line.bbox, r.bbox) >= WHOLE for r in regions):
        return []
    homes = [_home(w, regions) for w in words]
    gutter = GUTTER * statistics.median(box_height(w.bbox) for w in words)
    pieces: list[list[TextLine]] = [[words[0]]]
    for i in range(1, len(words)):
        if homes[i] != homes[i - 1] and words[i].bbox[0] - words[i - 1].bbox[2] >= gutter:
            pieces.append([])
        pieces[-1].append(words[i])
    return pieces


def _home(word: TextLine, regions: Sequence[Region]) -> int | None:
    """The tightest region holding the word, by index; None where none does."""
    holding = [i for i, r in enumerate(regions) if covered(word.bbox, r.bbox) >= _HOME]
    return min(holding, key=lambda i: area(regions[i].bbox), default=None)


def _joined(words: list[TextLine]) -> TextLine:
    scores = [w.score for w in words if w.score is not None]
    score = round(sum(scores) / len(scores), 4) if scores else None
    return TextLine(" ".join(w.text for w in words), union([w.bbox for w in words]), score)


def _bare(line: TextLine) -> TextLine:
    return TextLine(line.text, line.bbox, line.score)
