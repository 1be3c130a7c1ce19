"""Layout pictures: boxes drawn where the blocks are, the page untouched elsewhere, served by the function."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image, ImageChops

from function.document import Block, Document, Page
from function.engines.base import PageImage
from function.visualize import (
    PICTURE_PIXELS,
    KeepPages,
    caption,
    draw_layout,
    label_size,
    layout_pngs,
    place_tabs,
)
from tests.server import FunctionServer
from tests.test_http_inputs import text_image

BOX = (200, 300, 500, 400)


def page_image() -> Image.Image:
    return Image.new("RGB", (800, 1000), "white")


def changed(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> bool:
    return ImageChops.difference(a.crop(box), b.crop(box)).getbbox() is not None


def test_picture_has_the_page_size_and_boxes_only_where_blocks_are() -> None:
    page = page_image()
    drawn = draw_layout(page, Page(index=0, width=800, height=1000, blocks=[Block(0, "text", BOX, order=0)]))
    assert drawn.size == page.size
    assert not changed(page, page_image(), (0, 0, 800, 1000))  # the page itself is left as it was
    assert changed(drawn, page, (BOX[0] - 2, BOX[1] - 2, BOX[2] + 2, BOX[1] + 2))  # the top edge
    assert changed(drawn, page, (BOX[0] - 2, BOX[3] - 2, BOX[2] + 2, BOX[3] + 2))  # the bottom edge
    assert changed(drawn, page, (BOX[0], BOX[1] - 40, BOX[0] + 60, BOX[1]))  # the label tab above
    assert not changed(drawn, page, (0, 600, 800, 1000))  # far from the block
    assert not changed(drawn, page, (BOX[0] + 10, BOX[1] + 10, BOX[2] - 10, BOX[3] - 10))  # inside it


def test_pages_kept_for_pictures_are_small_and_their_boxes_scaled() -> None:
    """`visualize` on a long document keeps each page as a reduced JPEG, not its pixels (an A4 page at
    300 dpi is 34 MB decoded; 200 of them would not fit a pod), and draws on the reduced page."""
    side = (2480, 3508)  # A4 at 300 dpi
    big = Image.new("RGB", side, "white")
    kept = KeepPages([PageImage(0, big), PageImage(1, big.copy())])
    assert [p.index for p in kept] == [0, 1]
    assert all(len(jpeg) < 200_000 for jpeg in kept.images.values())
    box = (1240, 1754, 2232, 3157)  # the lower right quarter of the page
    page = Page(0, side[0], side[1], [Block(0, "text", box, order=0)])
    pngs = layout_pngs(Document(pages=[page]), kept.images)
    assert list(pngs) == [1] and kept.images == {}  # drawn pages are let go
    picture = Image.open(io.BytesIO(pngs[1])).convert("RGB")
    assert picture.width * picture.height <= PICTURE_PIXELS
    scale = picture.width / side[0]
    x0, y0 = round(box[0] * scale), round(box[1] * scale)
    assert picture.getpixel((x0, y0 + 20)) != (255, 255, 255)  # the box's left edge, where it scaled to
    assert picture.getpixel((x0 // 2, y0 + 20)) == (255, 255, 255)  # white left of it


def test_label_and_order_are_written() -> None:
    page = page_image()
    one = draw_layout(page, Page(0, 800, 1000, [Block(0, "text", BOX, order=0)]))
    other = draw_layout(page, Page(0, 800, 1000, [Block(0, "table", BOX, order=7)]))
    assert changed(one, other, (BOX[0], BOX[1] - 40, BOX[2], BOX[1]))


def test_numbers_count_from_one_as_the_try_page_shows_them() -> None:
    """One numbering everywhere: the first block in reading order is 1 (document.json's order 0);
    the try-it page shows these pictures, so it cannot disagree."""
    assert caption(Block(0, "doc_title", BOX, order=0)) == "1 doc_title"
    assert caption(Block(1, "text", BOX, order=6)) == "7 text"
    assert caption(Block(2, "header", BOX)) == "header"


def test_tabs_of_overlapping_boxes_do_not_hide_each_other() -> None:
    """Boxes stacked on one another (nested, shifted, the same box twice, one at the page's edge):
    every tab lies on the page and no two tabs overlap."""
    boxes = [(100, 100, 700, 900), (100, 100, 700, 900), (110, 105, 690, 300), (100, 120, 400, 200),
             (0, 0, 800, 60), (600, 950, 800, 1000)]  # fmt: skip
    blocks = [Block(i, "text", box, order=i) for i, box in enumerate(boxes)]
    placed = place_tabs(blocks, (800, 1000), lambda text: (10 * len(text), 20))
    tabs = [tab for _, tab in placed]
    assert sorted(b.id for b, _ in placed) == list(range(len(boxes)))
    for i, a in enumerate(tabs):
        assert min(a[0], a[1]) >= 0 and a[2] <= 800 and a[3] <= 1000, a
        for b in tabs[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_labels_scale_with_the_page() -> None:
    """An A4 page at 200 DPI gets labels of 37 px: about 16 screen pixels at half a 1400 px screen."""
    assert label_size((1654, 2339)) == 37 and label_size((300, 200)) == 14


@pytest.mark.slow
def test_visualize_option_links_layout_pictures_of_the_page_size(server: FunctionServer) -> None:
    png = text_image("Layout 5150 check")
    resp = requests.post(
        server.url + "/ocr", files={"file": ("layout.png", png)}, data={"visualize": "true"}, timeout=180
    )
    assert resp.status_code == 200, resp.text
    layout = resp.json()["results"]["layout"]
    assert [item["page"] for item in layout] == [1]
    assert layout[0]["uri"].endswith("/layout/page-1.png")
    picture = requests.get(layout[0]["url"], timeout=10)
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
    drawn = Image.open(io.BytesIO(picture.content))
    page = Image.open(io.BytesIO(png)).convert("RGB")
    assert drawn.size == page.size
    assert changed(drawn.convert("RGB"), page, (0, 0, *page.size))
    # A cached answer links the same pictures; a request without the option gets none.
    again = requests.post(
        server.url + "/ocr", files={"file": ("layout.png", png)}, data={"visualize": "true"}, timeout=180
    ).json()
    assert again["cached"] and again["results"]["layout"] == layout
    plain = requests.post(server.url + "/ocr", files={"file": ("layout.png", png)}, timeout=180).json()
    assert "layout" not in plain["results"]
