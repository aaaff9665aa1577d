"""What this machine can run: decoders, engines and devices, each with the reason it can't, and on
a machine with an NVIDIA driver the exact package each missing GPU piece needs.

GPU packages are probed only here and only when asked (lazy, guarded imports): importing or
running vidinfer on a machine without a GPU never touches them. `plan_device` decides which
backend a pipeline gets (``device = "auto" | "cpu" | "gpu"``) and says why, stage by stage;
`gpu_advice` turns the capabilities into the lines `vidinfer info` prints about what to install.

Everything this module reads of the machine goes through a `Probe` (the driver through
``libcuda.so.1``/NVML/``nvidia-smi``, installed distributions through ``importlib.metadata``,
modules through imports, CUDA headers through ``cuda.pathfinder`` as CuPy 14 does): tests pass a
fake one.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from vidinfer.sources.nvdec import PYNVVIDEOCODEC_1X

__all__ = ["CUDA_PACKAGES", "GPU_FIX", "PYNVVIDEOCODEC", "Capability", "CudaPackages", "DevicePlan", "Driver",
           "Probe", "capabilities", "gpu_advice", "plan_device", "select_device"]

GPU_FIX = "pip install 'vidinfer[gpu]' on a machine with an NVIDIA GPU and driver"

# PyNvVideoCodec 1.x cannot work (nvdec.PYNVVIDEOCODEC_1X): 2.0 is the oldest release vidinfer accepts.
PYNVVIDEOCODEC = "PyNvVideoCodec>=2.0"
PYNVVIDEOCODEC_MIN = (2, 0)


@dataclass(frozen=True)
class CudaPackages:
    """The pip requirement of each GPU piece for one CUDA major version (pyproject's ``gpu`` extra
    for 13, ``gpu-cu12`` for 12). NVRTC and the headers are pinned to the driver's minor version or
    older by `capabilities` (a newer NVRTC than the driver may emit code the driver cannot load)."""

    major: int
    cupy: str
    tensorrt: str
    onnxruntime_gpu: str
    runtime_headers: str  # the CUDA runtime wheel: cuda_fp16.h & co. for NVRTC compiles
    nvrtc: str  # the NVRTC library CuPy compiles the kernels with


CUDA_PACKAGES = {
    13: CudaPackages(13, "cupy-cuda13x>=14,<15", "tensorrt-cu13>=10.13,<11", "onnxruntime-gpu[cuda,cudnn]>=1.27",
                     "nvidia-cuda-runtime", "nvidia-cuda-nvrtc"),
    12: CudaPackages(12, "cupy-cuda12x>=14,<15", "tensorrt-cu12>=10,<11", "onnxruntime-gpu[cuda,cudnn]>=1.19,<1.27",
                     "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvrtc-cu12"),
}
# CuPy's binary builds and the CUDA major version each is built for.
CUPY_BUILDS = {"cupy-cuda13x": 13, "cupy-cuda12x": 12, "cupy-cuda11x": 11}
# Builds of ONNX Runtime that all install the same `onnxruntime` package (they overwrite each other).
ORT_BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
              "onnxruntime-training", "onnxruntime-qnn")


@dataclass(frozen=True)
class Capability:
    kind: str  # "decoder", "engine", "device", "compiler"
    name: str
    available: bool
    detail: str  # version when available, the reason when not
    fix: str = ""  # the command that makes it available, where a package does
    requires: tuple[str, ...] = ()  # the pip requirements ``fix`` installs
    uninstall: tuple[str, ...] = ()  # distributions ``fix`` removes first


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver: its version, the newest CUDA it runs and the GPUs it sees."""

    version: str  # "580.159.03"; "" where only the CUDA version could be read
    cuda: tuple[int, int]  # (13, 0)
    gpus: tuple[str, ...] = ()

    @property
    def cuda_text(self) -> str:
        return f"{self.cuda[0]}.{self.cuda[1]}"


