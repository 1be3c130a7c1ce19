"""Rendering: exact Markdown from hand-built Documents, and the JSON schema's shape."""

from __future__ import annotations

import json

from function.document import (
    Block,
    Cell,
    Document,
    EngineInfo,
    Page,
    SourceInfo,
    Table,
    TextLine,
)
from function.render import render_json, render_markdown, table_html, table_markdown

BOX = (0, 0, 10, 10)


def block(id: int, label: str, text: str = "", order: int | None = None, **kw) -> Block:
    return Block(id=id, label=label, bbox=BOX, text=text, order=order, **kw)


def doc(*blocks: Block, **kw) -> Document:
    return Document(pages=[Page(index=0, width=100, height=200, blocks=list(blocks))], **kw)


def grid_table(rows: list[list[str]]) -> Table:
    cells = [Cell(row=r, col=c, text=t) for r, row in enumerate(rows) for c, t in enumerate(row)]
    return Table(n_rows=len(rows), n_cols=len(rows[0]), cells=cells)


def spanned_table() -> Table:
    # Row 0: "Name" spans two columns; the engine also lists the covered slot (0, 1).
    return Table(
        n_rows=2,
        n_cols=2,
        cells=[
            Cell(0, 0, "Name", colspan=2),
            Cell(0, 1, "ghost"),
            Cell(1, 0, "a"),
            Cell(1, 1, "b"),
        ],
    )


# --- Markdown: block kinds --------------------------------------------------------------------


def test_titles_become_headings_on_one_line() -> None:
    d = doc(block(0, "doc_title", "The\n  Title", 0), block(1, "paragraph_title", "Part  one", 1))
    assert render_markdown(d) == "# The Title\n\n## Part one\n"


def test_paragraph_lines_flow_but_content_keeps_lines() -> None:
    d = doc(
        block(0, "text", "first line\nsecond line", 0),
        block(1, "content", "1 Intro ..... 3\n\n2 Methods ..... 7", 1),
    )
    assert render_markdown(d) == "first line second line\n\n1 Intro ..... 3  \n2 Methods ..... 7\n"


def test_unknown_label_is_a_paragraph() -> None:
    assert render_markdown(doc(block(0, "algorithm", "step one", 0))) == "step one\n"


def test_captions_formulas_and_pictures() -> None:
    d = doc(
        block(0, "image", "", 0, image="imgs/p0_b0.png"),
        block(1, "figure_title", "Figure 1:\na 2*3 grid", 1),
        block(2, "display_formula", "E = mc^2", 2),
        block(3, "formula", "$$x$$", 3),
        block(4, "chart", "sales by year", 4),
        block(5, "seal", "", 5),  # nothing to show: left out, no empty paragraph
        block(6, "text", "end", 6),
    )
    assert render_markdown(d) == (
        "![image](imgs/p0_b0.png)\n\n"
        "*Figure 1: a 2\\*3 grid*\n\n"
        "$$\nE = mc^2\n$$\n\n"
        "$$x$$\n\n"
        "sales by year\n\n"
        "end\n"
    )


def test_structure_at_paragraph_start_is_escaped_ordinary_text_is_not() -> None:
    d = doc(
        block(0, "text", "# not a heading", 0),
        block(1, "text", "- not a list", 1),
        block(2, "text", "1. not a list either", 2),
        block(3, "text", "> not a quote", 3),
        block(4, "text", "Costs: 5 - 3 = 2 # ok, *really* (a_b)", 4),
    )
    assert render_markdown(d) == (
        "\\# not a heading\n\n"
        "\\- not a list\n\n"
        "1\\. not a list either\n\n"
        "\\> not a quote\n\n"
        "Costs: 5 - 3 = 2 # ok, *really* (a_b)\n"
    )


def test_heading_trailing_hashes_survive() -> None:
    assert render_markdown(doc(block(0, "paragraph_title", "Issue #", 0))) == "## Issue \\#\n"


# --- Markdown: order and layout ---------------------------------------------------------------


def test_reading_order_decides_not_block_list_order() -> None:
    d = doc(
        block(0, "text", "third", 2),
        block(1, "doc_title", "Title", 0),
        block(2, "text", "second", 1),
    )
    assert render_markdown(d) == "# Title\n\nsecond\n\nthird\n"


