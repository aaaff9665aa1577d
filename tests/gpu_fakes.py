"""Fakes of the GPU modules, shared by the tests that run GPU code paths without a GPU.

Mocks at the GPU boundary only, and every test using them says so in its name:

* `FakeNvc`: a recording PyNvVideoCodec 2.x, one small NV12 frame per packet;
* `DecodingNvc`: a PyNvVideoCodec (2.x, or 1.x with ``version="1.0.2"``) whose decoder really
  decodes the Annex-B packets (with PyAV's software decoder) into frames in NVDEC's own layout
  for the stream (NV12, P016, YUV444, NV16; even width, truncated DLPack shape for an odd height),
  the packet's pts passed through, as NVDEC's are;
* `FakeVpf`: the same over VPF's PyNvCodec API (pitched NV12 surfaces with raw pointers);
* `fake_cupy`: a CuPy module over NumPy: arrays are a NumPy subclass whose ``type().__module__``
  starts with "cupy" (so vidinfer treats them as device arrays), ``.data.ptr`` is the real
  address, and `RawModule` kernels run from the .cu sources through `kernel_emulator` (the CUDA
  thread grid executed on the CPU by g++-compiled code); the current device is per thread and
  streams belong to the device they were made on, as in CuPy;
* `FakeTensorRT`: records the build calls; its runtime executes the ONNX model with ONNX Runtime,
  reading and writing the tensors at the addresses TensorRT is given; it refuses what TensorRT
  refuses (shapes outside the profile, unaligned addresses, another version's timing cache);
* `FakeOnnxRuntimeGpu`: onnxruntime-gpu over the CPU wheel, IOBinding by raw address, and the
  silent CPU fallback (`cuda_loads=False`) of a CUDA provider that did not load.

Everything runs synchronously, so these fakes cannot catch a missing stream wait or event.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest

from vidinfer.preprocess import gpu

_STUB = r"""
#include <math.h>
#include <stddef.h>
#define __global__
#define __device__
#define __forceinline__ inline
struct vi_dim3 { unsigned x, y, z; };
static vi_dim3 blockIdx, threadIdx, blockDim, gridDim;
"""
_FP16_STUB = r"""
#pragma once
struct __half { _Float16 v; };
static inline __half __float2half(float f) { __half h; h.v = (_Float16)f; return h; }
"""
_HARNESS = r"""
#include "letterbox_nv12.cu"
#include "crop_resize_nv12.cu"
template <typename... A, typename... B>
static void vi_launch(void (*k)(A...), unsigned gx, unsigned gy, unsigned bx, unsigned by, B... args) {
  gridDim = {gx, gy, 1}; blockDim = {bx, by, 1};
  for (unsigned a = 0; a < gy; ++a) for (unsigned b = 0; b < gx; ++b)
    for (unsigned c = 0; c < by; ++c) for (unsigned d = 0; d < bx; ++d) {
      blockIdx = {b, a, 0}; threadIdx = {d, c, 0}; k(args...);
    }
}
#define LB_ARGS y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h, chroma_w, chroma_h, chroma_dx, rx0, ry0, \
  rw, rh, out, index, dst_w, dst_h, new_w, new_h, pad_x, pad_y, m00, m01, m02, m10, m11, m12, m20, m21, m22, \
  o0, o1, o2, a0, a1, a2, b0, b1, b2, p0, p1, p2