def _version_tuple(text: str) -> tuple[int, ...]:
    """(2, 2, 4) of "2.2.4", "2.2.4-fake" or "2.0.0.post1"; () when it starts with no number."""
    m = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return text or type(exc).__name__


@functools.lru_cache(maxsize=1)
def _read_driver() -> Driver | None:
    """The driver through libcuda (CUDA version) and NVML or nvidia-smi (version, GPU names)."""
    cuda: tuple[int, int] | None = None
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value > 0:
            cuda = (v.value // 1000, (v.value % 1000) // 10)
    except (OSError, AttributeError):
        pass
    version = ""
    gpus: tuple[str, ...] = ()
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            done = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10, check=False)
            rows = [r.rsplit(",", 1) for r in done.stdout.strip().splitlines() if "," in r]
            if done.returncode == 0 and rows:
                gpus = tuple(name.strip() for name, _ in rows)
                version = rows[0][1].strip()
            if cuda is None:  # the banner of plain nvidia-smi says "CUDA Version: 13.0"
                banner = subprocess.run([smi], capture_output=True, text=True, timeout=10, check=False).stdout
                m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", banner)
                if m:
                    cuda = (int(m.group(1)), int(m.group(2)))
        except (OSError, subprocess.SubprocessError):
            pass
    if cuda is None:
        return None
    return Driver(version, cuda, gpus)


class Probe:
    """How `capabilities` looks at this machine. Tests substitute a subclass with fake answers."""

    def driver(self) -> Driver | None:
        return _read_driver()

    def dist_version(self, name: str) -> str | None:
        """The installed version of a distribution (pip's name), or None."""
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def has_module(self, name: str) -> bool:
        return sys.modules.get(name) is not None or importlib.util.find_spec(name) is not None

    def import_module(self, name: str) -> ModuleType:
        return importlib.import_module(name)

    def cuda_headers(self) -> str | None:
        from vidinfer.preprocess.gpu import cuda_include_dir  # the lookup the kernels' compiles use

        return cuda_include_dir()

    def nvrtc(self, cupy: ModuleType | None, major: int | None) -> str:
        """NVRTC's version ("13.0"), or raises with the reason it cannot be loaded."""
        if cupy is not None:
            major_minor = cupy.cuda.nvrtc.getVersion()
            return f"{major_minor[0]}.{major_minor[1]}"
        if major is None:
            raise RuntimeError("unknown without CuPy or a driver")
        if importlib.util.find_spec("cuda") is not None:
            try:
                pathfinder: Any = importlib.import_module("cuda.pathfinder")
                return f"found at {pathfinder.load_nvidia_dynamic_lib('nvrtc').abs_path}"
            except Exception:
                pass
        ctypes.CDLL(f"libnvrtc.so.{major}")
        return f"libnvrtc.so.{major}"


def _module(probe: Probe, kind: str, name: str, module: str, attr: str = "__version__") -> Capability:
    if not probe.has_module(module):
        return Capability(kind, name, False, f"Python package '{module}' is not installed")
    try:
        mod = probe.import_module(module)
    except Exception as exc:  # a broken CUDA install raises anything from ImportError to OSError
        return Capability(kind, name, False, f"'{module}' failed to import: {_first_line(exc)}")
    return Capability(kind, name, True, str(getattr(mod, attr, "installed")))


def _pip(*requirements: str, uninstall: tuple[str, ...] = ()) -> str:
    cmd = "pip install " + " ".join(shlex.quote(r) for r in requirements)
    return f"pip uninstall -y {' '.join(uninstall)} && {cmd}" if uninstall else cmd


def _packages(driver: Driver | None, cupy_major: int | None) -> CudaPackages:
    major = driver.cuda[0] if driver is not None else cupy_major
    return CUDA_PACKAGES[12] if major == 12 else CUDA_PACKAGES[13]


