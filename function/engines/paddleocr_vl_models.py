"""PaddleOCR-VL's models: which pipeline version to build, the model each of its roles needs, where
that model's directory is, and the `PaddleOCRVL(...)` arguments that name them all — so nothing is
looked up or downloaded at load, and a missing directory is an `EngineLoadError` that names it."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from function.engines.base import EngineLoadError, package_version
from function.engines.paddleocr_vl_settings import CONSTRUCTOR_ARGS, VAR, VLSettings

COMMON_ARGS = frozenset({"device"})  # paddleocr/_common_args.py, taken through **kwargs


def pipeline_name(version: str) -> str:
    """PaddleX pipeline of a wrapper version (PaddleOCRVL._paddlex_pipeline_name)."""
    return "PaddleOCR-VL" if version == "v1" else f"PaddleOCR-VL-{version[1:]}"


def model_dir(models_dir: Path, model_name: str) -> Path | None:
    """Where PaddleX's cache keeps a model (official_models.py `_get_model_local_path`):
    "PaddleOCR-VL-1.6-0.9B" lives in "PaddleOCR-VL-1.6"; "PaddleOCR-VL-0.9B" may sit one level down."""
    base = models_dir / (model_name.replace("-0.9B", "") if "PaddleOCR-VL" in model_name else model_name)
    nested = base / model_name
    if nested.is_dir():
        return nested
    return base if base.is_dir() else None


def pipeline_models(name: str) -> dict[str, str]:
    """Model names of a PaddleX pipeline, from the package's own YAML (role -> name)."""
    from paddlex.inference import load_pipeline_config

    config = load_pipeline_config(name)
    modules = config.get("SubModules", {})
    pre = config.get("SubPipelines", {}).get("DocPreprocessor", {}).get("SubModules", {})
    roles = {
        "layout": modules.get("LayoutDetection", {}),
        "vl": modules.get("VLRecognition", {}),
        "orientation": pre.get("DocOrientationClassify", {}),
        "unwarping": pre.get("DocUnwarping", {}),
    }
    return {role: sub["model_name"] for role, sub in roles.items() if sub.get("model_name")}


# role -> the constructor argument that takes its directory
DIR_ARGS = {
    "layout": "layout_detection_model_dir",
    "vl": "vl_rec_model_dir",
    "orientation": "doc_orientation_classify_model_dir",
    "unwarping": "doc_unwarping_model_dir",
}


def init_parameters(cls: type) -> set[str]:
    """Named `__init__` parameters along the class's MRO (a subclass may pass **kwargs up)."""
    names: set[str] = set()
    for klass in cls.__mro__[:-1]:
        if "__init__" in vars(klass):
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"self"}


def available_versions(cls: type) -> list[str]:
    """Pipeline versions the installed wrapper offers; before 3.4 there is no choice (v1 only)."""
    if "pipeline_version" not in init_parameters(cls):
        return ["v1"]
    for klass in cls.__mro__:
        versions = getattr(sys.modules.get(klass.__module__), "_AVAILABLE_PIPELINE_VERSIONS", None)
        if versions:
            return list(versions)
    return ["v1"]


def needed_roles(vl: VLSettings) -> list[str]:
    roles = [] if vl.use_layout_detection is False else ["layout"]
    roles += [] if vl.uses_server else ["vl"]  # a server backend runs the VLM elsewhere
    roles += ["orientation"] if vl.use_doc_orientation_classify else []
    roles += ["unwarping"] if vl.use_doc_unwarping else []
    return roles


def resolve_models(vl: VLSettings, versions: list[str]) -> tuple[str, dict[str, str], dict[str, Path]]:
    """The pipeline version, its models (role -> name) and the directory of each; all must exist."""
    root = Path(vl.models_dir)
    wanted = vl.pipeline_version
    if wanted is not None and wanted not in versions:
        raise EngineLoadError(
            f"PADDLEOCR_VL_PIPELINE_VERSION={wanted} is not offered by paddleocr "
            f"{package_version('paddleocr')} (it offers {', '.join(versions)})"
        )
    missing: list[str] = []
    for version in [wanted] if wanted else list(reversed(versions)):
        names = pipeline_models(pipeline_name(version))
        needed = {role: names[role] for role in needed_roles(vl) if role in names}
        dirs = {role: model_dir(root, name) for role, name in needed.items()}
        lost = [needed[role] for role, path in dirs.items() if path is None]
        if lost:
            missing.append(f"{version}: {', '.join(lost)}")
            continue
        if vl.uses_server and "vl" in names:  # the VLM runs on the server
            needed["vl"] = vl.server_model_name or names["vl"]
        return version, needed, {role: path for role, path in dirs.items() if path is not None}
    raise EngineLoadError(
        f"PaddleOCR-VL model directories not found in {root} (PADDLEOCR_VL_MODELS_DIR) for "
        f"{'; '.join(missing)}; use the offline image or mount the models there"
    )


def constructor_kwargs(vl: VLSettings, cls: type) -> tuple[dict[str, Any], str, dict[str, str]]:
    """`PaddleOCRVL(...)` arguments — the settings that are set, the version and the model dirs —
    with the version and models they resolved to."""
    versions = available_versions(cls)
    version, models, dirs = resolve_models(vl, versions)
    kwargs: dict[str, Any] = {}
    if "pipeline_version" in init_parameters(cls):
        kwargs["pipeline_version"] = version
    kwargs.update({DIR_ARGS[role]: str(path) for role, path in dirs.items()})
    for name, arg in CONSTRUCTOR_ARGS.items():
        value = getattr(vl, name)
        if value is not None:
            kwargs[arg] = list(value) if isinstance(value, tuple) else value
    check_supported(cls, kwargs)
    return kwargs, version, models


def check_supported(cls: type, kwargs: Mapping[str, Any]) -> None:
    """A setting the installed wrapper has no argument for (older paddleocr) names its variable.
    The common arguments (device) travel in **kwargs; the package itself checks those."""
    known = init_parameters(cls) | COMMON_ARGS
    for name, arg in CONSTRUCTOR_ARGS.items():
        if arg in kwargs and arg not in known:
            raise EngineLoadError(
                f"{VAR[name]} is not supported by paddleocr {package_version('paddleocr')} "
                f"(PaddleOCRVL has no {arg} argument)"
            )