extern "C" void emu_letterbox_nv12_f32(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    VI_LETTERBOX_PARAMS(float)) { vi_launch(letterbox_nv12_f32, gx, gy, bx, by, LB_ARGS); }
extern "C" void emu_letterbox_nv12_f16(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    VI_LETTERBOX_PARAMS(vi_half)) { vi_launch(letterbox_nv12_f16, gx, gy, bx, by, LB_ARGS); }
extern "C" void emu_crop_resize_nv12_f32(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    const vi_u8* y_plane, int y_pitch, const vi_u8* uv_plane, int uv_pitch, int src_w, int src_h,
    int chroma_w, int chroma_h, float chroma_dx, const float* boxes, int num_boxes, float* out, int out_h,
    int out_w, float m00, float m01, float m02, float m10, float m11, float m12, float m20, float m21, float m22,
    float o0, float o1, float o2) {
  vi_launch(crop_resize_nv12_f32, gx, gy, bx, by, y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h,
            chroma_w, chroma_h, chroma_dx, boxes, num_boxes, out, out_h, out_w, m00, m01, m02, m10, m11, m12,
            m20, m21, m22, o0, o1, o2);
}
"""


def kernel_emulator(d: Path):
    """The .cu kernels compiled for the CPU in folder ``d``: launch(name, grid, block, args) runs
    every thread of the grid (skips the test where g++ cannot build it)."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not on PATH: cannot run the kernel sources on the CPU")
    (d / "inc").mkdir(exist_ok=True)
    (d / "stub.h").write_text(_STUB)
    (d / "inc" / "cuda_fp16.h").write_text(_FP16_STUB)
    (d / "harness.cpp").write_text(_HARNESS)
    # -ffp-contract=off: no fused multiply-add, like the launchers' --fmad=false.
    cmd = [cxx, "-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-include", str(d / "stub.h"),
           "-I", str(d / "inc"), "-I", str(gpu.KERNEL_DIR), str(d / "harness.cpp"), "-o", str(d / "emu.so")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 and "_Float16" in done.stderr:
        pytest.skip("this g++ has no _Float16")
    assert done.returncode == 0, done.stderr
    lib = ctypes.CDLL(str(d / "emu.so"))

    def launch(name, grid, block, args):
        assert grid[2] == 1 and block[2] == 1
        cargs = [ctypes.c_uint(v) for v in (grid[0], grid[1], block[0], block[1])]
        for a in args:
            if isinstance(a, np.ndarray):
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            elif type(a) is np.int32:
                cargs.append(ctypes.c_int(int(a)))
            elif type(a) is np.float32:
                cargs.append(ctypes.c_float(float(a)))
            else:  # CuPy would pass a Python int as int64 and a float as float64: a launcher bug
                raise TypeError(f"kernel argument of type {type(a).__name__}")
        getattr(lib, "emu_" + name)(*cargs)

    return launch


# --- PyNvVideoCodec ----------------------------------------------------------------------------
#
# The API shapes of PyNvVideoCodec's bindings (src/PyNvVideoCodec/src/PyNvDecoder.cpp,
# utils/PyNvVideoCodecUtils.hpp and NvDecoder.{h,cpp} at 1.0.2 and 2.0.2; names also in the 2.2.4
# wheel's .so):
# * 2.x: ``CreateDecoder(gpuid, codec, cudacontext, cudastream, usedevicememory, maxwidth, maxheight,
#   outputColorType, enableSEIMessage, bWaitForSessionWarmUp, latency)``; ``cudastream`` must belong
#   to GPU ``gpuid``'s primary context ("cudastream input argument does not correspond to
#   cudacontext argument"); PacketData.pts goes through NVDEC's parser to the frame of that packet
#   (``getPTS()``, ``timestamp``), whatever int64 it is;
# * 1.x: ``CreateDecoder(gpuid, codec, cudacontext, cudastream, usedevicememory)`` only (gpuid is
#   ignored), no OutputColorType, frames have ``timestamp`` (always 0: the pts is never passed) and
#   no ``getPTS``;
# * frames are tightly packed in NVDEC's native format for the stream: NV12 (8-bit 4:2:0), P016
#   (10/12-bit 4:2:0, uint16, the value in the high bits), YUV444 / YUV444_16Bit (three full
#   planes), NV16 / P216 (4:2:2, interleaved chroma at full height). The width of NV12, P016, NV16
#   and P216 is rounded up to even (``NvDecoder::GetWidth``); chroma has ceil(H/2) rows for 4:2:0;
#   the buffer holds GetFrameSize() bytes. The DLPack shape is (int(1.5H), W) for NV12 / P016
#   (one chroma row short for an odd H), (3H, W) for YUV444, (2H, W) for NV16 / P216.

_NV_CODECS = {"H264": "h264", "HEVC": "hevc", "MPEG4": "mpeg4", "VP9": "vp9", "VP8": "vp8"}
PIXEL_FORMAT = SimpleNamespace(NV12="NV12", P016="P016", YUV444="YUV444", YUV444_16Bit="YUV444_16Bit",
                               NV16="NV16", P216="P216", RGB="RGB", RGBP="RGBP")
_STREAM_DEVICES: dict[int, int] = {}  # fake CUDA stream handle -> the device it was created on


def nvdec_layout(planes: list[np.ndarray], fmt: str, bits: int = 8) -> np.ndarray:
    """One frame's buffer in NVDEC's native layout (see above) from its Y, U, V planes (uint8, or
    uint16 holding ``bits``-bit values, shifted to the high bits as NVDEC stores them)."""
    y, u, v = planes
    h, w = y.shape
    dtype = np.uint16 if fmt in ("P016", "P216", "YUV444_16Bit") else np.uint8
    shift = 16 - bits if dtype == np.uint16 else 0
    if fmt in ("YUV444", "YUV444_16Bit"):
        return np.concatenate([y, u, v]).astype(dtype) << shift
    wp = w + (w & 1)
    buf = np.zeros((h + u.shape[0], wp), dtype)
    buf[:h, :w] = y.astype(dtype) << shift
    buf[:h, w:] = buf[:h, w - 1:w]  # the decoded picture goes on past an odd display width
    buf[h:, 0::2] = u.astype(dtype) << shift
    buf[h:, 1::2] = v.astype(dtype) << shift
    return buf


def _frame_planes(frame: av.VideoFrame) -> tuple[list[np.ndarray], str, int]:
    """A software-decoded frame's planes, the format NVDEC gives for its stream, and its bit depth."""
    bits = frame.format.components[0].bits
    wide = bits > 8
    planes = [np.frombuffer(p, np.uint16 if wide else np.uint8)
              .reshape(p.height, p.line_size // (2 if wide else 1))[:, :p.width] for p in frame.planes[:3]]
    y, u, v = planes
    if u.shape == y.shape:
        return planes, "YUV444_16Bit" if wide else "YUV444", bits
    if u.shape[0] == y.shape[0]:
        return planes, "P216" if wide else "NV16", bits
    return planes, "P016" if wide else "NV12", bits


class _DecodedFrame1x:
    """PyNvVideoCodec 1.x's DecodedFrame: a frame in NVDEC's layout at a raw address, no getPTS."""

    def __init__(self, buf: np.ndarray, fmt: str, width: int, height: int, pts: int):
        self._buf = np.ascontiguousarray(buf)
        self.format, self.timestamp = fmt, pts
        rows = {"NV12": int(height * 1.5), "P016": int(height * 1.5), "YUV444": 3 * height,
                "YUV444_16Bit": 3 * height, "NV16": 2 * height, "P216": 2 * height}[fmt]
        self.shape = (rows, self._buf.shape[1])  # the DLPack tensor's shape (truncated for an odd H)
        self._width, self._height = self._buf.shape[1], height

    def GetPtrToPlane(self, i):
        per_row = self._width * self._buf.itemsize
        return self._buf.ctypes.data + (0 if i == 0 else per_row * self._height * (1 if i == 1 else 2))

    def framesize(self):
        return self._buf.nbytes

    def __dlpack__(self, stream=None, **kw):
        return self._buf.reshape(-1)[:self.shape[0] * self.shape[1]].reshape(self.shape).__dlpack__()

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0


class _DecodedFrame(_DecodedFrame1x):
    """PyNvVideoCodec 2.x's DecodedFrame: the same, and ``getPTS()``."""

    def getPTS(self):
        return self.timestamp


class _SoftwareNvdec:
    """One fake hardware decoder: PyAV's software decoder over the Annex-B bytes at a raw address.

    Like NVDEC after a (re)creation, it drops packets until a sequence header arrives (H.264 SPS,
    HEVC VPS, MPEG-4 VOS or VOL: NVDEC gets no extradata, so MPEG-4 part 2 from MP4 or Matroska
    decodes to nothing unless the header is put in-band; VP8 / VP9 frames carry their own); it
    raises on the packets whose pts is in ``fail_pts`` (one time each). A packet's pts, any int64,
    comes back with its frame.
    """

    _HEADERS = {"H264": (b"\x00\x00\x01\x67",), "HEVC": (b"\x00\x00\x01\x40",),
                "MPEG4": (b"\x00\x00\x01\xb0", b"\x00\x00\x01\x20"), "VP9": (b"",), "VP8": (b"",)}

    def __init__(self, codec: str, fail_pts: set[int]):
        self.codec = codec
        self.ctx = av.CodecContext.create(_NV_CODECS[codec], "r")
        self.started = False
        self.fail_pts = fail_pts
        self._pts: list[int] = []  # the pts of each packet given, by index

    def _out(self, frames) -> list[tuple[av.VideoFrame, int]]:
        return [(f, self._pts[f.pts] if f.pts is not None else 0) for f in frames]

    def packet_frames(self, data: bytes, pts: int) -> list[tuple[av.VideoFrame, int]]:
        if pts in self.fail_pts:
            self.fail_pts.discard(pts)
            raise RuntimeError("CUVID_ERROR: fake decoder fault")
        if not data:
            return self.flush_frames()
        if not self.started and not any(h in data for h in self._HEADERS[self.codec]):
            return []  # no sequence header yet
        self.started = True
        pkt = av.Packet(data)
        pkt.pts = len(self._pts)
        self._pts.append(pts)
        try:
            return self._out(self.ctx.decode(pkt))
        except av.error.InvalidDataError:
            return []  # NVDEC's parser skips what it cannot parse

    def flush_frames(self) -> list[tuple[av.VideoFrame, int]]:
        if not self.started:
            return []
        self.started = False
        return self._out(self.ctx.decode(None))


class DecodingNvc(ModuleType):
    """A PyNvVideoCodec 2.x module whose decoders really decode (on the CPU, with PyAV) into frames
    in NVDEC's layout, handed out as 2.x hands them out (see above). ``version="1.0.2"`` gives the
    1.x API instead; ``devices``: how many GPUs ``gpuid`` may name."""

    def __init__(self, fail_pts: set[int] | None = None, version: str = "2.2.4", devices: int = 1):
        super().__init__("PyNvVideoCodec")
        self.__version__ = version
        self.v1 = int(version.split(".")[0]) < 2
        self.cudaVideoCodec = SimpleNamespace(**{k: k for k in ("H264", "HEVC", "MPEG4", "AV1", "VP8", "VP9")})
        self.Pixel_Format = SimpleNamespace(**{k: getattr(PIXEL_FORMAT, k) for k in ("NV12", "P016", "YUV444",
                                                                                       "YUV444_16Bit")})
        if not self.v1:
            self.OutputColorType = SimpleNamespace(NATIVE="NATIVE", RGB="RGB", RGBP="RGBP")
            self.Pixel_Format = PIXEL_FORMAT
        self.fail_pts = set(fail_pts or ())
        self.devices = devices
        self.created: list[dict] = []
        self.seen_pts: list[int] = []

        class PacketData:
            bsl_data = 0
            bsl = 0
            pts = 0

        self.PacketData = PacketData
        self.CreateDecoder = self._create_v1 if self.v1 else self._create

    def _create_v1(self, gpuid=0, codec="H264", cudacontext=0, cudastream=0, usedevicememory=0):
        return self._decoder(dict(gpuid=gpuid, codec=codec, cudacontext=cudacontext, cudastream=cudastream,
                                  usedevicememory=usedevicememory), gpu=0)  # 1.x passes GPU 0, whatever gpuid says

    def _create(self, gpuid=0, codec="H264", cudacontext=0, cudastream=0, usedevicememory=0, maxwidth=0,
                maxheight=0, outputColorType="NATIVE", enableSEIMessage=0, bWaitForSessionWarmUp=0,
                latency="NATIVE"):
        kw = dict(gpuid=gpuid, codec=codec, cudacontext=cudacontext, cudastream=cudastream,
                  usedevicememory=usedevicememory, outputColorType=outputColorType)
        if not 0 <= gpuid < self.devices:
            raise ValueError(f"GPU ordinal out of range. Should be within [0, {self.devices - 1}]")
        if cudastream and _STREAM_DEVICES.get(cudastream, 0) != gpuid:
            raise RuntimeError("cudastream input argument does not correspond to cudacontext argument")
        return self._decoder(kw, gpu=gpuid)

    def _decoder(self, kw: dict, gpu: int):
        assert kw["usedevicememory"] and kw["cudacontext"] == 0
        self.created.append(kw)
        sw = _SoftwareNvdec(kw["codec"], self.fail_pts)
        fake = self
        frame_cls = _DecodedFrame1x if self.v1 else _DecodedFrame

        class Decoder:
            def Decode(self, pd):
                data = ctypes.string_at(pd.bsl_data, pd.bsl) if pd.bsl else b""
                pts = 0 if fake.v1 else pd.pts  # 1.x never hands NVDEC the pts
                if data:
                    fake.seen_pts.append(pd.pts)
                out = []
                for f, fpts in sw.packet_frames(data, pts):
                    planes, fmt, bits = _frame_planes(f)
                    out.append(frame_cls(nvdec_layout(planes, fmt, bits), fmt, f.width, f.height, fpts))
                return out

        return Decoder()


class FakeNvc(DecodingNvc):
    """A PyNvVideoCodec 2.x whose decoder records each PacketData and gives one 4x4 NV12 frame per
    packet (its pts passed through), or raises on the ``fail_on``-th call."""

    def __init__(self, fail_on: int | None = None, version: str = "2.0.2"):
        super().__init__(version=version, devices=2)
        self.seen: list[tuple[int, int, int]] = []
        self.fail_on = fail_on

    def _decoder(self, kw: dict, gpu: int):
        self.created.append(kw)
        fake = self

        class Decoder:
            def Decode(self, pd):
                fake.seen.append((pd.bsl_data, pd.bsl, pd.pts))
                if fake.fail_on is not None and len(fake.seen) == fake.fail_on:
                    raise RuntimeError("CUVID_ERROR")
                if not pd.bsl:
                    return []
                y = np.full((4, 4), pd.pts % 256, np.uint8)
                uv = np.full((2, 2), 128, np.uint8)
                return [_DecodedFrame(nvdec_layout([y, uv, uv], "NV12"), "NV12", 4, 4, pd.pts)]

        return Decoder()


def encode_clip(path: Path, codec: str = "libx264", pix_fmt: str = "yuv420p", size: tuple[int, int] = (64, 48),
                frames: int = 6, fmt: str | None = None) -> Path:
    """A small synthetic clip (moving gradients) encoded with PyAV, e.g. 10-bit, 4:4:4 or odd-sized."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "mpeg4":
            s.codec_context.bit_rate = 2_000_000
        for i in range(frames):
            img = (np.add.outer(np.arange(h), np.arange(w))[..., None] * np.array([1, 2, 3]) + 7 * i) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


class FakeVpf(ModuleType):
    """VPF's PyNvCodec: PyNvDecoder for external packets, pitched NV12 surfaces with raw pointers."""

    PITCH_PAD = 64  # bytes of row padding, as NVDEC surfaces have

    def __init__(self, fail_pts: set[int] | None = None):
        super().__init__("PyNvCodec")
        self.CudaVideoCodec = SimpleNamespace(H264="H264", HEVC="HEVC", VP9="VP9")
        self.PixelFormat = SimpleNamespace(NV12="NV12")
        self.fail_pts = set(fail_pts or ())
        self.created: list[tuple] = []
        self.surfaces: list[Any] = []  # keeps surface memory alive, like the decoder's pool

        class PacketData:
            pts = 0
            dts = 0
            key = 0
            bsl = 0

        self.PacketData = PacketData

    def PyNvDecoder(self, width, height, fmt, codec, gpu_id):
        self.created.append((width, height, fmt, codec, gpu_id))
        sw = _SoftwareNvdec(codec, self.fail_pts)
        fake, ready = self, []

        def surface(out):
            if not ready:
                return _Surface(None, 0)
            f, pts = ready.pop(0)
            out.pts = pts
            nv12 = f.to_ndarray(format="nv12")
            buf = np.zeros((nv12.shape[0], nv12.shape[1] + fake.PITCH_PAD), np.uint8)
            buf[:, :nv12.shape[1]] = nv12
            fake.surfaces.append(buf)
            return _Surface(buf, nv12.shape[1])

        class Decoder:
            def DecodeSurfaceFromPacket(self, enc, packet, out):
                assert isinstance(packet, np.ndarray) and packet.dtype == np.uint8
                ready.extend(sw.packet_frames(packet.tobytes(), enc.pts))
                return surface(out)

            def FlushSingleSurface(self, out):
                ready.extend(sw.flush_frames())
                return surface(out)

        return Decoder()


class _Surface:
    def __init__(self, buf, width):
        self.buf, self.width = buf, width

    def Empty(self):
        return self.buf is None

    def PlanePtr(self, plane=0):
        b, w = self.buf, self.width
        return SimpleNamespace(GpuMem=lambda: b.ctypes.data, Width=lambda: w, Height=lambda: b.shape[0],
                               Pitch=lambda: b.strides[0])


# --- CuPy ------------------------------------------------------------------------------------------

class DeviceArray(np.ndarray):
    """NumPy memory standing in for device memory. ``.get()`` is the host copy (each one's shape and
    dtype is recorded in ``host_copies``); ``.data.ptr`` the address."""

    host_copies: list = []

    def get(self, stream=None, out=None):
        DeviceArray.host_copies.append((self.shape, self.dtype))
        return np.array(self)

    @property
    def data(self):  # cupy: a MemoryPointer with .ptr
        return SimpleNamespace(ptr=self.ctypes.data)


DeviceArray.__module__ = "cupy._fake"  # vidinfer's array_module() and to_numpy() see a CuPy array


def _device(a):
    return a.view(DeviceArray) if isinstance(a, np.ndarray) else a


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError."""


class CUDADriverError(RuntimeError):
    """cupy_backends.cuda.api.driver.CUDADriverError."""


class _Stream:
    """cupy.cuda.Stream: remembers the device that was current when it was made, and, as CuPy's
    ``check_stream_device_match`` (cupy/cuda/stream.pyx) does, refuses to become the current
    stream while another device is current; a kernel launched on it from another device fails as
    the driver fails it (a stream belongs to its device's context)."""

    count = 0
    current_device = staticmethod(lambda: 0)  # replaced per fake CuPy module

    def __init__(self, null=False, non_blocking=False):
        _Stream.count += 1
        self.ptr = 1000 + _Stream.count
        self.device_id = type(self).current_device()
        _STREAM_DEVICES[self.ptr] = self.device_id
        self.waited: list[Any] = []

    def check_device(self):
        current = type(self).current_device()
        if self.device_id != current:
            raise RuntimeError(f"The device that the stream is created on ({self.device_id}) does not match with "
                               f"the current device ({current})")

    def __enter__(self):
        self.check_device()
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        self.check_device()
        return self

    def record(self, event=None):
        return SimpleNamespace(synchronize=lambda: None, stream=self)

    def synchronize(self):
        pass

    def wait_event(self, event):
        self.waited.append(event)


class _AsHost:
    """A DLPack producer (a decoded frame) as NumPy may read it: the fake's device memory is host memory."""

    def __init__(self, obj):
        self.obj = obj

    def __dlpack__(self, **kw):
        return self.obj.__dlpack__()

    def __dlpack_device__(self):
        return (1, 0)


def fake_cupy(launch, devices: int = 1, cuda_headers: bool = True) -> ModuleType:
    """A CuPy module over NumPy whose kernels run through ``launch`` (see `kernel_emulator`).

    ``devices``: how many GPUs it has (``device_count``, settable); the current device is per
    thread, 0 in a new thread, as in CUDA. ``cuda_headers=False``: CuPy 14 without CUDA headers,
    whose every compile fails with CuPy 14.2's message (cupy/_core/core.pyx).
    """
    import threading

    cp = ModuleType("cupy")
    cp.__version__ = "14.2.0-fake"
    cp.launches = {}
    cp.compiled = []  # the options of each RawModule compile
    cp.device_count = devices
    cp.cuda_headers = cuda_headers
    local = threading.local()

    def current_device() -> int:
        return getattr(local, "device", 0)

    class Stream(_Stream):
        pass

    Stream.current_device = staticmethod(current_device)

    class Device:
        def __init__(self, device=None):
            self.id = current_device() if device is None else int(device)
            self._before: list[int] = []

        def use(self):
            if not 0 <= self.id < cp.device_count:
                raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
            local.device = self.id

        def __enter__(self):
            self._before.append(current_device())
            self.use()
            return self

        def __exit__(self, *exc):
            local.device = self._before.pop()
            return False

        def synchronize(self):
            pass

    def wrap(fn):
        return lambda *a, **k: _device(fn(*a, **k))

    cp.__getattr__ = lambda name: wrap(getattr(np, name)) if callable(getattr(np, name)) else getattr(np, name)
    for name in ("empty", "zeros", "full", "asarray", "ascontiguousarray", "concatenate", "minimum"):
        setattr(cp, name, wrap(getattr(np, name)))
    cp.float32, cp.float16, cp.uint8, cp.uint16 = np.float32, np.float16, np.uint8, np.uint16
    cp.from_dlpack = lambda obj: _device(np.from_dlpack(_AsHost(obj)).copy())  # NVDEC's frame lives on; ours is a copy

    def ndarray(shape, dtype, memptr, strides=None):  # cupy.ndarray over foreign memory
        nbytes = memptr.mem.size
        raw = (ctypes.c_uint8 * nbytes).from_address(memptr.mem.ptr + memptr.offset)
        return np.ndarray(shape, dtype, buffer=raw, strides=strides).view(DeviceArray)

    cp.ndarray = ndarray

    class RawModule:
        def __init__(self, code, options=()):
            self.code, self.options = code, options

        def get_function(self, name):
            cp.compiled.append(tuple(self.options))
            if not cp.cuda_headers:
                raise RuntimeError("Failed to find CUDA headers. Please install CUDA toolkit headers (e.g., pip "
                                   "install cupy-cuda12x[ctk]) or specify CUDA_PATH environment variable.")

            def kernel(grid, block, args, stream=None):
                if stream is not None and stream.device_id != current_device():
                    raise CUDADriverError("CUDA_ERROR_INVALID_HANDLE: invalid resource handle")
                cp.launches[name] = cp.launches.get(name, 0) + 1
                launch(name, grid, block, args)
            return kernel

    cp.RawModule = RawModule
    runtime = SimpleNamespace(getDeviceCount=lambda: cp.device_count, runtimeGetVersion=lambda: 13000,
                              getDeviceProperties=lambda i: {"name": b"Fake GPU (NumPy)", "major": 9, "minor": 0})
    cp.cuda = SimpleNamespace(
        Stream=Stream, runtime=runtime, Device=Device,
        UnownedMemory=lambda ptr, size, owner, device_id=-1: SimpleNamespace(ptr=ptr, size=size, owner=owner),
        MemoryPointer=lambda mem, offset: SimpleNamespace(mem=mem, offset=offset),
        get_current_stream=lambda: Stream())
    return cp


# --- TensorRT --------------------------------------------------------------------------------------

_FAKE_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}
_CACHE_MAGIC = b"fake-timing-cache\n"
_PLAN_MAGIC = b"fake-plan\n"


class FakeTensorRT(ModuleType):
    """Stands in for the `tensorrt` module, behaving as NVIDIA documents it (include/NvInfer.h,
    include/NvInferRuntime.h and python/docstrings/infer/pyCoreDoc.h of NVIDIA/TensorRT v10.16, v11.1):

    * ``create_network(flags)`` records whether the network is strongly typed (``networks``): on
      10 only with ``1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (= 1), always on 11, where
      the flag is a deprecated, ignored 0 and ``EXPLICIT_BATCH`` is gone;
    * a timing cache carries the TensorRT version and GPU that made it: ``set_timing_cache``
      returns False for another one's cache (attaching nothing), ``get_timing_cache`` is None until
      one is attached; ``timing_cache=False`` makes every attach fail. (What TensorRT does with a
      damaged blob is undocumented: ``create_timing_cache`` returns None here.)
    * the plan keeps its optimisation profile: ``set_input_shape`` returns False outside min..max,
      ``set_tensor_address`` returns False for an address that is not 256-byte aligned, and
      ``execute_async_v3`` returns False unless every tensor has a valid shape and address;
    * tensors have their ONNX dtypes (an int64 output is int64).

    It records what the build asks (``calls``). With ``plan="onnx"`` the runtime executes the ONNX
    model with ONNX Runtime, reading and writing the tensors at the addresses it was given.
    """

    __version__ = "10.16.1-fake"
    TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class MemoryPoolType:
        WORKSPACE = "workspace"

    @staticmethod
    def nptype(dtype):
        return dtype

    def __init__(self, parse_ok=True, plan=b"PLAN", version: str | None = None, gpu: str = "Fake GPU (NumPy) 9.0",
                 timing_cache: bool = True):
        super().__init__("tensorrt")
        if version is not None:
            self.__version__ = version
        if int(self.__version__.split(".")[0]) >= 11:
            self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0, PREFER_JIT_PYTHON_PLUGINS=1,
                                                                 PREFER_AOT_PYTHON_PLUGINS=2)
        else:
            self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1,
                                                                 PREFER_JIT_PYTHON_PLUGINS=2,
                                                                 PREFER_AOT_PYTHON_PLUGINS=3)
        self.calls: list[tuple] = []
        self.networks: list[SimpleNamespace] = []
        self.parse_ok, self.plan, self.gpu, self.timing_cache_ok = parse_ok, plan, gpu, timing_cache
        self.executed = 0
        fake = self

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls.append(("parse", Path(path).name))
                fake.parsed = Path(path)
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (Resize): unsupported mode"

        class Profile:
            def __init__(self):
                self.shapes: dict[str, tuple] = {}

            def set_shape(self, name, lo, opt, hi):
                fake.calls.append(("profile", name, lo, opt, hi))
                self.shapes[name] = (tuple(lo), tuple(hi))

        class TimingCache:
            def __init__(self, version, gpu, entries):
                self.version, self.gpu, self.entries = version, gpu, entries

            def serialize(self):
                return _CACHE_MAGIC + "\n".join([self.version, self.gpu, *self.entries]).encode()

        class Config:
            builder_optimization_level = None

            def __init__(self):
                self.cache = None
                self.profiles: list[Profile] = []

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool, size))

            def add_optimization_profile(self, p):
                fake.calls.append(("add_profile",))
                self.profiles.append(p)

            def create_timing_cache(self, blob):
                blob = bytes(blob)
                if not blob:
                    return TimingCache(fake.__version__, fake.gpu, [])
                if not blob.startswith(_CACHE_MAGIC):
                    return None
                version, gpu, *entries = blob[len(_CACHE_MAGIC):].decode().split("\n")
                return TimingCache(version, gpu, entries)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("timing_cache", cache.serialize(), ignore_mismatch))
                same_gpu = cache.gpu == fake.gpu or ignore_mismatch
                if not fake.timing_cache_ok or cache.version != fake.__version__ or not same_gpu:
                    return False
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags=0):
                fake.calls.append(("network", flags))
                strong = int(fake.__version__.split(".")[0]) >= 11 or bool(
                    flags & (1 << fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
                network = SimpleNamespace(flags=flags, strongly_typed=strong)
                fake.networks.append(network)
                return network

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build",))
                if config.cache is not None:
                    config.cache.entries.append(f"tactics of {fake.parsed.name}")
                if fake.plan != "onnx":
                    return fake.plan
                profile = {name: shapes for p in config.profiles for name, shapes in p.shapes.items()}
                header = json.dumps({"profile": profile, "strongly_typed": network.strongly_typed})
                return _PLAN_MAGIC + header.encode() + b"\n" + fake.parsed.read_bytes()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, plan):
                plan = bytes(plan)
                meta = {"profile": {}}
                if plan.startswith(_PLAN_MAGIC):
                    header, plan = plan[len(_PLAN_MAGIC):].split(b"\n", 1)
                    meta = json.loads(header)
                return _OrtEngine(plan, fake, {k: (tuple(lo), tuple(hi)) for k, (lo, hi) in meta["profile"].items()})

        self.OnnxParser, self.Builder, self.Runtime = Parser, Builder, Runtime


def _real_onnxruntime() -> ModuleType:
    import sys

    mod = sys.modules.get("onnxruntime")
    if isinstance(mod, FakeOnnxRuntimeGpu):
        return mod.real
    import onnxruntime

    return onnxruntime


def _at(ptr: int, dtype, shape) -> np.ndarray:
    """The array at a raw address (host memory standing in for device memory)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.ctypeslib.as_array((ctypes.c_uint8 * max(n, 1)).from_address(ptr))[:n].view(dtype).reshape(shape)


class _OrtEngine:
    """A deserialised "engine": the ONNX model on ONNX Runtime, behind TensorRT's tensor API."""

    def __init__(self, plan: bytes, trt: FakeTensorRT, profile: dict[str, tuple]):
        self.session = _real_onnxruntime().InferenceSession(plan, providers=["CPUExecutionProvider"])
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        self.inputs = [i.name for i in ins]
        self.outputs = [o.name for o in outs]
        self.shapes = {t.name: t.shape for t in [*ins, *outs]}
        self.dtypes = {t.name: np.dtype(_FAKE_DTYPES[t.type]) for t in [*ins, *outs]}
        self.profile = profile
        self.trt = trt
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i):
        return [*self.inputs, *self.outputs][i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name in self.inputs else self.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(d if isinstance(d, int) else -1 for d in self.shapes[name])

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def create_execution_context(self):
        return _OrtContext(self)


class _OrtContext:
    """The execution context. A refused ``set_input_shape`` leaves the input's shape unset (TensorRT
    keeps the previous one, which the fake cannot safely run with: it would read past the buffer)."""

    ALIGNMENT = 256  # IExecutionContext::setTensorAddress: "at least 256-byte alignment"

    def __init__(self, engine: _OrtEngine):
        self.engine, self.input_shape, self.addresses = engine, None, {}

    def set_input_shape(self, name, shape):
        e, shape = self.engine, tuple(int(d) for d in shape)
        declared = e.get_tensor_shape(name) if name in e.inputs else None
        lo, hi = e.profile.get(name, (declared, declared))
        ok = (declared is not None and len(shape) == len(declared)
              and all(d == want or want == -1 for d, want in zip(shape, declared))
              and (lo is None or all(a <= d <= b for a, d, b in zip(lo, shape, hi))))
        self.input_shape = shape if ok else None
        return ok

    def set_tensor_address(self, name, ptr):
        if name not in self.engine.shapes or ptr % self.ALIGNMENT:
            return False
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name):
        if name in self.engine.inputs:
            return self.input_shape or self.engine.get_tensor_shape(name)
        batch = self.input_shape[0] if self.input_shape else -1
        return tuple(d if isinstance(d, int) else batch for d in self.engine.shapes[name])

    def execute_async_v3(self, stream_handle):
        e = self.engine
        if self.input_shape is None or any(n not in self.addresses for n in [*e.inputs, *e.outputs]):
            return False
        x = _at(self.addresses[e.inputs[0]], e.dtypes[e.inputs[0]], self.input_shape).copy()
        for name, value in zip(e.outputs, e.session.run(e.outputs, {e.inputs[0]: x})):
            _at(self.addresses[name], e.dtypes[name], value.shape)[...] = value
        e.trt.executed += 1
        return True