def _toolkit_requirement(dist: str, driver: Driver | None) -> str:
    """A CUDA component wheel no newer than the driver: ``nvidia-cuda-nvrtc>=13.0,<13.1``."""
    if driver is None:
        return f"{dist}=={CUDA_PACKAGES[12 if dist.endswith('-cu12') else 13].major}.*"
    major, minor = driver.cuda
    return f"{dist}>={major}.0,<{major}.{minor + 1}"


def _pynvvideocodec(probe: Probe) -> Capability:
    name = "nvdec (PyNvVideoCodec)"
    fix = _pip(PYNVVIDEOCODEC)
    version = probe.dist_version("PyNvVideoCodec")
    if version is None and probe.has_module("PyNvVideoCodec"):  # not pip-installed: ask the module
        try:
            version = str(getattr(probe.import_module("PyNvVideoCodec"), "__version__", "")) or None
        except Exception as exc:
            return Capability("decoder", name, False, f"'PyNvVideoCodec' failed to import: {_first_line(exc)}")
    if version is None and not probe.has_module("PyNvVideoCodec"):
        return Capability("decoder", name, False, "Python package 'PyNvVideoCodec' is not installed", fix,
                          (PYNVVIDEOCODEC,))
    if version is not None and _version_tuple(version) and _version_tuple(version)[:2] < PYNVVIDEOCODEC_MIN:
        return Capability("decoder", name, False,
                          f"PyNvVideoCodec {version} is installed, but NVDEC decoding needs PyNvVideoCodec 2.0 "
                          f"or newer ({PYNVVIDEOCODEC_1X})",
                          _pip(PYNVVIDEOCODEC).replace("pip install", "pip install -U"), (PYNVVIDEOCODEC,))
    cap = _module(probe, "decoder", name, "PyNvVideoCodec")
    if not cap.available:
        return cap
    return Capability("decoder", name, True, version or cap.detail)


def _onnxruntime_gpu(probe: Probe, pkgs: CudaPackages) -> Capability:
    name = "onnxruntime-gpu"
    dists = [d for d in ORT_BUILDS if probe.dist_version(d) is not None]
    others = tuple(d for d in dists if d != "onnxruntime-gpu")
    try:
        ort = probe.import_module("onnxruntime")
        providers = list(ort.get_available_providers())
    except Exception as exc:
        return Capability("engine", name, False, f"'onnxruntime' failed to import: {_first_line(exc)}",
                          _pip(pkgs.onnxruntime_gpu, uninstall=tuple(dists)), (pkgs.onnxruntime_gpu,), tuple(dists))
    if "onnxruntime-gpu" in dists and others:
        return Capability("engine", name, False,
                          f"{' and '.join(others)} and onnxruntime-gpu are both installed: they install the same "
                          "'onnxruntime' package over each other, so the CUDA provider may be gone",
                          _pip(pkgs.onnxruntime_gpu, uninstall=tuple(dists)), (pkgs.onnxruntime_gpu,), tuple(dists))
    if "CUDAExecutionProvider" not in providers:
        return Capability("engine", name, False,
                          "onnxruntime here has no CUDA execution provider (onnxruntime-gpu is not installed)",
                          _pip(pkgs.onnxruntime_gpu, uninstall=others), (pkgs.onnxruntime_gpu,), others)
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in providers]
    return Capability("engine", name, True, f"{ort.__version__}, {', '.join(gpu)}")


