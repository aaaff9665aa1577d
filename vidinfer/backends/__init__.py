"""Execution backends: what differs between the CPU and the GPU pipeline, behind one interface.

A `Pipeline` holds one backend, chosen by `vidinfer.devices.plan_device` from ``device``; stages
reach it through their `StageContext` (``ctx.engine(...)``, ``ctx.backend``). Only `cpu` is
imported by default; `gpu` imports CuPy and the GPU engines when it is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vidinfer.devices import DevicePlan

if TYPE_CHECKING:
    from vidinfer.config import GpuSpec, StreamSpec
    from vidinfer.engines.base import Engine, ImageInput
    from vidinfer.frame import Frame
    from vidinfer.preprocess.letterbox import InputConvention, Letterbox
    from vidinfer.sources.base import Source

__all__ = ["Backend", "PendingRun", "make_backend"]


class PendingRun(Protocol):
    """A detector run started by `Backend.launch`; ``outputs()`` waits for it (NumPy outputs)."""

    def outputs(self) -> dict[str, Any]: ...


class Backend(Protocol):
    """What a pipeline runs on.

    Attributes:
        name: ``"cpu"`` or ``"gpu"``.
        pipelined: whether the pipeline may start batch k+1's detectors before finishing batch k.
        plan: the device plan (which module each part got, and why).
    """

    name: str
    pipelined: bool
    plan: DevicePlan

    def make_source(self, spec: StreamSpec) -> Source:
        """The source of a file or URL stream, with this backend's decoder."""
        ...

    def make_engine(self, path: Path, input_size: tuple[int, int] | None, threads: int, role: str,
                    max_batch: int) -> Engine:
        """An engine for an ONNX model; ``role`` names it in errors."""
        ...

    def new_batch(self, inp: ImageInput, slots: int) -> Any:
        """An empty (slots, C, H, W) detector input of this backend's array type."""
        ...

    def launch(self, engine: Engine, batch: Any, frames: Sequence[Frame], boxes: Sequence[Letterbox],
               convention: InputConvention = ...) -> PendingRun:
        """Fill ``batch`` with the frames letterboxed by ``boxes`` and start ``engine`` on it."""
        ...

    def crops(self, frames: Sequence[Frame], boxes: Sequence[Any], out_h: int, out_w: int, dtype: Any) -> Any:
        """(total, 3, out_h, out_w) crops of every frame's boxes (source pixels), in order."""
        ...

    def host_frames(self, frames: Sequence[Frame]) -> Sequence[Frame]:
        """The frames with host pixels (the same objects on the CPU backend)."""
        ...

    def close(self) -> None: ...


def make_backend(plan: DevicePlan, gpu_spec: GpuSpec | None = None) -> Backend:
    """The backend object of a device plan (`CpuBackend` or `GpuBackend`)."""
    if plan.device == "gpu":
        from vidinfer.backends.gpu import GpuBackend

        return GpuBackend(plan, gpu_spec)
    from vidinfer.backends.cpu import CpuBackend

    return CpuBackend(plan)
