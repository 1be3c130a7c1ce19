"""Real OCR through the real HTTP function on rendered pages with known text (rapidocr engine)."""

from __future__ import annotations

import io
import re
from urllib.parse import urljoin

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from tests.server import FunctionServer
from tests.synthetic import (
    SyntheticPage,
    cer,
    english_page,
    make_pdf,
    page_with_text,
    table_page,
    two_column_page,
)

pytestmark = pytest.mark.slow


def png(page: SyntheticPage) -> bytes:
    buf = io.BytesIO()
    page.image.save(buf, "PNG")
    return buf.getvalue()


def ocr_page(server: FunctionServer, data: bytes, name: str, **fields: str) -> dict:
    resp = requests.post(
        server.url + "/ocr",
        files={"file": (name, data)},
        data={"return_content": "true", **fields},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def body_text(markdown: str) -> str:
    """Markdown without heading marks and table syntax, whitespace collapsed."""
    text = re.sub(r"^#+\s*", "", markdown, flags=re.M)
    return " ".join(text.split())


def test_english_page_text_blocks_and_title(server: FunctionServer) -> None:
    page = english_page(seed=1)
    body = ocr_page(server, png(page), "english.png")
    markdown = body["content"]["markdown"]
    assert cer(" ".join(page.text.split()), body_text(markdown)) < 0.02
    title = next(b for b in page.blocks if b.kind == "title")
    assert re.search(r"^# " + re.escape(title.text.split()[0]), markdown, flags=re.M), markdown
    blocks = body["content"]["json"]["pages"][0]["blocks"]
    assert {"doc_title", "text"} <= {b["label"] for b in blocks}
    for block in blocks:
        x0, y0, x1, y1 = block["bbox"]
        assert 0 <= x0 < x1 <= page.image.width and 0 <= y0 < y1 <= page.image.height


def test_two_columns_are_read_column_by_column(server: FunctionServer) -> None:
    page = two_column_page(seed=2)
    text = body_text(ocr_page(server, png(page), "columns.png")["content"]["markdown"])
    positions = [text.find(" ".join(b.text.split()[:4])) for b in page.blocks]
    assert -1 not in positions, (positions, text)
    assert positions == sorted(positions), (positions, text)


def test_ruled_table_comes_back_as_a_table(server: FunctionServer) -> None:
    page = table_page(rows=4, cols=4, seed=3)  # 4 data rows + a header row
    body = ocr_page(server, png(page), "table.png")
    truth = next(b for b in page.blocks if b.kind == "table")
    assert truth.cells is not None
    blocks = body["content"]["json"]["pages"][0]["blocks"]
    table = next(b for b in blocks if b["label"] == "table")
    assert (table["table"]["n_rows"], table["table"]["n_cols"]) == (5, 4)
    got = {(c["row"], c["col"]): c["text"] for c in table["table"]["cells"]}
    right = sum(
        got.get((r, c), "").strip() == text for r, row in enumerate(truth.cells) for c, text in enumerate(row)
    )
    assert right >= 19, got  # of 20 cells
    header = "| " + " | ".join(truth.cells[0]) + " |"
    assert header in body["content"]["markdown"]


def test_pdf_page_selection(server: FunctionServer) -> None:
    words = ["Alpha river report", "Bravo mountain survey", "Charlie forest census"]
    pdf = make_pdf([page_with_text([w]).image for w in words])
    body = ocr_page(server, pdf, "three.pdf", pages="2-3")
    assert body["document"]["pages"] == 3
    assert body["document"]["media_type"] == "application/pdf"
    assert [p["index"] for p in body["content"]["json"]["pages"]] == [1, 2]
    markdown = body["content"]["markdown"]
    assert "Alpha" not in markdown
    assert markdown.index("Bravo mountain survey") < markdown.index("Charlie forest census")


def figure_page() -> bytes:
    """Two paragraphs with a picture between them (gradient and shapes, no text)."""
    page = page_with_text(
        [
            "The chart below shows the water demand by month for the whole city and its districts.",
            "After the figure the report continues with a discussion of the causes of the growth.",
        ],
        title="Water demand",
    ).image.copy()
    pixels = np.zeros((420, 700, 3), np.uint8)
    pixels[..., 0] = np.linspace(40, 220, 700)[None, :]
    pixels[..., 1] = np.linspace(200, 60, 420)[:, None]
    pixels[..., 2] = 120
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    for i in range(8):
        x, y = 40 + i * 70, 100 + (i % 3) * 60
        draw.ellipse([x, y, x + 80, y + 80], fill=(250, 230, 40), outline="black")
    page.paste(picture, (270, 700))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return buf.getvalue()


def test_figures_are_cropped_next_to_the_markdown(server: FunctionServer) -> None:
    body = ocr_page(server, figure_page(), "figure.png")
    figure = next(b for b in body["content"]["json"]["pages"][0]["blocks"] if b["label"] == "image")
    link = figure["image"]
    assert f"![image]({link})" in body["content"]["markdown"]
    # The link resolves relative to the Markdown's own URL, as a Markdown viewer would resolve it.
    crop = requests.get(urljoin(body["results"]["markdown"]["url"], link), timeout=10)
    assert crop.status_code == 200 and crop.headers["Content-Type"] == "image/jpeg"
    x0, y0, x1, y1 = figure["bbox"]
    assert Image.open(io.BytesIO(crop.content)).size == (x1 - x0, y1 - y0)
