"""NVDEC feeding without a GPU: the Annex-B conversion runs for real (PyAV); the decoder calls
run against a fake PyNvVideoCodec module and a fake CuPy (mocks at the GPU boundary, named so).
The real decoder has not run on GPU hardware."""

from types import SimpleNamespace

import av
import pytest
from gpu_fakes import FakeCupy, FakeNvc
from ground_truth import CLIPS

from vidinfer.sources.nvdec import NvdecDecoder, annexb_filter, annexb_packets


def test_mp4_h264_packets_become_annexb_and_every_frame_is_kept():
    with av.open(str(CLIPS / "shapes_a.mp4")) as c:
        vs = c.streams.video[0]
        bsf = annexb_filter(vs)
        out = [p for packet in c.demux(vs) for p in annexb_packets(bsf, packet)]
    assert len(out) == 100
    assert all(bytes(p)[:4] == b"\x00\x00\x00\x01" for p in out)  # start codes, not length prefixes
    assert out[0].is_keyframe and out[0].pts == 0


def test_decoder_is_fed_packet_buffers_and_copies_frames_out_with_fake_pynvvideocodec():
    nvc = FakeNvc()
    dec = NvdecDecoder("h264", gpu=1, stream=SimpleNamespace(ptr=1234), nvc=nvc, cupy=FakeCupy)
    assert nvc.created == [dict(gpuid=1, codec="H264", cudacontext=0, cudastream=1234, usedevicememory=True,
                                outputColorType="NATIVE")]
    packet = SimpleNamespace(buffer_ptr=0xABC, buffer_size=512, pts=40)
    frames = list(dec.decode(packet))
    assert nvc.seen == [(0xABC, 512, 40)]
    assert len(frames) == 1 and frames[0][1] == 40 and frames[0][0].shape == (6, 4)
    assert list(dec.flush()) == [] and nvc.seen[-1][1] == 0  # an empty packet means end of stream


def test_decoder_error_recreates_only_this_decoder_with_fake_pynvvideocodec():
    nvc = FakeNvc(fail_on=2)
    dec = NvdecDecoder("hevc", nvc=nvc, cupy=FakeCupy)
    list(dec.decode(SimpleNamespace(buffer_ptr=1, buffer_size=10, pts=0)))
    with pytest.raises(RuntimeError, match="CUVID_ERROR"):
        list(dec.decode(SimpleNamespace(buffer_ptr=2, buffer_size=10, pts=1)))
    assert dec.recreated == 1 and len(nvc.created) == 2
    assert len(list(dec.decode(SimpleNamespace(buffer_ptr=3, buffer_size=10, pts=2)))) == 1


def test_unsupported_codec_is_one_sentence():
    with pytest.raises(ValueError, match=r"^NVDEC cannot decode 'mjpeg'; it decodes av1, h264, hevc, mpeg4, vp8, vp9$"):
        NvdecDecoder("mjpeg", nvc=FakeNvc(), cupy=FakeCupy)


def test_without_pynvvideocodec_the_reason_is_given():
    import importlib.util

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed here")
    with pytest.raises(RuntimeError, match=r"^NVDEC is not available: No module named 'PyNvVideoCodec'"):
        NvdecDecoder("h264")
