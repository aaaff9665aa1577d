"""Choosing which model output an adapter reads."""

from __future__ import annotations

from typing import Any

from vidinfer.errors import ModelError

__all__ = ["select_output"]


def select_output(output_shapes: dict[str, tuple[Any, ...]], name: str | None, model_name: str) -> str:
    """The configured output, or the model's first one; a missing name is a `ModelError`."""
    if name is None:
        return next(iter(output_shapes))
    if name not in output_shapes:
        raise ModelError(f"{model_name} has no output {name!r} (it has "
                         f"{', '.join(map(repr, output_shapes))}); fix 'output' in the configuration")
    return name
