"""`pipelines/brand_impact_live.toml` as shipped, on the broadcast clips paced like cameras (one
pass instead of looping forever): text is read every 2 s per stream on the background reader
(a new shot's first read on the pipeline's thread), held in between, and the exposure still
matches ground truth on the clip without occlusion."""

from __future__ import annotations

import json

from ground_truth import CLIPS, REPO
from test_pipeline_e2e import free_endpoint
from vidinfer import BrandExposure, CallbackSink, ReadText, ZmqSink
from vidinfer.analytics.brand_stage import SOURCE_LABELS
from vidinfer.config import load_pipeline


def test_live_pipeline_reads_text_in_the_background_and_holds_it(tmp_path):
    spec = load_pipeline(REPO / "pipelines" / "brand_impact_live.toml")
    text = spec.stage_of(ReadText)
    assert text.background and text.interval_s == 2.0
    for s in spec.streams:
        assert s.realtime and s.live and s.sample_fps == 2
        s.loop, s.max_reconnects = False, 0  # one pass of each 11-s clip, then the "camera" ends
    spec.stage_of(BrandExposure).report_dir = tmp_path / "report"
    spec.sink_of(ZmqSink).endpoint = free_endpoint()
    sources: dict[str, set[str]] = {}

    def on_frame(frame, layers):
        det = layers["brand"]
        sources.setdefault(frame.stream_id, set()).update(SOURCE_LABELS[k] for k in det.attributes["source"].label_id)

    spec.sinks.append(CallbackSink(on_frame=on_frame))
    pipe = spec.build()
    report = pipe.run()
    stage = pipe.stage("read_text")

    assert report.exit_code == 0
    for sid, s in report.streams.items():
        assert 20 <= s.frames_analysed <= 24 and s.frames_dropped == 0, (sid, s)  # 11 s at 2 fps, live
        assert {"logo", "text-held"} <= sources[sid]  # brand names held between reads
    # A stream's first read and the read after each cut (3 shots a clip) on the pipeline's thread,
    # as is one after a camera move too fast to measure; the rest on the reader thread, about one
    # per stream every 2 s.
    cuts = sum(len(json.loads((CLIPS / f"{c}.json").read_text())["cuts"]) for c in ("broadcast_a", "broadcast_b"))
    assert stage.reads - stage.background_reads >= 2 + cuts
    assert stage.background_reads >= 4 and stage.reads <= report.frames // 2
    assert report.latency_ms["p99"] < 2000

    clips = {"cam-a": "broadcast_a", "cam-b": "broadcast_b"}
    result = json.loads((tmp_path / "report" / "report.json").read_text())
    truth = json.loads((CLIPS / f"{clips['cam-a']}.json").read_text())["summary"]
    for b in result["streams"]["cam-a"]["brands"]:
        want = truth[b["brand"]]["visible_seconds"]
        assert abs(b["visible_s"] - want) <= 0.15 * want, (b["brand"], b["visible_s"], want)
