"""Brand-impact accuracy against ground truth when text is read less often.

    python tools/text_interval_accuracy.py [--sample-fps 5 2] [--intervals 0 0.5 1 2] [--reference-frames-only auto]

Runs pipelines/brand_impact.toml on the two broadcast clips for every (sample_fps, read_text
interval_s) pair and prints, per pair, the text reads, the wall time and each
brand's visible-seconds error (%) and appearances against sample_streams/broadcast_*.json.
docs/brand-impact.md records its output.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vidinfer import BrandExposure, ReadText, ZmqSink
from vidinfer.config import load_pipeline

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"match-a": "broadcast_a", "match-b": "broadcast_b"}


def measure(sample_fps: float, interval_s: float, endpoint: str, reference_frames_only: bool | None) -> dict:
    spec = load_pipeline(REPO / "pipelines" / "brand_impact.toml")
    for s in spec.streams:
        s.sample_fps = sample_fps
        s.reference_frames_only = reference_frames_only
    spec.stage_of(ReadText).interval_s = interval_s
    spec.stage_of(BrandExposure).report_dir = None
    spec.sink_of(ZmqSink).endpoint = endpoint
    pipe = spec.build()
    t0 = time.perf_counter()
    report = pipe.run()
    text = pipe.stage("read_text")
    analytics = pipe.stage("brand_exposure").analytics
    out = {"sample_fps": sample_fps, "interval_s": interval_s, "reference_frames_only": reference_frames_only,
           "frames": report.frames, "reads": text.reads, "wall_s": round(time.perf_counter() - t0, 1)}
    for sid, clip in CLIPS.items():
        truth = json.loads((REPO / "sample_streams" / f"{clip}.json").read_text())["summary"]
        got = {b["brand"]: b for b in analytics.stream(sid).summary()}
        out[clip] = {name: {"visible_err_pct": round(100 * (got.get(name, {}).get("visible_s", 0.0)
                                                              - t["visible_seconds"]) / t["visible_seconds"], 1),
                            "appearances": got.get(name, {}).get("appearances", 0),
                            "appearances_truth": t["appearances"]} for name, t in truth.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample-fps", type=float, nargs="+", default=[5.0, 2.0])
    ap.add_argument("--intervals", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--reference-frames-only", choices=["false", "auto"], default="false",
                    help="false: decode every frame (the file's setting); auto: skip B-frames when sampling")
    args = ap.parse_args()
    ref_only = None if args.reference_frames_only == "auto" else False
    with tempfile.TemporaryDirectory() as tmp:
        for fps in args.sample_fps:
            for interval in args.intervals:
                if 0 < interval <= 1 / fps:
                    continue  # reads every analysed frame anyway
                row = measure(fps, interval, f"ipc://{tmp}/pub", ref_only)
                worst = {clip: max(row[clip].values(), key=lambda b: abs(b["visible_err_pct"]))["visible_err_pct"]
                         for clip in CLIPS.values()}
                print(json.dumps({**row, "worst_visible_err_pct": worst}))


if __name__ == "__main__":
    main()