def test_marginalia_left_out_of_markdown_but_kept_in_json() -> None:
    d = doc(
        block(0, "header", "RUNNING HEAD"),
        block(1, "text", "body", 0),
        block(2, "footer", "confidential"),
        block(3, "number", "17"),
        block(4, "footnote", "1 a note", 5),  # an order from the engine does not put it in the body
    )
    assert render_markdown(d) == "body\n"
    blocks = render_json(d)["pages"][0]["blocks"]
    assert [(b["label"], b["order"]) for b in blocks] == [
        ("header", None),
        ("text", 0),
        ("footer", None),
        ("number", None),
        ("footnote", None),
    ]
    assert blocks[0]["text"] == "RUNNING HEAD"


def test_pages_in_index_order_separated_by_blank_line() -> None:
    d = Document(
        pages=[
            Page(index=1, width=10, height=10, blocks=[block(0, "text", "page two", 0)]),
            Page(
                index=0,
                width=10,
                height=10,
                blocks=[block(0, "text", "page one b", 1), block(1, "text", "page one a", 0)],
            ),
            Page(index=2, width=10, height=10, blocks=[]),
        ]
    )
    assert render_markdown(d) == "page one a\n\npage one b\n\npage two\n"


def test_one_trailing_newline_and_no_blank_runs() -> None:
    d = doc(
        block(0, "text", "\n\n\na\n\n\n", 0), block(1, "text", "   ", 1), block(2, "formula", "x\n\n\n\ny", 2)
    )
    out = render_markdown(d)
    assert out == "a\n\n$$\nx\n\ny\n$$\n"
    assert "\n\n\n" not in out


def test_empty_document_renders_empty() -> None:
    assert render_markdown(Document(pages=[])) == ""


def test_engine_markdown_passes_through_unchanged() -> None:
    own = "# From the engine\n\n<table><tr><td>x</td></tr></table>"
    d = doc(block(0, "text", "ignored", 0), markdown=own)
    assert render_markdown(d) == own
    assert render_json(d)["markdown"] == own


# --- Tables -----------------------------------------------------------------------------------


def test_table_without_spans_is_a_pipe_table() -> None:
    t = grid_table([["Item", "Qty", "Note"], ["apple", "3", "a|b"], ["pear", "", "two\nlines"]])
    d = doc(block(0, "table", "", 0, table=t))
    assert render_markdown(d) == (
        "| Item | Qty | Note |\n| --- | --- | --- |\n| apple | 3 | a\\|b |\n| pear |  | two lines |\n"
    )


def test_table_with_colspan_is_html_with_covered_cell_omitted() -> None:
    expected = '<table><tr><th colspan="2">Name</th></tr><tr><td>a</td><td>b</td></tr></table>'
    assert table_html(spanned_table()) == expected
    assert table_markdown(spanned_table()) == expected
    assert render_markdown(doc(block(0, "table", "", 0, table=spanned_table()))) == expected + "\n"
    assert "ghost" not in expected


def test_table_html_rowspan_and_gap_filling() -> None:
    t = Table(n_rows=3, n_cols=2, cells=[Cell(0, 0, "h"), Cell(0, 1, "k"), Cell(1, 0, "tall", rowspan=2)])
    assert table_html(t) == (
        "<table><tr><th>h</th><th>k</th></tr>"
        '<tr><td rowspan="2">tall</td><td></td></tr>'
        "<tr><td></td></tr></table>"
    )


def test_table_html_escapes_cell_text() -> None:
    t = grid_table([["a < b", "R&D"], ['"q"', "x"]])
    assert table_html(t) == (
        "<table><tr><th>a &lt; b</th><th>R&amp;D</th></tr><tr><td>&quot;q&quot;</td><td>x</td></tr></table>"
    )


def test_table_falls_back_to_engine_html_then_text() -> None:
    engine_html = "<table>\n\n<tr><td>1</td></tr>\n</table>"
    d = doc(block(0, "table", "t", 0, html=engine_html), block(1, "table", "plain text", 1))
    assert render_markdown(d) == "<table>\n<tr><td>1</td></tr>\n</table>\n\nplain text\n"


# --- JSON -------------------------------------------------------------------------------------


