"""The engine protocol: load once per serving process, then turn page images into a Document."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from function.config import Settings
from function.document import Document
from function.options import Options


@dataclass
class PageImage:
    index: int  # 0-based page of the source document
    image: Image.Image  # RGB


class Engine(ABC):
    """One OCR engine. Subclasses set `name` and implement `_load`, `version`, `predict`."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.config = settings
        self._loaded = False

    @property
    def ready(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load models (at cold start). Raises `EngineLoadError` with a reason a person can act on."""
        self._load()
        self._loaded = True

    @abstractmethod
    def _load(self) -> None: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    def settings(self) -> dict[str, object]:
        """Settings that change the output; they go into the fingerprint."""
        return {}

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"name": self.name, "version": self.version, "settings": self.settings()},
            sort_keys=True,
        )
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def languages(self) -> list[str] | None:
        """Languages this engine can be asked for with `lang`; None if it takes no hint."""
        return None

    @abstractmethod
    def predict(self, pages: Iterable[PageImage], options: Options) -> Document:
        """OCR the pages (consumed one at a time) into a Document (source/engine unset)."""


class EngineLoadError(RuntimeError):
    """The engine cannot start: a missing package or model file. The message says which."""
