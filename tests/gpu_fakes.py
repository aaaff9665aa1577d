"""Fakes of the GPU modules, shared by the tests that run GPU code paths without a GPU.

Mocks at the GPU boundary only, and every test using them says so in its name:

* `FakeNvc` / `FakeCupy`: a recording PyNvVideoCodec and the smallest CuPy, for the decoder's calls;
* `DecodingNvc`: a PyNvVideoCodec whose decoder really decodes the Annex-B packets (with PyAV's
  software decoder) into NV12 frames handed out through DLPack, as NVDEC's are;
* `FakeVpf`: the same over VPF's PyNvCodec API (pitched NV12 surfaces with raw pointers);
* `fake_cupy`: a CuPy module over NumPy: arrays are a NumPy subclass whose ``type().__module__``
  starts with "cupy" (so vidinfer treats them as device arrays), ``.data.ptr`` is the real
  address, and `RawModule` kernels run from the .cu sources through `kernel_emulator` (the CUDA
  thread grid executed on the CPU by g++-compiled code);
* `FakeTensorRT`: records the build calls; its runtime executes the ONNX model with ONNX Runtime,
  reading and writing the tensors at the addresses TensorRT is given.

Everything runs synchronously, so these fakes cannot catch a missing stream wait or event.
"""

from __future__ import annotations

import ctypes
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
#define LB_ARGS y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h, rx0, ry0, rw, rh, out, index, dst_w, \
  dst_h, new_w, new_h, pad_x, pad_y, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2, a0, a1, a2, \
  b0, b1, b2, p0, p1, p2
