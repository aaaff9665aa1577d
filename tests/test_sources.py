"""PyAVSource on the sample clips, checked against their ground truth: frame numbers, timestamps,
sampling, looping, pacing, letterboxing, failures that end the stream instead of raising, HTTP
input and credentials that never leak."""

import functools
import http.server
import logging
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import vidinfer.sources.pyav as pyav_source
from vidinfer.batching import Batcher
from vidinfer.config import StreamSpec
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.sources import PyAVSource, redact_url
from vidinfer.sources.base import DecodeHints
from vidinfer.testing.synthetic import load_ground_truth

STREAMS = Path(__file__).resolve().parents[1] / "sample_streams"
CLIP_A = STREAMS / "shapes_a.mp4"
CLIP_1080 = STREAMS / "shapes_1080p.mp4"
INPUT_SIZE = (640, 640)
SECOND = 1_000_000_000


class Run:
    """What one source put on its queue, in order, and when each frame arrived."""

    def __init__(self, items, arrivals):
        self.items = items
        self.frames = [i for i in items if isinstance(i, Frame)]
        self.events = [i for i in items if isinstance(i, StreamEvent)]
        self.arrivals = arrivals  # monotonic seconds since start, per frame

    @property
    def end(self):
        return self.events[-1]

    def states(self):
        return [e.state for e in self.events]


def run_source(url, stop_after=None, input_size=INPUT_SIZE, timeout_s=30.0, **options):
    """Run a PyAVSource into a Batcher until end of stream.

    ``stop_after``: stop the source after this many frames, or once this predicate of the items
    so far is true.
    """
    batcher = Batcher(max_batch_size=16, max_delay_ms=0)
    queue = batcher.add_stream("cam", capacity=8, drop_oldest=False)
    source = PyAVSource(StreamSpec(id="cam", url=str(url), **options))
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout_s, lambda: (timed_out.set(), source.stop(), batcher.stop()))
    watchdog.start()
    items, arrivals = [], []
    started = time.monotonic()
    source.start(queue, DecodeHints(size=input_size, full_frames=False, decode_threads=0))
    try:
        while (collected := batcher.next_batch()) is not None:
            for item in collected.events_before + collected.frames + collected.events_after:
                items.append(item)
                if isinstance(item, Frame):
                    arrivals.append(time.monotonic() - started)
                    if isinstance(stop_after, int) and len(arrivals) >= stop_after:
                        source.stop()
                if callable(stop_after) and stop_after(items):
                    source.stop()
    finally:
        source.stop()
        watchdog.cancel()
        source.join(10)
    assert not timed_out.is_set(), f"the stream did not end within {timeout_s} s"
    assert not source.alive
    run = Run(items, arrivals)
    # Every run ends with exactly one end-of-stream event, and it is the last thing on the queue.
    assert [e.end_of_stream for e in run.events].count(True) == 1
    assert run.items[-1] is run.end and run.end.end_of_stream
    return run


def expected_pts_ns(gt, frame_no):
    tb = Fraction(*gt["time_base"])
    return int(gt["frames"][frame_no]["pts"] * tb * SECOND)


def assert_matches_ground_truth(frame, gt_frame, scale):
    """The decoded image shows each ground-truth object in its class colour at its centre."""
    for obj in gt_frame["objects"]:
        x1, y1, x2, y2 = obj["box"]
        cx, cy = int((x1 + x2) / 2 * scale), int((y1 + y2) / 2 * scale)
        pixel = frame.image[cy, cx].astype(int)
        assert int(np.argmax(pixel)) == obj["class_id"], (frame.frame_no, obj, pixel.tolist())


# ---------------------------------------------------------------- files


def test_file_gives_every_frame_in_order_with_ground_truth_timestamps():
    gt = load_ground_truth(CLIP_A)
    run = run_source(CLIP_A)
    assert run.states() == [StreamState.CONNECTED, StreamState.ENDED]
    assert run.events[0].info == {"width": 640, "height": 360, "fps": 25.0, "codec": "h264", "live": False,
                                  "url": str(CLIP_A)}
    assert (run.end.reason, run.end.info["frames_decoded"], run.end.info["frames_analysed"]) == \
        ("end of file", 100, 100)
    assert [f.frame_no for f in run.frames] == list(range(100))
    assert [f.pts_ns for f in run.frames] == [expected_pts_ns(gt, i) for i in range(100)]
    assert not any(f.discontinuity for f in run.frames)
    for f in run.frames:
        assert f.stream_id == "cam" and f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8
        assert_matches_ground_truth(f, gt["frames"][f.frame_no], scale=1.0)


