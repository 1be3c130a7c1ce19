"""Engine registry: `OCR_ENGINE` names a class; modules are imported only when chosen."""

from __future__ import annotations

import importlib

from function.config import Settings
from function.engines.base import Engine, EngineLoadError, PageImage

# name -> "module:Class"; heavy imports (onnxruntime, paddle) happen only for the chosen one.
ENGINES = {
    "rapidocr": "function.engines.rapidocr:RapidOCREngine",
    "paddleocr-vl": "function.engines.paddleocr_vl:PaddleOCRVLEngine",
    "tesseract": "function.engines.tesseract:TesseractEngine",
    # Per page: Cyrillic to tesseract, other scripts to rapidocr (function/engines/cpu.py).
    "cpu": "function.engines.cpu:CPUEngine",
}


def create_engine(name: str, settings: Settings) -> Engine:
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineLoadError(f"unknown engine {name!r}; known: {', '.join(sorted(ENGINES))}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineLoadError(f"engine {name!r} needs a package that is not installed: {exc}") from exc
    return getattr(module, class_name)(settings)


__all__ = ["ENGINES", "Engine", "EngineLoadError", "PageImage", "create_engine"]
