"""The command line: `ocr` in-process on real files, `invoke` and `event` against a real function."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from function import cli as cli_module
from function.visualize import PICTURE_PIXELS
from tests.conftest import BUCKET
from tests.fakes import AppServer, GatedEngine, app_server
from tests.pdfs import light_pdf
from tests.server import ROOT, FunctionServer
from tests.synthetic import make_pdf, page_with_text
from tests.test_http_inputs import text_image


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "function", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "OCR_ENGINE": "rapidocr"},
    )


def test_help_names_every_command() -> None:
    done = cli("--help")
    assert done.returncode == 0
    for command in ("serve", "ocr", "invoke", "event"):
        assert command in done.stdout


@pytest.mark.slow
def test_ocr_writes_markdown_json_and_pictures_for_an_image_and_a_pdf(tmp_path: Path) -> None:
    image = page_with_text(["Receipt number 4417 for coffee"], title="Morning Shop")
    image.image.save(tmp_path / "receipt.png")
    first, second = page_with_text(["Chapter one begins 2301"]), page_with_text(["Chapter two ends 7719"])
    (tmp_path / "book.pdf").write_bytes(make_pdf([first.image, second.image]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    out = tmp_path / "out"

    done = cli("ocr", str(tmp_path / "receipt.png"), str(tmp_path / "broken.pdf"), str(tmp_path / "book.pdf"),
               "-o", str(out), "--visualize")  # fmt: skip

    assert done.returncode == 1, done.stderr  # the broken file fails the run, after the others are done
    assert [line for line in done.stderr.splitlines() if "broken.pdf:" in line], done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "book.json", "book.md", "book.page-1.png", "book.page-2.png",
        "receipt.json", "receipt.md", "receipt.page-1.png",
    ]  # fmt: skip
    receipt = (out / "receipt.md").read_text()
    assert "Morning Shop" in receipt and "4417" in receipt
    book = (out / "book.md").read_text()
    assert book.index("2301") < book.index("7719")
    as_json = json.loads((out / "book.json").read_text())
    assert [p["index"] for p in as_json["pages"]] == [0, 1]
    assert as_json["source"]["filename"] == "book.pdf" and as_json["source"]["pages"] == 2
    # The PDF is rendered at OCR_PDF_DPI: the picture is the page the engine saw, scaled down by a
    # whole factor to at most PICTURE_PIXELS (function/visualize.py).
    page_two = as_json["pages"][1]
    width, height = page_two["width"], page_two["height"]
    factor = math.ceil(math.sqrt(width * height / PICTURE_PIXELS))
    assert Image.open(out / "book.page-2.png").size == (-(-width // factor), -(-height // factor)) != (0, 0)
    assert Image.open(out / "receipt.page-1.png").size == image.image.size


@pytest.mark.slow
def test_ocr_pages_option_reads_only_those(tmp_path: Path) -> None:
    pages = [page_with_text(["Only first 1357"]).image, page_with_text(["Only second 8642"]).image]
    (tmp_path / "two.pdf").write_bytes(make_pdf(pages))
    done = cli("ocr", str(tmp_path / "two.pdf"), "-o", str(tmp_path), "--pages", "2")
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "two.md").read_text()
    assert "8642" in markdown and "1357" not in markdown
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_invoke_prints_working_result_urls(server: FunctionServer, tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(text_image("Invoke 6283 works"))
    done = cli("invoke", server.url, str(tmp_path / "scan.png"), "--visualize")
    assert done.returncode == 0, done.stderr
    urls = dict(line.strip().split(": ", 1) for line in done.stdout.splitlines() if ": http" in line)
    assert set(urls) == {"markdown", "json", "manifest", "layout page 1"}, done.stdout
    assert "6283" in requests.get(urls["markdown"], timeout=10).text
    assert requests.get(urls["json"], timeout=10).json()["pages"][0]["index"] == 0
    assert requests.get(urls["layout page 1"], timeout=10).content.startswith(b"\x89PNG")


@pytest.mark.slow
def test_invoke_reports_a_bad_file_and_fails(server: FunctionServer, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_bytes(b"not an image")
    done = cli("invoke", server.url, str(tmp_path / "notes.png"))
    assert done.returncode == 1
    assert "notes.png: HTTP 415" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--structured"]], ids=["binary", "structured"])
def test_event_gets_a_completed_reply(s3_server: FunctionServer, s3, mode: list[str]) -> None:  # type: ignore[no-untyped-def]
    key = f"inbox/cli event {len(mode)}.png"
    s3.put_object(
        Bucket=BUCKET, Key=key, Body=text_image(f"Event 90{len(mode)}4 done"), ContentType="image/png"
    )
    done = cli("event", s3_server.url, "--bucket", BUCKET, "--key", key, *mode)
    assert done.returncode == 0, done.stdout + done.stderr
    kind, _, data = done.stdout.partition("\n")
    assert kind == "ocr.document.completed"
    reply = json.loads(data)
    assert reply["status"] == "success" and reply["input_type"] == "cloudevent"
    assert f"90{len(mode)}4" in requests.get(reply["results"]["markdown"]["url"], timeout=10).text


@pytest.mark.slow
def test_event_for_a_missing_object_prints_the_failed_reply(s3_server: FunctionServer) -> None:
    done = cli("event", s3_server.url, "--bucket", BUCKET, "--key", "inbox/never-uploaded.png")
    assert done.returncode == 1
    assert done.stdout.startswith("ocr.document.failed\n"), done.stdout


def test_each_documents_crops_have_a_folder_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two documents in one output folder: each Markdown links to its own crop, none overwritten.
    In process with the FAKE crop engine of tests/test_s3.py (recognition is not what is tested)."""
    from function.cli import _ocr_file
    from function.config import load_settings
    from function.options import Options
    from tests.test_s3 import CropEngine

    monkeypatch.setattr(CropEngine, "calls", 0)  # its class-wide count belongs to tests/test_s3.py
    out = tmp_path / "out"
    out.mkdir()
    settings = load_settings({})
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(encoded_png(name))
        _ocr_file(tmp_path / name, out, CropEngine(settings), settings, Options())
    for stem in ("a", "b"):
        markdown = (out / f"{stem}.md").read_text()
        assert f"](<{stem}_imgs/figure one.jpg>)" in markdown, markdown
        assert (out / f"{stem}_imgs" / "figure one.jpg").is_file()
        blocks = json.loads((out / f"{stem}.json").read_text())["pages"][0]["blocks"]
        assert blocks[0]["image"] == f"{stem}_imgs/figure one.jpg"
    assert not (out / "imgs").exists()


