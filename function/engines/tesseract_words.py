"""Tesseract's words of one recognition, as text lines: specks and rules left out, and the words a
second language read where the first one's letters look the same marked for a second look.

Read with two languages (`rus+eng`), Tesseract reads each word with the first and tries the second
where the first is unsure, keeping whichever it is surer of. That reads the Latin symbols of a
Russian page ("Tmin", "L1", a VIN) that `rus` alone turns into Cyrillic look-alikes; but it also
reads Russian words written in letters both alphabets share ("Н.", "К", "Томск") as English
("H.", "K", "TOMCK"). Such a word is no evidence of the second language: `lookalike` marks it,
and the engine reads its box again in the first language alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from function.document import BBox, TextLine
from function.engines.layout.geometry import union

# Words Tesseract is less sure of are dropped. 10 dropped real words of hard print (measured on
# the dev set: 18th-century Russian CER 0.209 with 10, 0.153 with 0, English unchanged); specks
# and rules still go by their look (`_RULE_CHARS` under 60).
MIN_WORD_CONF = 0.0
_RULE_CHARS = re.compile(r"^[|\[\]_\-—–=~.,:;'\"`!()/\\]+$")  # what table rules and specks read as
# Letters of one alphabet drawn like letters of the other (Latin and Russian Cyrillic), per script.
LOOKALIKES = {
    "Latin": frozenset("ABCEHKMOPTXYaceopxy"),
    "Cyrillic": frozenset("АВСЕНКМОРТХУасеорху"),
}
SCRIPT_OF_LANG = {"eng": "Latin", "rus": "Cyrillic"}
# A language whose pages carry symbols in another one's script, read with it where in doubt.
SECOND_LANGS = {"rus": "eng"}
# Mean word confidence (0-100) of a page in clear print: modern Russian pages read at 88-96 on the
# dev set, 18th-century ones at 63-70 with `rus` (69-76 with `rus+eng`). Under HARD_PAGE a page
# read with both is hard print; a damaged page of Russian and English (80) is not.
SURE_PAGE = 82.0
HARD_PAGE = 77.0
# A look-alike word read at least this sure is read again in the first language ("TOMCK" 91, "K" 92).
SURE_WORD = 60.0


@dataclass
class Word:
    text: str
    box: BBox
    conf: float  # 0-100, as Tesseract gives it
    lang: str  # the traineddata that read it
    known: bool = False  # found in that language's word list


def recognised_words(api: Any) -> list[list[Word]]:
    """The last recognition's words, in Tesseract's text lines (lines without a word left out)."""
    from tesserocr import RIL, iterate_level

    lines: list[list[Word]] = []
    iterator = api.GetIterator()
    if iterator is None:  # nothing on the image
        return []
    for word in iterate_level(iterator, RIL.WORD):
        if word.Empty(RIL.WORD):  # a blank image still yields one empty position
            continue
        if word.IsAtBeginningOf(RIL.TEXTLINE) or not lines:
            lines.append([])
        text = (word.GetUTF8Text(RIL.WORD) or "").strip()
        box = word.BoundingBox(RIL.WORD)
        conf = float(word.Confidence(RIL.WORD))
        if text and box and conf >= MIN_WORD_CONF:
            x0, y0, x1, y1 = (int(v) for v in box)
            lang, known = word.WordRecognitionLanguage() or "", bool(word.WordIsFromDictionary())
            lines[-1].append(Word(text, (x0, y0, x1, y1), conf, lang, known))
    return [words for words in map(keep_words, lines) if words]


def keep_words(line: list[Word]) -> list[Word]:
    """A line's words without the specks and rules among them (`is_word`), but with the commas,
    semicolons and colons set apart between words: 18th-century print sets a space before them, and
    Tesseract doubts a lone mark (dev set, c18: BoW 0.5595 -> 0.5525, CER 0.157 -> 0.154)."""
    return [w for i, w in enumerate(line) if is_word(w.text, w.conf) or _spaced_mark(line, i)]


def _spaced_mark(line: list[Word], i: int) -> bool:
    """A comma, semicolon or colon between two words with letters: punctuation, not a speck."""
    return (
        line[i].text in (",", ";", ":")
        and 0 < i < len(line) - 1
        and letters(line[i - 1]) > 0
        and letters(line[i + 1]) > 0
    )


def is_word(text: str, conf: float) -> bool:
    """Tesseract reads rules and specks as low-confidence punctuation; real text keeps its word."""
    return conf >= MIN_WORD_CONF and not (conf < 60 and _RULE_CHARS.match(text))


def lookalike(word: Word, first_lang: str) -> bool:
    """A word another language than the first read, whose letters the first's alphabet also has."""
    script = SCRIPT_OF_LANG.get(word.lang)
    if word.lang == first_lang or script is None or SCRIPT_OF_LANG.get(first_lang) in (None, script):
        return False
    alpha = [c for c in word.text if c.isalpha()]
    return bool(alpha) and all(c in LOOKALIKES[script] for c in alpha)


