"""NVDEC decoding through PyNvVideoCodec (2.0 or newer), fed with packets that PyAV demuxes.

HAS NOT RUN ON GPU HARDWARE. Demuxing stays in PyAV, so RTSP options, timeouts and reconnects live
in one place (vidinfer/sources/pyav.py) for both backends. NVDEC gets nothing but the packets (no
extradata), so what a container keeps outside them goes in-band first, through PyAV's bitstream
filters: H.264 and HEVC from MP4/MKV/FLV are length-prefixed and become Annex-B
(``*_mp4toannexb``, which passes Annex-B input through unchanged); MPEG-4 part 2 from MP4/MKV
keeps its VOL header in the extradata, which ``dump_extra`` puts in front of every keyframe.

What NVDEC hands out (PyNvVideoCodec 2.0.2's sources, PyNvDecoder.cpp, PyNvVideoCodecUtils.hpp,
NvDecoder.{h,cpp}; the names also in the 2.2.4 wheel): one tightly packed frame per picture in the
stream's native format, in device memory, valid until the next ``Decode``; NV12 and P016 rows are
the width rounded up to even, with ceil(H/2) chroma rows. Its DLPack view is not used: its shape
is (int(1.5H), W), one chroma row short for an odd H, and 2.0.2's P016 strides are wrong. Each
frame is read at ``GetPtrToPlane(0)`` with that geometry and copied once, on the GPU, into an
array this module owns (8-bit 4:2:0: NV12 as is; 10/12-bit 4:2:0: P016 rounded to NV12), so the
frame may wait in a queue while the decoder goes on. 4:4:4 and 4:2:2 streams (NVDEC's YUV444 and
NV16/P216) are refused when the stream opens: the preprocessing kernels read 4:2:0 only.

A packet without a timestamp is given to NVDEC with ``NO_PTS``; its frame comes back with it and
is reported without one, so the source numbers it by the frame count, as the CPU path does.

All streams share the device's primary CUDA context (``cudacontext=0``), the one CuPy uses; the
source threads make the stream's GPU current for every call. A decoder error re-creates only that
stream's decoder. PyNvVideoCodec 1.x is refused (`pynvvideocodec_problem`).

`NvdecDecoding` is the decoding strategy `vidinfer.sources.pyav.PyAVSource` uses on the GPU
backend: the source keeps demuxing, sampling, pacing and reconnecting; this module turns packets
into `DeviceNV12` frames. Where PyNvVideoCodec is not installed but VPF's archived ``PyNvCodec``
is, `VpfDecoder` (same interface) decodes instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
from typing import Any, Iterator

__all__ = ["NO_PTS", "NVDEC_CODECS", "PYNVVIDEOCODEC_1X", "NvdecDecoder", "NvdecDecoding", "VpfDecoder",
           "annexb_filter", "pixel_format_problem", "pynvvideocodec_problem"]

log = logging.getLogger(__name__)

# PyAV codec name -> PyNvVideoCodec cudaVideoCodec member name.
NVDEC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9", "mpeg4": "MPEG4", "vp8": "VP8"}

# FFmpeg's AV_NOPTS_VALUE: the pts NVDEC is given for a packet that has none. NVDEC's parser hands a
# packet's timestamp to the frame that starts in it; anything this far below zero is "no pts".
NO_PTS = -(2 ** 63)
_NO_PTS_BELOW = -(2 ** 62)

# Why PyNvVideoCodec 1.x cannot decode for vidinfer (said by `vidinfer info` and when a pipeline is built).
PYNVVIDEOCODEC_1X = "1.x decodes on GPU 0 only, without timestamps or an output colour type"

# NVDEC's native output formats the preprocessing reads (as NV12 after the copy).
_READ_FORMATS = ("NV12", "P016")


def pynvvideocodec_problem(nvc: Any) -> str | None:
    """Why this PyNvVideoCodec module cannot decode for vidinfer, in one sentence (None: it can).

    1.x's ``CreateDecoder`` takes only (gpuid, codec, cudacontext, cudastream, usedevicememory),
    always decodes on GPU 0, has no OutputColorType and never passes timestamps through."""
    version = getattr(nvc, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version("PyNvVideoCodec")
        except importlib.metadata.PackageNotFoundError:
            version = None
    match = re.match(r"\s*(\d+)", str(version or ""))
    if match is not None:
        old = int(match.group(1)) < 2
    else:  # no version to read: 2.x is the one with OutputColorType
        old, version = not hasattr(nvc, "OutputColorType"), "of unknown version"
    if not old:
        return None
    return (f"PyNvVideoCodec {version} is installed, but NVDEC decoding needs PyNvVideoCodec 2.0 or newer "
            f"({PYNVVIDEOCODEC_1X}); pip install -U 'PyNvVideoCodec>=2.0'")


def pixel_format_problem(pix_fmt: str | None) -> str | None:
    """Why the GPU path cannot read a stream of this FFmpeg pixel format (None: it can, or unknown).

    NVDEC gives NV12 for 8-bit 4:2:0, P016 for 10/12-bit 4:2:0 (both read), YUV444 for 4:4:4 and
    NV16/P216 for 4:2:2 (not read: the kernels sample 4:2:0 chroma)."""
    if not pix_fmt:
        return None
    import av

    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return None
    if len(fmt.components) < 3:
        return f"it is monochrome ({pix_fmt}), which NVDEC does not give as 4:2:0"
    cw, ch = fmt.chroma_width(64), fmt.chroma_height(64)
    if (cw, ch) == (32, 32):
        return None
    kind = {(64, 64): "4:4:4", (32, 64): "4:2:2"}.get((cw, ch), f"{64 // cw}x{64 // ch}-subsampled")
    nvdec = {"4:4:4": " (NVDEC gives YUV444)", "4:2:2": " (NVDEC gives NV16)"}.get(kind, "")
    return f"its chroma is {kind} ({pix_fmt}){nvdec} and the GPU preprocessing kernels read 4:2:0 only"


def annexb_filter(stream: Any) -> Any | None:
    """The bitstream filter that puts in-band what NVDEC needs of this stream, or None.

    H.264 / HEVC: ``*_mp4toannexb`` (start codes; parameter sets before keyframes). MPEG-4 part 2:
    ``dump_extra``, the VOL header (extradata in MP4 / Matroska) before every keyframe: without
    it NVDEC never sees a sequence header and decodes nothing (it passes streams that carry the
    header in-band, AVI or raw, through unchanged)."""
    from av.bitstream import BitStreamFilterContext

    name = stream.codec_context.name
    if name in ("h264", "hevc"):
        return BitStreamFilterContext(f"{name}_mp4toannexb", stream)
    if name == "mpeg4":
        return BitStreamFilterContext("dump_extra", stream)
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


def _format_name(fmt: Any) -> str:
    """"NV12", "P016", ... of a PyNvVideoCodec Pixel_Format (a pybind11 enum) or a fake's string."""
    return str(getattr(fmt, "name", fmt)).rsplit(".", 1)[-1]


