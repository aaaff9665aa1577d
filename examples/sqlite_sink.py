"""A sink of your own: every detection of every layer into a SQLite database, then read back.

    python examples/sqlite_sink.py out/detections.sqlite

A sink is any object with ``open(ctx)``, ``write(batch)``, ``on_event(event)`` and ``close()``
(`vidinfer.Sink`). This one writes one row per box: stream, frame, time, layer, class name, score,
box and track id, one transaction per batch, and records each stream's end. The pipeline runs
the shape detector and the tracker over two sample clips and also publishes on ZeroMQ; at the end
the script queries the database and prints the boxes per stream and layer as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

import vidinfer as vi

REPO = Path(__file__).resolve().parent.parent

SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    stream_id TEXT NOT NULL, frame_no INTEGER NOT NULL, pts_ns INTEGER NOT NULL, layer TEXT NOT NULL,
    class_name TEXT NOT NULL, score REAL NOT NULL, x1 REAL, y1 REAL, x2 REAL, y2 REAL, track_id INTEGER
);
CREATE TABLE IF NOT EXISTS stream_ends (stream_id TEXT PRIMARY KEY, state TEXT, reason TEXT, frames INTEGER);
"""


class SqliteSink:
    """Every box of every layer as a row of ``detections``; every stream's end in ``stream_ends``."""

    pixels = vi.Pixels.NONE  # reads no pixels

    def __init__(self, path: str | Path, name: str = "sqlite"):
        self.path = Path(path)
        self.name: str | None = name
        self._db: sqlite3.Connection | None = None

    def open(self, ctx: vi.SinkContext) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(SCHEMA)
        self._classes = {name: schema.classes for name, schema in ctx.layers.items()}

    def write(self, batch: vi.Batch) -> None:
        assert self._db is not None
        rows: list[tuple[Any, ...]] = []
        for layer, per_frame in batch.items():
            names = self._classes[layer]
            for frame, det in zip(batch.frames, per_frame):
                # Columns to Python values once per frame, then one row per box for the database.
                x1, y1, x2, y2 = det.xyxy.T.tolist() if len(det) else ([], [], [], [])
                rows += [(frame.stream_id, frame.frame_no, frame.pts_ns, layer, names[c], s, a, b, c2, d, t)
                         for c, s, a, b, c2, d, t in zip(det.class_id.tolist(), det.score.tolist(), x1, y1, x2, y2,
                                                         det.track_id.tolist())]
        with self._db:  # one transaction per batch
            self._db.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def on_event(self, event: Any) -> None:
        if isinstance(event, vi.StreamEvent) and event.end_of_stream and self._db is not None:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO stream_ends VALUES (?, ?, ?, ?)",
                                 (event.stream_id, event.state.value, event.reason,
                                  event.info.get("frames_analysed", 0)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def boxes_per_stream(path: str | Path) -> dict[str, dict[str, int]]:
    """The query: boxes per stream and layer."""
    with sqlite3.connect(path) as db:
        out: dict[str, dict[str, int]] = {}
        for stream_id, layer, n in db.execute(
                "SELECT stream_id, layer, COUNT(*) FROM detections GROUP BY stream_id, layer ORDER BY stream_id"):
            out.setdefault(stream_id, {})[layer] = n
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5558")
    parser.add_argument("--wait-for-subscribers", type=int, default=0)
    args = parser.parse_args(argv)

    clips = REPO / "sample_streams"
    pipeline = vi.Pipeline(
        sources=[vi.StreamSpec(id="cam-a", url=str(clips / "shapes_a.mp4")),
                 vi.StreamSpec(id="cam-b", url=str(clips / "shapes_b.mp4"))],
        stages=[vi.Detect(model=REPO / "models/shapes/detector.onnx", labels_file=REPO / "models/shapes/labels.txt",
                          conf_threshold=0.5),
                vi.Track()],
        sinks=[vi.ZmqSink(endpoint=args.endpoint, wait_for_subscribers=args.wait_for_subscribers),
               SqliteSink(args.database)],
        name="sqlite-example",
    )
    report = pipeline.run()
    print(json.dumps(boxes_per_stream(args.database), sort_keys=True))
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
