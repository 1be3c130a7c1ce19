"""The PaddleOCR-VL engine: its settings, its start-up failures, and its adapter over the real package.

Settings and failures need nothing beyond the project. The adapter tests need the real `paddleocr` and
`paddlex` packages (`requirements-paddle.txt`, in a venv of their own) and are skipped without them:
they build the real `PaddleOCRVL` wrapper (its argument checks, its PaddleX config merge), the real
result classes and PaddleOCR-VL's own Markdown, page joining and `restructure_pages`. Only the PaddleX
pipeline that `create_pipeline` would build is replaced (`FakeVLPipeline`): it holds the GPU models.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from function.config import load_settings
from function.document import Document
from function.engines import ENGINES, create_engine
from function.engines import paddleocr_vl as vl_mod
from function.engines import paddleocr_vl_models as vl_models
from function.engines import paddleocr_vl_settings as vl_settings
from function.engines.base import EngineLoadError, PageImage
from function.engines.paddleocr_vl import (
    CONSTRUCTOR_ARGS,
    ENV,
    PaddleOCRVLEngine,
    VLSettings,
    load_vl_settings,
)
from function.errors import ConfigError, UpstreamFailed
from function.options import Options
from function.pages import PageLimits, PageSource, sniff
from function.runtime import Runtime

SERVER_ENV = {"PADDLEOCR_VL_BACKEND": "vllm-server", "PADDLEOCR_VL_SERVER_URL": "http://vlm:8118/v1"}


def make_engine(env: dict[str, str]) -> PaddleOCRVLEngine:
    return PaddleOCRVLEngine(load_settings({}), load_vl_settings(env))


# ---------------------------------------------------------------- settings (no paddle needed)


def test_defaults_pass_nothing_but_the_backend() -> None:
    s = load_vl_settings({})
    assert s == VLSettings()
    assert s.backend == "native" and s.pipelines == 1
    assert s.models_dir == "/home/paddleocr/.paddlex/official_models"


def test_every_variable_is_read() -> None:
    env = {
        **SERVER_ENV,
        "PADDLEOCR_VL_PIPELINE_VERSION": "v1.6",
        "PADDLEOCR_VL_MODELS_DIR": "/models",
        "PADDLEOCR_VL_DEVICE": "gpu:0",
        "PADDLEOCR_VL_SERVER_MODEL_NAME": "PaddleOCR-VL-1.6-0.9B",
        "PADDLEOCR_VL_SERVER_API_KEY": "s3cr3t-key",
        "PADDLEOCR_VL_SERVER_MAX_CONCURRENCY": "16",
        "PADDLEOCR_VL_CONCURRENCY": "3",
        "PADDLEOCR_VL_USE_DOC_ORIENTATION_CLASSIFY": "true",
        "PADDLEOCR_VL_USE_DOC_UNWARPING": "false",
        "PADDLEOCR_VL_USE_LAYOUT_DETECTION": "yes",
        "PADDLEOCR_VL_USE_CHART_RECOGNITION": "1",
        "PADDLEOCR_VL_USE_SEAL_RECOGNITION": "0",
        "PADDLEOCR_VL_USE_OCR_FOR_IMAGE_BLOCK": "on",
        "PADDLEOCR_VL_MERGE_LAYOUT_BLOCKS": "off",
        "PADDLEOCR_VL_USE_QUEUES": "true",
        "PADDLEOCR_VL_LAYOUT_THRESHOLD": "0.35",
        "PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": "footer, number",
        "PADDLEOCR_VL_RESTRUCTURE_PAGES": "true",
        "PADDLEOCR_VL_MERGE_TABLES": "false",
        "PADDLEOCR_VL_RELEVEL_TITLES": "false",
        "PADDLEOCR_VL_PRETTY_MARKDOWN": "false",
        "PADDLEOCR_VL_SHOW_FORMULA_NUMBER": "true",
    }
    assert set(env) == set(ENV), "a variable of ENV is not exercised here"
    s = load_vl_settings(env)
    assert s.pipeline_version == "v1.6" and s.models_dir == "/models" and s.device == "gpu:0"
    assert s.server_max_concurrency == 16 and s.concurrency == 3 and s.pipelines == 3
    assert s.use_doc_orientation_classify is True and s.use_doc_unwarping is False
    assert s.use_chart_recognition is True and s.use_seal_recognition is False
    assert s.merge_layout_blocks is False and s.layout_threshold == 0.35
    assert s.markdown_ignore_labels == ("footer", "number")
    assert s.restructure_pages and not s.merge_tables and not s.relevel_titles
    assert not s.pretty_markdown and s.show_formula_number
    assert "s3cr3t" not in repr(s), "the API key must not reach logs"


def test_variable_table_names_real_fields() -> None:
    fields = set(VLSettings.__dataclass_fields__)
    assert all(var.startswith("PADDLEOCR_VL_") for var in ENV)
    assert {name for name, _ in ENV.values()} == fields
    assert set(CONSTRUCTOR_ARGS) <= fields


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PADDLEOCR_VL_USE_QUEUES": "maybe"}, "PADDLEOCR_VL_USE_QUEUES"),
        ({"PADDLEOCR_VL_LAYOUT_THRESHOLD": "high"}, "PADDLEOCR_VL_LAYOUT_THRESHOLD"),
        ({"PADDLEOCR_VL_LAYOUT_THRESHOLD": "1.5"}, "PADDLEOCR_VL_LAYOUT_THRESHOLD"),
        ({"PADDLEOCR_VL_PIPELINE_VERSION": "1.6"}, "PADDLEOCR_VL_PIPELINE_VERSION"),
        ({"PADDLEOCR_VL_BACKEND": "vllm"}, "PADDLEOCR_VL_BACKEND"),
        ({"PADDLEOCR_VL_BACKEND": "vllm-server"}, "PADDLEOCR_VL_SERVER_URL"),
        ({"PADDLEOCR_VL_SERVER_URL": "http://vlm:8118/v1"}, "PADDLEOCR_VL_SERVER_URL"),
        ({"PADDLEOCR_VL_CONCURRENCY": "2"}, "PADDLEOCR_VL_CONCURRENCY"),
        ({**SERVER_ENV, "PADDLEOCR_VL_CONCURRENCY": "0"}, "PADDLEOCR_VL_CONCURRENCY"),
        ({**SERVER_ENV, "PADDLEOCR_VL_SERVER_MAX_CONCURRENCY": "x"}, "PADDLEOCR_VL_SERVER_MAX_CONCURRENCY"),
        ({"PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": "Footer!"}, "PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_vl_settings(env)


def test_docs_list_every_variable() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "gpu.md").read_text()
    assert [var for var in ENV if f"`{var}`" not in docs] == []


def test_server_settings_and_concurrency() -> None:
    assert load_vl_settings(SERVER_ENV).pipelines == vl_settings.DEFAULT_SERVER_CONCURRENCY
    assert load_vl_settings({"PADDLEOCR_VL_CONCURRENCY": "1"}).pipelines == 1
    assert load_vl_settings({"PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": "none"}).markdown_ignore_labels == ()


def test_registered_and_created_without_paddle() -> None:
    assert ENGINES["paddleocr-vl"] == "function.engines.paddleocr_vl:PaddleOCRVLEngine"
    engine = create_engine("paddleocr-vl", load_settings({}))
    assert isinstance(engine, PaddleOCRVLEngine) and not engine.ready


def test_missing_package_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paddleocr", None)  # as if not installed
    with pytest.raises(EngineLoadError, match="paddleocr package is not installed"):
        make_engine({}).load()


def test_missing_paddle_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vl_mod, "_pipeline_class", lambda: object)
    monkeypatch.setattr(vl_mod.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(EngineLoadError, match="paddlepaddle package is not installed"):
        make_engine({}).load()


def test_load_failure_is_readiness_503_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "paddleocr", None)
    runtime = Runtime(load_settings({"OCR_ENGINE": "paddleocr-vl", "OCR_STORE": f"file://{tmp_path}"}))
    runtime.start()
    deadline = time.monotonic() + 30
    while runtime.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runtime.ready and runtime.engine is None
    assert "paddleocr package is not installed" in runtime.not_ready_reason()


# ---------------------------------------------------------------- the real package, model replaced

LAYOUT_V3, VL_16 = "PP-DocLayoutV3", "PaddleOCR-VL-1.6"
PAGE_W, PAGE_H = 800, 1040
IMAGE_BOX = (80, 620, 320, 820)  # the picture on every synthetic page


def page_colour(n: int) -> tuple[int, int, int]:
    """Background of page n: its red channel says which page it is (and whether BGR came in)."""
    return (40 * (n + 1), 150, 90)


def picture_colour(n: int) -> tuple[int, int, int]:
    return (30, 60 + 80 * n, 220)


def synthetic_page(n: int, size: tuple[int, int] = (PAGE_W, PAGE_H)) -> Image.Image:
    image = Image.new("RGB", size, page_colour(n))
    sx, sy = size[0] / PAGE_W, size[1] / PAGE_H
    box = (IMAGE_BOX[0] * sx, IMAGE_BOX[1] * sy, IMAGE_BOX[2] * sx, IMAGE_BOX[3] * sy)
    image.paste(picture_colour(n), tuple(round(v) for v in box))
    return image


@pytest.fixture
def paddle() -> Any:
    """The real packages' pieces the tests use; skips cleanly where they are not installed."""
    pytest.importorskip("paddleocr", reason="needs requirements-paddle.txt (see docs/gpu.md)")
    pytest.importorskip("paddlex", reason="needs requirements-paddle.txt (see docs/gpu.md)")
    import paddleocr
    from paddleocr._pipelines.base import PaddleXPipelineWrapper
    from paddlex.inference.pipelines.layout_parsing.utils import construct_img_path
    from paddlex.inference.pipelines.paddleocr_vl.pipeline import _PaddleOCRVLPipeline
    from paddlex.inference.pipelines.paddleocr_vl.result import PaddleOCRVLBlock, PaddleOCRVLResult

    return type(
        "Paddle",
        (),
        {
            "paddleocr": paddleocr,
            "Wrapper": PaddleXPipelineWrapper,
            "Pipeline": _PaddleOCRVLPipeline,
            "Block": PaddleOCRVLBlock,
            "Result": PaddleOCRVLResult,
            "img_path": staticmethod(construct_img_path),
        },
    )


