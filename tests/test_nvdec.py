"""NVDEC feeding without a GPU: the Annex-B conversion runs for real (PyAV); the decoder calls
run against fake PyNvVideoCodec modules and a fake CuPy (mocks at the GPU boundary, named so in
every test): the 2.x and 1.x API shapes, frames in NVDEC's own layouts, device-bound streams.
The real decoder has not run on GPU hardware."""

import sys
import threading
from types import SimpleNamespace

import av
import numpy as np
import pytest
from gpu_fakes import DecodingNvc, FakeNvc, encode_clip, fake_cupy
from ground_truth import CLIPS

from vidinfer.config import StreamSpec
from vidinfer.errors import ConfigError
from vidinfer.frame import DeviceNV12, Frame, StreamEvent
from vidinfer.sources.base import DecodeHints
from vidinfer.sources.nvdec import NO_PTS, NvdecDecoder, NvdecDecoding, annexb_filter, annexb_packets
from vidinfer.sources.pyav import PyAVSource, SoftwareDecoding

TOO_OLD = ("PyNvVideoCodec 1.0.2 is installed, but NVDEC decoding needs PyNvVideoCodec 2.0 or newer (1.x decodes on "
           "GPU 0 only, without timestamps or an output colour type); pip install -U 'PyNvVideoCodec>=2.0'")


@pytest.fixture
def fake_gpu(monkeypatch):
    """A fake CuPy with two GPUs and a decoding PyNvVideoCodec 2.x in sys.modules."""
    cp = fake_cupy(launch=None, devices=2)
    nvc = DecodingNvc(devices=2)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", nvc)
    return SimpleNamespace(cupy=cp, nvc=nvc)


class _ListQueue:
    dropped = 0

    def __init__(self):
        self.items = []

    def put(self, item):
        self.items.append(item)
        return True


def _run_source(url, decoding, **options):
    """Every item a PyAVSource puts, run to the end on its own thread (as the pipeline runs it)."""
    queue = _ListQueue()
    source = PyAVSource(StreamSpec(id="cam", url=str(url), **options), decoding=decoding)
    source.start(queue, DecodeHints(size=(64, 64)))
    source.join(30)
    assert not source.alive
    frames = [i for i in queue.items if isinstance(i, Frame)]
    return frames, [i for i in queue.items if isinstance(i, StreamEvent)][-1]


def _decode_all(decoding, path):
    """(array, pts, width, height) of every frame of a file through a decoding strategy, as a source
    thread would call it (open, every packet, the draining empty packet)."""
    out = []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        decoding.open(vs, 0, None)
        for packet in c.demux(vs):
            out += decoding.decode(packet)
    return out


def test_mp4_h264_packets_become_annexb_and_every_frame_is_kept():
    with av.open(str(CLIPS / "shapes_a.mp4")) as c:
        vs = c.streams.video[0]
        bsf = annexb_filter(vs)
        out = [p for packet in c.demux(vs) for p in annexb_packets(bsf, packet)]
    assert len(out) == 100
    assert all(bytes(p)[:4] == b"\x00\x00\x00\x01" for p in out)  # start codes, not length prefixes
    assert out[0].is_keyframe and out[0].pts == 0


def test_decoder_is_fed_packet_buffers_and_copies_frames_out_with_fake_pynvvideocodec():
    cp = fake_cupy(launch=None, devices=2)
    nvc = FakeNvc()
    with cp.cuda.Device(1):
        stream = cp.cuda.Stream(non_blocking=True)
        dec = NvdecDecoder("h264", gpu=1, stream=stream, nvc=nvc, cupy=cp)
        assert nvc.created == [dict(gpuid=1, codec="H264", cudacontext=0, cudastream=stream.ptr,
                                    usedevicememory=True, outputColorType="NATIVE")]
        packet = SimpleNamespace(buffer_ptr=0xABC, buffer_size=512, pts=40)
        with stream:
            frames = list(dec.decode(packet))
    assert nvc.seen == [(0xABC, 512, 40)]
    assert len(frames) == 1 and frames[0][1] == 40 and frames[0][0].shape == (6, 4)
    assert np.asarray(frames[0][0][:4]).tolist() == [[40] * 4] * 4  # the frame's own pixels, copied
    assert list(dec.flush()) == [] and nvc.seen[-1][1] == 0  # an empty packet means end of stream


