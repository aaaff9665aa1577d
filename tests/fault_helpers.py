"""Damaged inputs made from the sample clips, silent servers, and pipeline files for the fault tests."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

import av
import numpy as np

from ground_truth import CLIPS
from helpers import shapes_pipeline

CLIP_A = CLIPS / "shapes_a.mp4"


def truncated(path: Path) -> Path:
    """The first half of shapes_a.mp4: the index says 100 frames, the data stops in the middle."""
    data = CLIP_A.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bit_flipped(path: Path, flips: int = 200, seed: int = 1) -> Path:
    """shapes_a.mp4 with bits flipped in its middle half (the container header stays intact)."""
    data = bytearray(CLIP_A.read_bytes())
    rnd = random.Random(seed)
    for _ in range(flips):
        i = rnd.randrange(len(data) // 4, 3 * len(data) // 4)
        data[i] ^= 1 << rnd.randrange(8)
    path.write_bytes(bytes(data))
    return path


def unknown_codec(path: Path) -> Path:
    """shapes_a.mp4 with its codec tag 'avc1' replaced by one no FFmpeg decoder knows."""
    path.write_bytes(CLIP_A.read_bytes().replace(b"avc1", b"zzzz"))
    return path


def enormous(path: Path, width: int = 8192, height: int = 8192) -> Path:
    """One black H.264 frame of width x height (67 million pixels, twice 8K UHD)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        for p in s.encode(frame.reformat(format="yuv420p")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def close(self):
        self._sock.close()
        for c in self._conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pipeline(path: Path, models: Path, endpoint: str, streams: dict[str, dict], sink_keys: str = "",
                   extra: str = "") -> Path:
    """A pipeline file with the shape detector and shade classifier; ``streams``: id -> stream keys."""
    return shapes_pipeline(path, models, endpoint, streams, "faults", sink_keys, extra)
