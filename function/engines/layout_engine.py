"""The base of the CPU engines: their own OCR reads text lines, the layout package gives the structure.

A subclass loads its recogniser and says how to borrow it for one page (`_ocr`); this class owns
the layout model, the page loop and the warnings, so `predict` is written once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager

import numpy as np

from function.config import Settings
from function.document import Document, Page
from function.engines.base import Engine, PageImage, slot_threads
from function.engines.layout import (
    LayoutModel,
    PageOCR,
    analyse_page,
    cpu_threads,
    layout_settings,
    rgb_pixels,
)
from function.options import Options


class LayoutEngine(Engine):
    """An engine whose text lines go through the shared layout stage (`function.engines.layout`)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.layout_conf_thresh = 0.5
        self.layout_iou_thresh = 0.5
        # Documents at once (OCR_CONCURRENCY) and the threads of each inference: the CPUs shared
        # out between them, so parallel documents do not oversubscribe the cores.
        self.slots = max(1, settings.concurrency)
        self.threads = slot_threads(settings, cpu_threads())
        self._layout: LayoutModel | None = None

    def _load_layout(self) -> LayoutModel:
        self._layout = LayoutModel(
            conf_thresh=self.layout_conf_thresh, iou_thresh=self.layout_iou_thresh, threads=self.threads
        )
        return self._layout

    def layout_settings(self) -> dict[str, object]:
        """The layout stage's part of `settings()` (the fingerprint)."""
        return layout_settings(self.layout_conf_thresh, self.layout_iou_thresh)

    @abstractmethod
    def _ocr(self, options: Options) -> AbstractContextManager[PageOCR]:
        """The engine's OCR for one page, borrowed from a slot for as long as the page takes."""

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        if not self.ready or self._layout is None:
            raise RuntimeError(f"{self.name} engine used before load()")
        document = Document(pages=[])
        for page in pages:  # one at a time: a PDF's pages are rendered as they are asked for
            self._page(page, options, document)
        return document

    def _page(self, page: PageImage, options: Options, document: Document) -> None:
        """One page read into `document`: its blocks, its figures' crops and any warning about it."""
        assert self._layout is not None
        rgb = rgb_pixels(page.image)
        with self._ocr(options) as ocr:
            read, crops = analyse_page(rgb, page.index, self._layout, ocr)
        document.pages.append(read)
        document.images.update(crops)
        document.warnings.extend(self._check(read, rgb))

    def _check(self, page: Page, rgb: np.ndarray) -> list[str]:
        """Warnings about a page just read, for the client (a script the engine cannot read, say);
        an engine may also take back what it misread."""
        return []
