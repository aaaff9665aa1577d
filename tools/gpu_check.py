#!/usr/bin/env python3
"""The GPU check: one command on a machine with an NVIDIA GPU, one results file (docs/gpu.md).

    python3 tools/gpu_check.py --out DIR [--wheels .whl] [--site /tmp/vidinfer-site] [--budget-s 510]
    python3 tools/gpu_check.py --fake --out DIR      # the rehearsal: the same run on tests/gpu_fakes.py

(`tools/gpu_check.sh` runs it with these defaults.) In order, each part in its own process with
its own time limit, all of it within ``--budget-s``:

1. ``install``: the wheels of ``--wheels`` (tools/gpu_wheels.sh fetches them) into ``--site``
   with pip, offline; the parts below run with ``--site`` and the repository on PYTHONPATH;
2. ``environment``: Python, nvidia-smi, the driver, CuPy's runtime and device, NVRTC, the CUDA
   headers found, package versions;
3. ``info``: ``vidinfer info`` (what is missing, and the package for it);
4. ``kernels``: the CuPy kernels against their NumPy references on fresh random frames (4 sizes,
   float32/float16, with and without mean/std, both chroma sitings where the launchers take it,
   other batch slots poisoned with NaN and checked untouched, a non-default stream, crops), then
   their time per 1080p frame with CUDA events;
5. ``nvdec``: NVDEC decodes 1080p H.264 into GPU memory: the frames against PyAV's software
   decode (bit for bit), DLPack into CuPy without a copy (pointers compared), one decoder's rate on
   each clip, then 1..32 decoder threads in parallel and several processes on a 10 s 1080p30 clip
   encoded there (8 Mbit/s, 2 s GOP): frames/s ÷ 30 = real-time 1080p30 streams (38 on a T4 in the
   founding paper), and the same through vidinfer's own `NvdecDecoder`;
6. ``pipeline``: `Pipeline(device="gpu")` over the shape clips, every frame's boxes and shades
   against ground truth. Without TensorRT and onnxruntime-gpu (the nvidia-h200 machine has
   neither), decoding and preprocessing run on the GPU and the detector and classifier on ONNX
   Runtime's CPU provider, fed by device-to-host copies of the GPU-made tensors; ``ran_where``
   says so stage by stage;
7. ``pytest_gpu``: ``pytest -m gpu`` over tests/.

Everything lands in ``DIR/gpu_check.json`` (every key of `LAYOUT` always present, null where a
part could not say) and ``DIR/gpu_check.log`` (every part's output). ``--fake`` runs the same
parts against the fakes of tests/gpu_fakes.py (fake CuPy over NumPy with the kernels' sources
compiled for the CPU, PyNvVideoCodec decoding with PyAV, no TensorRT, like the nvidia-h200 machine)
and marks the file ``"hardware": "fake"``. Exit status 0 when every part passed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
SCHEMA = 1
T4_STREAMS_1080P30 = 38  # the founding paper's figure for one T4's decoders
NVDEC_ENGINES = {"H200": 7, "H100": 7, "A100": 5, "L4": 4, "T4": 2}  # per the vendor's datasheets
# The nvidia-h200 machine's image (its "Python packages already there", as the device tool's notes
# listed them on 2026-11-17): a distribution the check imports that is neither here nor carried as a wheel
# would be missing there; `not_on_the_machine` lists them (the rehearsal asserts it is empty).
IMAGE_PACKAGES = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp""".split())
# What tools/gpu_wheels.sh brings (its REQUIREMENTS), for when .whl/MANIFEST.json is absent.
CARRIED = {"pynvvideocodec", "av", "pyzmq", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
           "typing-extensions"}
GPU_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
                 "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
STREAMS = {"cam-a": "shapes_a", "cam-b": "shapes_b", "cam-c": "shapes_c", "cam-d": "shapes_d",
           "pitch": "shapes_1080p"}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# --- the results file ------------------------------------------------------------------------------
# Every key below is in every results file, GPU or fake (null where a part could not tell). A dict
# is filled in key by key; a one-element list gives the keys of each of its elements; a dict whose
# only key is "*" gives the keys of each of its values.

COMMON: dict[str, Any] = {"ok": None, "seconds": None, "error": None, "timed_out": False,
                          "distributions_imported": None}
_CLIP = {"path": None, "codec": None, "profile": None, "width": None, "height": None, "frames": None,
         "fps": None, "bitrate_mbps": None, "gop": None, "packets": None}
_RATE = {"decoders": None, "processes": None, "seconds": None, "frames": None, "fps": None, "streams_1080p30": None,
         "error": None}
LAYOUT: dict[str, Any] = {
    "schema": SCHEMA, "hardware": None, "started_utc": None, "elapsed_s": None, "budget_s": None, "command": None,
    "ok": None,
    "tree": {"commit": None, "changed_files": None, "bytes": None},
    "summary": {"kernels_match_references": None, "nvdec_bit_exact": None, "nvdec_zero_copy": None,
                "nvdec_fps_1080p": None, "nvdec_streams_1080p30": None, "nvdec_best_at": None,
                "vidinfer_decoder_streams_1080p30": None, "t4_streams_1080p30": T4_STREAMS_1080P30,
                "pipeline_ok": None, "pipeline_frames_matched": None, "pipeline_engine": None, "pytest_gpu": None,
                "ran_where": None, "not_on_the_machine": None, "failed_parts": None},
    "sections": {
        "install": {**COMMON, "python": None, "expected_python": None, "pip": None, "target": None,
                    "dry_run": None, "wheels": [{"file": None, "requirement": None, "bytes": None, "ok": None,
                                                 "error": None}]},
        "environment": {**COMMON, "hostname": None, "python": None, "platform": None, "nvidia_smi": None,
                        "driver": {"version": None, "cuda": None},
                        "gpu": {"name": None, "compute_capability": None, "memory_gib": None,
                                "multiprocessors": None, "nvdec_engines": None},
                        "cuda": {"runtime": None, "driver": None, "nvrtc": None},
                        "cuda_include_dir": None, "versions": None},
        "info": {**COMMON, "exit_code": None, "lines": None, "plan_auto": None},
        "kernels": {**COMMON, "seed": None, "chroma_sitings": None, "first_compile_s": None,
                    "cases": [{"size": None, "standard": None, "full_range": None, "chroma_siting": None,
                               "dtype": None, "normalise": None, "max_abs_diff": None, "tolerance": None,
                               "bit_exact": None, "other_slots_untouched": None, "ok": None}],
                    "stream": {"size": None, "max_abs_diff": None, "ok": None},
                    "crops": [{"size": None, "boxes": None, "chroma_siting": None, "max_abs_diff": None, "ok": None}],
                    "timing": {"iters": None, "letterbox_1080p_f32_ms": None, "letterbox_1080p_f16_ms": None,
                               "letterbox_1080p_imagenet_ms": None, "crop_32_boxes_128px_ms": None,
                               "letterbox_frames_per_s": None}},
        "nvdec": {**COMMON, "decoder_module": None,
                  "clips": {"shapes_1080p": dict(_CLIP), "generated_1080p30": dict(_CLIP)},
                  "reference": {"clip": None, "frames_compared": None, "max_abs_diff": None, "bit_exact": None,
                                "pts_match": None, "dlpack_shape": None},
                  "zero_copy": {"dlpack_shape": None, "dlpack_strides": None, "dtype": None, "cupy_ptr": None,
                                "frame_ptr": None, "same_memory": None},
                  "one_decoder": [{"clip": None, "fps": None}],
                  "threads": [dict(_RATE)], "processes": dict(_RATE), "vidinfer_decoder": dict(_RATE),
                  "best": dict(_RATE)},
        "pipeline": {**COMMON, "engine_mode": None, "device": None, "stages": None, "ran_where": None,
                     "build_s": None, "run_s": None, "frames": None, "mean_batch": None, "latency_ms": None,
                     "host_copies_mib": None,
                     "streams": {"*": {"clip": None, "frames": None, "expected": None, "frames_matched": None,
                                       "worst_box_error_px": None, "state": None, "decoder_recreations": None,
                                       "first_errors": None}}},
        "pytest_gpu": {**COMMON, "command": None, "exit_code": None, "passed": None, "failed": None,
                       "skipped": None, "errors": None, "summary": None},
    },
    "layout": {"missing": None, "extra": None},
}
ORDER = ["install", "environment", "info", "kernels", "nvdec", "pipeline", "pytest_gpu"]
LIMIT_S = {"install": 120, "environment": 60, "info": 60, "kernels": 150, "nvdec": 210, "pipeline": 210,
           "pytest_gpu": 150}


