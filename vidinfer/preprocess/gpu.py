"""CuPy launchers of the NV12 preprocessing kernels in ``kernels/*.cu``.

* `letterbox_nv12_into`: NV12 frame -> RGB -> letterbox bilinear resize -> normalise -> CHW,
  written into slot ``index`` of a preallocated (N, 3, H, W) float32 or float16 batch;
* `crop_resize_nv12`: many boxes of one NV12 frame -> (M, 3, h, w) float32 RGB in [0, 1].

Importing this module never imports CuPy: ``cupy`` is imported inside the launchers, so a CPU-only
install can import it (and the argument builders, which are plain NumPy, are tested on CPU by
running the kernel sources through a C++ emulation in ``tests/test_gpu_kernels.py``).

NV12 input, as PyNvVideoCodec hands it out (see ../shared/reference/gpu_api.md, section 1):

* one (1.5H, W) uint8 array from ``cp.from_dlpack(frame)`` (pass it as ``y`` with ``uv=None``); or
* two planes: ``y`` (H, W) or (H, W, 1) and ``uv`` (H/2, W) or (H/2, W/2, 2), e.g.
  ``cp.asarray(frame.cuda()[0])``, ``cp.asarray(frame.cuda()[1])``.

Rows may be pitched (``strides[0]`` is used as the pitch); each row must be contiguous. Odd
sizes: a (1.5H, W) array whose row count was rounded down (PyNvVideoCodec's DLPack shape for an
odd H), and an odd-width array whose chroma rows hold floor(W/2) U, V pairs, are read as they
are, the missing edge chroma sample repeated.

Chroma siting (``chroma_siting``): "center", or "left" for chroma co-sited with the even luma
columns, the H.264 / HEVC / MPEG-4 part 2 default, which the CPU path's swscale honours for the
frames FFmpeg decodes (see `vidinfer.preprocess.reference`).

CUDA headers: the kernels include ``<cuda_fp16.h>``; `cuda_include_dir` finds the CUDA headers
where CuPy 14 looks (NVIDIA's ``nvidia-cuda-runtime`` wheels, a conda environment, CUDA_HOME /
CUDA_PATH, /usr/local/cuda) and the compile gets ``-I`` that folder.

NOT RUN ON A GPU. Nothing in this module has been executed with CuPy on a CUDA device: the
kernels were compiled with nvcc (sm_80, sm_90) and executed on the CPU through a C++ emulation of
the CUDA thread grid, and the argument tuples built here were checked against the kernel
signatures that way. Unverified until ``tools/gpu_check.sh`` runs on a GPU: NVRTC compilation
through CuPy (including whether ``<cuda_fp16.h>`` is found; a fallback without it is built in),
``RawModule.get_function`` / kernel launch, stream handling and the timings.
"""

from __future__ import annotations

import contextlib
import glob
import os
import site
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.preprocess.letterbox import RGB_0_1, InputConvention, Letterbox
from vidinfer.preprocess.reference import (
    CHROMA_DX,
    channel_matrix,
    letterbox_region,
    normalisation_constants,
    nv12_chroma_size,
)

__all__ = [
    "KERNEL_DIR",
    "crop_resize_nv12",
    "crop_resize_nv12_args",
    "cuda_include_dir",
    "kernel_source",
    "letterbox_nv12_args",
    "letterbox_nv12_into",
    "split_nv12",
]

KERNEL_DIR = Path(__file__).with_name("kernels")
COMPILE_OPTIONS = ("-std=c++17", "--fmad=false")  # no FMA contraction: matches reference.py to the ulp
NO_FP16_HEADER = "-DVIDINFER_NO_CUDA_FP16"
BLOCK_2D = (32, 8, 1)
BLOCK_1D = (256, 1, 1)

_i32 = np.int32
_f32 = np.float32


def kernel_source(filename: str) -> str:
    """A kernel file with its local ``#include "..."`` headers inlined (NVRTC gets no -I, and
    CuPy's compile cache is keyed on the source text, so header edits must change the text)."""
    out = []
    for line in (KERNEL_DIR / filename).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith('#include "') and stripped.endswith('"'):
            out.append(kernel_source(stripped[len('#include "'):-1]))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# Where CuPy 14 (through cuda-pathfinder) finds the CUDA runtime headers, in its order: NVIDIA's
# wheels (CUDA 13: nvidia-cuda-runtime 13.x, one nvidia/cu13 tree; CUDA 12: nvidia-cuda-runtime-cu12),
# then conda, then CUDA_HOME / CUDA_PATH, then /usr/local/cuda.
_WHEEL_INCLUDE_DIRS = ("nvidia/cu13/include", "nvidia/cuda_runtime/include")
_HEADER = "cuda_fp16.h"
SYSTEM_CUDA = "/usr/local/cuda"  # the toolkit's default install folder on Linux


