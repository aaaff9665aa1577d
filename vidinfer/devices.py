"""What this machine can run: decoders, engines and devices, each with the reason it can't.

GPU packages are probed only here and only when asked (lazy, guarded imports): importing or
running vidinfer on a machine without a GPU never touches them. `plan_device` decides which
backend a pipeline gets (``device = "auto" | "cpu" | "gpu"``) and says why, stage by stage.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field

__all__ = ["GPU_FIX", "Capability", "DevicePlan", "capabilities", "plan_device", "select_device"]

GPU_FIX = "pip install 'vidinfer[gpu]' on a machine with an NVIDIA GPU and driver"


@dataclass(frozen=True)
class Capability:
    kind: str  # "decoder", "engine", "device"
    name: str
    available: bool
    detail: str  # version when available, the reason when not


def _probe_module(kind: str, name: str, module: str, attr: str = "__version__") -> Capability:
    if sys.modules.get(module) is None and importlib.util.find_spec(module) is None:
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


def _ort_gpu() -> Capability:
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in providers]
    if "CUDAExecutionProvider" not in providers:
        return Capability("engine", "onnxruntime-gpu", False,
                          "onnxruntime here has no CUDA execution provider (onnxruntime-gpu is not installed)")
    return Capability("engine", "onnxruntime-gpu", True, f"{onnxruntime.__version__}, {', '.join(gpu)}")


def capabilities() -> list[Capability]:
    """Every backend vidinfer knows, whether it works here, and why not."""
    import av
    import onnxruntime

    return [
        Capability("decoder", "pyav (FFmpeg, CPU)", True, f"PyAV {av.__version__}"),
        _probe_module("decoder", "nvdec (PyNvVideoCodec)", "PyNvVideoCodec"),
        _probe_module("decoder", "nvdec (VPF PyNvCodec)", "PyNvCodec"),
        Capability("engine", "onnxruntime", True,
                   f"{onnxruntime.__version__}, providers: {', '.join(onnxruntime.get_available_providers())}"),
        _probe_module("engine", "tensorrt", "tensorrt"),
        _ort_gpu(),
        Capability("device", "cpu", True, "always available"),
        _cuda_device(),
    ]


@dataclass
class DevicePlan:
    """The backend a pipeline runs on, why, and what each stage got.

    ``decoder`` and ``engine`` name the GPU modules chosen ("PyNvVideoCodec" or "PyNvCodec";
    "tensorrt" or "onnxruntime-gpu"); both are empty on the CPU backend.
    """

    device: str
    reason: str
    stages: dict[str, str] = field(default_factory=dict)
    decoder: str = ""
    engine: str = ""


CPU_STAGES = {"decoder": "pyav (FFmpeg software decode)", "preprocessing": "swscale + NumPy (CPU)",
              "detector": "onnxruntime (CPU)", "classifiers": "onnxruntime (CPU)"}


def plan_device(requested: str, caps: list[Capability] | None = None) -> DevicePlan:
    """Which backend ``device = requested`` gets here. Raises `ConfigError` for an impossible request.

    The GPU backend needs all three of: a CUDA device (CuPy), an NVDEC decoder module
    (PyNvVideoCodec, else VPF's PyNvCodec) and a GPU engine (TensorRT, else onnxruntime-gpu).
    """
    from vidinfer.errors import ConfigError

    if requested == "cpu":
        return DevicePlan("cpu", "cpu: requested", dict(CPU_STAGES))
    by_name = {c.name: c for c in (caps if caps is not None else capabilities())}
    cuda = by_name["cuda"]
    decoder = next((c for c in (by_name["nvdec (PyNvVideoCodec)"], by_name["nvdec (VPF PyNvCodec)"]) if c.available),
                   None)
    engine = next((c for c in (by_name["tensorrt"], by_name["onnxruntime-gpu"]) if c.available), None)
    missing = []
    if not cuda.available:
        missing.append(f"a usable CUDA device ({cuda.detail})")
    if decoder is None:
        missing.append("an NVDEC decoder (neither PyNvVideoCodec nor VPF's PyNvCodec is installed)")
    if engine is None:
        missing.append("a GPU inference engine (neither tensorrt nor onnxruntime-gpu is installed)")
    if missing:
        what = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
        if requested == "gpu":
            raise ConfigError(f"device = 'gpu' needs {what}; {GPU_FIX}, or use device = 'cpu' or 'auto'")
        return DevicePlan("cpu", f"auto: CPU backend chosen because this machine lacks {what}", dict(CPU_STAGES))
    assert decoder is not None and engine is not None  # else missing is not empty
    module = "PyNvVideoCodec" if decoder.name.endswith("(PyNvVideoCodec)") else "PyNvCodec"
    engine_name = engine.name
    engine_text = f"{engine_name} {engine.detail}"
    stages = {"decoder": f"nvdec ({module} {decoder.detail})",
              "preprocessing": "fused NV12 letterbox kernel (CuPy)",
              "detector": engine_text, "classifiers": f"{engine_text}, crops by the NV12 crop kernel"}
    why = "requested" if requested == "gpu" else "auto"
    return DevicePlan("gpu", f"{why}: GPU backend on {cuda.detail}; decoder {module}, engine {engine_name}",
                      stages, module, engine_name)


def select_device(requested: str) -> tuple[str, str]:
    """The device a pipeline runs on, and why. Raises `ConfigError` for an impossible request."""
    plan = plan_device(requested)
    return plan.device, plan.reason
