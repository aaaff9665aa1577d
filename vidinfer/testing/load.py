"""Many streams at once for a while: queues stay bounded, memory stays flat, every result arrives.

Used by tests/test_load.py (a short run) and tools/load_test.py (64 streams for 5 minutes).
Each stream is a sample clip paced like a camera (``realtime``) and played ``loop`` times, so it
ends by itself and its complete result count is known in advance. At 1 analysed frame per second
the clips' keyframe interval (1 s) lets ``keyframes_only`` skip decoding everything else, as a
deployment analysing at that rate would.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidinfer.config import parse_pipeline
from vidinfer.publish.subscriber import Subscriber

__all__ = ["LoadResult", "run_load"]

REPO = Path(__file__).resolve().parents[2]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@dataclass
class LoadResult:
    streams: int
    seconds: float
    elapsed_s: float
    expected_per_stream: int
    received: dict[str, int]
    gaps: int
    ended: int
    max_queue_depth: int
    queue_size: int
    dropped: int
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (t, MB)

    @property
    def complete(self) -> bool:
        return (self.ended == self.streams and self.gaps == 0 and self.dropped == 0
                and all(n == self.expected_per_stream for n in self.received.values()))

    @property
    def memory_growth(self) -> float:
        """RSS at the end over RSS once every stream is running (after the first fifth), minus 1."""
        if len(self.rss_mb) < 3:
            return 0.0
        settled = [m for t, m in self.rss_mb if t >= self.elapsed_s / 5] or [self.rss_mb[-1][1]]
        return settled[-1] / settled[0] - 1

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "received"},
                "complete": self.complete, "memory_growth": round(self.memory_growth, 4),
                "min_received": min(self.received.values()), "max_received": max(self.received.values())}


def run_load(streams: int = 64, seconds: float = 300.0, sample_fps: float = 1.0,
             clip: str = "sample_streams/shapes_a.mp4", clip_seconds: float = 4.0, queue_size: int = 4,
             sample_every_s: float = 5.0, keyframes_only: bool = True) -> LoadResult:
    """Run ``streams`` paced copies of ``clip`` for about ``seconds``; count what a subscriber gets."""
    plays = max(1, math.ceil(seconds / clip_seconds))
    per_pass = math.ceil(clip_seconds * sample_fps)
    endpoint = _free_endpoint()
    config = parse_pipeline({
        "name": "load",
        "max_batch_size": 16, "max_delay_ms": 50,
        "streams": [{"id": f"s{i:03d}", "url": str(REPO / clip), "realtime": True, "loop": plays,
                     "sample_fps": sample_fps, "queue_size": queue_size, "keyframes_only": keyframes_only}
                    for i in range(streams)],
        "stages": [{"type": "detect", "model": str(REPO / "models/shapes/detector.onnx"),
                    "labels_file": str(REPO / "models/shapes/labels.txt"), "conf_threshold": 0.5}],
        "sinks": [{"type": "zmq", "endpoint": endpoint, "wait_for_subscribers": 1, "sndhwm": 100000}],
    })
    received: dict[str, int] = {s.id: 0 for s in config.streams}
    ended: set[str] = set()
    sub = Subscriber(endpoint, topics=["det."])
    done = threading.Event()

    def consume() -> None:
        while not done.is_set() or len(ended) < streams:
            msg = sub.recv(timeout=1.0)
            if msg is None:
                if done.is_set():
                    return
                continue
            if msg.kind == "detections":
                received[msg.stream_id] += 1
            elif msg.kind == "end_of_stream":
                ended.add(msg.stream_id)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    pipeline = config.build()
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(sample_every_s):
            rss.append((round(time.monotonic() - started, 1), round(_rss_mb(), 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    report = pipeline.run()
    elapsed = time.monotonic() - started
    sampler_stop.set()
    done.set()
    consumer.join(30)
    sub.close()
    return LoadResult(streams, seconds, round(elapsed, 1), plays * per_pass, received, sub.gaps, len(ended),
                      max(q.max_depth for q in pipeline.batcher.queues), queue_size,
                      sum(s.frames_dropped for s in report.streams.values()), rss)