def fill(value: Any, template: Any) -> Any:
    """``value`` with every key of ``template`` present (the template's default where absent)."""
    if isinstance(template, dict) and list(template) != ["*"]:
        value = value if isinstance(value, dict) else {}
        return {**{k: fill(value.get(k), t) for k, t in template.items()},
                **{k: v for k, v in value.items() if k not in template}}
    if isinstance(template, dict):  # {"*": per-value template}
        return {k: fill(v, template["*"]) for k, v in value.items()} if isinstance(value, dict) else {}
    if isinstance(template, list):
        return [fill(v, template[0]) for v in value] if isinstance(value, list) else []
    return template if value is None else value


def layout_diff(value: Any, template: Any, path: str = "") -> tuple[list[str], list[str]]:
    """(missing, extra) key paths of ``value`` against ``template``."""
    missing: list[str] = []
    extra: list[str] = []
    if isinstance(template, dict) and isinstance(value, dict):
        if list(template) == ["*"]:
            for k, v in value.items():
                m, e = layout_diff(v, template["*"], f"{path}.{k}")
                missing += m
                extra += e
            return missing, extra
        missing += [f"{path}.{k}".lstrip(".") for k in template if k not in value]
        extra += [f"{path}.{k}".lstrip(".") for k in value if k not in template]
        for k in template:
            if k in value:
                m, e = layout_diff(value[k], template[k], f"{path}.{k}")
                missing += m
                extra += e
    elif isinstance(template, list) and isinstance(value, list):
        for i, v in enumerate(value):
            m, e = layout_diff(v, template[0], f"{path}[{i}]")
            missing += m
            extra += e
    return missing, extra


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- parts that run in their own process -----------------------------------------------------------

class Part:
    """A part's results, written to its file after every step (a part stopped at its time limit
    keeps what it had)."""

    def __init__(self, path: Path, fake: bool, work: Path):
        self.path, self.fake, self.work = path, fake, work
        self.data: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        tmp.replace(self.path)


def _augment_fake_cupy(cp: Any) -> None:
    """What the check calls of CuPy that tests/gpu_fakes.py's fake does not have (fake mode only)."""
    cuda = cp.cuda

    class Event:
        def __init__(self, *a: Any, **k: Any):
            self.t = 0.0

        def record(self, stream: Any = None) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None:
            pass

    if not hasattr(cuda, "Event"):
        cuda.Event = Event
        cuda.get_elapsed_time = lambda a, b: (b.t - a.t) * 1000.0
    rt = cuda.runtime
    for name in ("runtimeGetVersion", "driverGetVersion"):
        if not hasattr(rt, name):
            setattr(rt, name, lambda: 13000)
    props = rt.getDeviceProperties
    rt.getDeviceProperties = lambda i: {"totalGlobalMem": 1 << 30, "multiProcessorCount": 1, **props(i)}
    if not hasattr(cuda, "nvrtc"):
        cuda.nvrtc = type("nvrtc", (), {"getVersion": staticmethod(lambda: (13, 0))})
    device = cuda.Device

    def Device(i: int = 0) -> Any:
        d = device(i)
        if not hasattr(d, "synchronize"):
            d.synchronize = lambda: None
        return d

    cuda.Device = Device


def install_fakes(kernels: bool = True) -> Any:
    """tests/gpu_fakes.py's fake CuPy and PyNvVideoCodec in sys.modules, and no TensorRT (as on the
    nvidia-h200 machine). ``kernels``: compile the kernel sources for the CPU (g++)."""
    import pytest

    sys.path.insert(0, str(REPO / "tests"))
    import gpu_fakes

    launch = gpu_fakes.kernel_emulator(Path(tempfile.mkdtemp(prefix="vidinfer-emu-"))) if kernels else None
    mp = pytest.MonkeyPatch()
    fakes = gpu_fakes.install_fake_gpu(mp, launch)
    if "tensorrt" in sys.modules:
        mp.delitem(sys.modules, "tensorrt")
    _augment_fake_cupy(fakes.cupy)
    return fakes


