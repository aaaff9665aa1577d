"""Brand impact through the whole pipeline with logos only: detector classes mapped to brands,
tracked, measured, published live and reported. Uses the shape clips, whose ground truth says
exactly which "brand" (shape class) is on screen and how many distinct objects there are."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ground_truth import CLIPS, load_gt
from vidinfer.config import parse_pipeline
from vidinfer.publish import Subscriber
from vidinfer.testing.real_footage import count_appearances
from vidinfer.testing.shape_models import SHAPE_CLASSES, build_shape_detector
from test_pipeline_e2e import free_endpoint

BRANDS = [{"name": "RED CO", "logo_classes": ["red"]}, {"name": "GREEN LTD", "logo_classes": ["green"]},
          {"name": "BLUE INC", "logo_classes": ["blue"]}]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return build_shape_detector(tmp_path_factory.mktemp("m") / "detector.onnx")


def spec(detector, endpoint, report_dir, sample_fps=None):
    streams = [{"id": "cam-a", "url": str(CLIPS / "shapes_a.mp4")}, {"id": "cam-c", "url": str(CLIPS / "shapes_c.mp4")}]
    if sample_fps:
        for s in streams:
            s["sample_fps"] = sample_fps
    return parse_pipeline({
        "name": "brands", "streams": streams,
        "stages": [
            {"type": "detect", "layer": "logo", "model": str(detector), "classes": SHAPE_CLASSES,
             "conf_threshold": 0.5},
            {"type": "brand_exposure", "logos": "logo", "brands": BRANDS, "publish_interval_s": 1.0,
             "report_dir": str(report_dir), "segment_s": 2.0},  # logos only: no read_text stage
        ],
        "sinks": [{"type": "zmq", "endpoint": endpoint, "wait_for_subscribers": 1}],
    })


def expected(clip):
    """Visible seconds, distinct objects (tracks) and on-screen occurrences (appearances) per shape
    class in a clip's ground truth (the shape clips have no cuts)."""
    gt = load_gt(clip)
    fps = json.loads((CLIPS / f"{clip}.json").read_text())["fps"]
    frames = Counter(c for objs in gt.values() for c in {o["class_id"] for o in objs})
    objects = Counter(o["class_id"] for o in {o["id"]: o for objs in gt.values() for o in objs}.values())
    on_screen = {c: [n for n, objs in gt.items() if any(o["class_id"] == c for o in objs)] for c in range(3)}
    appearances = count_appearances(on_screen, [], fps)
    return {c: frames[c] / fps for c in range(3)}, {c: objects[c] for c in range(3)}, appearances


@pytest.mark.parametrize("sample_fps", [None, 5])
def test_brand_exposure_matches_ground_truth_live_and_in_the_report(detector, tmp_path, sample_fps):
    endpoint = free_endpoint()
    with Subscriber(endpoint, topics=["brand.", "det.cam-a."]) as sub:
        report = spec(detector, endpoint, tmp_path / "report", sample_fps).build().run()
        messages = list(sub.iter(timeout=2))
    assert report.exit_code == 0
    for sid, clip in (("cam-a", "shapes_a"), ("cam-c", "shapes_c")):
        seconds, objects, appearances = expected(clip)
        final = [m for m in messages if m.topic == f"brand.{sid}." and m.body["final"]]
        assert len(final) == 1
        brands = final[0].body["brands"]
        reported = report.section("brand_impact")["streams"][sid]["brands"]
        assert reported == brands  # the report says what was published
        segments = final[0].body["segments"]
        assert segments == report.section("brand_impact")["streams"][sid]["segments"]
        assert [g["segment"] for g in segments] == ["0-2 s", "2-4 s"]
        for c, b in enumerate(brands):  # the 2 s windows tile the clip
            assert sum(g["brands"][c]["visible_s"] for g in segments) == pytest.approx(b["visible_s"], abs=2e-3)
            assert sum(g["brands"][c]["appearances"] for g in segments) == b["appearances"]
        for c, b in enumerate(brands):
            assert b["brand"] == BRANDS[c]["name"]
            assert b["visible_s"] == pytest.approx(seconds[c], rel=0.1 if sample_fps else 0.01)
            assert b["tracks"] == objects[c], (sid, b)
            assert b["appearances"] == appearances[c], (sid, b)
            if b["visible_s"]:  # rendered shapes, measured on the decoded frames: sharp
                assert b["mean_clarity"] >= 0.7 and 0 < b["quality_s"] <= b["visible_s"], (sid, b)
        live = [m for m in messages if m.topic == f"brand.{sid}." and not m.body["final"]]
        assert [m.body["pts_ns"] for m in live] == [1_000_000_000, 2_000_000_000, 3_000_000_000]
    # Detections are in brand space, tracked, with their source.
    det = next(m for m in messages if m.kind == "detections")
    assert det.body["track_id"] is not None and (det.body["track_id"] > 0).all()
    assert (det.body["attributes"]["source"][0] == 0).all()
    assert [p.rsplit("/", 1)[-1] for p in report.report_files] == ["report.json", "appearances.csv",
                                                                   "exposure.png", "report.html"]