def test_decoder_error_recreates_only_this_decoder_with_fake_pynvvideocodec():
    nvc = FakeNvc(fail_on=2)
    dec = NvdecDecoder("hevc", nvc=nvc, cupy=fake_cupy(launch=None))
    list(dec.decode(SimpleNamespace(buffer_ptr=1, buffer_size=10, pts=0)))
    with pytest.raises(RuntimeError, match="CUVID_ERROR"):
        list(dec.decode(SimpleNamespace(buffer_ptr=2, buffer_size=10, pts=1)))
    assert dec.recreated == 1 and len(nvc.created) == 2
    assert len(list(dec.decode(SimpleNamespace(buffer_ptr=3, buffer_size=10, pts=2)))) == 1


def test_unsupported_codec_is_one_sentence():
    with pytest.raises(ValueError, match=r"^NVDEC cannot decode 'mjpeg'; it decodes av1, h264, hevc, mpeg4, vp8, vp9$"):
        NvdecDecoder("mjpeg", nvc=FakeNvc(), cupy=fake_cupy(launch=None))


def test_without_pynvvideocodec_the_reason_is_given():
    import importlib.util

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed here")
    with pytest.raises(RuntimeError, match=r"^NVDEC is not available: No module named 'PyNvVideoCodec'"):
        NvdecDecoder("h264")


# --- 1. PyNvVideoCodec 1.x ----------------------------------------------------------------------

def test_pynvvideocodec_1x_is_refused_naming_its_version_and_the_fix_with_fake_1x_api(monkeypatch):
    """1.x's CreateDecoder has no outputColorType and ignores gpuid; its frames have no getPTS."""
    cp = fake_cupy(launch=None)
    old = DecodingNvc(version="1.0.2")
    with pytest.raises(RuntimeError) as err:
        NvdecDecoder("h264", nvc=old, cupy=cp)
    assert str(err.value) == TOO_OLD
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", old)
    with pytest.raises(ConfigError) as err:  # when the pipeline is built, before any stream starts
        NvdecDecoding(0, "PyNvVideoCodec", cupy=cp)
    assert str(err.value) == TOO_OLD
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", DecodingNvc(version="2.0.2"))
    assert NvdecDecoding(0, "PyNvVideoCodec", cupy=cp).module == "PyNvVideoCodec"


# --- 2. Timestamps ---------------------------------------------------------------------------------

def _raw_h264(tmp_path):
    """shapes_a.mp4's H.264 as a raw Annex-B .h264 file: its packets have no pts and no dts."""
    path = tmp_path / "shapes_a.h264"
    with av.open(str(CLIPS / "shapes_a.mp4")) as c, av.open(str(path), "w", format="h264") as out:
        vs = c.streams.video[0]
        os_ = out.add_stream_from_template(vs)
        bsf = annexb_filter(vs)
        for packet in c.demux(vs):
            for p in annexb_packets(bsf, packet):
                p.stream = os_
                out.mux(p)
    return path


