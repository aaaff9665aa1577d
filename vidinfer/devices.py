"""What this machine can run: decoders, engines and devices, each with the reason it can't.

GPU packages are probed only here and only when asked (lazy, guarded imports): importing or
running vidinfer on a machine without a GPU never touches them.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

__all__ = ["Capability", "capabilities", "select_device"]


@dataclass(frozen=True)
class Capability:
    kind: str  # "decoder", "engine", "device"
    name: str
    available: bool
    detail: str  # version when available, the reason when not


def _probe_module(kind: str, name: str, module: str, attr: str = "__version__") -> Capability:
    if importlib.util.find_spec(module) is None:
        return Capability(kind, name, False, f"Python package '{module}' is not installed")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken CUDA install raises anything from ImportError to OSError
        return Capability(kind, name, False, f"'{module}' failed to import: {str(exc).splitlines()[0][:160]}")
    return Capability(kind, name, True, str(getattr(mod, attr, "installed")))


def _cuda_device() -> Capability:
    cap = _probe_module("device", "cuda", "cupy")
    if not cap.available:
        return Capability("device", "cuda", False, cap.detail)
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        if n == 0:
            return Capability("device", "cuda", False, "no CUDA device is visible")
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return Capability("device", "cuda", True, f"{n} device(s), first: {name}")
    except Exception as exc:
        return Capability("device", "cuda", False, f"CUDA is not usable: {str(exc).splitlines()[0][:160]}")


def capabilities() -> list[Capability]:
    """Every backend vidinfer knows, whether it works here, and why not."""
    import av
    import onnxruntime

    caps = [
        Capability("decoder", "pyav (FFmpeg, CPU)", True, f"PyAV {av.__version__}"),
        _probe_module("decoder", "nvdec (PyNvVideoCodec)", "PyNvVideoCodec"),
        Capability("engine", "onnxruntime", True,
                   f"{onnxruntime.__version__}, providers: {', '.join(onnxruntime.get_available_providers())}"),
        _probe_module("engine", "tensorrt", "tensorrt"),
        Capability("device", "cpu", True, "always available"),
        _cuda_device(),
    ]
    return caps


def select_device(requested: str) -> tuple[str, str]:
    """The device a pipeline runs on, and why. Raises `ConfigError` for an impossible request."""
    from vidinfer.errors import ConfigError

    # The GPU backend (NVDEC + CuPy + TensorRT) plugs in behind the same stage interfaces; this
    # version ships the CPU backend only, so "auto" says so instead of pretending.
    gpu_reason = "this version of vidinfer runs the CPU backend only (the GPU backend is not built yet)"
    if requested == "gpu":
        raise ConfigError(f"device = 'gpu' was requested but {gpu_reason}; use device = 'cpu' or 'auto'")
    if requested == "auto":
        return "cpu", f"auto: CPU backend chosen because {gpu_reason}"
    return "cpu", "cpu: requested"
