#!/usr/bin/env python
"""Tiny GPU preprocessing benchmark: prints one JSON object per line (and appends them to --out).

* ``env``: Python, NumPy, CuPy, device, CUDA runtime/driver versions;
* ``letterbox``: kernel time per 1920x1080 NV12 frame into one 640x640 slot (float32, float16, and
  float32 with ImageNet mean/std), CUDA-event timed, plus the max |diff| against the NumPy reference;
* ``crop``: 32 boxes -> (32, 3, 128, 128) from one 1080p frame;
* ``reference``: the NumPy reference's time for the same work (CPU, for scale);
* ``nvdec``: NVDEC decode rate of a sample 1080p H.264 file if PyNvVideoCodec imports, and the rate
  of decode + letterbox (zero-copy through DLPack).

Everything is guarded: a part that fails prints ``{"bench": ..., "error": ...}`` and the rest runs.
Nothing is installed. Usage: python tools/gpu_bench.py [--out FILE] [--iters N] [--video PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_out_file = None


def emit(record: dict) -> None:
    line = json.dumps(record, default=str)
    print(line, flush=True)
    if _out_file is not None:
        with open(_out_file, "a") as f:
            f.write(line + "\n")


def guarded(name: str):
    def wrap(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            except Exception as exc:  # noqa: BLE001 - report and carry on
                emit({"bench": name, "error": f"{type(exc).__name__}: {exc}",
                      "trace": traceback.format_exc(limit=3)[-800:],
                      "seconds": round(time.perf_counter() - t0, 2)})
                return None
        return run
    return wrap


def frame_1080p():
    import numpy as np

    from vidinfer.preprocess.reference import nv12_from_rgb
    h, w = 1080, 1920
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([127 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 61 - c) for c in range(3)], -1)
    rgb[200:400, 300:900] = (230, 20, 40)
    return nv12_from_rgb(rgb.astype(np.uint8), "bt709", False)


@guarded("env")
def bench_env():
    import numpy as np
    rec = {"bench": "env", "python": platform.python_version(), "numpy": np.__version__}
    try:
        import cupy as cp
        rec["cupy"] = cp.__version__
        rec["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
        rec["cuda_driver"] = cp.cuda.runtime.driverGetVersion()
        props = cp.cuda.runtime.getDeviceProperties(0)
        rec["device"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        rec["compute_capability"] = f"{props['major']}.{props['minor']}"
    except Exception as exc:  # noqa: BLE001
        rec["cupy_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import PyNvVideoCodec as nvc
        rec["pynvvideocodec"] = getattr(nvc, "__version__", "imported")
    except Exception as exc:  # noqa: BLE001 - no driver raises RuntimeError, not ImportError
        rec["pynvvideocodec_error"] = f"{type(exc).__name__}: {exc}"
    emit(rec)


def _time_gpu(cp, fn, iters: int) -> float:
    """Milliseconds per call, CUDA events on the current stream, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    cp.cuda.Stream.null.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / iters


@guarded("letterbox")
def bench_letterbox(iters: int):
    import cupy as cp
    import numpy as np

    from vidinfer.preprocess import gpu
    from vidinfer.preprocess.crops import yuv_to_rgb_matrix
    from vidinfer.preprocess.letterbox import Letterbox
    from vidinfer.preprocess.reference import letterbox_nv12_reference
    y, uv = frame_1080p()
    m, off = yuv_to_rgb_matrix("bt709", False)
    box = Letterbox.fit(1920, 1080, 640, 640)
    nv12 = cp.asarray(np.concatenate([y, uv]))
    for dtype, norm in ((np.float32, None), (np.float16, None), (np.float32, "imagenet")):
        mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if norm else (None, None)
        batch = cp.zeros((8, 3, 640, 640), dtype)
        t0 = time.perf_counter()
        gpu.letterbox_nv12_into(batch, 3, nv12, None, box, m, off, mean=mean, std=std)
        cp.cuda.Stream.null.synchronize()
        first = time.perf_counter() - t0  # includes NVRTC compile (or CuPy's disk cache)
        ms = _time_gpu(cp, lambda: gpu.letterbox_nv12_into(batch, 3, nv12, None, box, m, off,
                                                           mean=mean, std=std), iters)
        ref = letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype, mean=mean, std=std)
        diff = np.abs(batch[3].get().astype(np.float64) - ref.astype(np.float64))
        emit({"bench": "letterbox", "src": "1920x1080 nv12", "dst": "640x640", "dtype": np.dtype(dtype).name,
              "normalise": norm or "1/255", "ms_per_frame": round(ms, 4), "frames_per_s": round(1000 / ms, 1),
              "first_call_s": round(first, 3), "max_abs_diff_vs_reference": float(diff.max()),
              "bit_exact": bool(diff.max() == 0), "iters": iters})


