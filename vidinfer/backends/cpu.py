"""The CPU backend: FFmpeg software decode + swscale, NumPy batches, ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.config import StreamSpec
from vidinfer.devices import DevicePlan
from vidinfer.engines.base import ImageInput
from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
from vidinfer.frame import Frame
from vidinfer.models.classifier import host_crops
from vidinfer.preprocess.letterbox import RGB_0_1, InputConvention, Letterbox, fill_batch_slot
from vidinfer.sources.pyav import PyAVSource, scaled_rgb

__all__ = ["CpuBackend", "DoneRun", "detector_image"]


def detector_image(frame: Frame, box: Letterbox) -> np.ndarray:
    """The frame resized to ``box`` as HxWx3 uint8 RGB: the decoder's own resize when it was made
    for this box (the first detector's input), else one swscale pass from the full frame."""
    if box == frame.letterbox:
        return np.asarray(frame.image)
    if frame.source is None:
        raise RuntimeError(f"stream {frame.stream_id}: a detector with another input size needs the full-resolution "
                           "frame; its stage must call ctx.need_full_frames() in open()")
    return scaled_rgb(frame.source, box.new_w, box.new_h)


class DoneRun:
    """A detector run that has already finished (the CPU engine runs synchronously)."""

    def __init__(self, outputs: dict[str, Any]):
        self._outputs = outputs

    def outputs(self) -> dict[str, Any]:
        return self._outputs


class CpuBackend:
    name = "cpu"
    pipelined = False  # ONNX Runtime runs synchronously: nothing to overlap in this thread
    crops = staticmethod(host_crops)

    def __init__(self, plan: DevicePlan):
        self.plan = plan

    def make_source(self, spec: StreamSpec) -> PyAVSource:
        return PyAVSource(spec)

    def make_engine(self, path: Path, input_size: tuple[int, int] | None, threads: int, role: str,
                    max_batch: int) -> OnnxRuntimeEngine:
        return OnnxRuntimeEngine(path, input_size, threads, role=role)

    def new_batch(self, inp: ImageInput, slots: int) -> np.ndarray:
        return np.empty((slots, 3, inp.height, inp.width), inp.dtype)

    def launch(self, engine: Any, batch: np.ndarray, frames: Sequence[Frame], boxes: Sequence[Letterbox],
               convention: InputConvention = RGB_0_1) -> DoneRun:
        for i, (f, box) in enumerate(zip(frames, boxes)):
            fill_batch_slot(batch, i, detector_image(f, box), box, convention)
        return DoneRun(engine.run(batch[: engine.input.padded_size(len(frames))]))

    def host_frames(self, frames: Sequence[Frame]) -> Sequence[Frame]:
        return frames  # the frames are host pixels already

    def close(self) -> None:
        pass