def in_context(line: list[Word], i: int, first_lang: str, alone: bool) -> bool:
    """Whether a look-alike word `line[i]` stands among the first language's words: the nearest word
    with letters on either side is, and none is another's ("App" beside "Store" stays English).
    A word without such neighbours goes by `alone` (the page's or the crop's language)."""
    near = [
        next((w.lang for w in side if letters(w) > 0), None) for side in (reversed(line[:i]), line[i + 1 :])
    ]
    langs = {lang for lang in near if lang is not None}
    return langs == {first_lang} or (not langs and alone)


def foreign_lookalike(line: list[Word], i: int, first: str, alone: bool, unmix: bool | None) -> bool:
    """Whether `line[i]` is a look-alike word to read again in `first`: read with some confidence
    (a doubtful one is noise in any alphabet), and on a crop of a page in `first` (`unmix`: a table
    cell "Tmin, K"), or on a page among `first`'s words (`in_context`; `alone`: the page's language)."""
    word = line[i]
    if word.conf < SURE_WORD or not lookalike(word, first):
        return False
    return unmix if unmix is not None else in_context(line, i, first, alone)


def stray(line: list[Word], i: int, first: str, second: str, alone: bool) -> bool:
    """Whether `line[i]`, read in `first`, stands among `second`'s words on a page mostly not in
    `first` (`alone` False): an English word a `rus+eng` read took for Russian ("раде", "page")."""
    word = line[i]
    return not alone and word.lang == first and letters(word) > 0 and in_context(line, i, second, False)


def unknown(word: Word, first: str) -> bool:
    """A word of three letters or more read in `first` that `first`'s word list does not know:
    perhaps a word of the second language in look-alike letters ("Excel" read "Ехсе]")."""
    return word.lang == first and not word.known and letters(word) >= 3


def known_instead(again: Word, word: Word) -> bool:
    """Whether the other language's read of a word replaces the first's. Tesseract is as sure of
    "раде" in Russian (95, a word it knows) as of "page" in English (91): a sure read of a word the
    other language knows wins, with a letter more or less ("Ехсе]", "Excel"). Not so a Russian
    name in English text: "Омск" reads "Omck" (68, a word English does not know)."""
    return again.known and again.conf >= SURE_WORD and abs(letters(again) - letters(word)) <= 1


def letters(word: Word) -> int:
    return sum(c.isalpha() for c in word.text)


def text_line(words: list[Word]) -> TextLine:
    """One line from its words: box union, mean confidence (0-1)."""
    pieces = tuple(TextLine(w.text, w.box, round(w.conf / 100, 4)) for w in words)
    return TextLine(line_text(words), union([w.box for w in words]), line_score(words), pieces)


def line_text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


def line_score(words: list[Word]) -> float:
    """A line's score: its words' mean confidence, 0-1."""
    return round(sum(w.conf for w in words) / len(words) / 100, 4)


def mostly(lines: list[list[Word]], lang: str) -> bool:
    """Whether most of the words read hold letters read in `lang`: only then is a look-alike word
    more likely that language's (an English page read with `rus+eng` keeps its English)."""
    langs = [w.lang for line in lines for w in line if letters(w) > 0]
    return bool(langs) and langs.count(lang) > len(langs) / 2


def mean_conf(lines: list[list[Word]]) -> float | None:
    """Tesseract's mean word confidence (0-100) on a read; None where it read no word."""
    confs = [w.conf for line in lines for w in line]
    return sum(confs) / len(confs) if confs else None


def langs_for_print(langs: str, words: list[list[Word]]) -> str | None:
    """The languages to read a page again in, from how its first read went; None to keep it.

    Clear print in a language with a second one (`rus`): both. Hard print read with both, in
    words mostly the first's: the first alone (English wins over garbled old Russian words)."""
    first, _, rest = langs.partition("+")
    second = SECOND_LANGS.get(first)
    if second is None or rest not in ("", second):
        return None
    mean = mean_conf(words)
    if mean is None:
        return None
    if not rest and mean >= SURE_PAGE:
        return f"{first}+{second}"
    if rest and mean < HARD_PAGE and mostly(words, first):
        return first
    return None


def second_looks(
    words: list[list[Word]], langs: str, unmix: bool | None, reread: Callable[[Word, str], Word | None]
) -> None:
    """Words read in the wrong one of two languages, read again (`reread(word, lang)`) in the right
    one, in place: a look-alike word of the second among the first's words ("TOMCK" on a Russian
    page) in the first; a word of the first among the second's words, on a page mostly in the
    second ("раде" for "page" on an English page read with `rus+eng`), and a word of the first its
    word list does not know ("Ехсе]" for "Excel"), in the second where that reads a known word surely."""
    first, _, rest = langs.partition("+")
    second = rest.split("+")[0]
    alone = mostly(words, first)
    for line in words:
        for i, word in enumerate(line):
            if foreign_lookalike(line, i, first, alone, unmix):
                again = reread(word, first)
                # Noise read again is noise ("ea" -> "|}"): then the first read stays.
                line[i] = again if again and letters(again) == letters(word) else word
            elif second and (stray(line, i, first, second, alone) or unknown(word, first)):
                again = reread(word, second)
                if again and known_instead(again, word):
                    line[i] = again
