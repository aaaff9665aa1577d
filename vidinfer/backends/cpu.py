"""The CPU backend: FFmpeg software decode + swscale, NumPy batches, ONNX Runtime on the CPU."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.batching import StreamQueue
from vidinfer.config import StreamSpec
from vidinfer.devices import DevicePlan
from vidinfer.engines.base import ImageInput
from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
from vidinfer.frame import Frame
from vidinfer.models.classifier import host_crops
from vidinfer.preprocess.letterbox import fill_batch_slot
from vidinfer.sources.pyav import PyAVSource

__all__ = ["CpuBackend", "DoneRun"]


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

    def make_source(self, spec: StreamSpec, input_size: tuple[int, int], queue: StreamQueue,
                    stop: threading.Event, decode_threads: int, keep_source: bool) -> PyAVSource:
        return PyAVSource(spec, input_size, queue, stop, decode_threads, keep_source=keep_source)

    def make_engine(self, path: Path, input_size: tuple[int, int] | None, threads: int, role: str,
                    max_batch: int) -> OnnxRuntimeEngine:
        return OnnxRuntimeEngine(path, input_size, threads, role=role)

    def new_batch(self, inp: ImageInput, slots: int) -> np.ndarray:
        return np.empty((slots, 3, inp.height, inp.width), inp.dtype)

    def launch(self, engine: Any, batch: np.ndarray, frames: Sequence[Frame]) -> DoneRun:
        for i, f in enumerate(frames):
            fill_batch_slot(batch, i, f.image, f.letterbox)
        return DoneRun(engine.run(batch[: engine.input.padded_size(len(frames))]))

    def host_frames(self, frames: Sequence[Frame]) -> Sequence[Frame]:
        return frames  # the frames are host pixels already

    def close(self) -> None:
        pass
