"""Tesseract engine (CPU): Russian and English text through tesserocr, blocks from the shared layout module.

Tesseract reads each whole page once (its own page segmentation, word boxes and confidences); the
words become text lines, which the layout module (`analyse_page`) groups into labelled blocks,
titles, a column-aware reading order and ruled-table cells, as for the `rapidocr` engine. A
Russian page in clear print is read once more with English too, for its Latin symbols; the words
English then reads in letters both alphabets share go back to Russian (`tesseract_words`).

Binding: `tesserocr` (the API stays loaded between pages) measured 1.5x faster than `pytesseract`
(a `tesseract` process per page) with OpenMP off, 4x with the Debian CLI's default threads on 2
cores (see BENCHMARKS.md). Its wheel brings libtesseract; the language data (`*.traineddata`) come
from Debian's `tesseract-ocr-*` packages.

Settings come from the environment once (`ENV` below). Requests pick languages with `lang`: `ru`,
`en` or Tesseract codes, joined with `+` (`rus+eng`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from function.config import Settings, parse_env, register_engine_env
from function.document import TextLine
from function.engines.base import EngineLoadError, Slots, package_version
from function.engines.layout import PageOCR, shift_box
from function.engines.layout_engine import LayoutEngine
from function.engines.tesseract_thresholds import (
    FLAT_PAPER,
    MIN_CROP_CONF,
    OTSU,
    SOURCE_DPI,
    THRESHOLDING_METHOD,
    doubtful,
    sure_crop,
    thresholding_for,
    weight,
)
from function.engines.tesseract_words import (
    HARD_PAGE,
    MIN_WORD_CONF,
    SECOND_LANGS,
    SURE_PAGE,
    Word,
    langs_for_print,
    mostly,
    recognised_words,
    second_looks,
    text_line,
)
from function.errors import ConfigError
from function.options import Options

log = logging.getLogger(__name__)

DEFAULT_LANGS = "rus+eng"
# Short names a request may use; anything else is a Tesseract code (`rus`, `eng`, `deu`, ...).
ALIASES = {"ru": "rus", "en": "eng"}
# traineddata that are not languages: orientation/script detection, equations.
NOT_LANGUAGES = frozenset({"osd", "equ"})
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)
_LANGS_RE = re.compile(r"^[A-Za-z_]{2,16}(\+[A-Za-z_]{2,16})*$")

CROP_PAD = 12  # white border around a crop: Tesseract misreads glyphs that touch the image edge


def normalise_langs(value: str) -> str:
    """`ru+en` -> `rus+eng`: aliases resolved, duplicates dropped, order kept (it sets priority)."""
    codes = [ALIASES.get(part.strip().lower(), part.strip()) for part in value.split("+")]
    return "+".join(dict.fromkeys(codes))


def tesseract_langs(raw: str) -> str:
    """OCR_TESSERACT_LANGS's parser: Tesseract codes or aliases joined by `+`, normalised."""
    if not _LANGS_RE.match(raw):
        raise ConfigError(f"OCR_TESSERACT_LANGS must look like 'rus+eng' or 'ru+en', got {raw!r}")
    return normalise_langs(raw)


# variable -> (attribute, parser), registered with function/config.py; read once, in the constructor.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = register_engine_env(
    "tesseract", {"OCR_TESSERACT_LANGS": ("langs", tesseract_langs)}
)


