"""The default CPU engine: each page's script picks its recogniser.

RapidOCR (PP-OCRv6) reads Latin and Chinese script best of the CPU recognisers but has no Cyrillic
model; Tesseract reads Cyrillic. So each page's script is detected first (Tesseract OSD,
`function.engines.script`): Cyrillic pages go to the `tesseract` engine, the rest to `rapidocr`.
A request's `lang` still decides: `en`/`ch` -> rapidocr, anything else Tesseract knows -> tesseract.
Both engines share the layout stage, so the output has the same structure whichever reads a page.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable

from function.config import Settings
from function.document import Document
from function.engines.base import Engine, PageImage, Slots
from function.engines.layout import rgb_pixels
from function.engines.layout_engine import LayoutEngine
from function.engines.rapidocr import RapidOCREngine
from function.engines.script import Script, build_osd, detect_script
from function.engines.tesseract import TesseractEngine, normalise_langs
from function.options import Options

log = logging.getLogger(__name__)

# Scripts Tesseract reads here (Debian's rus and eng data); every other script goes to RapidOCR.
TESSERACT_SCRIPTS = {"Cyrillic": "rus"}
# OSD's confidence below which its script may be wrong: on the dev set it called two English pages
# (a table scan, a small typewritten photo) Cyrillic at 0.1 and 1.4; Russian pages came at 1.1-34,
# all but one of them above this.
# An unsure Cyrillic page is read with English too, so an English page still comes back as
# English (Tesseract's, not RapidOCR's) rather than as Cyrillic look-alikes.
SURE_SCRIPT = 1.5
UNSURE_EXTRA_LANGS = "eng"
# What an unsure page's own text says: read as Cyrillic and English, a page whose letters are
# mostly Latin is English after all (OSD's two wrong calls), and RapidOCR reads it again.
_LATIN = re.compile(r"[A-Za-z]")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
RAPIDOCR_LANGS = frozenset({"en", "ch"})


class CPUEngine(Engine):
    name = "cpu"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.tesseract = TesseractEngine(settings)
        self.rapidocr = RapidOCREngine(settings)
        self.rapidocr.check_script = False  # pages in other scripts never reach it here
        self._osd: Slots[object] = Slots()

    def _load(self) -> None:
        self._timed("tesseract", self.tesseract.load)
        self._timed("rapidocr", self.rapidocr.load)
        for _ in range(self.slots):  # one OSD API per document at once: an API reads one page at a time
            self._osd.add(self._timed("osd", lambda: build_osd(self.tesseract.tessdata)))
        log.info("cpu engine loaded: pages in Cyrillic to tesseract, the others to rapidocr")

    @property
    def slots(self) -> int:
        return self.rapidocr.slots

    @property
    def version(self) -> str:
        return f"{self.rapidocr.version}; {self.tesseract.version}; script by tesseract osd"

    def settings(self) -> dict[str, object]:
        return {
            "rapidocr": self.rapidocr.settings(),
            "tesseract": self.tesseract.settings(),
            "tesseract_scripts": TESSERACT_SCRIPTS,
            "sure_script": SURE_SCRIPT,
            "unsure_latin_to": "rapidocr",
            "unknown_script": f"{UNSURE_EXTRA_LANGS}+{TESSERACT_SCRIPTS['Cyrillic']}",  # routing: in the key
        }

    def languages(self) -> list[str]:
        return sorted(set(self.tesseract.languages()) | RAPIDOCR_LANGS)

    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        if not self.ready:
            raise RuntimeError("cpu engine used before load()")
        return self.join(self._read(page, options) for page in pages)  # one page at a time

    def _read(self, page: PageImage, options: Options) -> Document:
        """One page read by the engine its script calls for; a page OSD was unsure was Cyrillic and
        whose text comes back mostly Latin is read again by RapidOCR."""
        read = Document(pages=[])
        script = None if options.lang else self._script(page)
        engine, page_options = self._by_lang(options) if script is None else self._for_script(script, options)
        engine._page(page, page_options, read)
        if script is not None and _unsure_cyrillic(script) and _latin(read):
            log.debug("page %s: unsure Cyrillic reads as Latin script; rapidocr reads it", page.index)
            read = Document(pages=[])
            self.rapidocr._page(page, options, read)
        return read

    def _by_lang(self, options: Options) -> tuple[LayoutEngine, Options]:
        """The engine a request's `lang` asks for."""
        return (self.rapidocr if options.lang in RAPIDOCR_LANGS else self.tesseract), options

    def _script(self, page: PageImage) -> Script:
        with self._osd.borrow() as osd:
            script = detect_script(osd, rgb_pixels(page.image))
        log.debug("page %s: script %s (%.1f)", page.index, script.name or "unknown", script.confidence)
        return script

    def _for_script(self, script: Script, options: Options) -> tuple[LayoutEngine, Options]:
        if not script.name:
            # Too little text for OSD (a line, a label, a receipt stub): Tesseract with Russian and
            # English reads either script, where RapidOCR would turn Cyrillic into Latin look-alikes.
            either = f"{UNSURE_EXTRA_LANGS}+{TESSERACT_SCRIPTS['Cyrillic']}"
            return self.tesseract, dataclasses.replace(options, lang=normalise_langs(either))
        langs = TESSERACT_SCRIPTS.get(script.name)
        if langs is None:
            return self.rapidocr, options
        if script.confidence < SURE_SCRIPT:
            langs = f"{langs}+{UNSURE_EXTRA_LANGS}"
        return self.tesseract, dataclasses.replace(options, lang=normalise_langs(langs))


def _unsure_cyrillic(script: Script) -> bool:
    return script.name in TESSERACT_SCRIPTS and script.confidence < SURE_SCRIPT


def _latin(document: Document) -> bool:
    text = "".join(b.text for page in document.pages for b in page.blocks)
    return len(_LATIN.findall(text)) > 2 * len(_CYRILLIC.findall(text))
