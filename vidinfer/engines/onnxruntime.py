"""ONNX Runtime engine (CPU execution provider)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.engines.base import ImageInput
from vidinfer.errors import ModelError

__all__ = ["OnnxRuntimeEngine", "describe_model_input"]

# VIDINFER_ORT_SPIN=1 lets ONNX Runtime's idle threads spin (its own default), for comparisons.
ALLOW_SPINNING = os.environ.get("VIDINFER_ORT_SPIN", "0") == "1"

_DTYPES: dict[str, np.dtype] = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}


class OnnxRuntimeEngine:
    """An ONNX model run by ONNX Runtime.

    Args:
        path: the .onnx file.
        input_size: (width, height) the pipeline feeds; required when the model's spatial
            dimensions are dynamic, checked against them when they are fixed.
        intra_op_threads: threads inside one operator (0 lets ONNX Runtime choose).
        inter_op_threads: threads across independent operators.
        providers: ONNX Runtime execution providers, CPU by default.
        shrink_arena: give the memory of each run's activations back after the run. ONNX Runtime
            otherwise keeps its arena at the largest run's size for the life of the session:
            right for a detector run at one batch size, costly for a model whose inputs vary
            (a text detector on 1080p frames holds ~600 MB after one batch of 4).

    Raises:
        ModelError: the file is missing or not ONNX, or its input is not an image batch that
            fits ``input_size``; the message says what was expected and what was found.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], input_size: tuple[int, int] | None = None,
                 intra_op_threads: int = 0, inter_op_threads: int = 1,
                 providers: list[str] | None = None, role: str = "model", shrink_arena: bool = False):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{role} file {str(self.path)!r} does not exist; check the model path")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # warnings from graph rewriting are noise to users
        if not ALLOW_SPINNING:
            # Idle ORT threads otherwise spin for a while after each run, taking the cores the
            # decoder threads need (docs/performance.md measures it).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                 providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidProtobuf errors
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{role} file {str(self.path)!r} is not a loadable ONNX model "
                             f"({detail[:200]}); export the model to ONNX and point to the .onnx file") from None
        self._run_options = ort.RunOptions()
        if shrink_arena:
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.device = "cpu" if self._session.get_providers()[0] == "CPUExecutionProvider" else "cuda"
        self.input = describe_model_input(self._session.get_inputs(), input_size, f"{role} {self.path.name!r}")
        outputs = self._session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.output_shapes = {o.name: tuple(o.shape) for o in outputs}

    @property
    def metadata(self) -> dict[str, str]:
        """The model's custom metadata (e.g. class names, a recogniser's character list)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, batch: Any) -> dict[str, np.ndarray]:
        n = len(batch)
        fixed = self.input.batch
        if fixed is None:
            values = self._session.run(self.output_names, {self.input.name: batch}, self._run_options)
            return dict(zip(self.output_names, values))
        # Fixed-batch model: run in chunks of its batch size, padding the last chunk.
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, fixed):
            chunk = batch[start:start + fixed]
            if len(chunk) < fixed:
                pad = np.zeros((fixed - len(chunk),) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append(self._session.run(self.output_names, {self.input.name: chunk}, self._run_options))
        return {name: np.concatenate([p[i] for p in parts])[:n] for i, name in enumerate(self.output_names)}

    def close(self) -> None:
        self._session = None

    def __enter__(self) -> OnnxRuntimeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_model_input(inputs: list[Any], input_size: tuple[int, int] | None, what: str) -> ImageInput:
    """Check a model's inputs describe one (N, 3, H, W) float image batch and return it."""
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise ModelError(f"{what} has {len(inputs)} inputs ({names}); vidinfer expects exactly one "
                         "image input of shape [N, 3, H, W]")
    inp = inputs[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ModelError(f"{what} input {inp.name!r} has rank {len(shape)} (shape {shape}); vidinfer "
                         "expects a 4-D image batch [N, 3, H, W]")
    if inp.type not in _DTYPES:
        raise ModelError(f"{what} input {inp.name!r} has type {inp.type}; vidinfer expects "
                         "tensor(float) or tensor(float16)")
    batch, channels, height, width = (d if isinstance(d, int) and d > 0 else None for d in shape)
    if channels not in (None, 3):
        raise ModelError(f"{what} input {inp.name!r} has {channels} channel{'s' if channels != 1 else ''} "
                         f"(shape {shape}); vidinfer expects 3 (RGB) in NCHW order")
    if input_size is not None:
        want_w, want_h = input_size
        if (width is not None and width != want_w) or (height is not None and height != want_h):
            raise ModelError(f"{what} input {inp.name!r} is {width}x{height} (shape {shape}) but the "
                             f"configuration says input_size = [{want_w}, {want_h}]; make them agree")
        width, height = want_w, want_h
    if width is None or height is None:
        raise ModelError(f"{what} input {inp.name!r} has dynamic spatial size (shape {shape}); set "
                         "input_size = [width, height] in the configuration")
    return ImageInput(inp.name, batch, 3, height, width, _DTYPES[inp.type])
