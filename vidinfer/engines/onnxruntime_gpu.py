"""ONNX Runtime on the GPU (TensorRT or CUDA execution provider), fed from CuPy with IOBinding.

HAS NOT RUN ON GPU HARDWARE. For users who have `onnxruntime-gpu` but not the `tensorrt` package.
Inputs and outputs stay in device memory: the batch tensor the preprocessing kernel wrote is bound
by pointer, outputs are bound to CuPy buffers. API names follow ../shared/reference/gpu_api.md §6
(IOBinding signatures checked in the 1.31 wheel; the TensorRT EP option names from ORT's docs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.engines.onnxruntime import describe_model_input
from vidinfer.errors import ModelError

__all__ = ["OnnxRuntimeGpuEngine", "gpu_providers"]


def gpu_providers(device: int, cache_dir: Path, input_name: str, chw: tuple[int, int, int], max_batch: int,
                  use_tensorrt: bool = True) -> list[Any]:
    """The provider list: TensorRT EP (engine cache on disk, one batch profile), then CUDA, then CPU."""
    shape = "x".join(map(str, chw))
    providers: list[Any] = []
    if use_tensorrt:
        providers.append(("TensorrtExecutionProvider", {
            "device_id": str(device),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": "True",
            "trt_profile_min_shapes": f"{input_name}:1x{shape}",
            "trt_profile_opt_shapes": f"{input_name}:{max_batch}x{shape}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{shape}",
        }))
    providers.append(("CUDAExecutionProvider", {"device_id": str(device)}))
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeGpuEngine:
    """An ONNX model on ONNX Runtime's GPU providers, with CuPy arrays in and out."""

    backend = "onnxruntime-gpu"

    def __init__(self, path: str | os.PathLike[str], input_size: tuple[int, int] | None = None,
                 max_batch_size: int = 8, device: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                 use_tensorrt: bool = True):
        import onnxruntime as ort

        self.path = Path(path)
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise ModelError("ONNX Runtime here has no CUDA execution provider (providers: "
                             f"{', '.join(available)}); install onnxruntime-gpu or use device = 'cpu'")
        import cupy as cp
        probe = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        inp = describe_model_input(probe.get_inputs(), input_size, f"model {self.path.name!r}")
        del probe
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "vidinfer" / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        providers = gpu_providers(device, cache, inp.name, (inp.channels, inp.height, inp.width),
                                  inp.batch or max_batch_size,
                                  use_tensorrt and "TensorrtExecutionProvider" in available)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self.input = inp
        self.device = f"cuda:{device}"
        outputs = self._session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.output_shapes = {o.name: tuple(o.shape) for o in outputs}
        self._out_dtypes = {o.name: np.float16 if o.type == "tensor(float16)" else np.float32 for o in outputs}
        self._cp = cp
        self._device = device

    def run(self, batch: Any) -> dict[str, Any]:
        """Run a CuPy (n, C, H, W) batch; outputs are CuPy arrays allocated by ONNX Runtime's binding."""
        cp = self._cp
        batch = cp.ascontiguousarray(batch)
        cp.cuda.get_current_stream().synchronize()  # ORT runs on its own stream: the batch must be ready
        io = self._session.io_binding()
        io.bind_input(self.input.name, "cuda", self._device, batch.dtype, list(batch.shape), batch.data.ptr)
        for name in self.output_names:
            io.bind_output(name, "cuda", self._device)
        self._session.run_with_iobinding(io)
        io.synchronize_outputs()
        out = {}
        for name, value in zip(self.output_names, io.get_outputs()):
            # Wrap ORT's device buffer without a copy; keep the OrtValue alive alongside it.
            mem = cp.cuda.UnownedMemory(value.data_ptr(), int(np.prod(value.shape())) *
                                        np.dtype(self._out_dtypes[name]).itemsize, value)
            out[name] = cp.ndarray(tuple(value.shape()), self._out_dtypes[name], cp.cuda.MemoryPointer(mem, 0))
        return out

    def close(self) -> None:
        self._session = None