def _cuda_device(probe: Probe, driver: Driver | None) -> tuple[Capability, ModuleType | None, int | None]:
    """The CUDA device through CuPy, the CuPy module (when it works) and its build's CUDA major."""
    build = next((d for d in CUPY_BUILDS if probe.dist_version(d) is not None), None)
    build_major = CUPY_BUILDS[build] if build else None
    pkgs = _packages(driver, build_major)
    if build and driver is not None and build_major is not None and build_major > driver.cuda[0]:
        want = CUDA_PACKAGES.get(driver.cuda[0])
        fix, req = (_pip(want.cupy, uninstall=(build,)), (want.cupy,)) if want else ("", ())
        return Capability("device", "cuda", False,
                          f"{build} is built for CUDA {build_major} but this driver runs CUDA {driver.cuda_text} "
                          "at most", fix, req, (build,) if want else ()), None, build_major
    cap = _module(probe, "device", "cuda", "cupy")
    if not cap.available:
        if "not installed" in cap.detail:
            return Capability("device", "cuda", False, cap.detail, _pip(pkgs.cupy), (pkgs.cupy,)), None, build_major
        return cap, None, build_major
    try:
        cupy = probe.import_module("cupy")
        n = cupy.cuda.runtime.getDeviceCount()
        if n == 0:
            return Capability("device", "cuda", False, "no CUDA device is visible"), None, build_major
        gpu_name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        gpu_name = gpu_name.decode() if isinstance(gpu_name, bytes) else str(gpu_name)
    except Exception as exc:
        return Capability("device", "cuda", False, f"CUDA is not usable: {_first_line(exc)}"), None, build_major
    built = f" ({build})" if build else ""
    return (Capability("device", "cuda", True, f"{n} device(s), first: {gpu_name}; CuPy {cap.detail}{built}"),
            cupy, build_major)


def capabilities(probe: Probe | None = None) -> list[Capability]:
    """Every backend vidinfer knows, whether it works here, and why not (with the fix, where a
    package is what is missing)."""
    probe = probe or Probe()
    driver = probe.driver()
    cuda, cupy, cupy_major = _cuda_device(probe, driver)
    pkgs = _packages(driver, cupy_major)
    caps = [_module(probe, "decoder", "pyav (FFmpeg, CPU)", "av")]
    if caps[0].available:
        caps[0] = Capability("decoder", caps[0].name, True, f"PyAV {caps[0].detail}")
    caps += [_pynvvideocodec(probe), _module(probe, "decoder", "nvdec (VPF PyNvCodec)", "PyNvCodec")]
    ort = _module(probe, "engine", "onnxruntime", "onnxruntime")
    if ort.available:
        providers = ", ".join(probe.import_module("onnxruntime").get_available_providers())
        ort = Capability("engine", "onnxruntime", True, f"{ort.detail}, providers: {providers}")
    caps.append(ort)
    trt = _module(probe, "engine", "tensorrt", "tensorrt")
    if not trt.available and "not installed" in trt.detail:
        trt = Capability("engine", "tensorrt", False, trt.detail, _pip(pkgs.tensorrt), (pkgs.tensorrt,))
    caps += [trt, _onnxruntime_gpu(probe, pkgs), Capability("device", "cpu", True, "always available")]
    if driver is not None:
        names = f"; {len(driver.gpus)} GPU(s): {', '.join(driver.gpus)}" if driver.gpus else ""
        version = f"driver {driver.version}, " if driver.version else ""
        if driver.cuda[0] >= 12:
            caps.append(Capability("device", "nvidia driver", True, f"{version}CUDA {driver.cuda_text}{names}"))
        else:
            caps.append(Capability("device", "nvidia driver", False,
                                   f"{version}CUDA {driver.cuda_text}{names}; vidinfer's GPU packages are built for "
                                   "CUDA 12 and 13: update the NVIDIA driver (R525 or newer)"))
    else:
        caps.append(Capability("device", "nvidia driver", False,
                               "no NVIDIA driver found (libcuda.so.1 does not load, no nvidia-smi)"))
    caps.append(cuda)
    if driver is not None or cupy is not None:
        nvrtc_req = _toolkit_requirement(pkgs.nvrtc, driver)
        try:
            caps.append(Capability("compiler", "nvrtc", True, probe.nvrtc(cupy, driver.cuda[0] if driver else None)))
        except Exception as exc:
            caps.append(Capability("compiler", "nvrtc", False, f"NVRTC does not load: {_first_line(exc)}",
                                   _pip(nvrtc_req), (nvrtc_req,)))
        headers = probe.cuda_headers()
        headers_req = _toolkit_requirement(pkgs.runtime_headers, driver)
        caps.append(Capability("compiler", "cuda headers", True, headers) if headers else
                    Capability("compiler", "cuda headers", False,
                               "cuda_fp16.h is in no NVIDIA wheel here, nor under $CUDA_PATH, $CUDA_HOME or "
                               "/usr/local/cuda (CuPy compiles no kernel without the CUDA runtime headers)",
                               _pip(headers_req), (headers_req,)))
    return caps