def p016_to_nv12(cupy: Any, p016: Any) -> Any:
    """8-bit NV12 of a P016 array (10/12-bit values in the high bits of uint16): rounded to nearest."""
    return cupy.minimum(((p016 >> 7) + 1) >> 1, 255).astype(cupy.uint8)


class UnreadableFrames(Exception):
    """NVDEC gave frames of a format the preprocessing does not read (raised as the stream's
    `vidinfer.sources.pyav.UnsupportedInput` by `NvdecDecoding`)."""


class NvdecDecoder:
    """One stream's hardware decoder.

    Args:
        codec: the PyAV codec name of the stream (``h264``, ``hevc``, ...).
        gpu: device ordinal.
        stream: the CuPy stream decoded frames are delivered on (its ``ptr`` goes to NVDEC); it
            must belong to ``gpu``, which must be the current device during `decode`.
        nvc: the PyNvVideoCodec module (injected by tests; imported lazily otherwise).
    """

    def __init__(self, codec: str, gpu: int = 0, stream: Any = None, nvc: Any = None, cupy: Any = None):
        # PyNvVideoCodec raises RuntimeError, not only ImportError, without a driver.
        nvc, cupy = _gpu_modules("PyNvVideoCodec", "NVDEC", nvc, cupy)
        problem = pynvvideocodec_problem(nvc)
        if problem:
            raise RuntimeError(problem)
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

    def decode(self, packet: Any) -> Iterator[tuple[Any, int | None]]:
        """Decode one Annex-B PyAV packet; yields (NV12 CuPy array owned by the caller, pts or None).

        The array is (H + ceil(H/2), W rounded up to even) uint8. The pts is the packet's (its dts
        when it has no pts), None when it had neither. A packet the decoder rejects re-creates
        this decoder (its reference frames are gone, so the stream continues from the next
        keyframe) and is reported to the caller by the exception.
        """
        pd = self._nvc.PacketData()
        pd.bsl_data, pd.bsl = packet.buffer_ptr, packet.buffer_size  # packet stays alive during Decode
        pts = packet.pts if packet.pts is not None else getattr(packet, "dts", None)
        pd.pts = pts if pts is not None else NO_PTS
        try:
            frames = self._decoder.Decode(pd)
        except Exception:
            self.recreated += 1
            log.warning("NVDEC error on a %s packet; re-creating this stream's decoder", self.codec)
            self._decoder = self._create()
            raise
        for f in frames:
            yield self._take(f)

    def flush(self) -> Iterator[tuple[Any, int | None]]:
        """Frames still inside the decoder at end of stream."""
        for f in self._decoder.Decode(self._nvc.PacketData()):  # bsl == 0 -> end of stream
            yield self._take(f)

    def _take(self, frame: Any) -> tuple[Any, int | None]:
        """Our copy of one decoded frame (before the next Decode reuses its buffer), and its pts."""
        cp = self._cp
        fmt = _format_name(frame.format)
        if fmt not in _READ_FORMATS:
            raise UnreadableFrames(f"NVDEC gave {fmt} frames, and the GPU preprocessing kernels read 4:2:0 "
                                   "(NV12, P016) only")
        rows, width = (int(n) for n in frame.shape[:2])  # DLPack shape: (int(1.5 H), W)
        height = (2 * rows + 1) // 3
        rows = height + (height + 1) // 2  # what the buffer holds (the DLPack shape drops a row for odd H)
        dtype = cp.uint16 if fmt == "P016" else cp.uint8
        nbytes = rows * width * (2 if fmt == "P016" else 1)
        mem = cp.cuda.UnownedMemory(int(frame.GetPtrToPlane(0)), nbytes, frame)  # the frame owns it
        view = cp.ndarray((rows, width), dtype, cp.cuda.MemoryPointer(mem, 0))
        # On the current stream, which is the decoder's: ordered after NVDEC's copy into the buffer.
        nv12 = p016_to_nv12(cp, view) if fmt == "P016" else view.copy()
        ts = int(frame.getPTS())
        return nv12, None if ts < _NO_PTS_BELOW else ts


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

    def _take(self, surface: Any, pkt_data: Any) -> list[tuple[Any, int | None]]:
        if surface is None or surface.Empty():
            return []
        cp = self._cp
        plane = surface.PlanePtr()
        rows, width, pitch = plane.Height(), plane.Width(), plane.Pitch()
        mem = cp.cuda.UnownedMemory(plane.GpuMem(), pitch * rows, surface)  # the surface owns it
        view = cp.ndarray((rows, width), cp.uint8, cp.cuda.MemoryPointer(mem, 0), strides=(pitch, 1))
        pts = int(pkt_data.pts)
        return [(view.copy(), None if pts < _NO_PTS_BELOW else pts)]  # contiguous (1.5H, W), ours

    def decode(self, packet: Any) -> Iterator[tuple[Any, int | None]]:
        """Decode one Annex-B PyAV packet; yields (NV12 CuPy array (1.5H, W) owned by the caller, pts)."""
        import numpy as np

        nvc = self._nvc
        enc, out = nvc.PacketData(), nvc.PacketData()
        pts = packet.pts if packet.pts is not None else getattr(packet, "dts", None)
        enc.pts = pts if pts is not None else NO_PTS
        data = np.frombuffer(packet, np.uint8)  # shares the packet's memory (gpu_api.md section 5)
        try:
            surface = self._decoder.DecodeSurfaceFromPacket(enc, data, out)
        except Exception:  # HwResetException, CuvidParserException: re-create (as SampleDecodeRTSP does)
            self.recreated += 1
            log.warning("VPF NVDEC error on a %s packet; re-creating this stream's decoder", self.codec)
            self._decoder = self._create()
            raise
        yield from self._take(surface, out)

    def flush(self) -> Iterator[tuple[Any, int | None]]:
        while True:
            out = self._nvc.PacketData()
            taken = self._take(self._decoder.FlushSingleSurface(out), out)
            if not taken:
                return
            yield from taken


