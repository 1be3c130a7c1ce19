"""Straighten a scanned page before OCR: a few degrees of skew break ruled-table detection
(it looks for horizontal and vertical rules) and cost the recognisers accuracy."""

from __future__ import annotations

import math

import cv2
import numpy as np

MAX_DEGREES = 5.0
MIN_DEGREES = 0.3  # below this a page is left as it is: resampling costs more than it brings
Box = tuple[int, int, int, int]  # x0, y0, x1, y1
_WORK_SIDE = 1000  # the angle is searched on a copy this size: enough for 0.1° resolution


def estimate_skew(rgb: np.ndarray) -> float:
    """The rotation (degrees, counter-clockwise) that makes the page's text lines level.

    Projection profiles: rows of a level page alternate between ink and gaps, so the row sums
    of the ink are sharpest (largest squared differences) at the right angle. Coarse, then fine.
    """
    ink = _ink(rgb)
    if ink.mean() < 0.5:  # a blank page has no lines to level
        return 0.0
    coarse = _best(ink, np.arange(-MAX_DEGREES, MAX_DEGREES + 0.01, 0.5))
    return _best(ink, np.arange(coarse - 0.5, coarse + 0.51, 0.1))


def deskew(rgb: np.ndarray) -> np.ndarray:
    """The page rotated level (same size, white corners), or the page itself if it is level."""
    return straighten(rgb)[0]


def straighten(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The page rotated level, and the angle it was turned by (0.0: left as it was)."""
    angle = estimate_skew(rgb)
    if abs(angle) < MIN_DEGREES:
        return rgb, 0.0
    height, width = rgb.shape[:2]
    matrix = turn_matrix(angle, width, height)
    level = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
    return level, angle


def turn_matrix(angle: float, width: int, height: int) -> np.ndarray:
    """The 2 x 3 affine matrix turning a page of this size by `angle` degrees about its centre."""
    return cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)


def unrotate_box(box: Box, angle: float, width: int, height: int) -> Box:
    """A box of the straightened page in the pixels of the page as it came: its corners turned back
    by `angle` about the centre, the box around them, inside the page. A box inside another stays
    inside it, so a block still holds its lines."""
    if not angle:
        return box
    matrix = turn_matrix(-angle, width, height)
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64) @ matrix.T
    (lx, ly), (hx, hy) = corners.min(axis=0), corners.max(axis=0)
    return (
        min(max(math.floor(lx), 0), width),
        min(max(math.floor(ly), 0), height),
        min(max(math.ceil(hx), 0), width),
        min(max(math.ceil(hy), 0), height),
    )


def _ink(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, _WORK_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.threshold(small, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)[1]


def _best(ink: np.ndarray, angles: np.ndarray) -> float:
    height, width = ink.shape
    center = (width / 2, height / 2)

    def sharpness(angle: float) -> float:
        matrix = cv2.getRotationMatrix2D(center, float(angle), 1.0)
        level = cv2.warpAffine(ink, matrix, (width, height), flags=cv2.INTER_NEAREST)
        return float(np.square(np.diff(level.sum(axis=1, dtype=np.float64))).sum())

    return round(float(max(angles, key=sharpness)), 2)