def full_doc() -> Document:
    page = Page(
        index=0,
        width=1654,
        height=2339,
        blocks=[
            Block(
                id=0,
                label="doc_title",
                bbox=(1, 2, 3, 4),
                text="T",
                order=0,
                score=0.987654321,
                lines=[TextLine(text="T", bbox=(1, 2, 3, 4), score=0.123456)],
            ),
            Block(id=1, label="table", bbox=(5, 6, 7, 8), order=1, table=spanned_table()),
            Block(id=2, label="image", bbox=(0, 0, 5, 5), order=2, image="imgs/a.png"),
            Block(id=3, label="header", bbox=(0, 0, 9, 1), text="H"),
        ],
    )
    return Document(
        pages=[page],
        source=SourceInfo(filename="scan.pdf", media_type="application/pdf", sha256="ab", pages=1),
        engine=EngineInfo(name="tesseract", version="5", fingerprint="fp"),
    )


def test_json_shape_key_order_and_round_trip() -> None:
    out = render_json(full_doc())
    assert json.loads(json.dumps(out)) == out
    assert list(out) == ["schema_version", "source", "engine", "pages", "markdown"]
    assert out["schema_version"] == 1
    assert out["source"] == {
        "filename": "scan.pdf",
        "media_type": "application/pdf",
        "sha256": "ab",
        "pages": 1,
    }
    assert out["engine"] == {"name": "tesseract", "version": "5", "fingerprint": "fp"}
    page = out["pages"][0]
    assert list(page) == ["index", "width", "height", "blocks"]
    assert (page["index"], page["width"], page["height"]) == (0, 1654, 2339)
    title, table, image, header = page["blocks"]
    assert title == {
        "id": 0,
        "order": 0,
        "label": "doc_title",
        "bbox": [1, 2, 3, 4],
        "text": "T",
        "score": 0.9877,
        "lines": [{"text": "T", "bbox": [1, 2, 3, 4], "score": 0.1235}],
    }
    assert list(table) == ["id", "order", "label", "bbox", "text", "score", "html", "table"]
    assert table["html"] == table_html(spanned_table())
    assert table["table"]["n_rows"] == 2 and table["table"]["n_cols"] == 2
    assert table["table"]["cells"][0] == {
        "row": 0,
        "col": 0,
        "rowspan": 1,
        "colspan": 2,
        "text": "Name",
        "bbox": None,
    }
    assert list(table["table"]["cells"][0]) == ["row", "col", "rowspan", "colspan", "text", "bbox"]
    assert image["image"] == "imgs/a.png" and "html" not in image and "lines" not in image
    assert header["order"] is None and header["score"] is None
    assert out["markdown"] == render_markdown(full_doc())
    assert out["markdown"].startswith("# T\n\n<table>")


def test_json_engine_html_preferred_and_plain_types() -> None:
    class NumpyLikeFloat(float):  # engines hand over numpy scalars; JSON gets plain numbers
        pass

    b = Block(
        id=0,
        label="table",
        bbox=(1.6, 2.2, 3.0, 4.9),  # type: ignore[arg-type]
        order=0,
        score=NumpyLikeFloat(0.5),
        html="<table><tr><td>own</td></tr></table>",
        table=grid_table([["x"]]),
    )
    out = render_json(doc(b))
    blk = out["pages"][0]["blocks"][0]
    assert blk["html"] == "<table><tr><td>own</td></tr></table>"
    assert blk["bbox"] == [2, 2, 3, 5]
    assert type(blk["score"]) is float
    assert out["source"] is None and out["engine"] is None
    json.dumps(out)


def test_text_that_looks_like_html_shows_as_read() -> None:
    """OCR text such as "<lazy>" or "&amp;" would be taken for a tag or an entity and vanish from
    the rendered Markdown (a real page: "Over the $43,456.78 <lazy> #90 dog"); rendered by a real
    CommonMark renderer, it shows as read, wherever it stands."""
    from markdown_it import MarkdownIt

    words = "Over the <lazy> dog, </b> R&amp;D <!-- x -->"
    d = doc(
        block(0, "paragraph_title", words, 0),
        block(1, "text", words, 1),
        block(2, "text", "<lazy> at the start", 2),
        block(3, "figure_title", words, 3),
        block(4, "table", order=4, table=grid_table([["a", "b"], [words, "<i>"]])),
    )
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(render_markdown(d))
    assert rendered.count("Over the &lt;lazy&gt; dog, &lt;/b&gt; R&amp;amp;D &lt;!-- x --&gt;") == 4
    assert "<p>&lt;lazy&gt; at the start</p>" in rendered and "<td>&lt;i&gt;</td>" in rendered
