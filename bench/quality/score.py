"""Scores of one OCR result against a synthetic page's truth: text, reading order, table cells."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from rapidfuzz import fuzz

from bench.quality.synthetic import SyntheticPage, cer, wer

ANCHOR_WORDS = 6  # a block is found in the output by its first words
ANCHOR_MIN_SCORE = 70.0  # fuzzy match (0-100) below which a block counts as not found


@dataclass
class Score:
    cer: float
    wer: float
    order: float | None  # share of consecutive truth blocks found in the right order
    cells: float | None  # share of table cells read right in the right place; None: no table output


def score_page(page: SyntheticPage, text: str, grid: list[list[str]] | None = None) -> Score:
    truth = _flat(page.text)
    hyp = _flat(text)
    return Score(cer(truth, hyp), wer(truth, hyp), reading_order(page, hyp), cell_accuracy(page, grid))


def _flat(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def reading_order(page: SyntheticPage, hyp: str) -> float | None:
    """Consecutive pairs of text blocks whose starts appear in the output in the same order.

    A block not found at all breaks both of its pairs. Tables are left out (their cells are scored
    on their own). None for a page with fewer than two text blocks.
    """
    blocks = [b for b in page.blocks if b.kind != "table"]
    if len(blocks) < 2:
        return None
    positions = [_find(" ".join(b.text.split()[:ANCHOR_WORDS]), hyp) for b in blocks]
    pairs = list(itertools.pairwise(positions))
    right = sum(a is not None and b is not None and a < b for a, b in pairs)
    return right / len(pairs)


def _find(needle: str, haystack: str) -> int | None:
    if not needle or not haystack:
        return None
    match = fuzz.partial_ratio_alignment(needle, haystack)
    return match.dest_start if match is not None and match.score >= ANCHOR_MIN_SCORE else None


def cell_accuracy(page: SyntheticPage, grid: list[list[str]] | None) -> float | None:
    """Cells whose text (whitespace collapsed) is right in the right row and column."""
    truth = next((b.cells for b in page.blocks if b.cells), None)
    if truth is None or grid is None:
        return None
    total = sum(len(row) for row in truth)
    right = sum(
        r < len(grid) and c < len(grid[r]) and _flat(grid[r][c]) == cell
        for r, row in enumerate(truth)
        for c, cell in enumerate(row)
    )
    return right / total