def imported_distributions() -> list[str]:
    """The distributions whose modules this process imported (not the standard library, not vidinfer)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    tops = {m.split(".")[0] for m in list(sys.modules) if m and not m.startswith("_")}
    found = set()
    for top in tops - set(sys.stdlib_module_names):
        found.update(_norm(d) for d in owners.get(top, []))
    return sorted(found - {"vidinfer"})


def part_environment(r: Part) -> None:
    import numpy as np

    from vidinfer.devices import Probe
    from vidinfer.preprocess.gpu import cuda_include_dir

    r["hostname"], r["python"], r["platform"] = socket.gethostname(), platform.python_version(), platform.platform()
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,"
                               "clocks.max.mem,power.limit,pstate", "--format=csv"],
                              capture_output=True, text=True, timeout=20, check=False)
        r["nvidia_smi"] = (done.stdout + done.stderr).strip().splitlines()
    driver = Probe().driver()
    r["driver"] = {"version": driver.version if driver else None, "cuda": driver.cuda_text if driver else None}
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    r["gpu"] = {"name": name, "compute_capability": f"{props['major']}.{props['minor']}",
                "memory_gib": round(props["totalGlobalMem"] / (1 << 30), 1),
                "multiprocessors": props["multiProcessorCount"],
                "nvdec_engines": next((n for k, n in NVDEC_ENGINES.items() if k in name), None)}
    nvrtc = None
    with contextlib.suppress(Exception):
        nvrtc = ".".join(map(str, cp.cuda.nvrtc.getVersion()))
    r["cuda"] = {"runtime": cp.cuda.runtime.runtimeGetVersion(), "driver": cp.cuda.runtime.driverGetVersion(),
                 "nvrtc": nvrtc}
    r["cuda_include_dir"] = cuda_include_dir()
    versions: dict[str, str | None] = {"numpy": np.__version__}
    for dist, module in (("cupy-cuda13x", "cupy"), ("cupy-cuda12x", "cupy"), ("PyNvVideoCodec", "PyNvVideoCodec"),
                         ("av", "av"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("pydantic", "pydantic"),
                         ("pyzmq", "zmq"), ("msgpack", "msgpack"), ("scipy", "scipy"), ("torch", None),
                         ("tensorrt", "tensorrt"), ("onnxruntime-gpu", None), ("cuda-pathfinder", None),
                         ("nvidia-cuda-runtime", None), ("nvidia-cuda-nvrtc", None)):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            mod = sys.modules.get(module) if module else None  # a fake (rehearsal) has no distribution
            if mod is not None and module not in versions:
                versions[module] = str(getattr(mod, "__version__", "imported"))
    r["versions"] = versions
    r["ok"] = True


def part_info(r: Part) -> None:
    from vidinfer.cli import main
    from vidinfer.devices import plan_device

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["info"])
    r["exit_code"], r["lines"] = code, buf.getvalue().splitlines()
    r["plan_auto"] = plan_device("auto").reason
    print(buf.getvalue())
    r["ok"] = code == 0


def _kernel_kwargs(fn: Callable[..., Any], **kw: Any) -> dict[str, Any]:
    """The keyword arguments ``fn`` takes (the launchers gain some, e.g. chroma_siting)."""
    import inspect

    params = inspect.signature(fn).parameters
    return {k: v for k, v in kw.items() if k in params}


def part_kernels(r: Part) -> None:
    import cupy as cp
    import numpy as np

    from vidinfer.preprocess import gpu
    from vidinfer.preprocess.crops import yuv_to_rgb_matrix
    from vidinfer.preprocess.letterbox import Letterbox
    from vidinfer.preprocess.reference import crop_resize_nv12_reference, letterbox_nv12_reference, nv12_from_rgb

    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    r["seed"] = seed
    sitings = ["center", "left"] if "chroma_siting" in _kernel_kwargs(gpu.letterbox_nv12_into, chroma_siting=1) \
        else ["center"]
    r["chroma_sitings"] = sitings
    cases: list[dict[str, Any]] = []
    crops: list[dict[str, Any]] = []
    ok = True
    first = True
    for (w, h), standard, full in (((1920, 1080), "bt709", False), ((1280, 720), "bt709", True),
                                   ((720, 1280), "bt601", True), ((97, 61), "bt601", False)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        y, uv = nv12_from_rgb(rgb, standard, full)
        m, off = yuv_to_rgb_matrix(standard, full)
        box = Letterbox.fit(w, h, 640, 640)
        dy, duv = cp.asarray(y), cp.asarray(uv)
        for siting in sitings:
            kw_gpu = _kernel_kwargs(gpu.letterbox_nv12_into, chroma_siting=siting)
            kw_ref = _kernel_kwargs(letterbox_nv12_reference, chroma_siting=siting)
            for dtype in (np.float32, np.float16):
                for mean, std in ((None, None), IMAGENET):
                    batch = cp.full((3, 3, 640, 640), cp.nan, dtype)  # poisoned: every written value checked
                    t0 = time.perf_counter()
                    gpu.letterbox_nv12_into(batch, 2, dy, duv, box, m, off, mean=mean, std=std, **kw_gpu)
                    got = batch.get()
                    if first:
                        r["first_compile_s"] = round(time.perf_counter() - t0, 3)
                        first = False
                    ref = letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype, mean=mean, std=std, **kw_ref)
                    diff = np.abs(got[2].astype(np.float64) - ref.astype(np.float64))
                    worst = float(np.nanmax(diff)) if not np.isnan(diff).all() else float("nan")
                    tol = 1e-5 if dtype == np.float32 else 2e-3
                    untouched = bool(np.isnan(got[:2]).all())
                    good = bool(not np.isnan(got[2]).any() and worst <= tol and untouched)
                    ok = ok and good
                    cases.append({"size": f"{w}x{h}", "standard": standard, "full_range": full,
                                  "chroma_siting": siting, "dtype": np.dtype(dtype).name,
                                  "normalise": "imagenet" if mean else "1/255", "max_abs_diff": worst,
                                  "tolerance": tol, "bit_exact": worst == 0.0, "other_slots_untouched": untouched,
                                  "ok": good})
                    r["cases"] = cases
            boxes = np.concatenate([rng.uniform(-20, 0.8 * w, (16, 1)), rng.uniform(-20, 0.8 * h, (16, 1))], 1)
            boxes = np.concatenate([boxes, boxes + rng.uniform(2, 0.5 * max(w, h), (16, 2))], 1).astype(np.float32)
            kw_crop = _kernel_kwargs(gpu.crop_resize_nv12, chroma_siting=siting)
            kw_cref = _kernel_kwargs(crop_resize_nv12_reference, chroma_siting=siting)
            out = gpu.crop_resize_nv12(dy, duv, boxes, 40, 24, m, off, **kw_crop).get()
            worst = float(np.abs(out - crop_resize_nv12_reference(y, uv, boxes, 40, 24, m, off, **kw_cref)).max())
            good = bool(out.shape == (16, 3, 40, 24) and worst <= 1e-5)
            ok = ok and good
            crops.append({"size": f"{w}x{h}", "chroma_siting": siting, "boxes": 16, "max_abs_diff": worst,
                          "ok": good})
            r["crops"] = crops
        if (w, h) == (1280, 720):  # the single (1.5H, W) array on a non-default stream
            stream = cp.cuda.Stream(non_blocking=True)
            batch = cp.full((1, 3, 640, 640), cp.nan, cp.float32)
            gpu.letterbox_nv12_into(batch, 0, cp.asarray(np.concatenate([y, uv])), None, box, m, off,
                                    stream=stream)
            stream.synchronize()
            worst = float(np.abs(batch.get()[0] - letterbox_nv12_reference(y, uv, box, m, off)).max())
            r["stream"] = {"size": f"{w}x{h}", "max_abs_diff": worst, "ok": worst <= 1e-5}
            ok = ok and worst <= 1e-5
    # Time per 1080p frame, CUDA events, after warm-up.
    iters = 5 if r.fake else 200
    rgb = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    y, uv = nv12_from_rgb(rgb, "bt709", False)
    m, off = yuv_to_rgb_matrix("bt709", False)
    box = Letterbox.fit(1920, 1080, 640, 640)
    nv12 = cp.asarray(np.concatenate([y, uv]))

    def ms(fn: Callable[[], Any]) -> float:
        for _ in range(3):
            fn()
        cp.cuda.Device().synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return round(cp.cuda.get_elapsed_time(start, end) / iters, 4)

    timing: dict[str, Any] = {"iters": iters}
    for key, dtype, norm in (("letterbox_1080p_f32_ms", np.float32, (None, None)),
                             ("letterbox_1080p_f16_ms", np.float16, (None, None)),
                             ("letterbox_1080p_imagenet_ms", np.float32, IMAGENET)):
        batch = cp.zeros((8, 3, 640, 640), dtype)
        timing[key] = ms(lambda b=batch, n=norm: gpu.letterbox_nv12_into(b, 3, nv12, None, box, m, off,
                                                                           mean=n[0], std=n[1]))
    xy = rng.uniform(0, 1700, (32, 2)).astype(np.float32)
    dboxes = cp.asarray(np.concatenate([xy, xy + rng.uniform(20, 220, (32, 2)).astype(np.float32)], 1))
    dy, duv = cp.asarray(y), cp.asarray(uv)
    timing["crop_32_boxes_128px_ms"] = ms(lambda: gpu.crop_resize_nv12(dy, duv, dboxes, 128, 128, m, off))
    f32 = timing["letterbox_1080p_f32_ms"]
    timing["letterbox_frames_per_s"] = round(1000 / f32, 1) if f32 else None
    r["timing"] = timing
    r["ok"] = ok


# --- NVDEC --------------------------------------------------------------------------------------------

def make_clip(path: Path, frames: int, width: int = 1920, height: int = 1080, fps: int = 30,
              bitrate: int = 8_000_000, gop: int = 60) -> None:
    """A textured, panning 1080p30 H.264 clip with moving boxes (libx264, High, B-frames, fixed GOP)."""
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    tex = rng.integers(0, 256, (height // 8 + 2, width // 8 + 40, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, 0), 8, 1)  # 8x8 blocks of colour: detail at a broadcast-like rate
    yy, xx = np.mgrid[0:height, 0:width]
    wave = (60 * np.sin(xx / 53.0) * np.cos(yy / 37.0)).astype(np.int16)[..., None]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={
            "preset": "veryfast", "profile": "high", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
        vs.width, vs.height, vs.pix_fmt, vs.bit_rate = width, height, "yuv420p", bitrate
        for i in range(frames):
            shift = (4 * i) % (tex.shape[1] - width)
            img = np.clip(tex[:height, shift:shift + width].astype(np.int16) + wave, 0, 255).astype(np.uint8)
            for k in range(6):
                x, y = (97 * k + 11 * i) % (width - 200), (53 * k + 5 * i) % (height - 120)
                img[y:y + 120, x:x + 200] = (40 * k, 255 - 30 * k, 128)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)


def clip_packets(path: Path) -> tuple[list[Any], list[tuple[Any, int]], dict[str, Any]]:
    """(PyAV Annex-B packets, the same as (uint8 array, pts), clip description) of an H.264 file."""
    import av
    import numpy as np

    from vidinfer.sources.nvdec import annexb_filter, annexb_packets

    packets: list[Any] = []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        cc = vs.codec_context
        info = {"path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name,
                "codec": cc.name, "profile": cc.profile, "width": cc.width, "height": cc.height,
                "fps": float(vs.average_rate) if vs.average_rate else None}
        bsf = annexb_filter(vs)
        for p in c.demux(vs):
            packets += annexb_packets(bsf, p)
        duration = float(c.duration / 1e6) if c.duration else None
    arrays = [(np.frombuffer(bytes(p), np.uint8).copy(), int(p.pts) if p.pts is not None else 0) for p in packets]
    size = sum(a.size for a, _ in arrays)
    with av.open(str(path)) as c:
        frames = [f.key_frame for f in c.decode(video=0)]
    keys = [i for i, k in enumerate(frames) if k]
    info.update({"frames": len(frames), "packets": len(arrays),
                 "bitrate_mbps": round(size * 8 / duration / 1e6, 2) if duration else None,
                 "gop": (keys[1] - keys[0]) if len(keys) > 1 else len(frames)})
    return packets, arrays, info


class RawDecoder:
    """One NVDEC decoder of PyNvVideoCodec on its own CUDA stream, fed (uint8 array, pts) packets."""

    def __init__(self, nvc: Any, cp: Any, gpu: int = 0):
        self.nvc, self.cp = nvc, cp
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.dec = nvc.CreateDecoder(gpuid=gpu, codec=nvc.cudaVideoCodec.H264, cudacontext=0,
                                     cudastream=self.stream.ptr, usedevicememory=True,
                                     outputColorType=nvc.OutputColorType.NATIVE)

    def decode(self, arr: Any, pts: int) -> list[Any]:
        pd = self.nvc.PacketData()
        pd.bsl_data, pd.bsl, pd.pts = arr.ctypes.data, arr.size, pts
        return list(self.dec.Decode(pd))

    def flush(self) -> list[Any]:
        return list(self.dec.Decode(self.nvc.PacketData()))


def decode_for(nvc: Any, cp: Any, packets: list[tuple[Any, int]], seconds: float, start_at: float,
               out: dict[str, Any]) -> None:
    """Decode ``packets`` in a loop (no flush between passes) from ``start_at`` (perf_counter) for
    ``seconds``; every frame goes to CuPy through DLPack (a view, as the pipeline's first step)."""
    try:
        dec = RawDecoder(nvc, cp)
        frames = 0
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        while time.perf_counter() < deadline:
            for arr, pts in packets:
                for f in dec.decode(arr, pts):
                    cp.from_dlpack(f)
                    frames += 1
                if time.perf_counter() >= deadline:
                    break
        dec.stream.synchronize()
        out["frames"], out["end"] = frames, time.perf_counter()
    except Exception as exc:  # noqa: BLE001 - reported
        out["error"] = f"{type(exc).__name__}: {exc}"


def threaded_rate(nvc: Any, cp: Any, packets: list[tuple[Any, int]], n: int, seconds: float) -> dict[str, Any]:
    """n raw decoder threads at once: their frames per second together."""
    start_at = time.perf_counter() + 0.5 + 0.05 * n  # time to create the decoders first
    return rate_of_threads(lambda out: decode_for(nvc, cp, packets, seconds, start_at, out), n, start_at)


def rate_of_threads(run: Callable[[dict[str, Any]], None], n: int, start_at: float) -> dict[str, Any]:
    """Run ``run(out)`` on n threads (each fills ``out`` with ``frames`` and ``end``, or ``error``)."""
    outs: list[dict[str, Any]] = [{} for _ in range(n)]
    threads = [threading.Thread(target=run, args=(o,)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} decoder threads failed: {errors[0]}")
    frames = sum(o["frames"] for o in outs)
    elapsed = max(o["end"] for o in outs) - start_at
    fps = frames / elapsed
    return {"decoders": n, "processes": 1, "seconds": round(elapsed, 2), "frames": frames, "fps": round(fps, 1),
            "streams_1080p30": round(fps / 30, 1)}


def decode_worker(args: argparse.Namespace) -> int:
    """``--decode-worker``: one process of the multi-process rate (JSON on stdout)."""
    sys.path.insert(0, str(REPO))
    if args.fake:
        install_fakes(kernels=False)
    import cupy as cp
    import PyNvVideoCodec as nvc

    _, arrays, _ = clip_packets(Path(args.clip))
    outs: list[dict[str, Any]] = [{} for _ in range(args.threads)]
    start_at = time.perf_counter() + max(0.0, args.start_at - time.time())  # the same instant in every worker
    threads = [threading.Thread(target=decode_for, args=(nvc, cp, arrays, args.seconds, start_at, o)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"frames": sum(o.get("frames", 0) for o in outs),
                      "elapsed": max((o.get("end", start_at) for o in outs), default=start_at) - start_at,
                      "errors": [o["error"] for o in outs if "error" in o]}))
    return 0


def part_nvdec(r: Part) -> None:
    import cupy as cp
    import numpy as np
    import PyNvVideoCodec as nvc

    r["decoder_module"] = f"PyNvVideoCodec {getattr(nvc, '__version__', '')}".strip()
    fake = r.fake
    generated = r.work / "generated_1080p30.mp4"
    t0 = time.perf_counter()
    make_clip(generated, frames=45 if fake else 300)
    print(f"encoded {generated.name} in {time.perf_counter() - t0:.1f} s")
    clips = {"shapes_1080p": REPO / "sample_streams" / "shapes_1080p.mp4", "generated_1080p30": generated}
    loaded = {}
    infos = {}
    for name, path in clips.items():
        loaded[name] = clip_packets(path)
        infos[name] = loaded[name][2]
    r["clips"] = infos

    # Bit-exactness against PyAV's software decoder, and DLPack without a copy.
    import av

    arrays = loaded["generated_1080p30"][1]
    dec = RawDecoder(nvc, cp)
    got: list[tuple[Any, int]] = []
    zero_copy: dict[str, Any] = {}
    want = 30
    for arr, pts in arrays:
        for f in dec.decode(arr, pts):
            a = cp.from_dlpack(f)
            if not zero_copy:
                frame_ptr = None
                with contextlib.suppress(Exception):
                    if hasattr(f, "GetPtrToPlane"):
                        frame_ptr = int(f.GetPtrToPlane(0))
                    elif hasattr(f, "cuda"):
                        frame_ptr = int(f.cuda()[0].__cuda_array_interface__["data"][0])
                zero_copy = {"dlpack_shape": list(a.shape), "dlpack_strides": list(a.strides), "dtype": str(a.dtype),
                             "cupy_ptr": int(a.data.ptr), "frame_ptr": frame_ptr,
                             "same_memory": (frame_ptr == int(a.data.ptr)) if frame_ptr is not None else None}
                r["zero_copy"] = zero_copy
            got.append((a.get(), f.getPTS() if hasattr(f, "getPTS") else None))
        if len(got) >= want:
            break
    got = got[:want]
    with av.open(str(generated)) as c:
        soft = [(f.to_ndarray(format="nv12"), f.pts) for _, f in zip(range(want), c.decode(video=0))]
    h, w = infos["generated_1080p30"]["height"], infos["generated_1080p30"]["width"]
    worst = 0
    for (hw, _), (sw, _) in zip(got, soft):
        coded = hw.shape[0] * 2 // 3  # the DLPack array may carry NVDEC's coded height (1088)
        y_diff = np.abs(hw[:h, :w].astype(np.int16) - sw[:h].astype(np.int16)).max()
        uv_diff = np.abs(hw[coded:coded + h // 2, :w].astype(np.int16) - sw[h:].astype(np.int16)).max()
        worst = max(worst, int(y_diff), int(uv_diff))
    r["reference"] = {"clip": "generated_1080p30", "frames_compared": min(len(got), len(soft)),
                      "max_abs_diff": worst, "bit_exact": worst == 0 and len(got) == len(soft),
                      "pts_match": [p for _, p in got] == [p for _, p in soft],
                      "dlpack_shape": zero_copy.get("dlpack_shape")}

    seconds = 0.5 if fake else 3.0
    r["one_decoder"] = [{"clip": name, "fps": threaded_rate(nvc, cp, loaded[name][1], 1, seconds)["fps"]}
                        for name in clips]
    counts = [1, 2] if fake else [1, 2, 4, 8, 16, 32]
    rates: list[dict[str, Any]] = []
    for n in counts:
        rates.append(threaded_rate(nvc, cp, arrays, n, seconds))
        r["threads"] = rates
        print("threads", rates[-1])
    # Several processes (no shared interpreter lock), each with several decoder threads.
    procs, per = (2, 1) if fake else (4, 8)
    start_at = time.time() + (6.0 if fake else 10.0)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--decode-worker", "--clip", str(generated),
           "--threads", str(per), "--seconds", str(seconds + (0 if fake else 1)), "--start-at", str(start_at)]
    cmd += ["--fake"] if fake else []
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    reports = []
    for p in workers:
        out, err = p.communicate(timeout=90)
        if p.returncode != 0 or not out.strip():
            raise RuntimeError(f"decode worker failed: {err.strip().splitlines()[-1:] or p.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    errors = [e for rep in reports for e in rep["errors"]]
    frames = sum(rep["frames"] for rep in reports)
    elapsed = max(rep["elapsed"] for rep in reports)
    r["processes"] = {"decoders": procs * per, "processes": procs, "seconds": round(elapsed, 2), "frames": frames,
                      "fps": round(frames / elapsed, 1), "streams_1080p30": round(frames / elapsed / 30, 1),
                      "error": "; ".join(errors[:3]) or None}
    best = max([*rates, r["processes"]], key=lambda x: x["fps"])
    r["best"] = best
    # The same through vidinfer's own decoder (its device-to-device copy out of the decoder's pool).
    try:
        r["vidinfer_decoder"] = vidinfer_decoder_rate(cp, loaded["generated_1080p30"][0], best["decoders"]
                                                      if best["processes"] == 1 else 8, seconds)
    except Exception as exc:  # noqa: BLE001 - its constructor is being changed elsewhere: report
        r["vidinfer_decoder"] = {"error": f"{type(exc).__name__}: {exc}"}
    r["ok"] = bool(r["reference"]["bit_exact"]) and not errors


def vidinfer_decoder_rate(cp: Any, packets: list[Any], n: int, seconds: float) -> dict[str, Any]:
    from vidinfer.sources.nvdec import NvdecDecoder

    start_at = time.perf_counter() + 0.5 + 0.05 * n

    def run(out: dict[str, Any]) -> None:
        try:
            stream = cp.cuda.Stream(non_blocking=True)
            dec = NvdecDecoder("h264", 0, stream)
            frames = 0
            while time.perf_counter() < start_at:
                time.sleep(0.001)
            while time.perf_counter() < start_at + seconds:
                for p in packets:
                    with stream:
                        frames += sum(1 for _ in dec.decode(p))
                    stream.synchronize()  # as NvdecDecoding does before queueing the frames
                    if time.perf_counter() >= start_at + seconds:
                        break
            out["frames"], out["end"] = frames, time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"{type(exc).__name__}: {exc}"

    return rate_of_threads(run, n, start_at)


# --- the pipeline -------------------------------------------------------------------------------------

class HostCopyEngine:
    """Check only: ONNX Runtime on the CPU behind the GPU backend's engine seam. Each batch the GPU
    made (letterboxed frames, classifier crops) is copied to the host and run there. For machines
    with neither TensorRT nor onnxruntime-gpu, such as the nvidia-h200 one."""

    backend = "onnxruntime (CPU, host copy)"
    device = "cpu"
    copied_bytes = 0

    def __init__(self, cpu_engine: Any):
        self._cpu = cpu_engine
        self.input = cpu_engine.input
        self.output_names = cpu_engine.output_names
        self.output_shapes = cpu_engine.output_shapes

    def run(self, batch: Any) -> dict[str, Any]:
        host = batch.get() if hasattr(batch, "get") else batch
        HostCopyEngine.copied_bytes += host.nbytes
        return self._cpu.run(host)

    def close(self) -> None:
        self._cpu.close()


def _check_plan() -> tuple[Any, str]:
    """The device plan of the check: the real one where a GPU engine is here, else GPU decode and
    preprocessing with inference on ONNX Runtime's CPU provider (`HostCopyEngine`)."""
    import dataclasses

    import onnxruntime

    from vidinfer import devices
    from vidinfer.backends.gpu import GpuBackend
    from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
    from vidinfer.errors import ConfigError

    caps = devices.capabilities()
    try:
        plan = devices.plan_device("gpu", caps)
        return plan, plan.engine
    except ConfigError:
        if any(c.name in ("tensorrt", "onnxruntime-gpu") and c.available for c in caps):
            raise
    stand_in = [dataclasses.replace(c, available=True, detail="(check: replaced)") if c.name == "tensorrt" else c
                for c in caps]
    plan = devices.plan_device("gpu", stand_in)  # still raises where CUDA or NVDEC is missing
    ort = f"onnxruntime {onnxruntime.__version__} (CPU)"
    plan = dataclasses.replace(
        plan, engine="host-onnxruntime",
        reason="check: GPU decode and preprocessing; no TensorRT or onnxruntime-gpu here, so inference on "
               "ONNX Runtime's CPU provider from device-to-host copies",
        stages={**plan.stages, "detector": f"{ort} on a device-to-host copy of the GPU-letterboxed batch",
                "classifiers": f"{ort} on a device-to-host copy of the crops made by the NV12 crop kernel"})
    original = GpuBackend.make_engine

    def make_engine(self: Any, path: Path, input_size: Any, threads: int, role: str, max_batch: int) -> Any:
        if self.plan.engine != "host-onnxruntime":
            return original(self, path, input_size, threads, role, max_batch)
        return HostCopyEngine(OnnxRuntimeEngine(path, input_size, threads, role=role))

    GpuBackend.make_engine = make_engine  # type: ignore[method-assign]
    return plan, "onnxruntime-cpu-host-copy"


def part_pipeline(r: Part) -> None:
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from ground_truth import CLIPS, assert_matches_gt, load_gt

    import vidinfer as vi
    import vidinfer.pipeline as pipeline_module
    from vidinfer.config import GpuSpec, StreamSpec
    from vidinfer.testing.shape_models import SHADE_LABELS

    plan, mode = _check_plan()
    r["engine_mode"] = mode
    real = pipeline_module.plan_device
    pipeline_module.plan_device = lambda requested, caps=None: plan if requested == "gpu" else real(requested, caps)
    models = REPO / "models" / "shapes"
    results: dict[str, list] = {sid: [] for sid in STREAMS}
    t0 = time.monotonic()
    pipeline = vi.Pipeline(
        sources=[StreamSpec(id=sid, url=str(CLIPS / f"{clip}.mp4")) for sid, clip in STREAMS.items()],
        stages=[vi.Detect(model=models / "detector.onnx", labels_file=models / "labels.txt",
                          conf_threshold=0.5, iou_threshold=0.5),
                vi.Classify(name="shade", model=models / "shade.onnx", labels=SHADE_LABELS)],
        sinks=[vi.CallbackSink(on_frame=lambda f, layers: results[f.stream_id].append((f.frame_no,
                                                                                       layers["objects"])))],
        name="gpu-check", device="gpu", max_batch_size=8, max_delay_ms=20,
        gpu=GpuSpec(engine_cache_dir=r.work / "engines"))
    r["build_s"] = round(time.monotonic() - t0, 2)
    report = pipeline.run()
    r["device"], r["stages"] = report.device, report.backends
    where_engine = "GPU (TensorRT)" if mode == "tensorrt" else "GPU (ONNX Runtime CUDA)" \
        if mode == "onnxruntime-gpu" else "CPU (ONNX Runtime, from a device-to-host copy of the batch)"
    r["ran_where"] = {"demux": "CPU (PyAV)", "decode": f"GPU (NVDEC, {plan.decoder})",
                      "preprocessing": "GPU (CuPy NV12 letterbox kernel)", "detector": where_engine,
                      "detector post-processing (YOLO decode, NMS)": "CPU",
                      "classifier crops": "GPU (CuPy NV12 crop kernel)", "classifier": where_engine}
    r["run_s"], r["frames"], r["mean_batch"] = report.elapsed_s, report.frames, round(report.mean_batch_size, 2)
    r["latency_ms"] = report.latency_ms
    r["host_copies_mib"] = round(HostCopyEngine.copied_bytes / (1 << 20), 1)
    ok = report.device == "gpu" and report.exit_code == 0
    streams: dict[str, Any] = {}
    for sid, clip in STREAMS.items():
        gt = load_gt(clip)
        got = results[sid]
        matched, worst, errors = 0, 0.0, []
        for frame_no, det in got:
            objects = gt.get(frame_no, [])
            try:
                assert_matches_gt(det.xyxy, det.class_id, objects, tol_px=2.0,
                                  shade=(det.attributes["shade"].label_id, SHADE_LABELS), where=f"{sid} {frame_no}")
                matched += 1
            except AssertionError as exc:
                errors.append(str(exc).splitlines()[0])
            for obj in objects:
                same = det.xyxy[det.class_id == obj["class_id"]]
                if len(same):
                    worst = max(worst, float(np.abs(same - np.asarray(obj["box"])).max(axis=1).min()))
        complete = [f for f, _ in got] == sorted(gt)
        ok = ok and complete and matched == len(gt)
        s = report.streams[sid]
        streams[sid] = {"clip": clip, "frames": len(got), "expected": len(gt), "frames_matched": matched,
                        "worst_box_error_px": round(worst, 2), "state": s.state,
                        "decoder_recreations": s.decoder_recreations, "first_errors": errors[:3]}
    r["streams"] = streams
    r["ok"] = ok


def part_pytest_gpu(r: Part) -> None:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", "tests"]
    r["command"] = " ".join(cmd[1:])
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=LIMIT_S["pytest_gpu"] - 10,
                          check=False)
    print(done.stdout[-20000:], done.stderr[-5000:])
    lines = done.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last)}
    r["exit_code"] = done.returncode
    r["passed"], r["failed"], r["skipped"] = counts.get("passed", 0), counts.get("failed", 0), counts.get("skipped", 0)
    r["errors"] = counts.get("error", 0) + counts.get("errors", 0)
    r["summary"] = [ln for ln in lines if ln.startswith(("PASSED", "FAILED", "SKIPPED", "ERROR"))][-20:] + [last]
    # On the GPU the one gpu-marked test must pass; in the rehearsal it skips (no CUDA device).
    r["ok"] = r["failed"] == 0 and r["errors"] == 0 and (r.fake or r["passed"] > 0)


