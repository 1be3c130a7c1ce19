"""OCR quality on real pages (the dev set), the function against the bare engines, in one run.

    python -m bench.quality.real                       # every page, every CPU engine and its bare engine
    python -m bench.quality.real --quick               # a few pages (CI)
    python -m bench.quality.real --readers tesseract,tesseract-bare --pages '_rus_'

The dev set (49 real pages with ground truth and its scorer) lives outside the repository, in
`../shared/devset` from the repository root (or `--devset`); it is never copied in.

Readers, each on the same pages:
- `tesseract`, `rapidocr`, `cpu`: the function's own path, `engine.predict` -> Markdown
  (`render_markdown`) -> Markdown syntax stripped (`bench.quality.plain`) -> scored;
  `tesseract` is told the page's language (`lang=en|ru`), as the bare command is; `cpu` is not
  (it detects the script); `rapidocr` gets the English pages only (it has no Cyrillic model);
- `tesseract-bare`: the `tesseract IMG - -l eng|rus` command, its text as printed;
- `rapidocr-bare`: the same PP-OCRv6 models alone, text lines in the detector's order.

Scores come from the dev set's own `score.py` (CER, WER, bag-of-words error), grouped by lang,
subset and layout as macro means; seconds per page are wall-clock per reader.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from bench.quality.plain import plain_text
from function.config import Settings
from function.engines.base import Engine, PageImage
from function.options import Options
from function.pages import PageLimits, PageSource, sniff
from function.render import render_markdown

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEVSET = ROOT.parent / "shared" / "devset"
ENGINES = ("tesseract", "rapidocr", "cpu")
BARE = {"tesseract": "tesseract-bare", "rapidocr": "rapidocr-bare"}
LATIN_ONLY = frozenset({"rapidocr", "rapidocr-bare"})
# The quick slice (CI): the lightest page of three kinds, so every reader runs in seconds: an
# English scan, a digital Russian decree, an 18th-century Russian print.
QUICK = ("015_eng_eurotext", "046_rus_decree842", "028_rus_c18_138f1c")
GROUPS = ("lang", "subset", "layout")
LANG_HINT = {"eng": "en", "rus": "ru"}

Reader = Callable[["DevPage", Image.Image], str]  # (page, its image as the function gets it) -> text


class DevsetMissing(SystemExit):
    pass


@dataclass(frozen=True)
class DevPage:
    stem: str
    path: Path
    lang: str
    subset: str
    layout: str

    def truth(self) -> str:
        return self.path.with_name(self.stem + ".gt.txt").read_text(encoding="utf-8")

    def image(self) -> Image.Image:
        """The page as the function's page source hands it to an engine (EXIF orientation applied,
        transparency flattened onto white, RGB)."""
        data = self.path.read_bytes()
        limits = PageLimits(max_pixels=10**9, max_pages=1, pdf_dpi=200)
        (page,) = PageSource(data, sniff(data), None, limits)
        return page.image


@dataclass
class Row:
    reader: str
    page: str
    lang: str
    subset: str
    layout: str
    seconds: float
    cer: float
    wer: float
    bow: float
    warnings: list[str]


# ---------------------------------------------------------------- the dev set


def load_devset(devset: Path) -> tuple[list[DevPage], ModuleType]:
    """The dev set's pages (manifest order) and its scorer module; a clear exit when it is missing."""
    manifest, scorer = devset / "manifest.tsv", devset / "score.py"
    if not manifest.is_file() or not scorer.is_file():
        raise DevsetMissing(
            f"the dev set is missing: no manifest.tsv and score.py in {devset}. It lives outside the "
            "repository (../shared/devset from its root); pass --devset DIR where it is elsewhere."
        )
    with manifest.open(encoding="utf-8") as f:
        pages = [
            DevPage(Path(r["file"]).stem, devset / r["file"], r["lang"], r["subset"], r["layout"])
            for r in csv.DictReader(f, delimiter="\t")
        ]
    spec = importlib.util.spec_from_file_location("devset_score", scorer)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return pages, module


# ---------------------------------------------------------------- readers


def function_reader(engine: Engine, lang_hint: bool) -> Reader:
    """The function's path: predict, render Markdown, strip its syntax. Keeps the warnings seen."""

    def read(page: DevPage, image: Image.Image) -> str:
        options = Options(lang=LANG_HINT[page.lang]) if lang_hint else Options()
        document = engine.predict([PageImage(0, image)], options)
        read.warnings = list(getattr(document, "warnings", []) or [])  # type: ignore[attr-defined]
        return plain_text(render_markdown(document))

    read.warnings = []  # type: ignore[attr-defined]
    return read