def _codec_name(cc: Any) -> str:
    """The codec's own name (``av1``), not the decoder PyAV picked for it (``libdav1d``)."""
    codec = getattr(cc, "codec", None)
    return str(getattr(codec, "canonical_name", None) or cc.name)


class NvdecDecoding:
    """Decoding strategy of the GPU backend: PyAV packets -> in-band headers -> NVDEC -> `DeviceNV12`.

    Args:
        gpu: device ordinal.
        module: the decoder module `vidinfer.devices.plan_device` chose: "PyNvVideoCodec"
            (`NvdecDecoder`) or "PyNvCodec" (VPF, `VpfDecoder`).
        cupy: the CuPy module (imported lazily otherwise).

    Each stream has its own CUDA stream, made on ``gpu``: NVDEC decodes on it, the frame is copied
    out of the decoder's pool on it, and it is synchronised before the frame is queued, so the
    pipeline's preprocessing stream may read the frame at once. Every call, made on the stream's
    source thread, runs with ``gpu`` as the current device (CUDA's current device is per thread).
    A PyNvVideoCodec older than 2.0 is refused here, when the pipeline is built.
    """

    name = "nvdec"

    def __init__(self, gpu: int = 0, module: str = "PyNvVideoCodec", cupy: Any = None):
        if cupy is None:
            cupy = importlib.import_module("cupy")
        if module == "PyNvVideoCodec":
            from vidinfer.errors import ConfigError

            try:
                nvc = importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported by the decoder, per stream, as before
                nvc = None
            problem = pynvvideocodec_problem(nvc) if nvc is not None else None
            if problem:
                raise ConfigError(problem)
        self._cp = cupy
        self.gpu = gpu
        self.module = module
        with cupy.cuda.Device(gpu):
            self._stream = cupy.cuda.Stream(non_blocking=True)
        self._decoder: Any = None
        self._key: tuple[str, int, int] | None = None
        self._bsf: Any = None
        self._vs: Any = None
        self._drained = False
        self._colour = ("bt601", False)
        self._siting = "center"
        self._width = 0
        self._recreated_before = 0  # re-creations of decoders replaced by a new stream format

    @property
    def recreations(self) -> int:
        return self._recreated_before + (self._decoder.recreated if self._decoder is not None else 0)

    def open(self, stream: Any, decode_threads: int, skip: str | None) -> None:
        """A (re)opened input: its bitstream filter; the decoder is kept if the format is unchanged.

        Refuses (`UnsupportedInput`, this stream only) a codec NVDEC does not decode and a pixel
        format the GPU path does not read (4:4:4, 4:2:2, monochrome). ``skip`` (FFmpeg's
        skip_frame) does not apply: NVDEC decodes every packet it is given, and keyframes_only
        already leaves the other packets out before they reach it."""
        from vidinfer.preprocess.crops import chroma_siting, colour_standard
        from vidinfer.sources.pyav import UnsupportedInput

        cc = stream.codec_context
        codec = _codec_name(cc)
        problem = pixel_format_problem(cc.pix_fmt)
        if problem:
            raise UnsupportedInput(f"NVDEC cannot be used for this stream: {problem}; run it with device = 'cpu'")
        key = (codec, cc.width, cc.height)
        with self._cp.cuda.Device(self.gpu):
            if key != self._key:
                try:
                    if self.module == "PyNvCodec":
                        decoder: Any = VpfDecoder(codec, cc.width, cc.height, self.gpu, self._stream, cupy=self._cp)
                    else:
                        decoder = NvdecDecoder(codec, self.gpu, self._stream, cupy=self._cp)
                except ValueError as exc:  # a codec NVDEC does not decode
                    raise UnsupportedInput(f"{exc}; use device = 'cpu' for this stream") from None
                if self._decoder is not None:
                    self._recreated_before += self._decoder.recreated
                self._decoder, self._key = decoder, key
            elif self._drained:
                self._decoder.reset()
        self._vs, self._bsf, self._drained = stream, annexb_filter(stream), False
        self._colour = colour_standard(cc.colorspace, cc.color_range, cc.pix_fmt or "")
        self._siting = chroma_siting(codec)
        self._width = int(cc.width)

    def decode(self, packet: Any) -> list[tuple[Any, int | None, int, int]]:
        """(NV12 CuPy array, pts or None, width, height) per decoded frame; an empty packet drains."""
        from vidinfer.sources.pyav import DecodeError, UnsupportedInput

        size = packet.size  # read first: the bitstream filter takes the packet's data
        out: list[tuple[Any, int | None, int, int]] = []
        with self._cp.cuda.Device(self.gpu):
            if self._drained and size:  # a new pass (loop): fresh filter and decoder
                self._bsf = annexb_filter(self._vs)
                self._decoder.reset()
                self._drained = False
            with self._stream:
                try:
                    for p in annexb_packets(self._bsf, packet):
                        out += [self._entry(a, pts) for a, pts in self._decoder.decode(p)]
                    if not size:
                        out += [self._entry(a, pts) for a, pts in self._decoder.flush()]
                        self._drained = True
                except UnreadableFrames as exc:
                    raise UnsupportedInput(f"{exc}; run this stream with device = 'cpu'") from None
                except Exception as exc:  # the decoder re-created itself; the stream goes on
                    raise DecodeError(f"NVDEC: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") \
                        from exc
                finally:
                    self._stream.synchronize()  # copies done before the frames are queued
        return out

    def _entry(self, nv12: Any, pts: int | None) -> tuple[Any, int | None, int, int]:
        rows, width = int(nv12.shape[0]), int(nv12.shape[1])
        if width == self._width + 1 and self._width % 2:  # NVDEC's rows are an odd width rounded up
            width = self._width
        return nv12, pts, width, (2 * rows + 1) // 3

    def image(self, nv12: Any, box: Any) -> tuple[Any, Any]:
        from vidinfer.frame import DeviceNV12

        return DeviceNV12(nv12, box.src_w, box.src_h, *self._colour, chroma_siting=self._siting), None
