"""Named models: short references such as ``ppocr:det`` that resolve to .onnx files on disk.

Two kinds of entries:

* files shipped inside a Python package's wheel (the PP-OCR models come with
  ``rapidocr-onnxruntime``; only its folder is looked up, the package is never imported, because
  its ``__init__`` pulls in OpenCV);
* files of this repository (``models/...``), which exist only in a source checkout.

``resolve_model`` accepts a registered name or a plain path, so configuration keys and
constructor arguments can take either.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vidinfer.errors import ModelError

__all__ = ["resolve_model", "list_models", "is_model_name"]

# The repository root: the parent of the vidinfer package folder (models/ sits next to vidinfer/).
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class _Entry:
    description: str
    package: str | None = None  # the distribution's import name; None: a repository file
    pip_name: str | None = None
    relpath: str = ""  # inside the package folder, or repository-relative


_PPOCR = ("rapidocr_onnxruntime", "rapidocr-onnxruntime")
_REGISTRY: dict[str, _Entry] = {
    "ppocr:det": _Entry("PP-OCRv4 text detector (DBNet, dynamic input size)", *_PPOCR,
                        "models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocr:cls": _Entry("PP-OCR mobile v2.0 text orientation classifier (0 / 180 degrees)", *_PPOCR,
                        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "ppocr:rec": _Entry("PP-OCRv4 text recogniser (CTC, 6623 characters: Chinese, Latin, digits)",
                        *_PPOCR, "models/ch_PP-OCRv4_rec_infer.onnx"),
    "shapes:detector": _Entry("synthetic-shapes YOLO detector (test asset)", relpath="models/shapes/detector.onnx"),
    "shapes:shade": _Entry("synthetic-shapes shade classifier (test asset)", relpath="models/shapes/shade.onnx"),
    "logos:detector": _Entry("brand logo detector", relpath="models/logos/detector.onnx"),
}

# "family:variant"; a drive letter ("C:...") or anything with a path separator is a path.
_NAME = re.compile(r"^[A-Za-z][\w.-]+:[\w.-]+$")


def is_model_name(ref: str | os.PathLike[str]) -> bool:
    """True when ``ref`` is written as a registry name (``family:variant``) rather than a path."""
    return isinstance(ref, str) and bool(_NAME.match(ref))


def _package_dir(import_name: str) -> Path | None:
    """The installed package's folder, found without importing (executing) the package."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _locate(entry: _Entry) -> Path | None:
    """The entry's file if it exists, else None."""
    if entry.package is not None:
        root = _package_dir(entry.package)
        if root is None:
            return None
        path = root / entry.relpath
    else:
        path = _REPO_ROOT / entry.relpath
    return path if path.is_file() else None


def resolve_model(ref: str | os.PathLike[str], must_exist: bool = True) -> Path:
    """The .onnx file a model reference names.

    Args:
        ref: a registered name (``ppocr:det``, ``ppocr:cls``, ``ppocr:rec``, ``shapes:detector``,
            ``shapes:shade``, ``logos:detector``) or a path, which is returned unchanged.
        must_exist: for plain paths, raise when the file does not exist.

    Raises:
        ModelError: an unknown name, a registered model that is not installed, or a missing file.
    """
    if is_model_name(ref):
        name = str(ref)
        entry = _REGISTRY.get(name)
        if entry is None:
            raise ModelError(f"unknown model name {name!r}; known names are "
                             f"{', '.join(sorted(_REGISTRY))}, or give a path to an .onnx file")
        path = _locate(entry)
        if path is not None:
            return path
        if entry.package is not None:
            if _package_dir(entry.package) is None:
                raise ModelError(f"model {name!r} comes with the {entry.pip_name} package, which is "
                                 f"not installed; run: pip install {entry.pip_name}")
            raise ModelError(f"model {name!r} should be {entry.relpath} inside the installed "
                             f"{entry.pip_name} package but is missing; reinstall it with: "
                             f"pip install --force-reinstall {entry.pip_name}")
        if (_REPO_ROOT / "pyproject.toml").is_file():
            raise ModelError(f"model {name!r} is not installed: {entry.relpath} is missing from this "
                             "checkout; create or fetch that file, or give a path to an .onnx file")
        raise ModelError(f"model {name!r} is not installed: {entry.relpath} exists only in a source "
                         "checkout of vidinfer; run from a checkout or give a path to the .onnx file")
    path = Path(ref)
    if must_exist and not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; check the path or use a "
                         f"registered name ({', '.join(sorted(_REGISTRY))})")
    return path


def list_models() -> list[tuple[str, Path | None, str]]:
    """(name, file or None when not installed, description) for every registered model."""
    return [(name, _locate(entry), entry.description) for name, entry in _REGISTRY.items()]
