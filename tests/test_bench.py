"""`vidinfer bench`: it runs on a tiny configuration and writes every figure, consistent with itself.

Speed is measured by the benchmark, never asserted here: only structure and consistency.
"""

import json
import math
from pathlib import Path

import av

from vidinfer.cli import main

ROOT = Path(__file__).resolve().parent.parent


def write_tiny_pipeline(path: Path) -> Path:
    path.write_text(f"""
name = "tiny"
max_batch_size = 4
max_delay_ms = 20

[[streams]]
id = "a"
url = "{ROOT / 'sample_streams' / 'shapes_a.mp4'}"

[[streams]]
id = "b"
url = "{ROOT / 'sample_streams' / 'shapes_b.mp4'}"
sample_fps = 5

[[stages]]
type = "detect"
model = "{ROOT / 'models' / 'shapes' / 'detector.onnx'}"
labels_file = "{ROOT / 'models' / 'shapes' / 'labels.txt'}"
conf_threshold = 0.5

[[sinks]]
type = "zmq"
endpoint = "tcp://127.0.0.1:5999"
""")
    return path


def test_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    toml = write_tiny_pipeline(tmp_path / "tiny.toml")
    out = tmp_path / "bench"
    assert main(["-q", "bench", str(toml), "--quick", "--max-frames", "20", "--out", str(out)]) == 0
    r = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").stat().st_size > 0

    # Every rate is there and positive; the bounds follow from the rates of the same run.
    for stage in ("decode", "inference", "analysis", "pipeline", "hand_loop"):
        assert r["fps"][stage] > 0 and math.isfinite(r["fps"][stage]), stage
    bound = 1 / (1 / r["stages"]["decode"][0]["fps"] + 1 / r["stages"]["inference"][0]["fps"])
    assert math.isclose(r["serial_bound_fps"], bound, rel_tol=1e-3)
    assert r["serial_bound_fps"] < min(r["fps"]["decode"], r["fps"]["inference"])
    for name in ("pipeline_vs_serial_bound", "pipeline_vs_analysis_bound", "pipeline_vs_hand_loop"):
        assert r["ratios"][name] > 0, name
    assert math.isclose(r["ratios"]["pipeline_vs_hand_loop"], r["fps"]["pipeline"] / r["fps"]["hand_loop"],
                        rel_tol=1e-2)

    # Frames: clips cut at the first keyframe at or after 20 frames (the shape clips have one every
    # 25), all 25 analysed on stream a; sample_fps 5 of 25 fps keeps every 5th on stream b.
    frames = r["frames"]
    assert frames["expected_per_stream"] == {"a": 25, "b": 5}
    assert frames["pipeline_per_stream"] == frames["expected_per_stream"]
    assert frames["pipeline"] == frames["expected"] == frames["hand_loop"] == 30
    # Stream a decodes all 25; sampled stream b only its reference frames (B-frames skipped).
    with av.open(str(ROOT / "sample_streams" / "shapes_b.mp4")) as c:
        c.streams.video[0].codec_context.skip_frame = "NONREF"
        refs_b = sum(1 for f, _ in zip(c.decode(video=0), range(25)) if f.pts is not None and f.pts < 25 * 512)
    assert 5 <= refs_b < 25 and frames["decoded"] == 25 + refs_b

    # Latency, batching, memory.
    lat = r["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert r["max_delay_ms"] == 20 and r["max_batch_size"] == 4
    assert 1 <= r["mean_batch_size"] <= 4
    assert r["peak_rss_mb"]["process"] > 0 and r["peak_rss_mb"]["pipeline"] > 0
    assert r["streams"] == 2 and r["rounds"] == 1 and r["mode"] == "quick"
    assert r["machine"]["cores"] >= 1