def tesseract_bare(page: DevPage, image: Image.Image) -> str:
    """`tesseract IMG - -l eng|rus` on the file itself (its resolution tag included), the CLI's
    defaults; one OpenMP thread, as our engine runs."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    cmd = ["tesseract", str(page.path), "stdout", "-l", page.lang]
    return subprocess.run(cmd, capture_output=True, check=True, env=env).stdout.decode()


def rapidocr_bare(engine: Engine) -> Reader:
    def read(page: DevPage, image: Image.Image) -> str:
        lines = engine.read_lines(np.asarray(image))  # type: ignore[attr-defined]
        return "\n".join(ln.text for ln in lines)

    return read


def build_readers(names: list[str]) -> dict[str, Reader]:
    from function.engines import create_engine

    engines: dict[str, Engine] = {}

    def engine(name: str) -> Engine:
        if name not in engines:
            engines[name] = create_engine(name, Settings())
            engines[name].load()
        return engines[name]

    readers: dict[str, Reader] = {}
    for name in names:
        if name == "tesseract-bare":
            readers[name] = tesseract_bare
        elif name == "rapidocr-bare":
            readers[name] = rapidocr_bare(engine("rapidocr"))
        elif name in ENGINES:
            readers[name] = function_reader(engine(name), lang_hint=name == "tesseract")
        else:
            raise SystemExit(f"unknown reader {name!r}; known: {', '.join([*ENGINES, *BARE.values()])}")
    return readers


# ---------------------------------------------------------------- running


def run(pages: list[DevPage], readers: dict[str, Reader], scorer: ModuleType) -> list[Row]:
    rows = []
    for page in pages:
        image, truth = page.image(), page.truth()
        for name, read in readers.items():
            if name in LATIN_ONLY and page.lang != "eng":
                continue
            started = time.perf_counter()
            text = read(page, image)
            seconds = time.perf_counter() - started
            s = scorer.page_scores(truth, text)
            warnings = list(getattr(read, "warnings", []))
            meta = (page.stem, page.lang, page.subset, page.layout)
            rows.append(Row(name, *meta, seconds, s["cer"], s["wer"], s["bow"], warnings))
            log.info("%-15s %-28s CER %.3f BoW %.3f %5.1f s", name, page.stem, s["cer"], s["bow"], seconds)
    return rows


# ---------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def group_table(rows: list[Row], key: str) -> str:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(getattr(row, key), row.reader)].append(row)
        groups[("ALL", row.reader)].append(row)
    lines = [f"| {key} | reader | pages | CER | WER | BoW | s/page |", "|---|---|---:|---:|---:|---:|---:|"]
    for (group, reader), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] == "ALL", kv[0])):
        lines.append(
            f"| {group} | {reader} | {len(rs)} | {_mean([r.cer for r in rs]):.3f} | "
            f"{_mean([r.wer for r in rs]):.3f} | {_mean([r.bow for r in rs]):.3f} | "
            f"{_mean([r.seconds for r in rs]):.2f} |"
        )
    return "\n".join(lines)


def page_table(rows: list[Row]) -> str:
    readers = list(dict.fromkeys(r.reader for r in rows))
    by_page: dict[str, dict[str, Row]] = defaultdict(dict)
    for row in rows:
        by_page[row.page][row.reader] = row
    head = "| page | " + " | ".join(f"{r} CER / BoW" for r in readers) + " |"
    lines = [head, "|---|" + "---:|" * len(readers)]
    for page, got in by_page.items():
        cells = [f"{got[r].cer:.3f} / {got[r].bow:.3f}" if r in got else "–" for r in readers]
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows: list[Row], command: str) -> str:
    parts = [f"Command: `{command}`"]
    parts += [f"By {key}:\n\n" + group_table(rows, key) for key in GROUPS]
    parts.append("Per page (CER / BoW):\n\n" + page_table(rows))
    warned = sorted({(r.reader, r.page, w) for r in rows for w in r.warnings})
    if warned:
        parts.append("Warnings:\n\n" + "\n".join(f"- {r} {p}: {w}" for r, p, w in warned))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- command line


def default_readers() -> list[str]:
    return ["tesseract", "tesseract-bare", "rapidocr", "rapidocr-bare", "cpu"]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devset", type=Path, default=DEVSET, help=f"the dev set (default {DEVSET})")
    parser.add_argument("--readers", default=",".join(default_readers()), help="comma-separated")
    parser.add_argument("--pages", help="only pages whose name matches this regular expression")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--out", type=Path, help="write report.md and results.json here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    pages, scorer = load_devset(args.devset)
    if args.quick:
        pages = [p for p in pages if p.stem in QUICK]
    if args.pages:
        pages = [p for p in pages if re.search(args.pages, p.stem)]
    rows = run(pages, build_readers(args.readers.split(",")), scorer)
    command = "python -m bench.quality.real " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(rows, command.strip())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text)
        (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(text)
    return rows


if __name__ == "__main__":
    main()