def test_raw_h264_frames_are_timed_by_frame_count_as_on_the_cpu_with_fake_pynvvideocodec(fake_gpu, tmp_path):
    """No pts in the file: NVDEC is told so (not 0), and the frames are numbered and sampled by
    the frame count exactly as the CPU path does it (sample_fps = 5 of 25 fps: every 5th frame;
    the CPU path decoding every frame, as NVDEC does)."""
    path = _raw_h264(tmp_path)
    cpu, cpu_end = _run_source(path, SoftwareDecoding(), sample_fps=5, reference_frames_only=False)
    gpu, gpu_end = _run_source(path, NvdecDecoding(0, cupy=fake_gpu.cupy), sample_fps=5)
    assert cpu_end.state == gpu_end.state == "ended"
    assert [(f.frame_no, f.pts_ns) for f in gpu] == [(f.frame_no, f.pts_ns) for f in cpu]
    assert [f.frame_no for f in gpu] == list(range(0, 100, 5))
    assert [f.pts_ns for f in gpu] == [n * 40_000_000 for n in range(0, 100, 5)]
    assert set(fake_gpu.nvc.seen_pts) == {NO_PTS}  # what NVDEC was given for the packets


def test_packet_timestamps_come_back_with_their_frames_in_display_order_with_fake_pynvvideocodec(fake_gpu):
    frames = _decode_all(NvdecDecoding(0, cupy=fake_gpu.cupy), CLIPS / "shapes_a.mp4")
    with av.open(str(CLIPS / "shapes_a.mp4")) as c:
        want = [f.pts for f in c.decode(video=0)]
    assert [pts for _, pts, _, _ in frames] == want == sorted(want)


# --- 3. 10-bit, 4:4:4, 4:2:2 ---------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_10bit_p016_frames_become_8bit_nv12_with_fake_pynvvideocodec(fake_gpu, tmp_path, codec):
    """NVDEC gives P016 (uint16, the 10-bit value in the high bits) for 10-bit 4:2:0: the frames
    the pipeline gets are 8-bit NV12, each sample the 10-bit one rounded to 8 bits."""
    path = encode_clip(tmp_path / "ten.mp4", codec, "yuv420p10le", (64, 48))
    frames = _decode_all(NvdecDecoding(0, cupy=fake_gpu.cupy), path)
    with av.open(str(path)) as c:
        want = [f for f in c.decode(video=0)]
    assert len(frames) == len(want) == 6
    for (nv12, _, w, h), ref in zip(frames, want):
        assert (w, h) == (64, 48) and nv12.dtype == np.uint8 and nv12.shape == (72, 64)
        y10 = np.frombuffer(ref.planes[0], np.uint16).reshape(48, -1)[:, :64].astype(int)
        u10 = np.frombuffer(ref.planes[1], np.uint16).reshape(24, -1)[:, :32].astype(int)
        assert np.array_equal(np.asarray(nv12[:48]), np.minimum((y10 + 2) >> 2, 255))
        assert np.array_equal(np.asarray(nv12[48:, 0::2]), np.minimum((u10 + 2) >> 2, 255))


def test_444_and_422_streams_fail_alone_with_one_sentence_at_open_with_fake_pynvvideocodec(fake_gpu, tmp_path):
    good = encode_clip(tmp_path / "good.mp4")
    for pix, kind, nvdec in (("yuv444p", "4:4:4", "YUV444"), ("yuv422p", "4:2:2", "NV16")):
        bad = encode_clip(tmp_path / f"{pix}.mp4", pix_fmt=pix)
        frames, end = _run_source(bad, NvdecDecoding(0, cupy=fake_gpu.cupy))
        assert frames == [] and end.state == "failed"
        assert end.reason == (f"{bad}: NVDEC cannot be used for this stream: its chroma is {kind} ({pix}) (NVDEC "
                              f"gives {nvdec}) and the GPU preprocessing kernels read 4:2:0 only; run it with "
                              "device = 'cpu'")
    frames, end = _run_source(good, NvdecDecoding(0, cupy=fake_gpu.cupy))  # the other streams go on
    assert end.state == "ended" and len(frames) == 6