PARTS: dict[str, Callable[[Part], None]] = {
    "environment": part_environment, "info": part_info, "kernels": part_kernels, "nvdec": part_nvdec,
    "pipeline": part_pipeline, "pytest_gpu": part_pytest_gpu}


def run_part(args: argparse.Namespace) -> int:
    """``--part NAME``: one part, in this process; its results go to ``--result``."""
    sys.path.insert(0, str(REPO))
    r = Part(Path(args.result), args.fake, Path(args.work))
    t0 = time.perf_counter()
    try:
        if args.fake:
            install_fakes(kernels=args.part in ("kernels", "pipeline"))
        PARTS[args.part](r)
    except Exception as exc:  # noqa: BLE001 - every failure is a result
        traceback.print_exc()
        r.data["ok"] = False
        r.data["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    finally:
        r.data["seconds"] = round(time.perf_counter() - t0, 2)
        with contextlib.suppress(Exception):
            r.data["distributions_imported"] = imported_distributions()
        r.flush()
    return 0


# --- the whole check (the parent process: standard library only) -----------------------------------

def install_wheels(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """pip-install every wheel of ``--wheels`` into ``--site``, offline (``--fake``: a dry run with
    the GPU machine's Python and platform tags, so pip's verdict on each wheel is rehearsed too)."""
    wheels_dir, site = Path(args.wheels), Path(args.site)
    manifest_path = wheels_dir / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    expected_py = manifest.get("python_version")
    info: dict[str, Any] = {"python": platform.python_version(), "expected_python": expected_py,
                            "target": str(site), "dry_run": bool(args.fake), "wheels": []}
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    info["pip"] = pip.stdout.strip() or pip.stderr.strip()
    by_file = {w["file"]: w for w in manifest.get("wheels", [])}
    wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir.is_dir() else []
    if not wheels:
        info["error"] = f"no wheels in {wheels_dir}: nothing installed (tools/gpu_wheels.sh fetches them)"
        info["ok"] = None if args.fake else False
        return info
    base = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--upgrade", "--target", str(site)]
    if args.fake:
        base += ["--dry-run", "--only-binary=:all:", "--implementation", "cp",
                 "--python-version", expected_py or "3.12", *[a for p in GPU_PLATFORMS for a in ("--platform", p)]]
    else:
        site.mkdir(parents=True, exist_ok=True)
    missing = [f for f in by_file if not (wheels_dir / f).is_file()]
    deadline = time.monotonic() + min(LIMIT_S["install"], args.budget_s / 3)

    def pip(*files: str) -> subprocess.CompletedProcess[str]:
        left = deadline - time.monotonic()
        try:
            return subprocess.run([*base, *files], capture_output=True, text=True, check=False, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(base, 124, "", "pip timed out: the install's time limit ran out")

    done = pip(*map(str, wheels))
    log.write(f"$ {' '.join(base)} {wheels_dir}/*.whl\n{done.stdout}{done.stderr}\n")
    if done.returncode == 0:
        outcome = {w.name: (True, None) for w in wheels}
    else:  # one at a time, to name the ones that fail and still install the rest
        outcome = {}
        for w in wheels:
            one = pip(str(w))
            log.write(f"$ pip install {w.name}\n{one.stdout}{one.stderr}\n")
            err = (one.stderr.strip().splitlines() or [f"exit {one.returncode}"])[-1]
            outcome[w.name] = (one.returncode == 0, None if one.returncode == 0 else err)
    info["wheels"] = [{"file": w.name, "requirement": by_file.get(w.name, {}).get("requirement"),
                       "bytes": w.stat().st_size, "ok": outcome[w.name][0], "error": outcome[w.name][1]}
                      for w in wheels]
    failed = [w["file"] for w in info["wheels"] if not w["ok"]]
    problems = []
    if failed:
        problems.append(f"{len(failed)} wheel(s) did not install: {', '.join(failed)}")
    if missing:
        problems.append(f"listed in MANIFEST.json but absent: {', '.join(missing)}")
    if expected_py and not platform.python_version().startswith(expected_py) and not args.fake:
        problems.append(f"the wheels are for Python {expected_py} but this is {platform.python_version()}: "
                        f"PY_VERSION={platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]} "
                        "tools/gpu_wheels.sh fetches the right ones")
    info["error"] = "; ".join(problems) or None
    info["ok"] = not problems
    return info


def summarise(res: dict[str, Any], carried: set[str]) -> None:
    s, sec = res["summary"], res["sections"]
    k, nv, pl, pt = sec["kernels"], sec["nvdec"], sec["pipeline"], sec["pytest_gpu"]
    s["kernels_match_references"] = k["ok"]
    s["nvdec_bit_exact"] = nv["reference"]["bit_exact"]
    s["nvdec_zero_copy"] = nv["zero_copy"]["same_memory"]
    s["nvdec_fps_1080p"], s["nvdec_streams_1080p30"] = nv["best"]["fps"], nv["best"]["streams_1080p30"]
    if nv["best"]["decoders"] is not None:
        s["nvdec_best_at"] = f"{nv['best']['decoders']} decoders in {nv['best']['processes']} process(es)"
    s["vidinfer_decoder_streams_1080p30"] = nv["vidinfer_decoder"].get("streams_1080p30")
    s["pipeline_ok"], s["pipeline_engine"], s["ran_where"] = pl["ok"], pl["engine_mode"], pl["ran_where"]
    if pl["streams"]:
        s["pipeline_frames_matched"] = (f"{sum(v['frames_matched'] or 0 for v in pl['streams'].values())}/"
                                        f"{sum(v['expected'] or 0 for v in pl['streams'].values())}")
    if pt["exit_code"] is not None:
        s["pytest_gpu"] = (f"{pt['passed']} passed, {pt['failed']} failed, {pt['skipped']} skipped, "
                           f"{pt['errors']} errors")
    imported = {d for part in sec.values() for d in (part.get("distributions_imported") or [])}
    s["not_on_the_machine"] = sorted(imported - IMAGE_PACKAGES - carried)
    s["failed_parts"] = [name for name, part in sec.items() if part["ok"] is False]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "out" / "gpu-check"))
    ap.add_argument("--wheels", default=str(REPO / ".whl"))
    ap.add_argument("--site", default="/tmp/vidinfer-site")
    ap.add_argument("--budget-s", type=float, default=510.0, help="the whole check's time, install included")
    ap.add_argument("--fake", action="store_true", help="rehearse on tests/gpu_fakes.py (no GPU)")
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--decode-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        return run_part(args)
    if args.decode_worker:
        return decode_worker(args)

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vidinfer-gpu-check-"))
    res = fill({}, LAYOUT)
    res.update({"hardware": "fake" if args.fake else "gpu", "budget_s": args.budget_s,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "command": " ".join([Path(sys.executable).name, *sys.argv])})
    manifest_path = Path(args.wheels) / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    carried = {_norm(w["requirement"].split("==")[0]) for w in manifest.get("wheels", [])} or CARRIED
    res["tree"] = fill(manifest.get("tree"), LAYOUT["tree"])
    results_file, log_file = out / "gpu_check.json", out / "gpu_check.log"

    def save() -> None:
        missing, extra = layout_diff(res, LAYOUT)
        res["layout"] = {"missing": missing, "extra": extra}
        res["elapsed_s"] = round(time.time() - started, 1)
        results_file.write_text(json.dumps(res, indent=1, default=str) + "\n")

    with open(log_file, "w") as log:
        log.write(f"# vidinfer GPU check ({res['hardware']}), {res['started_utc']}, {res['command']}\n")
        t0 = time.perf_counter()
        try:
            install = install_wheels(args, log)
        except Exception as exc:  # noqa: BLE001
            install = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        install["seconds"] = round(time.perf_counter() - t0, 2)
        res["sections"]["install"] = fill(install, LAYOUT["sections"]["install"])
        print(f"install      ok={install.get('ok')} {install['seconds']} s {install.get('error') or ''}", flush=True)
        save()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        path = [str(REPO)] + ([str(args.site)] if not args.fake and Path(args.site).is_dir() else [])
        env["PYTHONPATH"] = os.pathsep.join([*reversed(path), *filter(None, [os.environ.get("PYTHONPATH")])])
        for name in ORDER[1:]:
            left = args.budget_s - (time.time() - started)
            limit = min(LIMIT_S[name], left - 5)
            part: dict[str, Any] = {}
            if limit < 10:
                part = {"ok": None, "error": f"not run: {left:.0f} s of the budget left"}
            else:
                result = work / f"{name}.json"
                log.write(f"\n## {name} (limit {limit:.0f} s)\n")
                log.flush()
                cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--result", str(result),
                       "--work", str(work)] + (["--fake"] if args.fake else [])
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                try:
                    proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, 9)  # the part and any processes it started
                    proc.wait()
                    part["timed_out"] = True
                if result.is_file():
                    part = {**json.loads(result.read_text()), **part}
                if part.get("timed_out"):
                    part.update(ok=False, error=f"timed out after {limit:.0f} s" +
                                (f"; {part['error']}" if part.get("error") else ""))
                    part.setdefault("seconds", round(time.perf_counter() - t0, 2))
                elif proc.returncode != 0 or "ok" not in part:
                    part.update(ok=False, error=part.get("error") or f"the part's process exited {proc.returncode}")
            res["sections"][name] = fill(part, LAYOUT["sections"][name])
            print(f"{name:<12} ok={part.get('ok')} {part.get('seconds')} s {part.get('error') or ''}"[:400],
                  flush=True)
            save()
        summarise(res, carried)
        oks = [p["ok"] for p in res["sections"].values()]
        res["ok"] = all(o is not False for o in oks) and any(o for o in oks)
        save()
        log.write(f"\n# done in {res['elapsed_s']} s; ok={res['ok']}\n")
    s = res["summary"]
    print(json.dumps({k: s[k] for k in ("kernels_match_references", "nvdec_bit_exact", "nvdec_zero_copy",
                                        "nvdec_fps_1080p", "nvdec_streams_1080p30", "nvdec_best_at",
                                        "vidinfer_decoder_streams_1080p30", "pipeline_ok",
                                        "pipeline_frames_matched", "pipeline_engine", "pytest_gpu",
                                        "not_on_the_machine", "failed_parts")}, indent=1))
    print(f"{res['hardware']} check: ok={res['ok']} in {res['elapsed_s']} s -> {results_file}, {log_file}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
