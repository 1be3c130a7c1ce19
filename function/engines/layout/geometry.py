"""Box arithmetic: boxes are (x0, y0, x1, y1) in pixels, ints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from function.document import BBox, TextLine


def shift_box(b: BBox, dx: int, dy: int) -> BBox:
    return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)


def int_box(box: Sequence[float]) -> BBox:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))


def clip(b: BBox, width: int, height: int) -> BBox:
    return (
        min(max(b[0], 0), width),
        min(max(b[1], 0), height),
        min(max(b[2], 0), width),
        min(max(b[3], 0), height),
    )


def area(b: BBox) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def intersection(a: BBox, b: BBox) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def covered(inner: BBox, outer: BBox) -> float:
    """Share of `inner`'s area that lies inside `outer`."""
    return intersection(inner, outer) / max(1, area(inner))


def union(boxes: Sequence[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def box_height(b: BBox) -> int:
    return b[3] - b[1]


def median_line_height(lines: Sequence[TextLine]) -> float:
    """The page's typical line height: body text outnumbers titles and captions."""
    return float(statistics.median(box_height(ln.bbox) for ln in lines)) if lines else 0.0


def grow(b: BBox, pad: int) -> BBox:
    return (b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad)


def x_overlap(a: BBox, b: BBox) -> int:
    return min(a[2], b[2]) - max(a[0], b[0])