def _aligned_alloc(np_fn):
    """CuPy's memory pool hands out 512-byte aligned blocks ("cudaMalloc() is aligned to at least
    512 bytes", cupy/cuda/memory.pyx); NumPy's are aligned to 16 or 64 bytes. The fake CuPy's fresh
    arrays get CuPy's alignment, so TensorRT's 256-byte check sees what it would see on a GPU."""

    def alloc(*args, **kw):
        a = np.asarray(np_fn(*args, **kw))
        raw = np.empty(a.nbytes + 512, np.uint8)
        off = (-raw.ctypes.data) % 512
        out = raw[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out.view(DeviceArray)

    return alloc


# --- ONNX Runtime (onnxruntime-gpu) ----------------------------------------------------------------

class _FakeOrtValue:
    """An output OrtValue "in CUDA memory": data_ptr(), shape(), data_type() as the 1.32 wheel has them."""

    _TYPES = {np.dtype(v): k for k, v in _FAKE_DTYPES.items()}

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)

    def data_ptr(self):
        return self.array.ctypes.data

    def shape(self):
        return list(self.array.shape)

    def data_type(self):
        return self._TYPES[self.array.dtype]

    def device_name(self):
        return "cuda"


class _FakeIoBinding:
    def __init__(self, session):
        self.session, self.inputs, self.outputs, self.values = session, {}, [], []

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        if device_type == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            # What ORT answers when CUDA memory meets a session without the CUDA provider.
            raise RuntimeError("fake onnxruntime: no data transfer registered for copying tensors from CUDA "
                               "to CPU (CUDA memory bound to a CPU-only session)")
        self.inputs[name] = _at(buffer_ptr, element_type, tuple(shape)).copy()

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        self.outputs.append((name, device_type, buffer_ptr))

    def synchronize_outputs(self):
        pass

    def get_outputs(self):
        return self.values


