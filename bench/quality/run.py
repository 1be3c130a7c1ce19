"""OCR quality of every CPU engine, layout pipeline against the bare engine, on the same pages.

    python -m bench.quality.run                 # 1 seed: 9 clean + 9 damaged pages, a few minutes
    python -m bench.quality.run --seeds 3 --json results.json

Readers: `tesseract` and `rapidocr` are our engines (layout blocks, reading order, table cells);
`tesseract-cli` is the bare `tesseract` command (`-l rus+eng --psm 3`, its text as printed) and
`rapidocr-bare` the same PP-OCRv6 models without the layout stage (lines in detector order).
RapidOCR has no Cyrillic model, so its readers get only the English pages. Scores: CER and WER of
the whole page (reading order errors count), reading-order correctness, table cell accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.quality.generate import Case, cases
from bench.quality.score import Score, score_page
from function.config import Settings
from function.engines.base import Engine, PageImage
from function.options import Options

log = logging.getLogger(__name__)

# reads an image: (text in reading order, table grid or None)
Reader = Callable[[Image.Image], tuple[str, list[list[str]] | None]]
CLI_LANGS = "rus+eng"
LATIN_ONLY = {"rapidocr", "rapidocr-bare"}


@dataclass
class Row:
    reader: str
    case: str
    lang: str
    kind: str
    damaged: bool
    seconds: float
    score: Score


def pipeline_reader(engine: Engine) -> Reader:
    def read(image: Image.Image) -> tuple[str, list[list[str]] | None]:
        page = engine.predict([PageImage(0, image)], Options()).pages[0]
        blocks = page.ordered_blocks()
        grid = next((b.table.grid() for b in blocks if b.table is not None), None)
        return "\n".join(b.text for b in blocks), grid

    return read


def tesseract_cli_reader(image: Image.Image) -> tuple[str, list[list[str]] | None]:
    # One thread, as our engine runs: the CLI's default OpenMP threads thrash on a 2-core machine.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        image.save(f.name)
        cmd = ["tesseract", f.name, "stdout", "-l", CLI_LANGS, "--psm", "3"]
        out = subprocess.run(cmd, capture_output=True, check=True, env=env)
    return out.stdout.decode(), None


def rapidocr_bare_reader(engine: Engine) -> Reader:
    def read(image: Image.Image) -> tuple[str, list[list[str]] | None]:
        lines = engine.read_lines(np.asarray(image.convert("RGB")))  # type: ignore[attr-defined]
        return "\n".join(ln.text for ln in lines), None

    return read


def readers(names: list[str]) -> dict[str, Reader]:
    from function.engines import create_engine

    built: dict[str, Reader] = {}
    engines: dict[str, Engine] = {}
    for name in names:
        base = name.removesuffix("-bare")
        if base in ("tesseract", "rapidocr") and base not in engines:
            engines[base] = create_engine(base, Settings())
            engines[base].load()
        if name == "tesseract-cli":
            built[name] = tesseract_cli_reader
        elif name == "rapidocr-bare":
            built[name] = rapidocr_bare_reader(engines["rapidocr"])
        else:
            built[name] = pipeline_reader(engines[name])
    return built


def run(reader_names: list[str], seeds: int) -> list[Row]:
    chosen = readers(reader_names)
    rows = []
    for damaged in (False, True):
        for case in cases(seeds, damaged):
            for name, read in chosen.items():
                if name in LATIN_ONLY and case.lang != "en":
                    continue
                rows.append(_measure(name, read, case, damaged))
    return rows


def _measure(name: str, read: Reader, case: Case, damaged: bool) -> Row:
    started = time.perf_counter()
    text, grid = read(case.image)
    seconds = time.perf_counter() - started
    score = score_page(case.page, text, grid)
    log.info("%-14s %-26s CER %.3f (%.1f s; %s)", name, case.name, score.cer, seconds, case.damage.describe())
    return Row(name, case.name, case.lang, case.kind, damaged, seconds, score)


# ---------------------------------------------------------------- report


def _mean(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{100 * statistics.mean(known):.1f}" if known else "–"


def table(rows: list[Row], key: Callable[[Row], str], title: str) -> str:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(key(row), row.reader)].append(row)
    lines = [
        f"| {title} | reader | pages | CER % | WER % | order % | cells % | s/page |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (group, reader), rs in sorted(groups.items()):
        lines.append(
            f"| {group} | {reader} | {len(rs)} | {_mean([r.score.cer for r in rs])} | "
            f"{_mean([r.score.wer for r in rs])} | {_mean([r.score.order for r in rs])} | "
            f"{_mean([r.score.cells for r in rs])} | {statistics.mean(r.seconds for r in rs):.2f} |"
        )
    return "\n".join(lines)


def report(rows: list[Row]) -> str:
    damaged = [r for r in rows if r.damaged]
    clean = [r for r in rows if not r.damaged]
    return "\n\n".join(
        [
            "Damaged pages, per language:\n\n" + table(damaged, lambda r: r.lang, "lang"),
            "Damaged pages, per layout:\n\n" + table(damaged, lambda r: r.kind, "layout"),
            "Clean pages, per language:\n\n" + table(clean, lambda r: r.lang, "lang"),
            "Clean pages, per layout:\n\n" + table(clean, lambda r: r.kind, "layout"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="variants of each language and layout (9 pages each)"
    )
    parser.add_argument(
        "--readers", default="tesseract,tesseract-cli,rapidocr,rapidocr-bare", help="comma-separated"
    )
    parser.add_argument("--json", type=Path, help="write every page's scores here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    rows = run(args.readers.split(","), args.seeds)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(report(rows))


if __name__ == "__main__":
    main()
