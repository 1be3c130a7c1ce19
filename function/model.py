"""Model types that pass between the rooms and belong to none of them (the Document is in document.py)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass
class PageImage:
    """One page of a source document, decoded: what the page reader yields and an engine reads."""

    index: int  # 0-based page of the source document
    image: Image.Image  # RGB