def _site_dirs() -> list[str]:
    dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    try:
        dirs += [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # a virtualenv's old site.py
        pass
    return list(dict.fromkeys(dirs))


def cuda_include_dir() -> str | None:
    """The folder holding the CUDA runtime headers (``cuda_fp16.h``), or None.

    Searched as CuPy 14 does: cuda-pathfinder's ``find_nvidia_header_directory("cudart")`` when
    installed (CuPy 14 depends on it), else the same places by hand: NVIDIA's wheels under
    site-packages, ``$CONDA_PREFIX/targets/*/include`` (conda's CUDA layout) and
    ``$CONDA_PREFIX/include``, ``$CUDA_HOME/include``, ``$CUDA_PATH/include``, /usr/local/cuda/include
    (found only there, CUDA_PATH is set to /usr/local/cuda so that CuPy's own compiles find it too).
    """
    try:
        from cuda.pathfinder import find_nvidia_header_directory  # type: ignore[import-not-found]

        found = find_nvidia_header_directory("cudart")
        if found and os.path.isfile(os.path.join(found, _HEADER)):
            return str(found)
    except Exception:  # noqa: BLE001 - not installed, or an older cuda-pathfinder
        pass
    candidates = [os.path.join(d, sub) for d in _site_dirs() for sub in _WHEEL_INCLUDE_DIRS]
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        candidates += [*sorted(glob.glob(os.path.join(conda, "targets", "*", "include"))),
                       os.path.join(conda, "include")]
    candidates += [os.path.join(os.environ[v], "include") for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    system = os.path.join(SYSTEM_CUDA, "include")
    candidates.append(system)
    found = next((d for d in candidates if os.path.isfile(os.path.join(d, _HEADER))), None)
    if found == system and not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
        # CuPy 14's own compiles look in CUDA_HOME / CUDA_PATH but (with a cuda-pathfinder older
        # than its /usr/local/cuda fallback) not here: point them at this toolkit too.
        os.environ["CUDA_PATH"] = SYSTEM_CUDA
    return found


def _headers_missing(cupy: Any) -> str:
    """One sentence: the CUDA headers were not found, and the package that brings them."""
    try:
        major = int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001
        major = 0
    wheel = {12: "pip install 'nvidia-cuda-runtime-cu12'", 13: "pip install 'nvidia-cuda-runtime==13.*'"}.get(
        major, "pip install 'nvidia-cuda-runtime-cu12' (CUDA 12) or 'nvidia-cuda-runtime==13.*' (CUDA 13)")
    return (f"the CUDA headers the GPU preprocessing kernels compile against ({_HEADER}) are not in NVIDIA's "
            f"wheels, a conda environment, CUDA_HOME, CUDA_PATH or /usr/local/cuda; {wheel}, "
            "or set CUDA_PATH to a CUDA toolkit that has its include folder")


_lock = threading.Lock()
_modules: dict[tuple[str, int], Any] = {}


def _function(filename: str, name: str) -> Any:
    """The compiled kernel ``name`` of ``filename``: one RawModule per file, device and process.

    Compiled with ``-I`` `cuda_include_dir`; without ``<cuda_fp16.h>`` (``VIDINFER_NO_CUDA_FP16``)
    if that fails. With no CUDA headers anywhere the error says which package brings them (CuPy 14
    itself compiles nothing without them)."""
    import cupy

    key = (filename, cupy.cuda.Device().id)
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            src = kernel_source(filename)
            include = cuda_include_dir()
            options = COMPILE_OPTIONS + ((f"-I{include}",) if include else ())
            try:
                mod = cupy.RawModule(code=src, options=options)
                mod.get_function(name)  # compile now, so the fallback below can catch failures
            except Exception as first:  # noqa: BLE001 - CompileException, or a missing header
                try:
                    mod = cupy.RawModule(code=src, options=(*options, NO_FP16_HEADER))
                    mod.get_function(name)
                except Exception as second:
                    if include is None:
                        reason = str(second).splitlines()[0][:200] if str(second) else repr(second)
                        raise RuntimeError(f"compiling {filename} failed: {_headers_missing(cupy)} ({reason})"
                                           ) from second
                    raise RuntimeError(f"compiling {filename} failed: {first}\n"
                                       f"and without <cuda_fp16.h>: {second}") from second
            _modules[key] = mod
    return mod.get_function(name)


def split_nv12(nv12: Any, height: int | None = None) -> tuple[Any, Any]:
    """(y, uv) views of a (1.5H, W) NV12 array (NumPy or CuPy).

    ``height`` defaults to what the row count implies: ``H + ceil(H/2)`` rows, or ``floor(1.5H)``
    (PyNvVideoCodec's DLPack shape, one chroma row short for an odd H) both give H = round(2R/3).
    """
    if nv12.ndim == 3 and nv12.shape[-1] == 1:
        nv12 = nv12[..., 0]
    if nv12.ndim != 2:
        raise ValueError(f"expected a (1.5H, W) NV12 array, got shape {nv12.shape}")
    rows = nv12.shape[0]
    h = (2 * rows + 1) // 3 if height is None else height
    if h <= 0 or rows - h < max(1, h // 2):
        raise ValueError(f"{rows} rows cannot hold NV12 of height {h}")
    return nv12[:h], nv12[h:h + (h + 1) // 2]


def _planes(y: Any, uv: Any | None, src_w: int | None = None, src_h: int | None = None,
            ) -> tuple[Any, int, Any, int, int, int, int, int]:
    """(y, y_pitch, uv, uv_pitch, w, h, cw, ch) after checking the layout the kernels read."""
    if uv is None:
        y, uv = split_nv12(y)  # the array's own geometry; the frame may be smaller (coded size)
    if y.ndim == 3 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.ndim != 2 or y.dtype != np.uint8 or y.strides[1] != 1:
        raise ValueError(f"luma must be (H, W) uint8 with contiguous rows, got {y.shape} {y.dtype}")
    h = y.shape[0] if src_h is None else src_h
    w = y.shape[1] if src_w is None else src_w
    if y.shape[0] < h or y.shape[1] < w:
        raise ValueError(f"luma plane {y.shape} is smaller than the frame {w}x{h}")
    if uv.dtype != np.uint8:
        raise ValueError("chroma must be uint8")
    if uv.ndim == 3 and uv.shape[-1] == 2 and uv.strides[1:] == (2, 1):
        pairs = uv.shape[1]
    elif uv.ndim == 2 and uv.strides[1] == 1:
        pairs = uv.shape[1] // 2  # an odd-width row ends in a lone U: floor(W/2) pairs
    else:
        raise ValueError(f"chroma must be interleaved (H/2, W) or (H/2, W/2, 2) with contiguous rows, "
                         f"got {uv.shape} strides {uv.strides}")
    cw, ch = nv12_chroma_size(int(w), int(h), int(uv.shape[0]), int(pairs))
    return y, int(y.strides[0]), uv, int(uv.strides[0]), int(w), int(h), cw, ch


def _chroma_args(cw: int, ch: int, chroma_siting: str) -> tuple[np.int32, np.int32, np.float32]:
    if chroma_siting not in CHROMA_DX:
        raise ValueError(f"chroma_siting must be one of {', '.join(sorted(CHROMA_DX))}, got {chroma_siting!r}")
    return _i32(cw), _i32(ch), _f32(CHROMA_DX[chroma_siting])


def _colour_args(matrix: Any, offsets: Any) -> tuple[np.float32, ...]:
    m = np.asarray(matrix, np.float32).reshape(9)
    o = np.asarray(offsets, np.float32).reshape(3)
    return (*(_f32(v) for v in m), *(_f32(v) for v in o))


def letterbox_nv12_args(batch: Any, index: int, y: Any, uv: Any | None, box: Letterbox, matrix: Any,
                        offsets: Any, mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None, src_rect: Sequence[float] | None = None,
                        chroma_siting: str = "center", convention: InputConvention = RGB_0_1,
                        ) -> tuple[str, tuple[int, int, int], tuple[int, int, int], tuple]:
    """(kernel name, grid, block, args) of one letterbox launch; arrays stay arrays in ``args``.

    Plain NumPy: works on NumPy arrays too (the CPU emulation in the tests launches with these).
    ``convention`` (the model's range and channel order) becomes the colour matrix's row order
    and the scale and padding constants, as in `letterbox_nv12_reference`.
    """
    if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, box.dst_h, box.dst_w):
        raise ValueError(f"batch {batch.shape} does not match a (N, 3, {box.dst_h}, {box.dst_w}) input")
    if not batch.flags.c_contiguous:
        raise ValueError("batch must be C-contiguous")
    if not 0 <= index < batch.shape[0]:
        raise IndexError(f"slot {index} outside a batch of {batch.shape[0]}")
    if batch.dtype == np.float32:
        name = "letterbox_nv12_f32"
    elif batch.dtype == np.float16:
        name = "letterbox_nv12_f16"
    else:
        raise ValueError(f"batch dtype must be float32 or float16, got {batch.dtype}")
    y, y_pitch, uv, uv_pitch, w, h, cw, ch = _planes(y, uv, box.src_w, box.src_h)
    scale, bias, pad = normalisation_constants(mean, std, convention)
    args = (y, _i32(y_pitch), uv, _i32(uv_pitch), _i32(w), _i32(h), *_chroma_args(cw, ch, chroma_siting),
            *letterbox_region(box, src_rect),
            batch, _i32(index), _i32(box.dst_w), _i32(box.dst_h), _i32(box.new_w), _i32(box.new_h),
            _i32(box.pad_x), _i32(box.pad_y),
            *_colour_args(channel_matrix(matrix, convention), offsets), *scale, *bias, *pad)
    bx, by, _ = BLOCK_2D
    grid = ((box.dst_w + bx - 1) // bx, (box.dst_h + by - 1) // by, 1)
    return name, grid, BLOCK_2D, args


def letterbox_nv12_into(batch: Any, index: int, y: Any, uv: Any | None, box: Letterbox, matrix: Any,
                        offsets: Any, stream: Any = None, *, mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None,
                        src_rect: Sequence[float] | None = None, chroma_siting: str = "center",
                        convention: InputConvention = RGB_0_1) -> None:
    """Letterbox one NV12 frame into slot ``index`` of a CuPy (N, 3, H, W) float32/float16 batch.

    ``matrix, offsets`` come from `vidinfer.preprocess.crops.yuv_to_rgb_matrix` for the stream's
    colour space and range, ``chroma_siting`` from `vidinfer.preprocess.crops.chroma_siting` for its
    codec. ``uv=None`` takes ``y`` as the single (1.5H, W) NV12 array. Without
    mean/std the slot holds RGB / 255 and padding 114/255, like `fill_batch_slot` (``convention``:
    BGR and/or 0..255 for models that take that). The launch is asynchronous on ``stream`` (a
    ``cupy.cuda.Stream``; None: the current stream).
    """
    name, grid, block, args = letterbox_nv12_args(batch, index, y, uv, box, matrix, offsets,
                                                  mean, std, src_rect, chroma_siting, convention)
    _function("letterbox_nv12.cu", name)(grid, block, args, stream=stream)


def crop_resize_nv12_args(y: Any, uv: Any | None, boxes: Any, out: Any, matrix: Any, offsets: Any,
                          chroma_siting: str = "center", size: tuple[int, int] | None = None,
                          ) -> tuple[str, tuple[int, int, int], tuple[int, int, int], tuple]:
    """(kernel name, grid, block, args) of one crop launch; ``boxes`` is a contiguous (M, 4)
    float32 array and ``out`` a C-contiguous (M, 3, h, w) float32 array, on the same device.
    ``size``: the frame's (width, height) when the planes are larger (default: the luma plane's)."""
    y, y_pitch, uv, uv_pitch, w, h, cw, ch = _planes(y, uv, *(size or (None, None)))
    m, c, out_h, out_w = out.shape
    if c != 3 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous (M, 3, h, w) float32 array")
    if boxes.shape != (m, 4) or boxes.dtype != np.float32 or not boxes.flags.c_contiguous:
        raise ValueError(f"boxes must be a contiguous ({m}, 4) float32 array")
    total = m * out_h * out_w
    args = (y, _i32(y_pitch), uv, _i32(uv_pitch), _i32(w), _i32(h), *_chroma_args(cw, ch, chroma_siting),
            boxes, _i32(m),
            out, _i32(out_h), _i32(out_w), *_colour_args(matrix, offsets))
    grid = (max(1, (total + BLOCK_1D[0] - 1) // BLOCK_1D[0]), 1, 1)
    return "crop_resize_nv12_f32", grid, BLOCK_1D, args


def crop_resize_nv12(y: Any, uv: Any | None, xyxy: Any, out_h: int, out_w: int, matrix: Any,
                     offsets: Any, stream: Any = None, *, chroma_siting: str = "center",
                     size: tuple[int, int] | None = None) -> Any:
    """Crops of (M, 4) xyxy source-pixel boxes from one NV12 frame -> CuPy (M, 3, out_h, out_w)
    float32 RGB in [0, 1] (the GPU twin of `crop_resize_yuv420`, in CHW). Asynchronous on
    ``stream``; ``xyxy`` may be NumPy or CuPy. ``size``: the frame's (width, height) when the
    array is larger (an odd width in PyNvVideoCodec's even-width layout)."""
    import cupy

    # Allocate and upload on the launch stream, so the kernel is ordered after the copy.
    with stream if stream is not None else contextlib.nullcontext():
        boxes = cupy.ascontiguousarray(cupy.asarray(xyxy, dtype=cupy.float32).reshape(-1, 4))
        out = cupy.empty((boxes.shape[0], 3, out_h, out_w), cupy.float32)
        if boxes.shape[0] == 0:
            return out
        name, grid, block, args = crop_resize_nv12_args(y, uv, boxes, out, matrix, offsets, chroma_siting, size)
        _function("crop_resize_nv12.cu", name)(grid, block, args, stream=stream)
    return out