def test_frames_of_a_format_only_the_decoder_reveals_fail_the_stream_with_fake_pynvvideocodec(fake_gpu, tmp_path,
                                                                                               monkeypatch):
    """A stream whose pixel format PyAV did not know when it opened: NVDEC's YUV444 frames fail it."""
    bad = encode_clip(tmp_path / "yuv444p.mp4", pix_fmt="yuv444p")
    monkeypatch.setattr("vidinfer.sources.nvdec.pixel_format_problem", lambda pix_fmt: None)
    frames, end = _run_source(bad, NvdecDecoding(0, cupy=fake_gpu.cupy))
    assert frames == [] and end.state == "failed"
    assert end.reason == (f"{bad}: NVDEC gave YUV444 frames, and the GPU preprocessing kernels read 4:2:0 (NV12, "
                          "P016) only; run this stream with device = 'cpu'")


# --- 4. MPEG-4 part 2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("container", ["mp4", "matroska"])
def test_mpeg4_part2_from_mp4_and_mkv_decodes_with_its_vol_header_in_band_with_fake_pynvvideocodec(
        fake_gpu, tmp_path, container):
    path = encode_clip(tmp_path / "m4v", "mpeg4", "yuv420p", (64, 48), frames=12, fmt=container)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.extradata[:4] == b"\x00\x00\x01\xb0"  # VOS/VOL: out of band
    frames = _decode_all(NvdecDecoding(0, cupy=fake_gpu.cupy), path)
    assert len(frames) == 12 and all((w, h) == (64, 48) for _, _, w, h in frames)


# --- 5. Odd sizes ------------------------------------------------------------------------------------

def test_odd_sized_vp9_frames_keep_their_size_last_row_and_column_with_fake_pynvvideocodec(fake_gpu, tmp_path):
    """97x61: NVDEC rounds the rows up to 98 and its DLPack view drops the last chroma row; the
    frame handed on is 97x61 with every luma and chroma sample the software decoder gives."""
    path = encode_clip(tmp_path / "odd.webm", "libvpx-vp9", "yuv420p", (97, 61))
    frames = _decode_all(NvdecDecoding(0, cupy=fake_gpu.cupy), path)
    with av.open(str(path)) as c:
        want = list(c.decode(video=0))
    assert len(frames) == len(want) == 6
    for (nv12, _, w, h), ref in zip(frames, want):
        assert (w, h) == (97, 61) and nv12.shape == (61 + 31, 98)
        y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in ref.planes)
        a = np.asarray(nv12)
        assert np.array_equal(a[:61, :97], y)
        assert np.array_equal(a[61:, 0::2], u) and np.array_equal(a[61:, 1::2], v)  # 31 rows of 49 pairs


# --- 6. A GPU other than 0 -------------------------------------------------------------------------------

def test_source_thread_decodes_on_gpu_1_with_fake_two_gpu_cupy_and_pynvvideocodec(fake_gpu):
    """The strategy is built on the pipeline's thread, used on a source thread whose current device
    is 0 (CUDA's is per thread): its stream and decoder are GPU 1's and it decodes there."""
    cp = fake_gpu.cupy
    decoding = NvdecDecoding(1, cupy=cp)
    result: dict = {}

    def source_thread():
        try:
            result["frames"] = _decode_all(decoding, CLIPS / "shapes_a.mp4")
        except Exception as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=source_thread)
    t.start()
    t.join(60)
    assert "error" not in result, result.get("error")
    assert len(result["frames"]) == 100
    assert [kw["gpuid"] for kw in fake_gpu.nvc.created] == [1]
    assert decoding._stream.device_id == 1


def test_frames_are_device_nv12_with_the_codecs_chroma_siting_with_fake_pynvvideocodec(fake_gpu, tmp_path):
    for path, siting in ((CLIPS / "shapes_a.mp4", "left"),
                         (encode_clip(tmp_path / "c.webm", "libvpx-vp9", "yuv420p", (64, 48)), "center")):
        decoding = NvdecDecoding(0, cupy=fake_gpu.cupy)
        nv12, _, w, h = _decode_all(decoding, path)[0]
        image, _ = decoding.image(nv12, SimpleNamespace(src_w=w, src_h=h))
        assert isinstance(image, DeviceNV12) and image.chroma_siting == siting