def test_sample_fps_keeps_every_fifth_frame_of_a_25_fps_clip():
    gt = load_ground_truth(CLIP_A)
    run = run_source(CLIP_A, sample_fps=5, reference_frames_only=False)
    assert [f.frame_no for f in run.frames] == list(range(0, 100, 5))
    assert [f.pts_ns for f in run.frames] == [expected_pts_ns(gt, i) for i in range(0, 100, 5)]
    assert (run.end.state, run.end.info["frames_decoded"], run.end.info["frames_analysed"]) == \
        (StreamState.ENDED, 100, 20)
    for f in run.frames:
        assert_matches_ground_truth(f, gt["frames"][f.frame_no], scale=1.0)


def test_sampling_decodes_only_reference_frames_and_they_are_exact():
    """At sample_fps <= half the frame rate the decoder skips frames nothing refers to (B-frames);
    each tick then gets the first decoded frame at or after it, pixel-identical to a full decode."""
    gt = load_ground_truth(CLIP_A)
    with av.open(str(CLIP_A)) as c:
        kinds = [av.video.frame.PictureType(f.pict_type).name for f in c.decode(video=0)]
    full = {f.frame_no: f for f in run_source(CLIP_A, reference_frames_only=False).frames}
    run = run_source(CLIP_A, sample_fps=5)
    decoded = run.end.info["frames_decoded"]
    assert kinds.count("B") > 0 and decoded < 100 - kinds.count("B") // 2  # most B-frames skipped
    nos = [f.frame_no for f in run.frames]
    assert len(nos) == 20 and all(0 <= no - tick <= 3 for no, tick in zip(nos, range(0, 100, 5)))
    for f in run.frames:
        assert f.pts_ns == expected_pts_ns(gt, f.frame_no)  # its own time, not the tick's
        np.testing.assert_array_equal(f.image, full[f.frame_no].image)
        assert_matches_ground_truth(f, gt["frames"][f.frame_no], scale=1.0)


def test_keyframes_only_gives_the_keyframes_with_their_frame_numbers():
    gt = load_ground_truth(CLIP_A)
    assert [g["frame_no"] for g in gt["frames"] if g["keyframe"]] == [0, 25, 50, 75]
    run = run_source(CLIP_A, keyframes_only=True)
    assert [f.frame_no for f in run.frames] == [0, 25, 50, 75]
    assert [f.pts_ns for f in run.frames] == [expected_pts_ns(gt, i) for i in (0, 25, 50, 75)]
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "end of file")
    for f in run.frames:
        assert_matches_ground_truth(f, gt["frames"][f.frame_no], scale=1.0)


