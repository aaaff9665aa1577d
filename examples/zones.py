"""Two detectors in one pipeline, and a function of your own: objects per zone of the frame.

    python examples/zones.py [--endpoint tcp://127.0.0.1:5557]
    vidinfer subscribe tcp://127.0.0.1:5557 --topic zones.      # in another terminal

The shape detector (layer "objects") and the project's logo detector (layer "logo") run on the
same batches of two streams; `count_per_zone`, a plain function made a stage, counts each layer's
boxes in each zone (by box centre) and publishes one `zones` message per frame on the topic
``zones.<stream>.``. The ZeroMQ sink publishes both layers of every frame: "objects" in the
detections body's own columns, "logo" under its ``layers`` key (docs/wire-format.md).

At the end it prints the totals per stream, zone and layer as one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

import vidinfer as vi

REPO = Path(__file__).resolve().parent.parent


class Zones(BaseModel):
    """The function's options: named zones as [x1, y1, x2, y2] fractions of the frame, and the
    layers whose boxes are counted. In TOML these are the stage table's own keys."""

    zones: dict[str, tuple[float, float, float, float]] = {"left": (0.0, 0.0, 0.5, 1.0),
                                                           "right": (0.5, 0.0, 1.0, 1.0)}
    layers: list[str] = ["objects", "logo"]


def zone_counts(xyxy: np.ndarray, width: int, height: int, zones: dict[str, tuple[float, ...]]) -> dict[str, int]:
    """How many boxes have their centre in each zone: one vectorised test per zone."""
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2 / np.float32([width, height])
    out = {}
    for zone, (x1, y1, x2, y2) in zones.items():
        inside = (centre[:, 0] >= x1) & (centre[:, 0] < x2) & (centre[:, 1] >= y1) & (centre[:, 1] < y2)
        out[zone] = int(inside.sum())
    return out


@vi.stage(pixels="none", options=Zones)  # boxes only: a GPU backend copies no pixels for it
def count_per_zone(batch: vi.Batch, ctx: vi.StageContext) -> None:
    opts: Zones = ctx.options
    for i, frame in enumerate(batch.frames):
        counts = {layer: zone_counts(batch[layer][i].xyxy, frame.width, frame.height, opts.zones)
                  for layer in opts.layers}
        ctx.emit("zones", frame.stream_id, {"frame_no": frame.frame_no, "pts_ns": frame.pts_ns, "counts": counts})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5557")
    parser.add_argument("--wait-for-subscribers", type=int, default=0)
    args = parser.parse_args(argv)

    totals: dict[str, Any] = {}

    def add_up(event: Any) -> None:  # the zones messages, as every sink sees them
        if isinstance(event, vi.StageMessage) and event.kind == "zones":
            mine = totals.setdefault(event.stream_id, {})
            for layer, zones in event.body["counts"].items():
                for zone, n in zones.items():
                    mine.setdefault(layer, {}).setdefault(zone, 0)
                    mine[layer][zone] += n

    clips = REPO / "sample_streams"
    pipeline = vi.Pipeline(
        sources=[vi.StreamSpec(id="shapes", url=str(clips / "shapes_a.mp4")),
                 vi.StreamSpec(id="match", url=str(clips / "broadcast_a.mp4"), sample_fps=5)],
        stages=[
            vi.Detect(model=REPO / "models/shapes/detector.onnx", labels_file=REPO / "models/shapes/labels.txt",
                      conf_threshold=0.5, layer="objects"),
            vi.Detect(model=REPO / "models/logos/detector.onnx", labels_file=REPO / "models/logos/labels.txt",
                      conf_threshold=0.5, iou_threshold=0.5, layer="logo"),
            count_per_zone.with_options(zones={"left": (0, 0, 0.5, 1), "right": (0.5, 0, 1, 1)}),
        ],
        sinks=[vi.ZmqSink(endpoint=args.endpoint, layers=["objects", "logo"],
                          wait_for_subscribers=args.wait_for_subscribers),
               vi.CallbackSink(on_event=add_up)],
        name="zones", max_batch_size=8,
    )
    report = pipeline.run()
    print(json.dumps(totals, sort_keys=True))
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