def page_blocks(paddle: Any, n: int, bgr: np.ndarray) -> list[Any]:
    """What the models would find on synthetic page n, in the pipeline's reading order."""
    h, w = bgr.shape[:2]
    sx, sy = w / PAGE_W, h / PAGE_H

    def box(x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return [round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)]

    title = "doc_title" if n == 0 else "paragraph_title"
    table = "<table><tr><td>Item</td><td>Qty</td></tr><tr><td>Pens</td><td>" + f"{n + 2}</td></tr></table>"
    picture = paddle.Block("image", box(*IMAGE_BOX))
    x0, y0, x1, y1 = picture.bbox
    # As _paddleocr_vl_assemble_parsing_results does: the crop of the BGR page, as an RGB PIL image.
    crop = Image.fromarray(np.ascontiguousarray(bgr[y0:y1, x0:x1, ::-1]))
    picture.image = {"path": paddle.img_path("image", picture.bbox), "img": crop}
    return [
        paddle.Block("header", box(0, 0, 800, 30), "Running head"),
        paddle.Block(title, box(60, 50, 740, 100), f"Report part {n + 1}"),
        paddle.Block("text", box(60, 120, 740, 220), f"Body of page {n + 1}.\nIt goes on."),
        paddle.Block("table", box(60, 240, 740, 400), table),
        paddle.Block("display_formula", box(60, 420, 740, 470), f" $$ E = mc^{n + 2} $$ "),
        picture,
        paddle.Block("footer", box(0, 1000, 800, 1030), f"Page {n + 1} of 2"),
    ]


