"""Page layout for the CPU engines: labelled blocks, titles, reading order and ruled tables.

An engine brings text lines from its own OCR (RapidOCR, Tesseract, ...); this package adds what
PaddleOCR-VL gives on its own: regions from a layout model (`model`), text lines grouped into
blocks and titles (`blocks`), a column-aware reading order (`order`) and the cell grid of ruled
tables (`tables`), one page at a time (`page`). All but the model is plain geometry (`geometry`)
on numpy arrays, so it can be tested without a model; `labels` names titles and page numbers.
"""

from function.engines.layout.blocks import build_blocks, group_lines
from function.engines.layout.geometry import median_line_height, shift_box
from function.engines.layout.model import (
    CDLA_TO_VL,
    LAYOUT_MODEL_FILE,
    LAYOUT_RULES_VERSION,
    LayoutModel,
    Region,
    adopt_loggers,
    cpu_threads,
    default_layout_model_path,
    layout_settings,
)
from function.engines.layout.order import lines_text, order_lines, reading_order
from function.engines.layout.page import (
    LineReader,
    PageOCR,
    analyse_page,
    collect,
    crop_figures,
    reread_empty_regions,
)
from function.engines.layout.pixels import bgr, rgb_pixels
from function.engines.layout.tables import TextReader, recognise_table, split_table_lines, table_text

__all__ = [
    "CDLA_TO_VL",
    "LAYOUT_MODEL_FILE",
    "LAYOUT_RULES_VERSION",
    "LayoutModel",
    "LineReader",
    "PageOCR",
    "Region",
    "TextReader",
    "adopt_loggers",
    "analyse_page",
    "bgr",
    "build_blocks",
    "collect",
    "cpu_threads",
    "crop_figures",
    "default_layout_model_path",
    "group_lines",
    "layout_settings",
    "lines_text",
    "median_line_height",
    "order_lines",
    "reading_order",
    "recognise_table",
    "reread_empty_regions",
    "rgb_pixels",
    "shift_box",
    "split_table_lines",
    "table_text",
]