extern "C" void emu_letterbox_nv12_f32(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    VI_LETTERBOX_PARAMS(float)) { vi_launch(letterbox_nv12_f32, gx, gy, bx, by, LB_ARGS); }
extern "C" void emu_letterbox_nv12_f16(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    VI_LETTERBOX_PARAMS(vi_half)) { vi_launch(letterbox_nv12_f16, gx, gy, bx, by, LB_ARGS); }
extern "C" void emu_crop_resize_nv12_f32(unsigned gx, unsigned gy, unsigned bx, unsigned by,
    const vi_u8* y_plane, int y_pitch, const vi_u8* uv_plane, int uv_pitch, int src_w, int src_h,
    const float* boxes, int num_boxes, float* out, int out_h, int out_w,
    float m00, float m01, float m02, float m10, float m11, float m12, float m20, float m21, float m22,
    float o0, float o1, float o2) {
  vi_launch(crop_resize_nv12_f32, gx, gy, bx, by, y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h,
            boxes, num_boxes, out, out_h, out_w, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2);
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

class FakeNvc:
    """Stands in for PyNvVideoCodec: records PacketData fields, returns one frame per packet."""

    cudaVideoCodec = SimpleNamespace(H264="H264", HEVC="HEVC")
    OutputColorType = SimpleNamespace(NATIVE="NATIVE")

    def __init__(self, fail_on: int | None = None):
        self.created, self.seen, self.fail_on = [], [], fail_on

    class PacketData:
        bsl_data = 0
        bsl = 0
        pts = 0

    def CreateDecoder(self, **kw):
        self.created.append(kw)
        fake = self

        class Decoder:
            def Decode(self, pd):
                fake.seen.append((pd.bsl_data, pd.bsl, pd.pts))
                if fake.fail_on is not None and len(fake.seen) == fake.fail_on:
                    raise RuntimeError("CUVID_ERROR")
                return [SimpleNamespace(getPTS=lambda pts=pd.pts: pts, nv12=np.full((6, 4), pd.pts % 256))] if pd.bsl else []

        return Decoder()


class FakeCupy:
    @staticmethod
    def from_dlpack(frame):
        return frame.nv12


_AV_CODECS = {"H264": "h264", "HEVC": "hevc"}


class _SoftwareNvdec:
    """One fake hardware decoder: PyAV's software decoder over the Annex-B bytes at a raw address.

    Like NVDEC after a (re)creation, it drops packets until a keyframe (an SPS NAL) arrives; it
    raises on the packets whose pts is in ``fail_pts`` (one time each).
    """

    def __init__(self, codec: str, fail_pts: set[int]):
        self.ctx = av.CodecContext.create(_AV_CODECS[codec], "r")
        self.started = False
        self.fail_pts = fail_pts

    def packet_frames(self, data: bytes, pts: int):
        if pts in self.fail_pts:
            self.fail_pts.discard(pts)
            raise RuntimeError("CUVID_ERROR: fake decoder fault")
        if not data:
            return self.ctx.decode(None)
        if not self.started and b"\x00\x00\x01\x67" not in data:  # no SPS: not a keyframe
            return []
        self.started = True
        pkt = av.Packet(data)
        pkt.pts = pts
        return self.ctx.decode(pkt)


class _DecodedFrame:
    """PyNvVideoCodec's DecodedFrame: NV12 (1.5H, W) through DLPack, and its pts."""

    def __init__(self, nv12: np.ndarray, pts: int):
        self._nv12, self._pts = nv12, pts

    def getPTS(self):
        return self._pts

    def __dlpack__(self, **kw):
        return self._nv12.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._nv12.__dlpack_device__()


class DecodingNvc(ModuleType):
    """A PyNvVideoCodec module whose decoders really decode (on the CPU, with PyAV)."""

    def __init__(self, fail_pts: set[int] | None = None):
        super().__init__("PyNvVideoCodec")
        self.__version__ = "2.2.4-fake"
        self.cudaVideoCodec = SimpleNamespace(H264="H264", HEVC="HEVC")
        self.OutputColorType = SimpleNamespace(NATIVE="NATIVE")
        self.fail_pts = set(fail_pts or ())
        self.created: list[dict] = []

        class PacketData:
            bsl_data = 0
            bsl = 0
            pts = 0

        self.PacketData = PacketData

    def CreateDecoder(self, **kw):
        assert kw["usedevicememory"] is True and kw["cudacontext"] == 0
        self.created.append(kw)
        sw = _SoftwareNvdec(kw["codec"], self.fail_pts)

        class Decoder:
            def Decode(self, pd):
                data = ctypes.string_at(pd.bsl_data, pd.bsl) if pd.bsl else b""
                return [_DecodedFrame(f.to_ndarray(format="nv12"), f.pts) for f in sw.packet_frames(data, pd.pts)]

        return Decoder()


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
            f = ready.pop(0)
            out.pts = f.pts
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
                if sw.started:
                    ready.extend(sw.ctx.decode(None))
                    sw.started = False
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


class _Stream:
    count = 0

    def __init__(self, null=False, non_blocking=False):
        _Stream.count += 1
        self.ptr = 1000 + _Stream.count
        self.waited: list[Any] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def record(self, event=None):
        return SimpleNamespace(synchronize=lambda: None, stream=self)

    def synchronize(self):
        pass

    def wait_event(self, event):
        self.waited.append(event)


def fake_cupy(launch) -> ModuleType:
    """A CuPy module over NumPy whose kernels run through ``launch`` (see `kernel_emulator`)."""
    cp = ModuleType("cupy")
    cp.__version__ = "14.2.0-fake"
    cp.launches = {}

    def wrap(fn):
        return lambda *a, **k: _device(fn(*a, **k))

    cp.__getattr__ = lambda name: wrap(getattr(np, name)) if callable(getattr(np, name)) else getattr(np, name)
    for name in ("empty", "zeros", "full", "asarray", "ascontiguousarray", "concatenate"):
        setattr(cp, name, wrap(getattr(np, name)))
    cp.float32, cp.float16, cp.uint8 = np.float32, np.float16, np.uint8
    cp.from_dlpack = lambda obj: _device(np.from_dlpack(obj).copy())  # NVDEC's frame lives on; ours is a copy

    def ndarray(shape, dtype, memptr, strides=None):  # cupy.ndarray over foreign memory
        nbytes = memptr.mem.size
        raw = (ctypes.c_uint8 * nbytes).from_address(memptr.mem.ptr + memptr.offset)
        return np.ndarray(shape, dtype, buffer=raw, strides=strides).view(DeviceArray)

    cp.ndarray = ndarray

    class RawModule:
        def __init__(self, code, options=()):
            self.code, self.options = code, options

        def get_function(self, name):
            def kernel(grid, block, args, stream=None):
                cp.launches[name] = cp.launches.get(name, 0) + 1
                launch(name, grid, block, args)
            return kernel

    cp.RawModule = RawModule
    runtime = SimpleNamespace(getDeviceCount=lambda: 1,
                              getDeviceProperties=lambda i: {"name": b"Fake GPU (NumPy)", "major": 9, "minor": 0})
    cp.cuda = SimpleNamespace(
        Stream=_Stream, runtime=runtime,
        Device=lambda i=0: SimpleNamespace(use=lambda: None, id=i),
        UnownedMemory=lambda ptr, size, owner: SimpleNamespace(ptr=ptr, size=size, owner=owner),
        MemoryPointer=lambda mem, offset: SimpleNamespace(mem=mem, offset=offset),
        get_current_stream=lambda: _Stream())
    return cp


# --- TensorRT --------------------------------------------------------------------------------------

class FakeTensorRT(ModuleType):
    """Records what the build asks of TensorRT; stands in for the `tensorrt` module. With
    ``plan="onnx"`` the "plan" is the parsed ONNX file and the runtime executes it with ONNX Runtime."""

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

    def __init__(self, parse_ok=True, plan=b"PLAN"):
        super().__init__("tensorrt")
        self.calls = []
        self.parse_ok, self.plan = parse_ok, plan
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
            def set_shape(self, name, lo, opt, hi):
                fake.calls.append(("profile", name, lo, opt, hi))

        class TimingCache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return self.blob + b"+new"

        class Config:
            builder_optimization_level = None

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool, size))

            def add_optimization_profile(self, p):
                fake.calls.append(("add_profile",))

            def create_timing_cache(self, blob):
                return TimingCache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                fake.calls.append(("timing_cache", cache.blob, ignore_mismatch))

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return object()

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build",))
                return fake.parsed.read_bytes() if fake.plan == "onnx" else fake.plan

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, plan):
                return _OrtEngine(bytes(plan), fake)

        self.OnnxParser, self.Builder, self.Runtime = Parser, Builder, Runtime


