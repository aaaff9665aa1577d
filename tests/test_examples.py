"""The compositions in examples/, run as a user runs them, their output checked: zone counts
against the clip's ground truth and against the boxes published beside them, and a user's SQLite
sink read back equal to what went out on ZeroMQ."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from ground_truth import REPO, load_gt
from test_pipeline_e2e import free_endpoint
from vidinfer.publish import Subscriber

EXAMPLES = REPO / "examples"


def run_example(script, *args, endpoint):
    """Run an example in its own process while a subscriber collects every message it publishes."""
    with Subscriber(endpoint) as sub:
        done = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args, "--endpoint", endpoint,
                                 "--wait-for-subscribers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)
        out, err = done.communicate(timeout=300)
        messages = list(sub.iter(timeout=1))
    assert done.returncode == 0, err
    return out, messages


def centre_zones(xyxy, width, height):
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 / width
    return {"left": int((cx < 0.5).sum()), "right": int((cx >= 0.5).sum())}


def test_zones_example_counts_both_detectors_layers_per_zone_and_publishes_its_own_messages():
    out, messages = run_example("zones.py", endpoint=free_endpoint())
    totals = json.loads(out.strip().splitlines()[-1])
    dets = {(m.stream_id, m.body["frame_no"]): m for m in messages if m.kind == "detections"}
    zones = {(m.stream_id, m.body["frame_no"]): m.body["counts"] for m in messages if m.kind == "zones"}
    meta = {m.stream_id: m.body for m in messages if m.kind == "metadata"}
    assert meta["shapes"]["classes"] == ["red", "green", "blue"]
    assert meta["shapes"]["layers"]["logo"]["classes"] == ["VOLTA", "NORDIC AIR", "KESTREL", "ORBIS", "PULSE"]
    assert set(zones) == set(dets) and len(dets) == 100 + 55  # one zones message per analysed frame
    for key, msg in dets.items():
        w, h = msg.body["width"], msg.body["height"]
        assert zones[key]["objects"] == centre_zones(msg.detections().xyxy, w, h), key
        assert zones[key]["logo"] == centre_zones(msg.detections("logo").xyxy, w, h), key
    # The shape clip: per frame exactly the ground truth's objects in each half, and no logo.
    gt = load_gt("shapes_a")
    for frame_no, objects in gt.items():
        boxes = np.asarray([o["box"] for o in objects], np.float32).reshape(-1, 4)
        assert zones[("shapes", frame_no)]["objects"] == centre_zones(boxes, 640, 360), frame_no
        assert zones[("shapes", frame_no)]["logo"] == {"left": 0, "right": 0}
    # The broadcast clip has logos on its boards, found on both sides of the frame.
    assert totals["match"]["logo"]["left"] > 0 and totals["match"]["logo"]["right"] > 0
    # The printed totals are the sums of the published messages.
    for sid in ("shapes", "match"):
        for layer in ("objects", "logo"):
            for zone in ("left", "right"):
                assert totals[sid][layer][zone] == sum(c[layer][zone] for (s, _), c in zones.items() if s == sid)


def test_zones_example_as_a_pipeline_file_gives_the_same_messages(tmp_path):
    endpoint = free_endpoint()
    toml = (EXAMPLES / "zones.toml").read_text().replace("tcp://127.0.0.1:5557", endpoint)
    toml = toml.replace('"../', f'"{REPO}/')
    path = EXAMPLES / f"zones-test-{tmp_path.name}.toml"  # beside zones.py, which it imports
    path.write_text(toml + "wait_for_subscribers = 1\n")
    try:
        with Subscriber(endpoint, topics=["zones."]) as sub:
            done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "run", str(path)], capture_output=True,
                                  text=True, timeout=300, cwd=tmp_path)
            messages = list(sub.iter(timeout=1))
    finally:
        path.unlink()
    assert done.returncode == 0, done.stderr
    gt = load_gt("shapes_a")
    got = {m.body["frame_no"]: m.body["counts"]["objects"] for m in messages if m.stream_id == "shapes"}
    assert sorted(got) == sorted(gt)
    for frame_no, objects in gt.items():
        boxes = np.asarray([o["box"] for o in objects], np.float32).reshape(-1, 4)
        assert got[frame_no] == centre_zones(boxes, 640, 360)


def test_sqlite_sink_example_stores_every_published_box_and_reads_the_counts_back(tmp_path):
    db = tmp_path / "detections.sqlite"
    out, messages = run_example("sqlite_sink.py", str(db), endpoint=free_endpoint())
    published: dict[str, int] = {}
    for m in messages:
        if m.kind == "detections":
            published[m.stream_id] = published.get(m.stream_id, 0) + m.body["count"]
    expected = {sid: sum(len(objs) for objs in load_gt(clip).values())
                for sid, clip in (("cam-a", "shapes_a"), ("cam-b", "shapes_b"))}
    assert published == expected
    assert json.loads(out.strip().splitlines()[-1]) == {sid: {"objects": n} for sid, n in published.items()}
    with sqlite3.connect(db) as con:  # the real database file, read by the test itself
        rows = dict(con.execute("SELECT stream_id, COUNT(*) FROM detections GROUP BY stream_id").fetchall())
        ends = {sid: (state, frames) for sid, state, _, frames in con.execute("SELECT * FROM stream_ends")}
        tracked = con.execute("SELECT COUNT(*) FROM detections WHERE track_id < 1").fetchone()[0]
        classes = {c for (c,) in con.execute("SELECT DISTINCT class_name FROM detections")}
    assert rows == published
    assert ends == {"cam-a": ("ended", 100), "cam-b": ("ended", 100)}
    assert tracked == 0 and classes <= {"red", "green", "blue"}


@pytest.mark.parametrize("script", ["zones.py", "sqlite_sink.py", "brand_impact.py"])
def test_every_example_says_what_it_does_and_how_to_run_it(script):
    text = (EXAMPLES / script).read_text()
    assert text.startswith('"""') and f"python examples/{script}" in text.split('"""')[1]
    assert script in (EXAMPLES / "README.md").read_text()
