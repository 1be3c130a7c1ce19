"""Real OCR through the real HTTP function with OCR_ENGINE=tesseract: Russian, mixed, table, languages."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
import requests

from tests.server import FunctionServer
from tests.synthetic import SyntheticPage, cer, english_page, table_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tess_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    tmp = tmp_path_factory.mktemp("function-tesseract")
    env = {"OCR_ENGINE": "tesseract", "OCR_STORE": f"file://{tmp}/output", "OCR_TESSERACT_LANGS": "rus+eng"}
    with FunctionServer(env, tmp / "server.log") as srv:
        yield srv


def _png(page: SyntheticPage) -> bytes:
    buf = io.BytesIO()
    page.image.save(buf, "PNG")
    return buf.getvalue()


def _post(server: FunctionServer, page: SyntheticPage, **fields: str) -> requests.Response:
    return requests.post(
        server.url + "/ocr",
        files={"file": ("page.png", _png(page))},
        data={"return_content": "true", **fields},
        timeout=300,
    )


def _ocr(server: FunctionServer, page: SyntheticPage, **fields: str) -> dict:
    resp = _post(server, page, **fields)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _body(markdown: str) -> str:
    return " ".join(re.sub(r"^#+\s*", "", markdown, flags=re.M).split())


def test_russian_page_under_3_percent_cer(tess_server: FunctionServer) -> None:
    page = english_page(seed=7, lang="ru")
    body = _ocr(tess_server, page)
    assert cer(page.text, _body(body["content"]["markdown"])) < 0.03
    blocks = body["content"]["json"]["pages"][0]["blocks"]
    assert all(line["score"] is not None for b in blocks for line in b.get("lines", []))


def test_mixed_text_keeps_both_scripts(tess_server: FunctionServer) -> None:
    page = english_page(seed=8, lang="mixed")
    text = _body(_ocr(tess_server, page, lang="ru+en")["content"]["markdown"])
    assert cer(page.text, text) < 0.03
    assert re.search(r"[A-Za-z]{4,}", text) and re.search(r"[а-яА-Я]{4,}", text)


def test_ruled_table_cells_in_place(tess_server: FunctionServer) -> None:
    page = table_page(rows=4, cols=4, seed=5, lang="ru")
    truth = page.blocks[-1].cells
    blocks = _ocr(tess_server, page)["content"]["json"]["pages"][0]["blocks"]
    table = next(b for b in blocks if b["label"] == "table")["table"]
    assert (table["n_rows"], table["n_cols"]) == (5, 4)
    got = {(c["row"], c["col"]): c["text"].strip() for c in table["cells"]}
    assert got == {(r, c): text for r, row in enumerate(truth) for c, text in enumerate(row)}


def test_unknown_language_is_400_naming_installed(tess_server: FunctionServer) -> None:
    resp = _post(tess_server, english_page(seed=1), lang="deu")
    assert resp.status_code == 400
    message = resp.text
    assert "deu" in message and all(code in message for code in ("rus", "eng", "ru", "en"))