class _OrtEngine:
    """A deserialised "engine": the ONNX model on ONNX Runtime, behind TensorRT's tensor API."""

    def __init__(self, plan: bytes, trt: FakeTensorRT):
        import onnxruntime as ort

        self.session = ort.InferenceSession(plan, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.shapes = {t.name: t.shape for t in [*self.session.get_inputs(), *self.session.get_outputs()]}
        self.trt = trt
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i):
        return [*self.inputs, *self.outputs][i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name in self.inputs else self.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(d if isinstance(d, int) else -1 for d in self.shapes[name])

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        return _OrtContext(self)


class _OrtContext:
    def __init__(self, engine: _OrtEngine):
        self.engine, self.input_shape, self.addresses = engine, None, {}

    def set_input_shape(self, name, shape):
        self.input_shape = tuple(shape)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        return tuple(self.input_shape[0] if not isinstance(d, int) else d for d in self.engine.shapes[name])

    def execute_async_v3(self, stream_handle):
        def at(name, shape):
            n = int(np.prod(shape))
            return np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses[name])).reshape(shape)

        e = self.engine
        x = at(e.inputs[0], self.input_shape).copy()
        for name, value in zip(e.outputs, e.session.run(e.outputs, {e.inputs[0]: x})):
            at(name, value.shape)[...] = value
        e.trt.executed += 1
        return True


def install_fake_gpu(monkeypatch, launch, nvc: ModuleType | None = None) -> SimpleNamespace:
    """Put fake cupy, PyNvVideoCodec (or ``nvc``, e.g. `FakeVpf`) and tensorrt into sys.modules."""
    import sys

    cp = fake_cupy(launch)
    DeviceArray.host_copies = []
    nvc = nvc if nvc is not None else DecodingNvc()
    trt = FakeTensorRT(plan="onnx")
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, nvc.__name__, nvc)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "_modules", {})  # kernels "compiled" by this fake CuPy only
    return SimpleNamespace(cupy=cp, nvc=nvc, tensorrt=trt, host_copies=DeviceArray.host_copies)
