"""Markdown to the plain text a ground truth holds: the function's output with its syntax stripped.

The Markdown is parsed (markdown-it, CommonMark with GFM tables), not pattern-matched, so an
escape (`1\\. Introduction`), a heading mark, a caption's emphasis or a table's pipes never reach
the scorer as text. Blocks become lines; table cells are separated by spaces, rows by newlines;
picture links (`![image](...)`) leave nothing.
"""

from __future__ import annotations

from html.parser import HTMLParser

from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")
_BLOCK_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "br", "pre", "blockquote", "div"}
)
_CELL_TAGS = frozenset({"td", "th"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in _CELL_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if data.strip() or "\n" not in data:  # newlines between tags are the renderer's, not text
            self.parts.append(data)


def plain_text(markdown: str) -> str:
    """The text a reader sees in the rendered Markdown, one block or table row per line."""
    parser = _Text()
    parser.feed(_MARKDOWN.render(markdown))
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line and line != "$$")  # $$ fences a formula
