"""How Tesseract binarises a read: Otsu or Sauvola by the page's paper, and whether a read went
badly enough to try the other (`TesseractEngine._read_words` reads with them)."""

from __future__ import annotations

import cv2
import numpy as np

from function.engines.tesseract_words import Word, line_score, line_text, mean_conf

# Sauvola (local) binarisation: the default global Otsu loses whole noisy, low-contrast pages
# (measured: a damaged Russian page CER 1.0 with Otsu, 0.003 with Sauvola; see BENCHMARKS.md).
THRESHOLDING_METHOD = 2
# But on flat paper, where this share of the pixels has the page's one commonest grey (a digital
# render, a cleaned scan: 0.46-0.98 on the dev set; book photos and raw scans 0.03-0.32), a global
# threshold is all a local one could be, and Sauvola's window, narrower than a bold or large
# glyph's stroke, hollows it out: a bold table row of a research note read "( ia ( bend nD".
# There Otsu reads first (dev set, English: CER 0.167 -> 0.157, typewritten 0.035 -> 0.026).
FLAT_PAPER = 0.4
# The resolution Tesseract is told, which sizes its Sauvola window among others: the 96 dpi that
# Pillow's BMP carried when pages were passed as images, kept so results stay as measured.
SOURCE_DPI = 96
OTSU = 0
# A page read with fewer characters, or a lower mean confidence, is read again with Otsu. At 0.7
# a slide on a dark texture (0.75 with Sauvola, 0.94 with Otsu) kept its garbled Sauvola read;
# on the dev set only that slide and a flow chart (0.79) lie between 0.7 and 0.8.
DOUBTFUL_CHARS = 40
DOUBTFUL_CONFIDENCE = 0.8
# Mean word confidence (0-100) an Otsu read of a crop Sauvola found empty needs: a cell's symbols
# read at 48 ("Tmin, K"), the noise in a scanned table's empty cells at 6-29.
MIN_CROP_CONF = 40.0


def thresholding_for(rgb: np.ndarray) -> int:
    """Otsu for an image of flat paper, else Sauvola (see FLAT_PAPER); judged on every other pixel."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[::2, ::2]), cv2.COLOR_RGB2GRAY)
    flat = np.bincount(grey.ravel(), minlength=256).max() >= FLAT_PAPER * grey.size
    return OTSU if flat else THRESHOLDING_METHOD


def weight(words: list[list[Word]]) -> float:
    """Characters read, weighed by Tesseract's confidence in them (per line, as the lines score)."""
    return sum(len(line_text(line)) * line_score(line) for line in words if line)


def doubtful(words: list[list[Word]]) -> bool:
    """A page read that may have failed: (almost) no text, or text Tesseract itself doubts."""
    chars = sum(len(line_text(line)) for line in words)
    return chars < DOUBTFUL_CHARS or weight(words) < DOUBTFUL_CONFIDENCE * chars


def sure_crop(words: list[list[Word]]) -> bool:
    """A crop's read Tesseract is sure enough of to stand for an empty first read."""
    mean = mean_conf(words)
    return mean is not None and mean >= MIN_CROP_CONF
