"""`vidinfer run pipelines/brand_impact.toml` as a user runs it, checked against the broadcast
clips' ground truth: visible seconds per brand within 10%, appearance counts exact on the clip
without occlusion, no brand reported that is not there, live figures on ZeroMQ, and the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ground_truth import CLIPS, REPO, brand_appearances
from test_pipeline_e2e import free_endpoint
from vidinfer.publish import Subscriber

PIPELINE = REPO / "pipelines" / "brand_impact.toml"
STREAMS = {"match-a": "broadcast_a", "match-b": "broadcast_b"}
OCCLUSION_FREE = {"match-a"}


def pipeline_copy(tmp_path, streams: dict[str, str] | None = None):
    """The shipped pipeline with absolute paths, its report in tmp_path, and optionally other clips."""
    text = PIPELINE.read_text().replace('"../', f'"{REPO}/')
    text = re.sub(r'report_dir = ".*"', f'report_dir = "{tmp_path / "report"}"', text)
    if streams:
        for sid, clip in zip(STREAMS, streams.values()):
            text = text.replace(f"sample_streams/{STREAMS[sid]}.mp4", f"sample_streams/{clip}.mp4")
    path = tmp_path / "brand_impact.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brand")
    endpoint = free_endpoint()
    with Subscriber(endpoint, topics=["brand."]) as sub:
        done = subprocess.Popen([sys.executable, "-m", "vidinfer", "run", str(pipeline_copy(tmp)),
                                 "--publish", endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = done.communicate(timeout=300)
        messages = list(sub.iter(timeout=1))
    return done.returncode, out, err, json.loads((tmp / "report" / "report.json").read_text()), messages, tmp


def ground_truth(clip):
    return json.loads((CLIPS / f"{clip}.json").read_text())["summary"]


@pytest.mark.parametrize("sid", STREAMS)
def test_visible_seconds_within_10_percent_and_no_absent_brand(run, sid):
    code, out, err, report, _, _ = run
    assert code == 0, err
    gt = ground_truth(STREAMS[sid])
    for b in report["streams"][sid]["brands"]:
        truth = gt.get(b["brand"], {"visible_seconds": 0.0})["visible_seconds"]
        if truth == 0:
            assert b["visible_s"] == 0, f"{sid}: {b['brand']} reported but not in the clip"
        else:
            assert abs(b["visible_s"] - truth) <= 0.1 * truth, (sid, b["brand"], b["visible_s"], truth)


def test_appearances_equal_ground_truth_without_occlusion(run):
    _, _, _, report, _, _ = run
    for sid in OCCLUSION_FREE:
        got = {b["brand"]: b["appearances"] for b in report["streams"][sid]["brands"]}
        assert got == brand_appearances(STREAMS[sid])


def test_live_updates_and_a_final_one_per_stream(run):
    _, _, _, report, messages, _ = run
    for sid in STREAMS:
        mine = [m for m in messages if m.topic == f"brand.{sid}."]
        assert [m.body["final"] for m in mine] == [False, False, True]  # at 5 s, 10 s, and the end
        assert [m.body["pts_ns"] for m in mine[:2]] == [5_000_000_000, 10_000_000_000]
        assert mine[-1].body["brands"] == report["streams"][sid]["brands"]


def test_terminal_table_and_report_files(run):
    _, out, _, report, _, tmp = run
    assert "Brand exposure: brand_impact" in out
    for name in ("VOLTA", "ORBIS"):
        assert re.search(rf"match-a\s*│\s*{name}\s*│\s*\d+\.\d", out), out
    assert f"report: {tmp / 'report' / 'report.json'}" in out
    assert (tmp / "report" / "exposure.png").read_bytes()[:4] == b"\x89PNG"
    assert {t["brand"] for t in report["totals"]} == {"VOLTA", "NORDIC AIR", "KESTREL", "ORBIS", "PULSE"}


def test_video_without_brands_reports_none(tmp_path):
    """The same pipeline on the shape clips (coloured rectangles, no lettering): nothing reported."""
    path = pipeline_copy(tmp_path, {"match-a": "shapes_a", "match-b": "shapes_b"})
    done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "run", str(path), "--publish", free_endpoint()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert all(b["visible_s"] == 0 and b["appearances"] == 0
               for s in report["streams"].values() for b in s["brands"])


def test_brand_impact_composed_in_python_gives_the_report_of_the_pipeline_file(run, tmp_path):
    """examples/brand_impact.py builds the same stages as pipelines/brand_impact.toml in code."""
    _, _, _, from_toml, _, _ = run
    done = subprocess.run([sys.executable, str(REPO / "examples" / "brand_impact.py"), "--report-dir",
                           str(tmp_path / "report"), "--endpoint", free_endpoint()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from_code = json.loads((tmp_path / "report" / "report.json").read_text())
    assert from_code["streams"] == from_toml["streams"]
    assert from_code["totals"] == from_toml["totals"]
    assert "Brand exposure: brand_impact" in done.stdout
    assert f"report: {tmp_path / 'report' / 'report.json'}" in done.stdout