def encoded_png(name: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), "white").save(buf, "PNG")
    return buf.getvalue()


def invoke_async(
    srv: AppServer, upload: Path, engine: GatedEngine, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> int:
    """`invoke --async` in this process; the engine's gate opens once the CLI has shown the pages
    read before it (so the bar's count part-way is what the test sees, whatever the timing)."""
    real = cli_module._answer

    def answer(resp: Any, expected: int) -> dict[str, Any]:
        body = real(resp, expected)
        if body.get("pages", {}).get("done") == engine.stop_after:
            engine.gate.set()
        return body

    monkeypatch.setattr(cli_module, "_answer", answer)
    return cli_module.main(["invoke", srv.url, str(upload), "--async", "--timeout", "60", *extra])


def test_invoke_async_shows_the_pages_done_then_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process against the FAKE engine: what is tested is the job's progress, not recognition."""
    upload = tmp_path / "long.pdf"
    upload.write_bytes(light_pdf(6))
    engine = GatedEngine(stop_after=3)
    with app_server({}, tmp_path / "out", engine) as srv:
        code = invoke_async(srv, upload, engine, monkeypatch, "--return-content")
        out, err = capsys.readouterr()
        assert code == 0, err
        for shown in ("long.pdf:  50%|", "| 3/6 [", "long.pdf: 100%|", "| 6/6 ["):
            assert shown in err, err
        urls = dict(line.strip().split(": ", 1) for line in out.splitlines() if ": http" in line)
        assert set(urls) == {"markdown", "json", "manifest"} and "(cached)" not in out, out
        markdown = requests.get(urls["markdown"], timeout=10).text
        assert markdown.count("fake page") == 6 and out.rstrip().endswith(markdown.rstrip()), out
        # Sent again: the job is complete at once, and says so; its Markdown is printed all the same.
        assert cli_module.main(["invoke", srv.url, str(upload), "--async", "--return-content"]) == 0
        again = capsys.readouterr().out
        assert again.startswith(f"{upload}: (cached)") and again.rstrip().endswith(markdown.rstrip()), again


def test_invoke_async_prints_a_failed_jobs_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = tmp_path / "broken.pdf"
    upload.write_bytes(light_pdf(4))
    engine = GatedEngine(stop_after=2, broken=True)
    with app_server({}, tmp_path / "out", engine) as srv:
        code = invoke_async(srv, upload, engine, monkeypatch)
    out, err = capsys.readouterr()
    assert code == 1 and not out
    assert "broken.pdf: job " in err and "failed: page 3 cannot be read (a FAKE failure)" in err, err
    assert not list((tmp_path / "out").rglob("jobs/*/source")), "a failed job kept the document's bytes"