def test_loop_continues_frame_numbers_and_time_and_marks_each_new_pass():
    gt = load_ground_truth(CLIP_A)
    run = run_source(CLIP_A, loop=True, stop_after=230)
    n = len(run.frames)
    assert n >= 230
    assert [f.frame_no for f in run.frames] == list(range(n))
    # Pass k starts one frame period after pass k-1 ended: 100 frames of 40 ms = 4 s per pass.
    assert [f.pts_ns for f in run.frames] == [expected_pts_ns(gt, i % 100) + (i // 100) * 4 * SECOND
                                              for i in range(n)]
    assert [f.frame_no for f in run.frames if f.discontinuity] == [100, 200]
    for f in run.frames[95:105]:
        assert_matches_ground_truth(f, gt["frames"][f.frame_no % 100], scale=1.0)
    # Stopping still ends the stream with an end-of-stream event.
    assert run.states() == [StreamState.CONNECTED, StreamState.ENDED]
    assert (run.end.reason, run.end.info["frames_analysed"]) == ("stopped", n)


def test_loop_count_plays_the_file_that_many_times_then_ends():
    run = run_source(CLIP_A, loop=3, sample_fps=5, reference_frames_only=False)
    assert [f.frame_no for f in run.frames] == list(range(0, 300, 5))
    assert [f.frame_no for f in run.frames if f.discontinuity] == [100, 200]
    assert (run.end.state, run.end.reason, run.end.info["frames_decoded"]) == (StreamState.ENDED, "end of file", 300)
    # Decoding reference frames only, frames are still numbered by their place in the clip.
    run = run_source(CLIP_A, loop=3, sample_fps=5)
    assert all(0 <= f.frame_no - tick <= 3 for f, tick in zip(run.frames, range(0, 300, 5), strict=True))
    assert [f.frame_no for f in run.frames if f.discontinuity] == [100, 200]
    assert run.end.info["frames_decoded"] < 300


def test_loop_with_keyframes_only_numbers_frames_by_their_place_in_the_clip():
    run = run_source(CLIP_A, loop=True, keyframes_only=True, stop_after=9)
    n = len(run.frames)
    assert [f.frame_no for f in run.frames] == [25 * i for i in range(n)]
    assert [f.pts_ns for f in run.frames] == [i * SECOND for i in range(n)]
    assert [f.frame_no for f in run.frames if f.discontinuity] == [100, 200][:(n - 1) // 4]
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "stopped")


def test_realtime_releases_frames_no_faster_than_their_timestamps():
    # 5 frames sampled at 5 fps span 0.8 s of stream time: 0, 0.2, 0.4, 0.6, 0.8 s.
    run = run_source(CLIP_A, realtime=True, sample_fps=5, stop_after=5, reference_frames_only=False)
    assert [f.frame_no for f in run.frames[:5]] == [0, 5, 10, 15, 20]
    assert run.arrivals[4] >= 0.75  # lower bound only: a busy machine may be slower, never faster
    assert run.arrivals[4] - run.arrivals[0] >= 0.75
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "stopped")


def test_1080p_clip_is_letterboxed_into_the_detector_input():
    gt = load_ground_truth(CLIP_1080)
    run = run_source(CLIP_1080)
    assert len(run.frames) == 75
    box = run.frames[0].letterbox
    assert box == Letterbox(src_w=1920, src_h=1080, dst_w=640, dst_h=640, new_w=640, new_h=360, pad_x=0, pad_y=140)
    assert all(f.letterbox == box and f.image.shape == (360, 640, 3) for f in run.frames)
    assert (run.frames[0].width, run.frames[0].height) == (1920, 1080)
    for f in run.frames[::10]:
        assert_matches_ground_truth(f, gt["frames"][f.frame_no], scale=1 / 3)


# ---------------------------------------------------------------- inputs that cannot be read


def test_missing_file_ends_the_stream_as_failed_without_raising(tmp_path):
    path = tmp_path / "nothere.mp4"
    run = run_source(path)
    assert run.frames == [] and run.states() == [StreamState.FAILED]
    assert run.end.reason == f"file '{path}' does not exist; check the stream's url"


def _write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_file_without_video_stream_fails_with_that_reason(tmp_path):
    path = _write_audio_only(tmp_path / "audio.m4a")
    run = run_source(path)
    assert run.frames == [] and run.states() == [StreamState.FAILED]
    assert run.end.reason == f"{path} has no video stream"


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 40], ids=["empty", "garbage"])
def test_file_that_is_not_video_fails_with_a_reason(tmp_path, content):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    run = run_source(path)
    assert run.frames == [] and run.states() == [StreamState.FAILED]
    assert run.end.reason == (f"cannot open {path}: [Errno 1094995529] Invalid data found when processing "
                              f"input: '{path}'")


# ---------------------------------------------------------------- network


