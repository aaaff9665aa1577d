"""The whole pipeline over several streams, from TOML and from Python, to a subscriber in another
process over real ZeroMQ sockets; results checked against the clips' ground truth."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from ground_truth import CLIPS, REPO, assert_matches_gt, load_gt
from helpers import shapes_pipeline
from vidinfer import CallbackSink, load_pipeline
from vidinfer.publish import Subscriber
from vidinfer.testing.shape_models import SHADE_LABELS, SHAPE_CLASSES

STREAMS = {"cam-a": "shapes_a", "cam-b": "shapes_b", "cam-c": "shapes_c", "cam-d": "shapes_d",
           "pitch": "shapes_1080p"}


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def write_pipeline(path: Path, models: Path, endpoint: str, streams=STREAMS) -> Path:
    """The shapes pipeline (detector, shade classifier, ZeroMQ sink) over sample clips: id -> clip."""
    return shapes_pipeline(path, models, endpoint, {sid: {"url": f"{CLIPS / clip}.mp4"} for sid, clip in streams.items()},
                           name="e2e")


def collect_until_all_ended(sub: Subscriber, stream_ids, timeout=120.0):
    """Every message until each stream's end of stream has arrived."""
    messages, ended = [], set()
    while ended != set(stream_ids):
        msg = sub.recv(timeout=timeout)
        assert msg is not None, f"no message for {timeout} s; ended so far: {sorted(ended)}"
        messages.append(msg)
        if msg.kind == "end_of_stream":
            ended.add(msg.stream_id)
    return messages


def check_results(messages, streams=STREAMS):
    """Per stream: one detections message per frame, gap-free sequence, end last, boxes and shades right."""
    meta = {m.stream_id: m.body for m in messages if m.kind == "metadata"}
    for sid, clip in streams.items():
        gt = load_gt(clip)
        assert meta[sid]["classes"] == SHAPE_CLASSES and meta[sid]["attributes"]["shade"] == SHADE_LABELS
        on_topic = [m for m in messages if m.topic == f"det.{sid}."]
        dets, end = on_topic[:-1], on_topic[-1]
        assert end.kind == "end_of_stream" and end.body["state"] == "ended", end.body
        assert all(m.kind == "detections" for m in dets)
        assert [m.body["frame_no"] for m in dets] == sorted(gt), f"{sid}: frames missing or repeated"
        assert [m.seq for m in on_topic] == list(range(len(on_topic))), f"{sid}: sequence has gaps"
        assert end.body["frames_analysed"] == len(gt)
        for m in dets:
            b = m.body
            assert_matches_gt(b["xyxy"], b["class_id"], gt[b["frame_no"]],
                              shade=(b["attributes"]["shade"][0], SHADE_LABELS), where=f"{sid} frame {b['frame_no']}")


