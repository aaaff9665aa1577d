"""The engine seam every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Engine", "ImageInput"]


@dataclass(frozen=True)
class ImageInput:
    """The image input a model takes: an (N, C, H, W) batch.

    ``batch`` is None when the batch dimension is dynamic, else the fixed batch size the model
    was exported with (short batches are padded up to it).
    """

    name: str
    batch: int | None
    channels: int
    height: int
    width: int
    dtype: np.dtype

    def padded_size(self, n: int) -> int:
        """How many batch slots a run of ``n`` images occupies: n, or n rounded up to the fixed batch."""
        if self.batch is None:
            return n
        return -(-n // self.batch) * self.batch


@runtime_checkable
class Engine(Protocol):
    """Runs an image batch through a model.

    ``run`` takes an (n, C, H, W) array of the backend's array type (NumPy for CPU engines, CuPy
    for GPU ones) and returns every output with its leading dimension cut to ``n``.
    """

    backend: str  # "onnxruntime", "tensorrt", ...
    device: str  # "cpu", "cuda:0", ...
    input: ImageInput
    output_names: list[str]
    output_shapes: dict[str, tuple[int | str | None, ...]]

    def run(self, batch: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...