@pytest.fixture(scope="module")
def http_server():
    """sample_streams/ served on a loopback port (credentials in the URL are ignored)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(STREAMS)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_http_url_decodes_every_frame(http_server):
    gt = load_ground_truth(CLIP_A)
    url = f"http://{http_server}/shapes_a.mp4"
    run = run_source(url)
    assert run.events[0].state is StreamState.CONNECTED and run.events[0].info["url"] == url
    assert run.events[0].info["live"] is False
    assert [f.frame_no for f in run.frames] == list(range(100))
    assert [f.pts_ns for f in run.frames] == [expected_pts_ns(gt, i) for i in range(100)]
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "end of file")


@pytest.mark.parametrize("url, expected", [
    ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://admin@10.0.0.5/stream1", "rtsp://***@10.0.0.5/stream1"),
    ("rtsp://admin:p@ss@10.0.0.5/s?x=1", "rtsp://***@10.0.0.5/s?x=1"),
    ("http://example.com/a.m3u8?user=a@b", "http://example.com/a.m3u8?user=a@b"),
    ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
    ("/videos/a@b.mp4", "/videos/a@b.mp4"),
])
def test_redact_url_hides_user_and_password_only(url, expected):
    assert redact_url(url) == expected


def test_credentials_are_redacted_in_the_connected_event(http_server):
    run = run_source(f"http://viewer:s3cret@{http_server}/shapes_a.mp4", keyframes_only=True)
    connected = run.events[0]
    assert connected.state is StreamState.CONNECTED
    assert connected.info["url"] == f"http://***@{http_server}/shapes_a.mp4"
    assert len(run.frames) == 4 and run.end.state is StreamState.ENDED


def test_unreachable_camera_fails_without_leaking_its_password(caplog):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"rtsp://viewer:s3cret@127.0.0.1:{port}/stream"
    with caplog.at_level(logging.DEBUG):
        run = run_source(url, live=True, reconnect=False, open_timeout_s=2, timeout_s=20)
    assert run.frames == [] and run.states() == [StreamState.FAILED]
    reason = run.end.reason
    assert reason.startswith(f"cannot open rtsp://***@127.0.0.1:{port}/stream") or \
        reason.startswith(f"no answer from rtsp://***@127.0.0.1:{port}/stream"), reason
    assert "s3cret" not in reason and "viewer" not in reason
    assert "s3cret" not in caplog.text


def test_server_that_stalls_mid_file_fails_on_read_timeout_without_leaking_the_password(caplog):
    data = CLIP_A.read_bytes()
    release = threading.Event()

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the first half of the file, then nothing
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            release.wait(30)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_port}"
        with caplog.at_level(logging.DEBUG):
            run = run_source(f"http://viewer:s3cret@{host}/a.mp4", read_timeout_s=0.5, timeout_s=20)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert 0 < len(run.frames) < 100
    assert [f.frame_no for f in run.frames] == list(range(len(run.frames)))
    assert run.states() == [StreamState.CONNECTED, StreamState.FAILED]
    assert run.end.reason == f"read error: [Errno 1414092869] Immediate exit requested: 'http://***@{host}/a.mp4'"
    assert "s3cret" not in caplog.text


# ---------------------------------------------------------------- live inputs that end


def test_live_stream_that_ends_with_reconnect_off_ends_once():
    run = run_source(CLIP_A, live=True, reconnect=False, keyframes_only=True)
    assert run.states() == [StreamState.CONNECTED, StreamState.ENDED]
    assert run.end.reason == "stream ended"
    assert [f.frame_no for f in run.frames] == [0, 25, 50, 75]


def test_live_stream_reconnects_and_its_timeline_never_goes_back(monkeypatch):
    monkeypatch.setattr(pyav_source, "BACKOFF_START_S", 0.01)
    run = run_source(CLIP_A, live=True, keyframes_only=True, stop_after=6)
    states = run.states()
    assert states[:3] == [StreamState.CONNECTED, StreamState.RECONNECTING, StreamState.CONNECTED]
    assert run.events[1].reason.startswith("stream ended; retrying in ")
    n = len(run.frames)
    assert [f.frame_no for f in run.frames] == [25 * i for i in range(n)]
    assert [f.pts_ns for f in run.frames] == [i * SECOND for i in range(n)]
    assert [f.frame_no for f in run.frames if f.discontinuity] == [100, 200][:(n - 1) // 4]
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "stopped")


def test_camera_that_stays_down_is_retried_past_a_thousand_attempts(monkeypatch):
    # Backoff doubles per failed attempt up to reconnect_max_s; hours of downtime mean thousands
    # of attempts, and attempt 1024 once overflowed the float and failed the stream for good.
    monkeypatch.setattr(pyav_source, "BACKOFF_START_S", 1e-4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/stream"
    run = run_source(url, reconnect_max_s=0.001, stop_after=lambda items: len(items) > 1100)
    retries = [e for e in run.events if e.state is StreamState.RECONNECTING]
    assert len(retries) > 1100
    assert all(e.reason.startswith(f"cannot open {url}: ") and e.reason.endswith("; retrying in 0.0 s")
               for e in retries)
    assert [e.info["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert (run.end.state, run.end.reason) == (StreamState.ENDED, "stopped")
