"""HLS over HTTP: a playlist and MPEG-TS segments served from loopback, decoded like any stream."""

from __future__ import annotations

import functools
import http.server
import threading

import av
import pytest

from ground_truth import CLIPS, load_gt
from vidinfer.batching import Batcher
from vidinfer.config import StreamSpec
from vidinfer.frame import StreamState
from vidinfer.sources.base import DecodeHints
from vidinfer.sources.pyav import PyAVSource


def remux_to_hls(src, out_dir):
    """Stream-copy an MP4 into an HLS playlist of 1-second MPEG-TS segments (no re-encode)."""
    playlist = out_dir / "index.m3u8"
    with av.open(str(src)) as inp, av.open(str(playlist), "w", format="hls",
                                           options={"hls_time": "1", "hls_list_size": "0",
                                                    "hls_playlist_type": "vod"}) as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for packet in inp.demux(ins):
            if packet.dts is None:
                continue
            packet.stream = outs
            out.mux(packet)
    return playlist


@pytest.fixture
def hls_server(tmp_path):
    remux_to_hls(CLIPS / "shapes_a.mp4", tmp_path)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_hls_playlist_over_http_decodes_every_frame(hls_server):
    batcher = Batcher(8, 0)
    queue = batcher.add_stream("hls", 8, drop_oldest=False)
    spec = StreamSpec(id="hls", url=f"{hls_server}/index.m3u8", open_timeout_s=5, read_timeout_s=5)
    source = PyAVSource(spec)
    source.start(queue, DecodeHints(size=(640, 640), full_frames=False, decode_threads=0))
    frames, events = [], []
    while (collected := batcher.next_batch()) is not None:
        frames += collected.frames
        events += collected.events_before + collected.events_after
    source.join(5)
    gt = load_gt("shapes_a")
    assert [f.frame_no for f in frames] == sorted(gt)
    steps = {b.pts_ns - a.pts_ns for a, b in zip(frames, frames[1:])}
    assert steps == {40_000_000}  # 25 fps, monotonic across segment boundaries
    assert events[0].state is StreamState.CONNECTED and events[0].info["codec"] == "h264"
    assert events[-1].end_of_stream and events[-1].state is StreamState.ENDED
