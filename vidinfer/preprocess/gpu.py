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

Rows may be pitched (``strides[0]`` is used as the pitch); each row must be contiguous.

NOT RUN ON A GPU. Nothing in this module has been executed with CuPy on a CUDA device: the
kernels were compiled with nvcc (sm_80, sm_90) and executed on the CPU through a C++ emulation of
the CUDA thread grid, and the argument tuples built here were checked against the kernel
signatures that way. Unverified until ``tools/gpu_check.sh`` runs on a GPU: NVRTC compilation
through CuPy (including whether ``<cuda_fp16.h>`` is found; a fallback without it is built in),
``RawModule.get_function`` / kernel launch, stream handling and the timings.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.preprocess.reference import letterbox_region, normalisation_constants

__all__ = [
    "KERNEL_DIR",
    "crop_resize_nv12",
    "crop_resize_nv12_args",
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


_lock = threading.Lock()
_modules: dict[tuple[str, int], Any] = {}


def _function(filename: str, name: str) -> Any:
    """The compiled kernel ``name`` of ``filename``: one RawModule per file, device and process."""
    import cupy

    key = (filename, cupy.cuda.Device().id)
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            src = kernel_source(filename)
            try:
                mod = cupy.RawModule(code=src, options=COMPILE_OPTIONS)
                mod.get_function(name)  # compile now, so the fallback below can catch failures
            except Exception as first:  # noqa: BLE001 - CompileException, or a missing header
                try:
                    mod = cupy.RawModule(code=src, options=(*COMPILE_OPTIONS, NO_FP16_HEADER))
                    mod.get_function(name)
                except Exception as second:
                    raise RuntimeError(f"compiling {filename} failed: {first}\n"
                                       f"and without <cuda_fp16.h>: {second}") from second
            _modules[key] = mod
    return mod.get_function(name)


def split_nv12(nv12: Any, height: int | None = None) -> tuple[Any, Any]:
    """(y, uv) views of a (1.5H, W) NV12 array (NumPy or CuPy); ``height`` defaults to 2/3 rows."""
    if nv12.ndim == 3 and nv12.shape[-1] == 1:
        nv12 = nv12[..., 0]
    if nv12.ndim != 2:
        raise ValueError(f"expected a (1.5H, W) NV12 array, got shape {nv12.shape}")
    rows = nv12.shape[0]
    h = rows * 2 // 3 if height is None else height
    if h <= 0 or h + (h + 1) // 2 > rows:
        raise ValueError(f"{rows} rows cannot hold NV12 of height {h}")
    return nv12[:h], nv12[h:h + (h + 1) // 2]


def _planes(y: Any, uv: Any | None, src_w: int | None = None, src_h: int | None = None,
            ) -> tuple[Any, int, Any, int, int, int]:
    """(y, y_pitch, uv, uv_pitch, w, h) after checking the layout the kernels read."""
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
    cw, ch = (w + 1) // 2, (h + 1) // 2
    if uv.dtype != np.uint8:
        raise ValueError("chroma must be uint8")
    if uv.ndim == 3 and uv.shape[-1] == 2 and uv.strides[1:] == (2, 1):
        pairs = uv.shape[1]
    elif uv.ndim == 2 and uv.strides[1] == 1:
        pairs = uv.shape[1] // 2
    else:
        raise ValueError(f"chroma must be interleaved (H/2, W) or (H/2, W/2, 2) with contiguous rows, "
                         f"got {uv.shape} strides {uv.strides}")
    if uv.shape[0] < ch or pairs < cw:
        raise ValueError(f"chroma plane {uv.shape} is too small for a {w}x{h} frame")
    return y, int(y.strides[0]), uv, int(uv.strides[0]), int(w), int(h)


def _colour_args(matrix: Any, offsets: Any) -> tuple[np.float32, ...]:
    m = np.asarray(matrix, np.float32).reshape(9)
    o = np.asarray(offsets, np.float32).reshape(3)
    return (*(_f32(v) for v in m), *(_f32(v) for v in o))


def letterbox_nv12_args(batch: Any, index: int, y: Any, uv: Any | None, box: Letterbox, matrix: Any,
                        offsets: Any, mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None, src_rect: Sequence[float] | None = None,
                        ) -> tuple[str, tuple[int, int, int], tuple[int, int, int], tuple]:
    """(kernel name, grid, block, args) of one letterbox launch; arrays stay arrays in ``args``.

    Plain NumPy: works on NumPy arrays too (the CPU emulation in the tests launches with these).
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
    y, y_pitch, uv, uv_pitch, w, h = _planes(y, uv, box.src_w, box.src_h)
    scale, bias, pad = normalisation_constants(mean, std)
    args = (y, _i32(y_pitch), uv, _i32(uv_pitch), _i32(w), _i32(h),
            *letterbox_region(box, src_rect),
            batch, _i32(index), _i32(box.dst_w), _i32(box.dst_h), _i32(box.new_w), _i32(box.new_h),
            _i32(box.pad_x), _i32(box.pad_y),
            *_colour_args(matrix, offsets), *scale, *bias, *pad)
    bx, by, _ = BLOCK_2D
    grid = ((box.dst_w + bx - 1) // bx, (box.dst_h + by - 1) // by, 1)
    return name, grid, BLOCK_2D, args


def letterbox_nv12_into(batch: Any, index: int, y: Any, uv: Any | None, box: Letterbox, matrix: Any,
                        offsets: Any, stream: Any = None, *, mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None,
                        src_rect: Sequence[float] | None = None) -> None:
    """Letterbox one NV12 frame into slot ``index`` of a CuPy (N, 3, H, W) float32/float16 batch.

    ``matrix, offsets`` come from `vidinfer.preprocess.crops.yuv_to_rgb_matrix` for the stream's
    colour space and range. ``uv=None`` takes ``y`` as the single (1.5H, W) NV12 array. Without
    mean/std the slot holds RGB / 255 and padding 114/255, like `fill_batch_slot`. The launch is
    asynchronous on ``stream`` (a ``cupy.cuda.Stream``; None: the current stream).
    """
    name, grid, block, args = letterbox_nv12_args(batch, index, y, uv, box, matrix, offsets,
                                                  mean, std, src_rect)
    _function("letterbox_nv12.cu", name)(grid, block, args, stream=stream)


def crop_resize_nv12_args(y: Any, uv: Any | None, boxes: Any, out: Any, matrix: Any, offsets: Any,
                          ) -> tuple[str, tuple[int, int, int], tuple[int, int, int], tuple]:
    """(kernel name, grid, block, args) of one crop launch; ``boxes`` is a contiguous (M, 4)
    float32 array and ``out`` a C-contiguous (M, 3, h, w) float32 array, on the same device."""
    y, y_pitch, uv, uv_pitch, w, h = _planes(y, uv)
    m, c, out_h, out_w = out.shape
    if c != 3 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous (M, 3, h, w) float32 array")
    if boxes.shape != (m, 4) or boxes.dtype != np.float32 or not boxes.flags.c_contiguous:
        raise ValueError(f"boxes must be a contiguous ({m}, 4) float32 array")
    total = m * out_h * out_w
    args = (y, _i32(y_pitch), uv, _i32(uv_pitch), _i32(w), _i32(h), boxes, _i32(m),
            out, _i32(out_h), _i32(out_w), *_colour_args(matrix, offsets))
    grid = (max(1, (total + BLOCK_1D[0] - 1) // BLOCK_1D[0]), 1, 1)
    return "crop_resize_nv12_f32", grid, BLOCK_1D, args


def crop_resize_nv12(y: Any, uv: Any | None, xyxy: Any, out_h: int, out_w: int, matrix: Any,
                     offsets: Any, stream: Any = None) -> Any:
    """Crops of (M, 4) xyxy source-pixel boxes from one NV12 frame -> CuPy (M, 3, out_h, out_w)
    float32 RGB in [0, 1] (the GPU twin of `crop_resize_yuv420`, in CHW). Asynchronous on
    ``stream``; ``xyxy`` may be NumPy or CuPy."""
    import cupy

    # Allocate and upload on the launch stream, so the kernel is ordered after the copy.
    with stream if stream is not None else contextlib.nullcontext():
        boxes = cupy.ascontiguousarray(cupy.asarray(xyxy, dtype=cupy.float32).reshape(-1, 4))
        out = cupy.empty((boxes.shape[0], 3, out_h, out_w), cupy.float32)
        if boxes.shape[0] == 0:
            return out
        name, grid, block, args = crop_resize_nv12_args(y, uv, boxes, out, matrix, offsets)
        _function("crop_resize_nv12.cu", name)(grid, block, args, stream=stream)
    return out
