"""ONNX Runtime on the GPU (TensorRT or CUDA execution provider), fed from CuPy with IOBinding.

HAS NOT RUN ON GPU HARDWARE. For users who have `onnxruntime-gpu` but not the `tensorrt` package.
Inputs and outputs stay in device memory: the batch tensor the preprocessing kernel wrote is bound
by pointer, outputs are bound to the device and wrapped as CuPy arrays of their own dtype. API
names follow ../shared/reference/gpu_api.md §6 and the 1.32 wheel's
`onnxruntime/capi/onnxruntime_inference_collection.py`: `IOBinding.bind_input(name, device_type,
device_id, element_type, shape, buffer_ptr)`, `bind_output(name, device_type, device_id)`,
`OrtValue.data_type()` ("tensor(int64)", ...), and `InferenceSession.get_providers()`, the
providers the session really registered (a provider whose library fails to load is dropped with a
logged warning, not an exception). The TensorRT EP option names come from ORT's docs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.engines.onnxruntime import describe_model_input
from vidinfer.errors import ModelError

__all__ = ["OnnxRuntimeGpuEngine", "gpu_providers", "onnxruntime_distributions", "cuda_unavailable_reason"]

# ONNX tensor types an output can have on the GPU, as OrtValue.data_type() and NodeArg.type name them.
ORT_DTYPES: dict[str, np.dtype] = {f"tensor({k})": np.dtype(v) for k, v in {
    "float": np.float32, "float16": np.float16, "double": np.float64, "int64": np.int64, "int32": np.int32,
    "int16": np.int16, "int8": np.int8, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16,
    "uint8": np.uint8, "bool": np.bool_}.items()}


def gpu_providers(device: int, cache_dir: Path, input_name: str, chw: tuple[int, int, int], max_batch: int,
                  use_tensorrt: bool = True, min_batch: int = 1) -> list[Any]:
    """The provider list: TensorRT EP (engine cache on disk, one batch profile min_batch..max_batch,
    N..N for a fixed-batch model), then CUDA, then CPU."""
    shape = "x".join(map(str, chw))
    providers: list[Any] = []
    if use_tensorrt:
        providers.append(("TensorrtExecutionProvider", {
            "device_id": str(device),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": "True",
            "trt_profile_min_shapes": f"{input_name}:{min_batch}x{shape}",
            "trt_profile_opt_shapes": f"{input_name}:{max_batch}x{shape}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{shape}",
        }))
    providers.append(("CUDAExecutionProvider", {"device_id": str(device)}))
    providers.append("CPUExecutionProvider")
    return providers


# Builds of ONNX Runtime published under their own names that all install the same `onnxruntime`
# package: two of them in one environment overwrite each other's files.
ORT_BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
              "onnxruntime-training", "onnxruntime-qnn")


def onnxruntime_distributions() -> list[str]:
    """Which of `ORT_BUILDS` are installed (normally exactly one)."""
    from importlib.metadata import PackageNotFoundError, distribution

    found = []
    for name in ORT_BUILDS:
        try:
            distribution(name)
        except PackageNotFoundError:
            continue
        found.append(name)
    return found


def cuda_unavailable_reason(providers: list[str], version: str, model: str | None = None) -> str:
    """The one sentence that says why ONNX Runtime has no CUDA here (``providers``: what it offers or
    what the session got) and what to do."""
    dists = onnxruntime_distributions()
    found = ", ".join(providers) or "none"
    if "onnxruntime-gpu" in dists and len(dists) > 1:
        others = [d for d in dists if d != "onnxruntime-gpu"]
        return (f"ONNX Runtime has no usable CUDA provider here (providers: {found}) because "
                f"{' and '.join(others)} and onnxruntime-gpu are both installed, and they cannot coexist (they "
                f"install the same onnxruntime package); pip uninstall -y {' '.join(dists)}, then pip install "
                "onnxruntime-gpu, or use device = 'cpu'")
    if model is None:
        return (f"ONNX Runtime here has no CUDA execution provider (providers: {found}); install onnxruntime-gpu "
                "or use device = 'cpu'")
    return (f"ONNX Runtime {version} created the session for {model!r} without CUDA (providers: {found}): its CUDA "
            "provider did not load, usually because the CUDA or cuDNN libraries it was built for are missing "
            "(ONNX Runtime's log names the one); install them or use device = 'cpu'")


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
            raise ModelError(cuda_unavailable_reason(available, ort.__version__))
        import cupy as cp
        probe = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        inp = describe_model_input(probe.get_inputs(), input_size, f"model {self.path.name!r}")
        del probe
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "vidinfer" / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        providers = gpu_providers(device, cache, inp.name, (inp.channels, inp.height, inp.width),
                                  inp.batch or max_batch_size,
                                  use_tensorrt and "TensorrtExecutionProvider" in available, inp.batch or 1)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        # A provider that fails to load is dropped with a warning: never bind CUDA memory to what is
        # left, a CPU session.
        got = list(self._session.get_providers())
        if "CUDAExecutionProvider" not in got:
            self._session = None
            raise ModelError(cuda_unavailable_reason(got, ort.__version__, self.path.name))
        self.providers = got
        self.input = inp
        self.device = f"cuda:{device}"
        outputs = self._session.get_outputs()
        unreadable = [f"{o.name!r} ({o.type})" for o in outputs if o.type not in ORT_DTYPES]
        if unreadable:
            raise ModelError(f"model {self.path.name!r} has outputs vidinfer cannot read from GPU memory: "
                             f"{', '.join(unreadable)}; export numeric tensor outputs or use device = 'cpu'")
        self.output_names = [o.name for o in outputs]
        self.output_shapes = {o.name: tuple(o.shape) for o in outputs}
        self.output_dtypes = {o.name: ORT_DTYPES[o.type] for o in outputs}
        self._cp = cp
        self._device = device

    def run(self, batch: Any) -> dict[str, Any]:
        """Run a CuPy (n, C, H, W) batch; outputs are CuPy arrays allocated by ONNX Runtime's binding.
        A fixed-batch model runs in chunks of its N rows, the last one padded with zero rows."""
        cp = self._cp
        n = len(batch)
        fixed = self.input.batch
        if fixed is None:
            return self._run(cp.ascontiguousarray(batch))
        parts = []
        for start in range(0, n, fixed):
            chunk = batch[start:start + fixed]
            if len(chunk) < fixed:
                padded = cp.zeros((fixed, *chunk.shape[1:]), chunk.dtype)
                padded[:len(chunk)] = chunk
                chunk = padded
            parts.append(self._run(cp.ascontiguousarray(chunk)))
        if len(parts) == 1:
            return {k: v[:n] for k, v in parts[0].items()}
        return {k: cp.concatenate([p[k] for p in parts])[:n] for k in self.output_names}

    def _run(self, batch: Any) -> dict[str, Any]:
        cp = self._cp
        cp.cuda.get_current_stream().synchronize()  # ORT runs on its own stream: the batch must be ready
        io = self._session.io_binding()
        io.bind_input(self.input.name, "cuda", self._device, batch.dtype, list(batch.shape), batch.data.ptr)
        for name in self.output_names:
            io.bind_output(name, "cuda", self._device)
        self._session.run_with_iobinding(io)
        io.synchronize_outputs()
        out = {}
        for name, value in zip(self.output_names, io.get_outputs()):
            # Each output with its own dtype (int64 class ids, bool masks, ...), read from the value.
            dtype = ORT_DTYPES.get(value.data_type(), self.output_dtypes[name])
            shape = tuple(value.shape())
            nbytes = int(np.prod(shape)) * dtype.itemsize
            if nbytes == 0:
                out[name] = cp.empty(shape, dtype)
                continue
            # Wrap ORT's device buffer without a copy; keep the OrtValue alive alongside it.
            mem = cp.cuda.UnownedMemory(value.data_ptr(), nbytes, value)
            out[name] = cp.ndarray(shape, dtype, cp.cuda.MemoryPointer(mem, 0))
        return out

    def close(self) -> None:
        self._session = None