def find_tessdata(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder of `*.traineddata`: `TESSDATA_PREFIX` (as Tesseract reads it), else Debian's."""
    env = os.environ if environ is None else environ
    prefix = env.get("TESSDATA_PREFIX")
    candidates = [Path(prefix), Path(prefix) / "tessdata"] if prefix else []
    candidates += [Path(d) for d in TESSDATA_DIRS]
    return next((d for d in candidates if any(d.glob("*.traineddata"))), None)


def installed_languages(tessdata: Path | None) -> list[str]:
    if tessdata is None:
        return []
    return sorted(p.stem for p in tessdata.glob("*.traineddata") if p.stem not in NOT_LANGUAGES)


class TesseractEngine(LayoutEngine):
    name = "tesseract"

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings)
        env = os.environ if environ is None else environ
        self.langs: str = parse_env(ENV, env).get("langs", DEFAULT_LANGS)
        self.psm = 3  # fully automatic page segmentation: Tesseract finds the lines of the page
        self.tessdata = find_tessdata(env)
        # Per document at once (OCR_CONCURRENCY), Tesseract APIs of its own (an API is stateful:
        # one call at a time): langs -> tesserocr.PyTessBaseAPI.
        self._apis: Slots[dict[str, Any]] = Slots()

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        started = time.perf_counter()
        # A libtesseract built with OpenMP would start its own threads per call; the PyPI wheel's
        # is built without. Read when the library loads, so set before the first import.
        os.environ.setdefault("OMP_THREAD_LIMIT", str(self.threads))
        if self.tessdata is None:
            raise EngineLoadError(
                "no Tesseract language data (*.traineddata) found in TESSDATA_PREFIX or "
                f"{', '.join(TESSDATA_DIRS)}; install tesseract-ocr-rus and tesseract-ocr-eng"
            )
        missing = [c for c in self.langs.split("+") if c not in self.languages()]
        if missing:
            raise EngineLoadError(
                f"OCR_TESSERACT_LANGS={self.langs!r}: {'+'.join(missing)} not installed in {self.tessdata}; "
                f"installed: {', '.join(installed_languages(self.tessdata))}"
            )
        first: dict[str, Any] = self._timed("models", lambda: self._build())
        self._timed("warm_up", lambda: self._warm_up(first))
        self._apis.add(first)
        if self.slots > 1:  # the other slots' APIs load beside the first requests, not before ready
            threading.Thread(target=self._more_slots, name="tesseract-slots", daemon=True).start()
        log.info(
            "tesseract engine loaded in %.2f s (%s from %s; %s slot(s), %s thread(s) each)",
            time.perf_counter() - started,
            self.langs,
            self.tessdata,
            self.slots,
            self.threads,
        )

    def _build(self) -> dict[str, Any]:
        apis = {self.langs: _build_api(self.tessdata, self.langs, self.psm)}
        self._load_layout()
        return apis

    def _more_slots(self) -> None:
        for _ in range(1, self.slots):
            try:
                self._apis.add({self.langs: _build_api(self.tessdata, self.langs, self.psm)})
            except Exception:  # the first slot serves on; documents wait for it in turn
                log.exception("tesseract: an extra slot could not be loaded")
                return

    def _api(self, apis: dict[str, Any], langs: str) -> Any:
        """A slot's API for a language set; built on first use (about 0.3 s for rus+eng) and kept."""
        if langs not in apis:
            apis[langs] = _build_api(self.tessdata, langs, self.psm)
        return apis[langs]

    def _warm_up(self, apis: dict[str, Any]) -> None:
        assert self._layout is not None
        self._layout.warm_up()
        self._read_lines(apis, np.full((64, 256, 3), 255, dtype=np.uint8))

    # ------------------------------------------------------------ identity

    @property
    def version(self) -> str:
        import tesserocr

        lib = tesserocr.tesseract_version().split()[1]
        binding, layout = package_version("tesserocr"), package_version("rapid-layout")
        return f"tesseract {lib} (tesserocr {binding}); rapid-layout {layout}"

    def settings(self) -> dict[str, object]:
        return {
            "langs": self.langs,
            "psm": self.psm,
            "min_word_conf": MIN_WORD_CONF,
            "thresholding_method": THRESHOLDING_METHOD,
            "flat_paper_otsu": FLAT_PAPER,
            "second_langs": SECOND_LANGS,  # read with them on a page in clear print (SURE_PAGE)
            "sure_page": SURE_PAGE,
            "hard_page": HARD_PAGE,
            "min_crop_conf": MIN_CROP_CONF,
            **self.layout_settings(),
        }

    def languages(self) -> list[str]:
        """Installed codes and the aliases of installed ones: what `lang` may name, joined with +."""
        codes = installed_languages(self.tessdata)
        return sorted(codes + [alias for alias, code in ALIASES.items() if code in codes])

    # ------------------------------------------------------------ OCR

    @contextmanager
    def _ocr(self, options: Options) -> Iterator[PageOCR]:
        page = _PageLangs(normalise_langs(options.lang) if options.lang else self.langs)
        with self._apis.borrow() as apis:
            yield PageOCR(
                lambda image: self._read_page(apis, image, page),
                lambda crop: self._read_crop(apis, crop, page.langs, page.unmix),
                lambda crop: self._read_text(apis, crop, page.langs, page.unmix),
                lambda crop: self._read_crop(apis, crop, page.langs, page.unmix),
            )

    def read_lines(self, rgb: np.ndarray, langs: str | None = None, psm: int | None = None) -> list[TextLine]:
        """Text lines of an RGB image (boxes in its pixels), built from Tesseract's words."""
        with self._apis.borrow() as apis:
            return self._read_lines(apis, rgb, langs, psm)

    def read_crop(self, crop: np.ndarray, langs: str | None = None) -> list[TextLine]:
        """Lines of a layout region, read on a white border as one block of text (PSM 6)."""
        with self._apis.borrow() as apis:
            return self._read_crop(apis, crop, langs)

    def read_text(self, crop: np.ndarray, langs: str | None = None) -> tuple[str, float | None]:
        """The one line of text in an RGB crop (a table cell's piece of a line), PSM 7."""
        with self._apis.borrow() as apis:
            return self._read_text(apis, crop, langs)

    def _read_page(self, apis: dict[str, Any], rgb: np.ndarray, page: _PageLangs) -> list[TextLine]:
        """A whole page's lines. A page in clear print, in a language whose pages carry another
        script's symbols, is read again with that language too, and so are its crops after it:
        `rus` alone reads the Latin symbols of a modern Russian page ("L1", "Tmin", a VIN) as
        Cyrillic look-alikes. Hard print is read in the first language alone, even where both were
        asked for: there English wins over garbled Russian words (measured on 18th-century books:
        CER 0.157 with `rus`, 0.206 with `rus+eng`). The crops follow the page: on a Russian page a
        table cell's "K" read as English is the Cyrillic "К" too."""
        words, thresholding = self._read_words(apis, rgb, page.langs, None)
        again = langs_for_print(page.langs, words)
        if again is not None:  # thresholded as before: Otsu on a damaged page took 59 s
            page.langs = again
            words, _ = self._read_words(apis, rgb, again, None, thresholding=thresholding)
        page.unmix = mostly(words, page.langs.split("+")[0])
        return [text_line(line) for line in words]

    def _read_lines(
        self,
        apis: dict[str, Any],
        rgb: np.ndarray,
        langs: str | None = None,
        psm: int | None = None,
        unmix: bool | None = None,
    ) -> list[TextLine]:
        return [text_line(line) for line in self._read_words(apis, rgb, langs or self.langs, psm, unmix)[0]]

    def _read_words(
        self,
        apis: dict[str, Any],
        rgb: np.ndarray,
        langs: str,
        psm: int | None,
        unmix: bool | None = None,
        thresholding: int | None = None,
    ) -> tuple[list[list[Word]], int]:
        """Tesseract's words and the thresholding that read them (`thresholding`, else the one
        the page's paper calls for, or the other where that reads doubtfully); with `unmix` (else
        where most words are the first language's), the look-alike words of another language read
        again in the first."""
        # A crop (psm given) is read with Sauvola first: its white border would pass for flat paper.
        default = thresholding_for(rgb) if psm is None else THRESHOLDING_METHOD
        chosen = default if thresholding is None else thresholding
        words = self._recognise(apis, rgb, langs, psm, chosen)
        if thresholding is None and (doubtful(words) if psm is None else not words):
            # Either threshold loses some real pages whole where the other reads them: Sauvola
            # with its window sized for SOURCE_DPI a digital table render (no word) and a slide on
            # a dark texture (garbage at 40 % confidence); Otsu a noisy, low-contrast page. The
            # read Tesseract is surer of wins. So too for a crop the first reads nothing in (a
            # table cell "Tmin, K"), unless the other's read is as doubtful as noise (a scanned
            # table's empty cells: 010 0.48 -> 0.59 with those).
            other = OTSU if chosen != OTSU else THRESHOLDING_METHOD
            second = self._recognise(apis, rgb, langs, psm, other)
            if weight(second) > weight(words) if psm is None else sure_crop(second):
                words, chosen = second, other
        second_looks(words, langs, unmix, lambda word, lang: self._reread(apis, rgb, word, lang, chosen))
        return words, chosen

    def _recognise(
        self, apis: dict[str, Any], rgb: np.ndarray, langs: str, psm: int | None, thresholding: int
    ) -> list[list[Word]]:
        api = self._api(apis, langs)
        api.SetPageSegMode(self.psm if psm is None else psm)
        api.SetVariable("thresholding_method", str(thresholding))
        # Raw pixels: SetImage(PIL image) encodes a BMP (holding the GIL) for Leptonica to parse,
        # 29 ms for an A4 page against 8 (BENCHMARKS.md). Tesseract does not copy them: `pixels`
        # stays referenced until Recognize is done.
        height, width = rgb.shape[:2]
        pixels = rgb.tobytes()
        api.SetImageBytes(pixels, width, height, 3, 3 * width)
        api.SetSourceResolution(SOURCE_DPI)
        api.Recognize()
        return recognised_words(api)

    def _reread(
        self, apis: dict[str, Any], rgb: np.ndarray, word: Word, langs: str, thresholding: int
    ) -> Word | None:
        """A word read again from its box, as one line in `langs`; None where that reads nothing."""
        x0, y0, x1, y1 = word.box
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        crop = _pad(np.ascontiguousarray(rgb[y0:y1, x0:x1]), CROP_PAD)
        words = [w for line in self._recognise(apis, crop, langs, 7, thresholding) for w in line]
        if not words:
            return None
        conf = sum(w.conf for w in words) / len(words)
        return Word(" ".join(w.text for w in words), word.box, conf, langs, all(w.known for w in words))

    def _read_crop(
        self, apis: dict[str, Any], crop: np.ndarray, langs: str | None, unmix: bool | None = None
    ) -> list[TextLine]:
        lines = self._read_lines(apis, _pad(crop, CROP_PAD), langs, 6, unmix)
        return [TextLine(ln.text, shift_box(ln.bbox, -CROP_PAD, -CROP_PAD), ln.score) for ln in lines]

    def _read_text(
        self, apis: dict[str, Any], crop: np.ndarray, langs: str | None, unmix: bool | None = None
    ) -> tuple[str, float | None]:
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            return "", None
        lines = self._read_lines(apis, _pad(crop, CROP_PAD), langs, 7, unmix)
        if not lines:
            return "", None
        scores = [ln.score for ln in lines if ln.score is not None]
        return " ".join(ln.text for ln in lines), (sum(scores) / len(scores) if scores else None)


@dataclass
class _PageLangs:
    """The languages one page is read in: the request's, widened or narrowed by the page pass
    (`_read_page`), and whether its crops' look-alike words are the first language's."""

    langs: str
    unmix: bool | None = None


def _build_api(tessdata: Path | None, langs: str, psm: int) -> Any:
    try:
        import tesserocr
    except ImportError as exc:
        raise EngineLoadError(f"the tesseract engine needs the package tesserocr: {exc}") from exc
    try:
        # The wheel's own default data path is "./": always pass Debian's (with a trailing slash).
        api = tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang=langs, psm=psm)
    except RuntimeError as exc:
        raise EngineLoadError(f"Tesseract could not load {langs!r} from {tessdata}: {exc}") from exc
    api.SetVariable("thresholding_method", str(THRESHOLDING_METHOD))
    return api


def _pad(crop: np.ndarray, pad: int) -> np.ndarray:
    h, w = crop.shape[:2]
    canvas = np.full((h + 2 * pad, w + 2 * pad, 3), 255, dtype=np.uint8)
    canvas[pad : pad + h, pad : pad + w] = crop
    return canvas
