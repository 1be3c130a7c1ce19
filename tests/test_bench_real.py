"""The real-page quality benchmark (`python -m bench.quality.real --quick`) runs end to end on the dev
set, so it cannot rot unnoticed. No quality figure is asserted: that is the benchmark's job. Skipped,
with the reason, where the dev set (kept outside the repository, ../shared/devset) is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.quality import real
from bench.quality.plain import plain_text

DEVSET_THERE = (real.DEVSET / "manifest.tsv").is_file()


def test_markdown_syntax_is_stripped_before_scoring() -> None:
    markdown = (
        "# Title\n\n1\\. Introduction\n\n*Figure 1*\n\n![image](imgs/a.jpg)\n\n"
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    )
    assert plain_text(markdown) == "Title\n1. Introduction\nFigure 1\na b\n1 2"


def test_a_missing_devset_is_said_clearly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="dev set is missing"):
        real.main(["--devset", str(tmp_path), "--quick"])


@pytest.mark.slow
@pytest.mark.skipif(
    not DEVSET_THERE, reason=f"the dev set is not at {real.DEVSET} (it lives outside the repository)"
)
def test_quick_slice_runs_every_reader_on_the_same_pages(tmp_path: Path) -> None:
    rows = real.main(["--quick", "--out", str(tmp_path)])
    by_reader: dict[str, set[str]] = {}
    for row in rows:
        by_reader.setdefault(row.reader, set()).add(row.page)
        assert 0.0 <= row.bow <= 1.0 and row.cer >= 0.0 and row.seconds > 0
    assert set(by_reader) == set(real.default_readers())
    assert by_reader["tesseract"] == by_reader["tesseract-bare"] == by_reader["cpu"] == set(real.QUICK)
    assert by_reader["rapidocr"] == by_reader["rapidocr-bare"] == {p for p in real.QUICK if "_eng_" in p}
    report = (tmp_path / "report.md").read_text()
    assert "python -m bench.quality.real --quick" in report and "By subset" in report
    assert len(json.loads((tmp_path / "results.json").read_text())) == len(rows)
