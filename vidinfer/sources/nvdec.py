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
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

__all__ = ["NvdecDecoder", "annexb_filter", "NVDEC_CODECS"]

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


class NvdecDecoder:
    """One stream's hardware decoder.

    Args:
        codec: the PyAV codec name of the stream (``h264``, ``hevc``, ...).
        gpu: device ordinal.
        stream: the CuPy stream decoded frames are delivered on (its ``ptr`` goes to NVDEC).
        nvc: the PyNvVideoCodec module (injected by tests; imported lazily otherwise).
    """

    def __init__(self, codec: str, gpu: int = 0, stream: Any = None, nvc: Any = None, cupy: Any = None):
        if nvc is None:
            try:
                import PyNvVideoCodec as nvc  # raises RuntimeError, not only ImportError, without a driver
            except Exception as exc:
                raise RuntimeError(f"NVDEC is not available: {str(exc).splitlines()[0][:160]}") from None
        if cupy is None:
            import cupy
        if codec not in NVDEC_CODECS:
            raise ValueError(f"NVDEC cannot decode {codec!r}; it decodes {', '.join(sorted(NVDEC_CODECS))}")
        self._nvc, self._cp = nvc, cupy
        self.codec, self.gpu = codec, gpu
        self._stream = stream
        self.recreated = 0
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
