"""Page pixels as the models read them."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """The page's RGB pixels; an RGB page (what function/pages.py yields) is not copied by convert()."""
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def bgr(rgb: np.ndarray) -> np.ndarray:
    """The same pixels in BGR order, as the ONNX pipelines read an array. OpenCV swaps an A4 page's
    channels in 0.5 ms, where `np.ascontiguousarray(rgb[..., ::-1])` took 20 ms (BENCHMARKS.md)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
