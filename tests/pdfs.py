"""Hand-written PDFs for hostile-input tests: what no PDF library would write on purpose."""

from __future__ import annotations


def raw_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of `objects` (numbered from 1; object 1 is the catalog) with a correct xref table;
    `trailer` adds entries to the trailer dictionary."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (dictionary, len(data), data)


def xobject_bomb(width: int = 40, depth: int = 6) -> bytes:
    """One page that draws a form XObject which draws the next one `width` times, `depth` levels
    deep: width**depth draws (40**6 = 4·10^9) from ~6 KB. PDFium builds them all as it loads the page."""
    first_form = 5
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /XObject << /X0 %d 0 R >> >> >>" % first_form,
        _stream(b"", b"/X0 Do"),
    ]
    draws = b" ".join(b"q 1 0 0 1 %d %d cm /X0 Do Q" % (i % 7, i % 5) for i in range(width))
    for level in range(depth):
        last = level == depth - 1
        resources = b"" if last else b"/Resources << /XObject << /X0 %d 0 R >> >>" % (first_form + level + 1)
        content = b"0 0 m 100 100 l S" if last else draws
        objects.append(_stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] " + resources, content))
    return raw_pdf(objects)


def count_liar(count: int = 1_000_000) -> bytes:
    """~340 bytes whose page tree claims `count` pages and holds one."""
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % count,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ]
    )


def light_pdf(pages: int, word: str = "Page") -> bytes:
    """A long, light document: `pages` small pages (216x72 pt), each with one line of Helvetica naming
    its number, so every page reads differently and renders in milliseconds."""
    font = 3 + 2 * pages
    kids = b" ".join(b"%d 0 R" % (3 + 2 * n) for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
    ]
    for n in range(pages):
        text = b"BT /F1 18 Tf 12 30 Td (%s %d) Tj ET" % (word.encode(), n + 1)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 216 72] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * n, font)
        )
        objects.append(_stream(b"", text))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return raw_pdf(objects)
