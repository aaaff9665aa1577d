"""End-to-end GPU pipeline check: device = "gpu" over the shape clips, boxes against ground truth.

Run by tools/gpu_check.sh on a machine with an NVIDIA GPU (installs nothing). Prints one JSON line:
the device plan per stage, frames per stream, boxes matched within 2 px, the worst box error, the
first mismatches and the run's time. Exit 0 only when every frame of every stream was published
and every box matched; 2 when the GPU backend cannot be had here (the reason is printed).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from ground_truth import CLIPS, assert_matches_gt, load_gt

import vidinfer as vi
from vidinfer.config import GpuSpec, StreamSpec
from vidinfer.errors import ConfigError
from vidinfer.testing.shape_models import SHADE_LABELS

STREAMS = {"cam-a": "shapes_a", "cam-b": "shapes_b", "cam-c": "shapes_c", "cam-d": "shapes_d",
           "pitch": "shapes_1080p"}


def main() -> int:
    models = REPO / "models" / "shapes"
    results: dict[str, list] = {sid: [] for sid in STREAMS}
    started = time.monotonic()
    try:
        # Nothing is published: a callback sink keeps each frame's boxes (with their shade).
        pipeline = vi.Pipeline(
            sources=[StreamSpec(id=sid, url=str(CLIPS / f"{clip}.mp4")) for sid, clip in STREAMS.items()],
            stages=[vi.Detect(model=models / "detector.onnx", labels_file=models / "labels.txt",
                              conf_threshold=0.5, iou_threshold=0.5),
                    vi.Classify(name="shade", model=models / "shade.onnx", labels=SHADE_LABELS)],
            sinks=[vi.CallbackSink(on_frame=lambda f, layers: results[f.stream_id].append((f.frame_no,
                                                                                           layers["objects"])))],
            name="gpu-check", device="gpu", max_batch_size=8, max_delay_ms=20,
            gpu=GpuSpec(engine_cache_dir=Path(tempfile.mkdtemp(prefix="vidinfer-engines-"))))
    except ConfigError as exc:
        print(json.dumps({"check": "gpu_pipeline", "ok": False, "error": str(exc)}))
        return 2
    built_s = time.monotonic() - started
    report = pipeline.run()
    out = {"check": "gpu_pipeline", "device": report.device, "stages": report.backends,
           "build_s": round(built_s, 2), "run_s": report.elapsed_s, "frames": report.frames,
           "mean_batch": round(report.mean_batch_size, 2), "latency_ms": report.latency_ms, "streams": {}}
    ok = report.device == "gpu" and report.exit_code == 0
    for sid, clip in STREAMS.items():
        gt = load_gt(clip)
        got = results[sid]
        matched, worst, errors = 0, 0.0, []
        for frame_no, det in got:
            objects = gt.get(frame_no, [])
            try:
                assert_matches_gt(det.xyxy, det.class_id, objects, tol_px=2.0,
                                  shade=(det.attributes["shade"].label_id, SHADE_LABELS), where=f"{sid} {frame_no}")
                matched += 1
            except AssertionError as exc:
                errors.append(str(exc).splitlines()[0])
            for obj in objects:
                same = det.xyxy[det.class_id == obj["class_id"]]
                if len(same):
                    worst = max(worst, float(np.abs(same - np.asarray(obj["box"])).max(axis=1).min()))
        complete = [f for f, _ in got] == sorted(gt)
        ok = ok and complete and matched == len(gt)
        out["streams"][sid] = {"frames": len(got), "expected": len(gt), "frames_matched": matched,
                               "worst_box_error_px": round(worst, 2), "state": report.streams[sid].state,
                               "decoder_recreations": report.streams[sid].decoder_recreations,
                               "first_errors": errors[:3]}
    out["ok"] = ok
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
