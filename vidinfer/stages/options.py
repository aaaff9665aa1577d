"""Option types the built-in stages share: model and file references, class lists.

`ModelRef` and `FileRef` mark the fields the TOML loader resolves against the pipeline file's
folder and checks before anything starts (naming the key); in Python code paths are relative to
the working directory and are checked when the stage opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from vidinfer.errors import ConfigError, ModelError
from vidinfer.models.registry import is_model_name, resolve_model

__all__ = ["FileRef", "ModelRef", "IsFile", "IsModel", "read_labels", "check_labels", "model_file"]


class IsFile:
    """Metadata of a field naming a file that must exist (relative to the pipeline file in TOML)."""


class IsModel(IsFile):
    """A model file, or a registered model name such as ``logos:detector`` (`vidinfer models`)."""


ModelRef = Annotated[Path, IsModel()]
FileRef = Annotated[Path, IsFile()]


def check_labels(inline: Optional[list[str]], path: Optional[Path], key: str) -> None:
    """Exactly one of an inline class list and a labels file (a pydantic validator's rule)."""
    if inline is None and path is None:
        raise ValueError(f"give either {key} = [...] or labels_file = \"...\"")
    if inline is not None and path is not None:
        raise ValueError(f"give {key} or labels_file, not both")


def read_labels(inline: Optional[list[str]], path: Optional[Path], what: str) -> list[str]:
    """The class names, from the inline list or the labels file (one name per line)."""
    if inline is not None:
        return list(inline)
    assert path is not None
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{what}: labels file '{path}' cannot be read ({exc.strerror or exc}); "
                          "fix the path") from None


def model_file(ref: Path | str, what: str) -> Path:
    """The file of a model reference (a path, or a registered name); `ConfigError` naming ``what``."""
    try:
        return resolve_model(str(ref) if is_model_name(str(ref)) else Path(ref))
    except ModelError as exc:
        raise ConfigError(f"{what}: {exc}") from None