@guarded("crop")
def bench_crop(iters: int):
    import cupy as cp
    import numpy as np

    from vidinfer.preprocess import gpu
    from vidinfer.preprocess.crops import yuv_to_rgb_matrix
    from vidinfer.preprocess.reference import crop_resize_nv12_reference
    y, uv = frame_1080p()
    m, off = yuv_to_rgb_matrix("bt709", False)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1700, (32, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(20, 220, (32, 2)).astype(np.float32)], 1)
    dy, duv = cp.asarray(y), cp.asarray(uv)
    dboxes = cp.asarray(boxes)
    out = gpu.crop_resize_nv12(dy, duv, dboxes, 128, 128, m, off)
    ms = _time_gpu(cp, lambda: gpu.crop_resize_nv12(dy, duv, dboxes, 128, 128, m, off), iters)
    diff = np.abs(out.get() - crop_resize_nv12_reference(y, uv, boxes, 128, 128, m, off))
    emit({"bench": "crop", "src": "1920x1080 nv12", "crops": "32 x 3x128x128", "ms_per_call": round(ms, 4),
          "max_abs_diff_vs_reference": float(diff.max()), "iters": iters})


@guarded("reference")
def bench_reference():
    import numpy as np

    from vidinfer.preprocess.crops import yuv_to_rgb_matrix
    from vidinfer.preprocess.letterbox import Letterbox
    from vidinfer.preprocess.reference import letterbox_nv12_reference
    y, uv = frame_1080p()
    m, off = yuv_to_rgb_matrix("bt709", False)
    box = Letterbox.fit(1920, 1080, 640, 640)
    n = 5
    t0 = time.perf_counter()
    for _ in range(n):
        letterbox_nv12_reference(y, uv, box, m, off)
    ms = (time.perf_counter() - t0) * 1000 / n
    emit({"bench": "reference", "what": "NumPy letterbox_nv12_reference 1080p -> 640x640 (1 CPU thread)",
          "ms_per_frame": round(ms, 2), "dtype": np.dtype(np.float32).name})


@guarded("nvdec")
def bench_nvdec(video: Path, max_frames: int, budget_s: float):
    import cupy as cp
    import PyNvVideoCodec as nvc

    from vidinfer.preprocess import gpu
    from vidinfer.preprocess.crops import yuv_to_rgb_matrix
    from vidinfer.preprocess.letterbox import Letterbox
    if not video.exists():
        emit({"bench": "nvdec", "skipped": f"{video} not found"})
        return
    for with_letterbox in (False, True):
        dec = None
        frames = passes = 0
        shape = None
        t0 = time.perf_counter()
        while frames < max_frames and time.perf_counter() - t0 < budget_s:  # the sample is short: loop it
            demux = nvc.CreateDemuxer(filename=str(video))
            if dec is None:
                dec = nvc.CreateDecoder(gpuid=0, codec=demux.GetNvCodecId(), cudacontext=0, cudastream=0,
                                        usedevicememory=True)
                w, h = demux.Width(), demux.Height()
                box = Letterbox.fit(w, h, 640, 640)
                m, off = yuv_to_rgb_matrix("bt709", False)
                batch = cp.zeros((1, 3, 640, 640), cp.float32)
            passes += 1
            for packet in demux:
                for frame in dec.Decode(packet):
                    if with_letterbox:
                        nv12 = cp.from_dlpack(frame)
                        shape = tuple(nv12.shape)
                        gpu.letterbox_nv12_into(batch, 0, nv12, None, box, m, off)
                        # The frame's buffer is reused by the next Decode: finish reading it first.
                        cp.cuda.get_current_stream().synchronize()
                    frames += 1
        cp.cuda.Device().synchronize()
        dt = time.perf_counter() - t0
        emit({"bench": "nvdec", "video": video.name, "size": f"{w}x{h}", "passes": passes,
              "letterbox": with_letterbox, "frames": frames, "seconds": round(dt, 3),
              "frames_per_s": round(frames / dt, 1) if dt else None, "nv12_dlpack_shape": shape,
              "note": "one decoder, synchronous per frame; not the NVDEC engine's peak"})


def main() -> int:
    global _out_file
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--video", type=Path, default=ROOT / "sample_streams" / "shapes_1080p.mp4")
    ap.add_argument("--max-frames", type=int, default=600)
    ap.add_argument("--nvdec-budget-s", type=float, default=20.0)
    args = ap.parse_args()
    _out_file = args.out
    t0 = time.perf_counter()
    bench_env()
    bench_reference()
    bench_letterbox(args.iters)
    bench_crop(args.iters)
    bench_nvdec(args.video, args.max_frames, args.nvdec_budget_s)
    emit({"bench": "done", "seconds": round(time.perf_counter() - t0, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