class FakeOnnxRuntimeGpu(ModuleType):
    """onnxruntime-gpu over the CPU wheel: sessions compute with ONNX Runtime's CPU provider and
    IOBinding reads and writes tensors by raw address, as it does CUDA memory.

    ``cuda_loads=False`` is the silent fallback of the real package: `get_available_providers()`
    lists CUDA, but sessions register only the CPU provider (`get_providers()`), as when the CUDA
    provider's libraries fail to load or onnxruntime and onnxruntime-gpu are installed together
    ("Failed to create CUDAExecutionProvider" is a logged warning, not an exception); binding CUDA
    memory to such a session raises.
    """

    def __init__(self, cuda_loads: bool = True, tensorrt_ep: bool = False):
        super().__init__("onnxruntime")
        real = _real_onnxruntime()
        self.real = real
        self.__version__ = f"{real.__version__}-fake-gpu"
        self.SessionOptions, self.RunOptions = real.SessionOptions, real.RunOptions
        self.GraphOptimizationLevel = real.GraphOptimizationLevel
        self.available = [*(["TensorrtExecutionProvider"] if tensorrt_ep else []), "CUDAExecutionProvider",
                          "CPUExecutionProvider"]
        self.cuda_loads = cuda_loads
        self.sessions: list[Any] = []
        fake = self

        class InferenceSession:
            def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kw):
                names = [p[0] if isinstance(p, tuple) else p for p in providers or ["CPUExecutionProvider"]]
                self.requested = providers
                self.providers = [n for n in names if n in fake.available
                                  and (n == "CPUExecutionProvider" or fake.cuda_loads)]
                if "CPUExecutionProvider" not in self.providers:
                    self.providers.append("CPUExecutionProvider")
                self.inner = real.InferenceSession(path_or_bytes, sess_options=sess_options,
                                                   providers=["CPUExecutionProvider"])
                # The fake CuPy's ndarray over foreign memory does not keep UnownedMemory's owner alive
                # (real CuPy does, through the MemoryPointer): the session keeps its outputs instead.
                self.held: list[Any] = []
                fake.sessions.append(self)

            def get_providers(self):
                return list(self.providers)

            def get_inputs(self):
                return self.inner.get_inputs()

            def get_outputs(self):
                return self.inner.get_outputs()

            def get_modelmeta(self):
                return self.inner.get_modelmeta()

            def run(self, *args, **kw):
                return self.inner.run(*args, **kw)

            def io_binding(self):
                return _FakeIoBinding(self)

            def run_with_iobinding(self, io, run_options=None):
                names = [name for name, _, _ in io.outputs]
                values = self.inner.run(names, io.inputs)
                io.values = []
                for (_, _, ptr), value in zip(io.outputs, values):
                    if ptr is not None:
                        _at(ptr, value.dtype, value.shape)[...] = value
                    io.values.append(_FakeOrtValue(value))
                self.held += io.values

        self.InferenceSession = InferenceSession

    def get_available_providers(self):
        return list(self.available)


def install_fake_onnxruntime_gpu(monkeypatch, **kw) -> FakeOnnxRuntimeGpu:
    """Put a `FakeOnnxRuntimeGpu` into sys.modules (with `install_fake_gpu` for CuPy)."""
    import sys

    ort = FakeOnnxRuntimeGpu(**kw)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    return ort


def install_fake_gpu(monkeypatch, launch, nvc: ModuleType | None = None) -> SimpleNamespace:
    """Put fake cupy, PyNvVideoCodec (or ``nvc``, e.g. `FakeVpf`) and tensorrt into sys.modules."""
    import sys

    cp = fake_cupy(launch)
    DeviceArray.host_copies = []
    nvc = nvc if nvc is not None else DecodingNvc()
    trt = FakeTensorRT(plan="onnx")
    for name in ("empty", "zeros", "full", "concatenate"):  # fresh arrays aligned as CuPy's pool aligns them
        setattr(cp, name, _aligned_alloc(getattr(np, name)))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, nvc.__name__, nvc)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "_modules", {})  # kernels "compiled" by this fake CuPy only
    return SimpleNamespace(cupy=cp, nvc=nvc, tensorrt=trt, host_copies=DeviceArray.host_copies)