def make_fake_pipeline(paddle: Any) -> type:
    class FakeVLPipeline(paddle.Pipeline):
        """Stands in for the PaddleX pipeline `create_pipeline` builds: that one holds the layout model
        and the VLM, the only part that cannot exist without a GPU and the weights. Everything after
        inference is the package's code: model settings, result classes, Markdown, page joining."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__(config=config, initial_predictor=False)
            # The attributes _PaddleOCRVLPipeline.__init__ reads from its config (pipeline.py).
            self.use_doc_preprocessor = config.get("use_doc_preprocessor", True)
            self.use_layout_detection = config.get("use_layout_detection", True)
            self.use_chart_recognition = config.get("use_chart_recognition", False)
            self.use_seal_recognition = config.get("use_seal_recognition", False)
            self.format_block_content = config.get("format_block_content", False)
            self.use_ocr_for_image_block = config.get("use_ocr_for_image_block", False)
            self.merge_layout_blocks = config.get("merge_layout_blocks", True)
            self.markdown_ignore_labels = config.get("markdown_ignore_labels", [])
            self.config = config
            self.inputs: list[np.ndarray] = []
            self.results: list[Any] = []
            self.threads: set[int] = set()
            self.calls = 0
            self.gate: threading.Event | None = None
            self.fail: Exception | None = None
            self.yield_error = False

        def predict(self, input: Any, use_doc_orientation_classify: Any = False, **kw: Any) -> Iterator[Any]:
            self.calls += 1
            self.threads.add(threading.get_ident())
            if self.gate is not None:
                self.gate.wait(10)
            if self.fail is not None:
                raise self.fail
            if self.yield_error:
                yield {"error": "the input params for model settings are invalid!"}
                return
            settings = self.get_model_settings(
                use_doc_orientation_classify,
                kw.get("use_doc_unwarping", False),
                kw.get("use_layout_detection"),
                kw.get("use_chart_recognition"),
                kw.get("use_seal_recognition"),
                kw.get("use_ocr_for_image_block"),
                kw.get("format_block_content"),
                kw.get("merge_layout_blocks"),
                kw.get("markdown_ignore_labels"),
            )
            settings["return_layout_polygon_points"] = kw.get("layout_shape_mode", "auto") != "rect"
            for bgr in input if isinstance(input, list) else [input]:
                assert isinstance(bgr, np.ndarray) and bgr.dtype == np.uint8 and bgr.shape[2] == 3
                self.inputs.append(bgr)
                n = round(int(bgr[bgr.shape[0] // 2, -5, 2]) / 40) - 1  # red is channel 2 in BGR
                # The keys _process_vlm puts in each page's result (pipeline.py); numpy input has no
                # input path or page index.
                result = paddle.Result(
                    {
                        "input_path": None,
                        "page_index": None,
                        "page_count": None,
                        "width": bgr.shape[1],
                        "height": bgr.shape[0],
                        "doc_preprocessor_res": {"output_img": bgr},
                        "layout_det_res": {"input_path": None, "page_index": None, "boxes": []},
                        "table_res_list": [],
                        "parsing_res_list": page_blocks(paddle, n, bgr),
                        "spotting_res": {},
                        "imgs_in_doc": [],
                        "model_settings": settings,
                    }
                )
                self.results.append(result)
                yield result

    return FakeVLPipeline


class Built:
    """What the engine built: each `PaddleOCRVL(...)`'s arguments and its fake PaddleX pipeline."""

    def __init__(self) -> None:
        self.kwargs: list[dict[str, Any]] = []
        self.wrappers: list[Any] = []

    @property
    def pipelines(self) -> list[Any]:
        return [w.paddlex_pipeline for w in self.wrappers]


