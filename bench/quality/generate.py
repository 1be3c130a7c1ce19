"""The evaluation set: synthetic pages in every language and layout, clean and damaged, seeded.

    python -m bench.quality.generate --out /tmp/quality-pages [--seeds 2]

writes each page as PNG with its truth (`<name>.json`: text, blocks in reading order, table cells).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from bench.quality.damage import Damage, apply, random_damage
from bench.quality.synthetic import BODY_FONTS, SyntheticPage, english_page, table_page, two_column_page

log = logging.getLogger(__name__)

LANGS = ("en", "ru", "mixed")
KINDS: dict[str, Callable[..., SyntheticPage]] = {
    "prose": english_page,
    "columns": two_column_page,
    "table": lambda seed, dpi, **kw: table_page(rows=4, cols=4, seed=seed, dpi=dpi, **kw),
}
DPIS = (150, 200, 300)
BODY_SIZES = (10.0, 11.5, 13.0)  # points


@dataclass
class Case:
    name: str
    lang: str
    kind: str
    dpi: int
    font: str
    body_pt: float
    damage: Damage
    page: SyntheticPage
    image: Image.Image  # what the engines see: the page, damaged or not


def cases(seeds: int = 1, damaged: bool = True, langs: tuple[str, ...] = LANGS) -> Iterator[Case]:
    """Pages for every language and kind, `seeds` variants each; font, size and dpi drawn per page."""
    for seed in range(seeds):
        for lang in langs:
            for kind, make in KINDS.items():
                yield _case(seed, lang, kind, make, damaged)


def _case(seed: int, lang: str, kind: str, make: Callable[..., SyntheticPage], damaged: bool) -> Case:
    rng = random.Random(f"{seed}-{lang}-{kind}-{damaged}")
    dpi = rng.choice(DPIS) if damaged else 150
    font, body_pt = rng.choice(BODY_FONTS), rng.choice(BODY_SIZES)
    page = make(seed=seed, dpi=dpi, lang=lang, font=font, body_pt=body_pt)
    damage = random_damage(rng) if damaged else Damage()
    image = apply(page.image, damage, seed) if damaged else page.image
    name = f"{'damaged' if damaged else 'clean'}-{lang}-{kind}-{seed}"
    return Case(name, lang, kind, dpi, font, body_pt, damage, page, image)


def write(case: Case, out: Path) -> None:
    case.image.save(out / f"{case.name}.png")
    truth = {
        "name": case.name,
        "lang": case.lang,
        "kind": case.kind,
        "dpi": case.dpi,
        "font": case.font,
        "body_pt": case.body_pt,
        "damage": asdict(case.damage),
        "text": case.page.text,
        "blocks": [asdict(b) for b in case.page.blocks],
    }
    (out / f"{case.name}.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=1, help="variants of each language and layout")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    for damaged in (False, True):
        for case in cases(args.seeds, damaged):
            write(case, args.out)
            count += 1
    print(f"{count} pages written to {args.out}")


if __name__ == "__main__":
    main()
