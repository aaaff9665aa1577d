"""NVDEC decoding through PyNvVideoCodec, fed with packets that PyAV demuxes.

HAS NOT RUN ON GPU HARDWARE. Demuxing stays in PyAV, so RTSP options, timeouts and reconnects live
in one place (vidinfer/sources/pyav.py) for both backends. Packets from MP4/MKV/FLV carry H.264 and
HEVC in length-prefixed form; NVDEC wants Annex-B start codes, so PyAV's ``*_mp4toannexb``
bitstream filter converts them (it passes Annex-B input through unchanged).

Decoded frames are NV12 in device memory, handed to CuPy through DLPack without a copy. The
decoder reuses its frame buffers on the next ``Decode`` call, so each frame is copied once, on the
GPU, into an array this module owns; then the frame may wait in a queue while the decoder goes
on. API names follow ../shared/reference/gpu_api.md §1 and §5 (PyNvVideoCodec 2.x bindings and
C++ sources, PyAV 18). All streams share the device's primary CUDA context (``cudacontext=0``),
the one CuPy uses. A decoder error re-creates only that stream's decoder.

`NvdecDecoding` is the decoding strategy `vidinfer.sources.pyav.PyAVSource` uses on the GPU
backend: the source keeps demuxing, sampling, pacing and reconnecting; this module turns packets
into `DeviceNV12` frames. Where PyNvVideoCodec is not installed but VPF's archived ``PyNvCodec``
is, `VpfDecoder` (same interface) decodes instead.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Iterator

__all__ = ["NVDEC_CODECS", "NvdecDecoder", "NvdecDecoding", "VpfDecoder", "annexb_filter"]

log = logging.getLogger(__name__)

# PyAV codec name -> PyNvVideoCodec cudaVideoCodec member name.
NVDEC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9", "mpeg4": "MPEG4", "vp8": "VP8"}


def annexb_filter(stream: Any) -> Any | None:
    """The bitstream filter that gives NVDEC Annex-B packets for this stream, or None if not needed."""
    from av.bitstream import BitStreamFilterContext

    name = stream.codec_context.name
    if name in ("h264", "hevc"):
        return BitStreamFilterContext(f"{name}_mp4toannexb", stream)
    return None


def annexb_packets(bsf: Any | None, packet: Any) -> list[Any]:
    """Packets to feed NVDEC for one demuxed packet (an empty packet flushes the filter)."""
    if bsf is None:
        return [packet] if packet.size else []
    return list(bsf.filter(packet if packet.size else None))


def _gpu_modules(module: str, what: str, nvc: Any, cupy: Any) -> tuple[Any, Any]:
    """The decoder module and CuPy, imported here unless given (tests inject fakes)."""
    if nvc is None:
        try:
            nvc = importlib.import_module(module)
        except Exception as exc:
            raise RuntimeError(f"{what} is not available: {str(exc).splitlines()[0][:160]}") from None
    if cupy is None:
        cupy = importlib.import_module("cupy")
    return nvc, cupy


class NvdecDecoder:
    """One stream's hardware decoder.

    Args:
        codec: the PyAV codec name of the stream (``h264``, ``hevc``, ...).
        gpu: device ordinal.
        stream: the CuPy stream decoded frames are delivered on (its ``ptr`` goes to NVDEC).
        nvc: the PyNvVideoCodec module (injected by tests; imported lazily otherwise).
    """

    def __init__(self, codec: str, gpu: int = 0, stream: Any = None, nvc: Any = None, cupy: Any = None):
        # PyNvVideoCodec raises RuntimeError, not only ImportError, without a driver.
        nvc, cupy = _gpu_modules("PyNvVideoCodec", "NVDEC", nvc, cupy)
        if codec not in NVDEC_CODECS:
            raise ValueError(f"NVDEC cannot decode {codec!r}; it decodes {', '.join(sorted(NVDEC_CODECS))}")
        self._nvc, self._cp = nvc, cupy
        self.codec, self.gpu = codec, gpu
        self._stream = stream
        self.recreated = 0
        self._decoder = self._create()

    def reset(self) -> None:
        """A fresh decoder for a new pass over the input (after the end-of-stream flush)."""
        self._decoder = self._create()

    def _create(self) -> Any:
        nvc = self._nvc
        return nvc.CreateDecoder(gpuid=self.gpu, codec=getattr(nvc.cudaVideoCodec, NVDEC_CODECS[self.codec]),
                                 cudacontext=0, cudastream=self._stream.ptr if self._stream is not None else 0,
                                 usedevicememory=True, outputColorType=nvc.OutputColorType.NATIVE)

    def decode(self, packet: Any) -> Iterator[tuple[Any, int]]:
        """Decode one Annex-B PyAV packet; yields (NV12 CuPy array (1.5H, W) owned by the caller, pts).

        A packet the decoder rejects re-creates this decoder (its reference frames are gone, so the
        stream continues from the next keyframe) and is reported to the caller by the exception.
        """
        pd = self._nvc.PacketData()
        pd.bsl_data, pd.bsl = packet.buffer_ptr, packet.buffer_size  # packet stays alive during Decode
        pd.pts = packet.pts if packet.pts is not None else 0
        try:
            frames = self._decoder.Decode(pd)
        except Exception:
            self.recreated += 1
            log.warning("NVDEC error on a %s packet; re-creating this stream's decoder", self.codec)
            self._decoder = self._create()
            raise
        for f in frames:
            # Copy out of the decoder's pool before the next Decode reuses it (device-to-device).
            yield self._cp.from_dlpack(f).copy(), f.getPTS()

    def flush(self) -> Iterator[tuple[Any, int]]:
        """Frames still inside the decoder at end of stream."""
        for f in self._decoder.Decode(self._nvc.PacketData()):  # bsl == 0 -> end of stream
            yield self._cp.from_dlpack(f).copy(), f.getPTS()


# PyAV codec name -> VPF CudaVideoCodec member name (VPF's enum has only these three).
VPF_CODECS = {"h264": "H264", "hevc": "HEVC", "vp9": "VP9"}


class VpfDecoder:
    """The `NvdecDecoder` interface over VPF's ``PyNvCodec`` (archived upstream; a fallback).

    HAS NOT RUN ON GPU HARDWARE, and VPF's Python API changed between releases. Followed:
    ../shared/reference/gpu_api.md section 2 (VPF at 529fb19): ``PyNvDecoder(width, height,
    PixelFormat.NV12, CudaVideoCodec.X, gpu_id)`` for external packets, and
    ``DecodeSurfaceFromPacket(enc_packet_data, packet, pkt_data)`` with Annex-B bytes as a uint8
    NumPy array; it may return an empty Surface while the decoder buffers. ``FlushSingleSurface``
    drains at the end. Surfaces are one pitched NV12 plane of height 1.5H, wrapped zero-copy into
    CuPy as VPF's SampleCupy.py does, then copied. UNCONFIRMED: that ``pkt_data.pts`` holds the
    *decoded* surface's pts (not the input packet's), that the surface is valid only until the
    next call (so it is copied at once), and ``FlushSingleSurface(pkt_data)`` with a PacketData.
    Some VPF versions take a fourth argument (``bool_nvcv_check``) in DecodeSurfaceFromPacket.
    """

    def __init__(self, codec: str, width: int, height: int, gpu: int = 0, stream: Any = None,
                 nvc: Any = None, cupy: Any = None):
        nvc, cupy = _gpu_modules("PyNvCodec", "VPF (PyNvCodec)", nvc, cupy)
        if codec not in VPF_CODECS:
            raise ValueError(f"NVDEC through VPF cannot decode {codec!r}; it decodes {', '.join(sorted(VPF_CODECS))}")
        self._nvc, self._cp = nvc, cupy
        self.codec, self.gpu, self.width, self.height = codec, gpu, width, height
        self._stream = stream
        self.recreated = 0
        self._decoder = self._create()

    def _create(self) -> Any:
        nvc = self._nvc
        return nvc.PyNvDecoder(self.width, self.height, nvc.PixelFormat.NV12,
                               getattr(nvc.CudaVideoCodec, VPF_CODECS[self.codec]), self.gpu)

    def reset(self) -> None:
        self._decoder = self._create()

    def _take(self, surface: Any, pkt_data: Any) -> list[tuple[Any, int]]:
        if surface is None or surface.Empty():
            return []
        cp = self._cp
        plane = surface.PlanePtr()
        rows, width, pitch = plane.Height(), plane.Width(), plane.Pitch()
        mem = cp.cuda.UnownedMemory(plane.GpuMem(), pitch * rows, surface)  # the surface owns it
        view = cp.ndarray((rows, width), cp.uint8, cp.cuda.MemoryPointer(mem, 0), strides=(pitch, 1))
        return [(view.copy(), int(pkt_data.pts))]  # contiguous (1.5H, W), ours

    def decode(self, packet: Any) -> Iterator[tuple[Any, int]]:
        """Decode one Annex-B PyAV packet; yields (NV12 CuPy array (1.5H, W) owned by the caller, pts)."""
        import numpy as np

        nvc = self._nvc
        enc, out = nvc.PacketData(), nvc.PacketData()
        enc.pts = packet.pts if packet.pts is not None else 0
        data = np.frombuffer(packet, np.uint8)  # shares the packet's memory (gpu_api.md section 5)
        try:
            surface = self._decoder.DecodeSurfaceFromPacket(enc, data, out)
        except Exception:  # HwResetException, CuvidParserException: re-create (as SampleDecodeRTSP does)
            self.recreated += 1
            log.warning("VPF NVDEC error on a %s packet; re-creating this stream's decoder", self.codec)
            self._decoder = self._create()
            raise
        yield from self._take(surface, out)

    def flush(self) -> Iterator[tuple[Any, int]]:
        while True:
            out = self._nvc.PacketData()
            taken = self._take(self._decoder.FlushSingleSurface(out), out)
            if not taken:
                return
            yield from taken


class NvdecDecoding:
    """Decoding strategy of the GPU backend: PyAV packets -> Annex-B -> NVDEC -> `DeviceNV12`.

    Args:
        gpu: device ordinal.
        module: the decoder module `vidinfer.devices.plan_device` chose: "PyNvVideoCodec"
            (`NvdecDecoder`) or "PyNvCodec" (VPF, `VpfDecoder`).
        cupy: the CuPy module (imported lazily otherwise).

    Each stream has its own CUDA stream: NVDEC decodes on it, the frame is copied out of the
    decoder's pool on it, and it is synchronised before the frame is queued, so the pipeline's
    preprocessing stream may read the frame at once.
    """

    name = "nvdec"

    def __init__(self, gpu: int = 0, module: str = "PyNvVideoCodec", cupy: Any = None):
        if cupy is None:
            cupy = importlib.import_module("cupy")
        self._cp = cupy
        self.gpu = gpu
        self.module = module
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._decoder: Any = None
        self._key: tuple[str, int, int] | None = None
        self._bsf: Any = None
        self._vs: Any = None
        self._drained = False
        self._colour = ("bt601", False)
        self._recreated_before = 0  # re-creations of decoders replaced by a new stream format

    @property
    def recreations(self) -> int:
        return self._recreated_before + (self._decoder.recreated if self._decoder is not None else 0)

    def open(self, stream: Any, decode_threads: int, skip: str | None) -> None:
        """A (re)opened input: Annex-B filter for it; the decoder is kept if the format is unchanged.

        ``skip`` (FFmpeg's skip_frame) does not apply: NVDEC decodes every packet it is given, and
        keyframes_only already leaves the other packets out before they reach it."""
        from vidinfer.preprocess.crops import colour_standard
        from vidinfer.sources.pyav import UnsupportedInput

        cc = stream.codec_context
        key = (cc.name, cc.width, cc.height)
        if key != self._key:
            try:
                if self.module == "PyNvCodec":
                    decoder: Any = VpfDecoder(cc.name, cc.width, cc.height, self.gpu, self._stream, cupy=self._cp)
                else:
                    decoder = NvdecDecoder(cc.name, self.gpu, self._stream, cupy=self._cp)
            except ValueError as exc:  # a codec NVDEC does not decode
                raise UnsupportedInput(f"{exc}; use device = 'cpu' for this stream") from None
            if self._decoder is not None:
                self._recreated_before += self._decoder.recreated
            self._decoder, self._key = decoder, key
        elif self._drained:
            self._decoder.reset()
        self._vs, self._bsf, self._drained = stream, annexb_filter(stream), False
        self._colour = colour_standard(cc.colorspace, cc.color_range, cc.pix_fmt or "")

    def decode(self, packet: Any) -> list[tuple[Any, int | None, int, int]]:
        """(NV12 CuPy array, pts, width, height) per decoded frame; an empty packet drains."""
        from vidinfer.sources.pyav import DecodeError

        size = packet.size  # read first: the bitstream filter takes the packet's data
        if self._drained and size:  # a new pass (loop): fresh filter and decoder
            self._bsf = annexb_filter(self._vs)
            self._decoder.reset()
            self._drained = False
        out: list[tuple[Any, int | None, int, int]] = []
        with self._stream:
            try:
                for p in annexb_packets(self._bsf, packet):
                    out += [self._entry(a, pts) for a, pts in self._decoder.decode(p)]
                if not size:
                    out += [self._entry(a, pts) for a, pts in self._decoder.flush()]
                    self._drained = True
            except Exception as exc:  # the decoder re-created itself; the stream goes on
                raise DecodeError(f"NVDEC: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") \
                    from exc
            finally:
                self._stream.synchronize()  # copies done before the frames are queued
        return out

    def _entry(self, nv12: Any, pts: int) -> tuple[Any, int | None, int, int]:
        return nv12, pts, int(nv12.shape[1]), int(nv12.shape[0]) * 2 // 3

    def image(self, nv12: Any, box: Any) -> tuple[Any, Any]:
        from vidinfer.frame import DeviceNV12

        return DeviceNV12(nv12, box.src_w, box.src_h, *self._colour), None
