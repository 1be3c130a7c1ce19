"""The installed console command (`[project.scripts]` in pyproject.toml), run from outside the checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_http_inputs import text_image

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command with the environment of a user's shell: no PYTHONPATH pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_ocr_function_runs_from_any_directory(installed_bin: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    (elsewhere / "note.png").write_bytes(text_image("Installed 2718 command"))
    exe = str(installed_bin / "ocr-function")

    shown = run([exe, "--help"], elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert all(command in shown.stdout for command in ("serve", "ocr", "invoke", "event"))

    done = run([exe, "ocr", "note.png", "-o", "out", "--visualize"], elsewhere)
    assert done.returncode == 0, done.stderr
    assert "2718" in (elsewhere / "out" / "note.md").read_text()
    assert (elsewhere / "out" / "note.page-1.png").is_file()