@pytest.fixture
def built(paddle: Any, monkeypatch: pytest.MonkeyPatch) -> Built:
    """The real PaddleOCRVL runs as is; only its `_create_paddlex_pipeline` (which loads the models)
    returns the fake, built from the config the real wrapper merged from its arguments."""
    record = Built()
    fake_cls = make_fake_pipeline(paddle)

    class RecordingPaddleOCRVL(paddle.paddleocr.PaddleOCRVL):
        def __init__(self, **kwargs: Any) -> None:
            record.kwargs.append(kwargs)
            super().__init__(**kwargs)
            record.wrappers.append(self)

    monkeypatch.setattr(
        paddle.Wrapper, "_create_paddlex_pipeline", lambda self: fake_cls(self._merged_paddlex_config)
    )
    monkeypatch.setattr(paddle.paddleocr, "PaddleOCRVL", RecordingPaddleOCRVL)
    monkeypatch.setattr(vl_mod, "_require_paddle", lambda: None)  # the layout model's runtime
    return record


def models(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


@pytest.fixture
def v16_models(tmp_path: Path) -> Path:
    return models(tmp_path / "official_models", LAYOUT_V3, VL_16)


def loaded(env: dict[str, str], models_dir: Path) -> PaddleOCRVLEngine:
    engine = make_engine({"PADDLEOCR_VL_MODELS_DIR": str(models_dir), **env})
    engine.load()
    return engine


# ------------------------------------------------ the constructor gets exactly the environment


def test_native_defaults_reach_the_constructor(built: Built, v16_models: Path) -> None:
    engine = loaded({}, v16_models)
    assert built.kwargs == [
        {
            "pipeline_version": "v1.6",
            "layout_detection_model_dir": str(v16_models / LAYOUT_V3),
            "vl_rec_model_dir": str(v16_models / VL_16),
            "vl_rec_backend": "native",
        }
    ]
    config = built.wrappers[0]._merged_paddlex_config  # the real wrapper's PaddleX config
    assert config["pipeline_name"] == "PaddleOCR-VL-1.6"
    assert config["SubModules"]["VLRecognition"]["model_dir"] == str(v16_models / VL_16)
    assert engine.version.endswith("PaddleOCR-VL-1.6 (PP-DocLayoutV3, PaddleOCR-VL-1.6-0.9B)")
    assert engine.fingerprint.startswith("paddleocr-vl-")


def test_server_settings_reach_the_constructor(built: Built, tmp_path: Path) -> None:
    root = models(tmp_path / "m", LAYOUT_V3, "PP-LCNet_x1_0_doc_ori")  # no VLM: the server has it
    env = {
        **SERVER_ENV,
        "PADDLEOCR_VL_PIPELINE_VERSION": "v1.6",
        "PADDLEOCR_VL_DEVICE": "gpu:0",
        "PADDLEOCR_VL_SERVER_MODEL_NAME": "PaddleOCR-VL-1.6-0.9B",
        "PADDLEOCR_VL_SERVER_API_KEY": "secret",
        "PADDLEOCR_VL_SERVER_MAX_CONCURRENCY": "16",
        "PADDLEOCR_VL_CONCURRENCY": "2",
        "PADDLEOCR_VL_USE_DOC_ORIENTATION_CLASSIFY": "true",
        "PADDLEOCR_VL_USE_CHART_RECOGNITION": "true",
        "PADDLEOCR_VL_USE_SEAL_RECOGNITION": "false",
        "PADDLEOCR_VL_USE_OCR_FOR_IMAGE_BLOCK": "false",
        "PADDLEOCR_VL_MERGE_LAYOUT_BLOCKS": "true",
        "PADDLEOCR_VL_USE_QUEUES": "true",
        "PADDLEOCR_VL_LAYOUT_THRESHOLD": "0.4",
        "PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": "footer,number",
    }
    engine = loaded(env, root)
    expected = {
        "pipeline_version": "v1.6",
        "layout_detection_model_dir": str(root / LAYOUT_V3),
        "doc_orientation_classify_model_dir": str(root / "PP-LCNet_x1_0_doc_ori"),
        "device": "gpu:0",
        "vl_rec_backend": "vllm-server",
        "vl_rec_server_url": "http://vlm:8118/v1",
        "vl_rec_api_model_name": "PaddleOCR-VL-1.6-0.9B",
        "vl_rec_api_key": "secret",
        "vl_rec_max_concurrency": 16,
        "use_doc_orientation_classify": True,
        "use_chart_recognition": True,
        "use_seal_recognition": False,
        "use_ocr_for_image_block": False,
        "merge_layout_blocks": True,
        "use_queues": True,
        "layout_threshold": 0.4,
        "markdown_ignore_labels": ["footer", "number"],
    }
    assert built.kwargs == [expected, expected]  # two pipelines, one per concurrent document
    genai = built.wrappers[0]._merged_paddlex_config["SubModules"]["VLRecognition"]["genai_config"]
    assert genai["backend"] == "vllm-server" and genai["server_url"] == "http://vlm:8118/v1"
    assert genai["max_concurrency"] == 16
    assert "secret" not in engine.fingerprint and "secret" not in str(engine.settings())


def test_an_argument_the_package_does_not_know_fails(
    built: Built, v16_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past our own check (as if it were one of paddleocr's common arguments): the package refuses it.
    monkeypatch.setitem(CONSTRUCTOR_ARGS, "device", "gpu_device")
    monkeypatch.setattr(vl_models, "COMMON_ARGS", frozenset({"gpu_device"}))
    with pytest.raises(EngineLoadError, match="Unknown argument: gpu_device"):
        loaded({"PADDLEOCR_VL_DEVICE": "gpu:0"}, v16_models)


def test_a_setting_the_wrapper_lacks_names_its_variable(
    built: Built, v16_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CONSTRUCTOR_ARGS, "use_queues", "use_queue")
    with pytest.raises(EngineLoadError, match="PADDLEOCR_VL_USE_QUEUES is not supported"):
        loaded({"PADDLEOCR_VL_USE_QUEUES": "true"}, v16_models)


def test_a_version_the_package_lacks_fails(built: Built, v16_models: Path) -> None:
    with pytest.raises(EngineLoadError, match="PADDLEOCR_VL_PIPELINE_VERSION=v9 is not offered"):
        loaded({"PADDLEOCR_VL_PIPELINE_VERSION": "v9"}, v16_models)


def test_auto_version_follows_the_models_present(built: Built, tmp_path: Path) -> None:
    # The v1 offline image: PaddleOCR-VL_infer.tar unpacked to PaddleOCR-VL (gpu-sm120 Dockerfile).
    root = models(tmp_path / "m", "PP-DocLayoutV2", "PaddleOCR-VL/PaddleOCR-VL-0.9B")
    engine = loaded({}, root)
    assert built.kwargs[0]["pipeline_version"] == "v1"
    assert built.kwargs[0]["vl_rec_model_dir"] == str(root / "PaddleOCR-VL" / "PaddleOCR-VL-0.9B")
    assert engine.settings()["pipeline_version"] == "v1"


def test_missing_models_name_the_directory(built: Built, tmp_path: Path) -> None:
    root = models(tmp_path / "m", LAYOUT_V3)
    with pytest.raises(EngineLoadError, match="PADDLEOCR_VL_MODELS_DIR") as caught:
        loaded({}, root)
    assert "PaddleOCR-VL-1.6-0.9B" in str(caught.value) and str(root) in str(caught.value)
    assert built.kwargs == [], "nothing may be built (or downloaded) without the models"


def test_missing_models_are_readiness_503(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PADDLEOCR_VL_MODELS_DIR", str(tmp_path / "empty"))
    runtime = Runtime(load_settings({"OCR_ENGINE": "paddleocr-vl", "OCR_STORE": f"file://{tmp_path}"}))
    runtime.start()
    deadline = time.monotonic() + 30
    while runtime.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runtime.ready and "model directories not found" in runtime.not_ready_reason()


def test_paddleocr_3_3_has_no_pipeline_version(paddle: Any, built: Built, tmp_path: Path) -> None:
    class Wrapper33:
        """PaddleOCRVL.__init__'s parameters in paddleocr 3.3.2 (paddleocr/_pipelines/paddleocr_vl.py),
        the package of the default gpu-sm120 image: no pipeline_version, v1 only."""

        def __init__(
            self,
            layout_detection_model_name: Any = None,
            layout_detection_model_dir: Any = None,
            vl_rec_model_name: Any = None,
            vl_rec_model_dir: Any = None,
            vl_rec_backend: Any = None,
            vl_rec_server_url: Any = None,
            vl_rec_max_concurrency: Any = None,
            use_layout_detection: Any = None,
            use_chart_recognition: Any = None,
            format_block_content: Any = None,
            **kwargs: Any,
        ) -> None: ...

    root = models(tmp_path / "m", "PP-DocLayoutV2", "PaddleOCR-VL")
    env = {"PADDLEOCR_VL_MODELS_DIR": str(root), "PADDLEOCR_VL_DEVICE": "gpu:0"}
    assert make_engine(env).constructor_kwargs(Wrapper33) == {
        "layout_detection_model_dir": str(root / "PP-DocLayoutV2"),
        "vl_rec_model_dir": str(root / "PaddleOCR-VL"),
        "vl_rec_backend": "native",
        "device": "gpu:0",
    }
    newer = make_engine({**env, "PADDLEOCR_VL_USE_SEAL_RECOGNITION": "true"})
    with pytest.raises(EngineLoadError, match="PADDLEOCR_VL_USE_SEAL_RECOGNITION is not supported"):
        newer.constructor_kwargs(Wrapper33)


# ------------------------------------------------ pages through the adapter


def run(engine: PaddleOCRVLEngine, pages: list[PageImage]) -> Document:
    doc = engine.predict(iter(pages), Options())
    assert isinstance(doc, Document)
    return doc


def test_a_page_maps_to_the_document_model(built: Built, v16_models: Path) -> None:
    engine = loaded({}, v16_models)
    doc = run(engine, [PageImage(0, synthetic_page(0))])
    fake = built.pipelines[0]
    (page,) = doc.pages
    assert (page.index, page.width, page.height) == (0, PAGE_W, PAGE_H)
    # The pipeline got the page as BGR, the way PaddleX reads an ndarray.
    assert tuple(fake.inputs[0][500, 795]) == tuple(reversed(page_colour(0)))

    labels = [b.label for b in page.blocks]
    assert labels == ["header", "doc_title", "text", "table", "display_formula", "image", "footer"]
    assert [b.order for b in page.blocks] == [None, 0, 1, 2, 3, 4, None]
    by = {b.label: b for b in page.blocks}
    assert by["doc_title"].text == "Report part 1"
    assert by["text"].text == "Body of page 1.\nIt goes on."
    assert by["table"].html.startswith("<table><tr><td>Item</td>")
    assert by["table"].text == "Item\tQty\nPens\t2"
    assert by["display_formula"].text == "$$ E = mc^2 $$"
    assert by["footer"].text == "Page 1 of 2" and by["footer"].is_marginal
    picture = by["image"]
    assert picture.bbox == IMAGE_BOX and picture.text == ""
    assert picture.image == "imgs/img_in_image_box_80_620_320_820.jpg"
    crop = doc.images[picture.image]
    assert crop.size == (240, 200) and crop.getpixel((100, 100)) == picture_colour(0)

    # The same blocks as the package's own JSON (result.py _to_json): ids, labels, boxes, content.
    reference = fake.results[0].json["res"]["parsing_res_list"]
    assert [(b.id, b.label, list(b.bbox)) for b in page.blocks] == [
        (r["block_id"], r["block_label"], r["block_bbox"]) for r in reference
    ]
    assert [r["block_order"] for r in reference] == [None, 1, 2, None, 3, None, None]

    # PaddleOCR-VL's own Markdown, footer and header left out by its default ignore labels.
    own = fake.results[0].markdown["markdown_texts"]
    assert doc.markdown == own.strip("\n") + "\n"
    assert doc.markdown.startswith("# Report part 1\n")
    assert "<table border=1" in doc.markdown and "$$ E = mc^2 $$" in doc.markdown
    assert 'src="imgs/img_in_image_box_80_620_320_820.jpg"' in doc.markdown
    assert "Page 1 of 2" not in doc.markdown and "Running head" not in doc.markdown


def two_page_pdf() -> bytes:
    buf = io.BytesIO()
    first, second = synthetic_page(0), synthetic_page(1)
    first.save(buf, "PDF", save_all=True, append_images=[second], resolution=100.0)
    return buf.getvalue()


def pdf_pages(data: bytes) -> PageSource:
    return PageSource(data, sniff(data), None, PageLimits(max_pixels=10**8, max_pages=10, pdf_dpi=100))


@pytest.mark.parametrize("pages_per_call", [1, 8])
def test_a_two_page_pdf_joins_in_order(
    built: Built, v16_models: Path, monkeypatch: pytest.MonkeyPatch, pages_per_call: int
) -> None:
    monkeypatch.setattr(vl_mod, "PAGES_PER_CALL", pages_per_call)
    engine = loaded({}, v16_models)
    doc = engine.predict(pdf_pages(two_page_pdf()), Options())
    fake = built.pipelines[0]
    assert fake.calls == (2 if pages_per_call == 1 else 1)
    assert [p.index for p in doc.pages] == [0, 1]
    assert [p.blocks[1].text for p in doc.pages] == ["Report part 1", "Report part 2"]
    assert [p.blocks[1].label for p in doc.pages] == ["doc_title", "paragraph_title"]

    # Joined by the package's own concatenate_markdown_pages, page 1 first.
    first_md, second_md = (r.markdown for r in fake.results)
    second_md["markdown_texts"] = second_md["markdown_texts"].replace("imgs/", "imgs/page2/")
    joined = fake.concatenate_markdown_pages([first_md, second_md])
    assert doc.markdown == joined.strip("\n") + "\n"
    text = doc.markdown
    assert text.index("Report part 1") < text.index("Body of page 1") < text.index("Report part 2")
    assert "Page 1 of 2" not in doc.markdown and "Page 2 of 2" not in doc.markdown

    # The picture sits at the same place on both pages: page 2's crop gets a folder of its own.
    first, second = (p.blocks[5].image for p in doc.pages)
    assert first == "imgs/img_in_image_box_80_620_320_820.jpg"
    assert second == "imgs/page2/img_in_image_box_80_620_320_820.jpg"
    assert set(doc.images) == {first, second} and f'src="{second}"' in doc.markdown
    for n, path in enumerate((first, second)):
        crop = doc.images[path]
        pixel = crop.getpixel((crop.width // 2, crop.height // 2))
        assert all(abs(a - b) <= 8 for a, b in zip(pixel, picture_colour(n), strict=True))


def test_restructure_pages_when_configured(built: Built, v16_models: Path) -> None:
    pytest.importorskip("bs4", reason="restructure_pages needs paddleocr[doc-parser]")
    engine = loaded(
        {"PADDLEOCR_VL_RESTRUCTURE_PAGES": "true", "PADDLEOCR_VL_MERGE_TABLES": "false"}, v16_models
    )
    doc = run(engine, [PageImage(0, synthetic_page(0)), PageImage(1, synthetic_page(1))])
    # relevel_titles made page 2's paragraph title a second-level heading under the document title.
    assert "# Report part 1" in doc.markdown and "## Report part 2" in doc.markdown
    assert doc.markdown.index("Report part 1") < doc.markdown.index("Report part 2")
    assert [p.index for p in doc.pages] == [0, 1] and doc.pages[1].blocks[1].text == "Report part 2"


def test_plain_markdown_setting(built: Built, v16_models: Path) -> None:
    engine = loaded(
        {"PADDLEOCR_VL_PRETTY_MARKDOWN": "false", "PADDLEOCR_VL_MARKDOWN_IGNORE_LABELS": "none"}, v16_models
    )
    doc = run(engine, [PageImage(0, synthetic_page(0))])
    assert "![](imgs/img_in_image_box_80_620_320_820.jpg)" in doc.markdown
    assert "Page 1 of 2" in doc.markdown, "no ignored labels: the footer is in the Markdown"
    assert doc.pages[0].blocks[-1].order is None, "but it stays marginal in the document model"


def test_a_pipeline_error_item_raises(built: Built, v16_models: Path) -> None:
    engine = loaded({}, v16_models)
    built.pipelines[0].yield_error = True
    with pytest.raises(RuntimeError, match="model settings are invalid"):
        run(engine, [PageImage(0, synthetic_page(0))])


def test_a_server_failure_is_upstream_failed(built: Built, tmp_path: Path) -> None:
    engine = loaded({**SERVER_ENV, "PADDLEOCR_VL_CONCURRENCY": "1"}, models(tmp_path / "m", LAYOUT_V3))
    built.pipelines[0].fail = ConnectionError("Connection error.")
    with pytest.raises(UpstreamFailed, match="vllm-server backend failed"):
        run(engine, [PageImage(0, synthetic_page(0))])


# ------------------------------------------------ concurrency


def in_threads(work: Callable[[], Any], count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def test_native_runs_one_document_at_a_time_on_one_thread(built: Built, v16_models: Path) -> None:
    engine = loaded({}, v16_models)
    (fake,) = built.pipelines
    fake.gate = threading.Event()
    threads = in_threads(lambda: run(engine, [PageImage(0, synthetic_page(0))]), 3)
    time.sleep(0.3)
    assert fake.calls == 1, "a second document entered the pipeline while the first ran"
    fake.gate.set()
    for t in threads:
        t.join(10)
    assert fake.calls == 3 and len(fake.threads) == 1


def test_server_runs_documents_side_by_side(built: Built, tmp_path: Path) -> None:
    engine = loaded({**SERVER_ENV, "PADDLEOCR_VL_CONCURRENCY": "2"}, models(tmp_path / "m", LAYOUT_V3))
    fakes = built.pipelines
    assert len(fakes) == 2
    gate = threading.Event()
    for fake in fakes:
        fake.gate = gate
    threads = in_threads(lambda: run(engine, [PageImage(0, synthetic_page(0))]), 3)
    time.sleep(0.3)
    assert sum(f.calls for f in fakes) == 2, "two documents at once, the third waits"
    gate.set()
    for t in threads:
        t.join(10)
    assert sum(f.calls for f in fakes) == 3
    assert all(len(f.threads) == 1 for f in fakes) and fakes[0].threads != fakes[1].threads