def test_toml_pipeline_in_child_process_publishes_every_frame_to_subscriber(models, tmp_path):
    endpoint = free_endpoint()
    toml = write_pipeline(tmp_path / "e2e.toml", models, endpoint)
    report_path = tmp_path / "report.json"
    with Subscriber(endpoint) as sub:
        child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml), "--report", str(report_path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            messages = collect_until_all_ended(sub, STREAMS)
            out, err = child.communicate(timeout=60)
        finally:
            child.kill()
    assert child.returncode == 0, err
    check_results(messages)
    report = json.loads(report_path.read_text())
    assert report["frames"] == sum(len(load_gt(c)) for c in STREAMS.values())
    assert report["messages_dropped"] == 0 and report["exit_code"] == 0
    # Batches really mix streams: with 5 streams and max_batch_size 8 they run nearly full.
    assert report["mean_batch_size"] > 4
    assert re.search(r"^cam-a\s+ended\s+100\s+100\s+0\s+end of file$", out, re.M), out


def test_python_pipeline_publishes_to_subscriber_in_child_process(models, tmp_path):
    endpoint = free_endpoint()
    streams = {k: v for k, v in STREAMS.items() if k != "pitch"}
    spec = load_pipeline(write_pipeline(tmp_path / "e2e.toml", models, endpoint, streams))
    # The subscriber is `vidinfer subscribe` in its own process, printing JSON lines until it has
    # heard nothing for 5 s; the pipeline waits for its subscription before the first frame.
    child = subprocess.Popen([sys.executable, "-m", "vidinfer", "subscribe", endpoint, "--timeout", "5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    spec.sinks.append(CallbackSink(on_frame=lambda frame, layers: seen.append((frame.stream_id,
                                                                             len(layers["objects"])))))
    try:
        report = spec.build().run()
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert report.exit_code == 0 and report.frames == 400 and len(seen) == 400
    for sid, clip in streams.items():
        gt = load_gt(clip)
        dets = [m for m in lines if m["topic"] == f"det.{sid}." and m["kind"] == "detections"]
        assert [m["body"]["frame_no"] for m in dets] == sorted(gt)
        assert [m["seq"] for m in dets] == list(range(len(gt)))
        assert [m["kind"] for m in lines if m["topic"] == f"det.{sid}."][-1] == "end_of_stream"
        for m in dets:
            b = m["body"]
            assert_matches_gt(np.asarray(b["xyxy"], np.float32).reshape(-1, 4), np.asarray(b["class_id"]),
                              gt[b["frame_no"]], where=f"{sid} frame {b['frame_no']}")


def test_failed_stream_does_not_stop_the_others(models, tmp_path):
    endpoint = free_endpoint()
    streams = {"cam-a": "shapes_a", "gone": "no_such_clip"}
    toml = write_pipeline(tmp_path / "e2e.toml", models, endpoint, streams)
    with Subscriber(endpoint) as sub:
        child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            messages = collect_until_all_ended(sub, streams)
            out, err = child.communicate(timeout=60)
        finally:
            child.kill()
    assert child.returncode == 1  # documented: some stream failed, the others ran
    check_results(messages, {"cam-a": "shapes_a"})
    end = [m for m in messages if m.stream_id == "gone" and m.kind == "end_of_stream"][0]
    assert end.body["state"] == "failed"
    assert end.body["reason"] == f"file '{CLIPS / 'no_such_clip.mp4'}' does not exist; check the stream's url"
    status = [m.body["state"] for m in messages if m.topic == "status.gone."]
    assert status == ["failed"]
    assert f"vidinfer: stream gone failed: file '{CLIPS / 'no_such_clip.mp4'}' does not exist" in err
    assert "Traceback" not in err


def _readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "vi.Pipeline(" in b]
    assert example, "README.md has no complete Python pipeline example"
    return example[0]


def test_readme_python_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_readme_python_example())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    expected = {sid: sum(len(objs) for objs in load_gt(clip).values())
                for sid, clip in STREAMS.items() if sid != "pitch"}
    assert done.stdout.strip().splitlines()[-1] == f"400 frames analysed; boxes per stream: {expected}"


def test_wire_format_doc_subscriber_works_without_vidinfer(models, tmp_path):
    """The plain-ZeroMQ subscriber printed in docs/wire-format.md decodes a real run."""
    code = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "wire-format.md").read_text(), re.S)[0]
    endpoint = free_endpoint()
    script = tmp_path / "doc_subscriber.py"
    script.write_text(code.replace("tcp://127.0.0.1:5555", endpoint))
    spec = load_pipeline(write_pipeline(tmp_path / "one.toml", models, endpoint, {"cam-b": "shapes_b"}))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": ""})
    try:
        spec.build().run()
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    lines = out.splitlines()
    gt = load_gt("shapes_b")
    assert len(lines) == len(gt) + 1 and lines[-1] == "cam-b ended: end of file"
    for frame_no, line in enumerate(lines[:-1]):
        sid, number, rest = line.split(" ", 2)
        assert (sid, int(number)) == ("cam-b", frame_no)
        names = re.findall(r"\('(\w+)',", rest)
        assert sorted(names) == sorted(o["class_name"] for o in gt[frame_no])