def gpu_advice(caps: list[Capability]) -> list[str]:
    """What `vidinfer info` prints after the table: on a machine with an NVIDIA driver, each GPU
    piece still missing with the command that installs it, then all of them as one command."""
    by_name = {c.name: c for c in caps}
    driver = by_name.get("nvidia driver")
    if driver is None or not driver.available:
        return [f"The GPU backend needs an NVIDIA GPU and driver: {driver.detail if driver else 'not probed'}."]
    pieces: list[tuple[str, Capability]] = []
    cuda = by_name["cuda"]
    if not cuda.available:
        pieces.append(("CuPy (CUDA arrays)", cuda))
    decoders = [by_name[n] for n in ("nvdec (PyNvVideoCodec)", "nvdec (VPF PyNvCodec)") if n in by_name]
    if not any(c.available for c in decoders):
        pieces.append(("NVDEC decoder", by_name["nvdec (PyNvVideoCodec)"]))
    trt, ort = by_name.get("tensorrt"), by_name.get("onnxruntime-gpu")
    if not any(c is not None and c.available for c in (trt, ort)) and trt is not None:
        pieces.append(("GPU inference engine", trt))
    for name, label in (("nvrtc", "NVRTC (compiles the kernels)"), ("cuda headers", "CUDA headers (cuda_fp16.h)")):
        if name in by_name and not by_name[name].available:
            pieces.append((label, by_name[name]))
    head = f"This GPU machine ({driver.detail})"
    if not pieces:
        return [f"{head} has every piece the GPU backend needs."]
    lines = [f"{head} lacks, for the GPU backend:"]
    width = max(len(label) for label, _ in pieces) + 2
    for label, cap in pieces:
        fix = cap.fix or "no package fixes this: " + cap.detail
        if cap is trt and ort is not None and ort.fix:
            fix += f"   (or ONNX Runtime's CUDA provider instead: {ort.fix})"
        lines.append(f"  {label:<{width}}{fix}")
    requirements = [r for _, cap in pieces for r in cap.requires]
    uninstall = tuple(dict.fromkeys(d for _, cap in pieces for d in cap.uninstall))
    if len(requirements) > 1:
        lines.append(f"All at once: {_pip(*requirements, uninstall=uninstall)}")
    return lines


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
    (PyNvVideoCodec 2.x, else VPF's PyNvCodec) and a GPU engine (TensorRT, else onnxruntime-gpu).
    """
    from vidinfer.errors import ConfigError

    if requested == "cpu":
        return DevicePlan("cpu", "cpu: requested", dict(CPU_STAGES))
    by_name = {c.name: c for c in (caps if caps is not None else capabilities())}
    cuda = by_name["cuda"]
    decoders = (by_name["nvdec (PyNvVideoCodec)"], by_name["nvdec (VPF PyNvCodec)"])
    decoder = next((c for c in decoders if c.available), None)
    engine = next((c for c in (by_name["tensorrt"], by_name["onnxruntime-gpu"]) if c.available), None)
    missing = []
    if not cuda.available:
        missing.append(f"a usable CUDA device ({cuda.detail})")
    if decoder is None:
        if all("not installed" in c.detail for c in decoders):
            missing.append("an NVDEC decoder (neither PyNvVideoCodec nor VPF's PyNvCodec is installed)")
        else:  # one is there but does not work: say why
            broken = next(c for c in decoders if "not installed" not in c.detail)
            missing.append(f"an NVDEC decoder ({broken.detail})")
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
