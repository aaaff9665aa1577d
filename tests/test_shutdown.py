"""Graceful shutdown of `vidinfer run` on looping streams (they never end by themselves): the first
SIGINT or SIGTERM stops the sources, flushes what is queued, publishes every stream's end with
reason "stopped", writes the report and exits 130 within 5 s; a second signal exits at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from fault_helpers import CLIP_A, SilentServer, write_pipeline
from ground_truth import CLIPS
from test_pipeline_e2e import collect_until_all_ended, free_endpoint
from vidinfer.publish import Subscriber

STREAMS = {"cam-a": {"url": str(CLIP_A), "loop": True}, "cam-b": {"url": str(CLIPS / "shapes_b.mp4"), "loop": True}}


def start_looping_run(models, tmp_path, sub_endpoint):
    toml = write_pipeline(tmp_path / "loop.toml", models, sub_endpoint, STREAMS)
    report = tmp_path / "report.json"
    child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml), "--report", str(report)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return child, report


def wait_for_results(sub, count=50, timeout=60.0):
    messages = []
    deadline = time.monotonic() + timeout
    while sum(m.kind == "detections" for m in messages) < count:
        assert time.monotonic() < deadline, "results did not flow"
        msg = sub.recv(timeout=timeout)
        assert msg is not None, "no message"
        messages.append(msg)
    return messages


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_flushes_ends_every_stream_writes_the_report_and_exits_130(models, tmp_path, sig):
    endpoint = free_endpoint()
    with Subscriber(endpoint) as sub:
        child, report_path = start_looping_run(models, tmp_path, endpoint)
        try:
            messages = wait_for_results(sub)
            child.send_signal(sig)
            signalled = time.monotonic()
            messages += collect_until_all_ended(sub, STREAMS, timeout=30)
            out, err = child.communicate(timeout=30)
            took = time.monotonic() - signalled
        finally:
            child.kill()
    assert child.returncode == 130, err
    assert took < 5.0, f"exit took {took:.1f} s after {sig.name}"
    assert f"vidinfer: {sig.name}: stopping (again to exit at once)" in err
    assert "Traceback" not in err
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["exit_code"] == 130
    for sid in STREAMS:
        on_topic = [m for m in messages if m.topic == f"det.{sid}."]
        end = on_topic[-1]
        assert end.kind == "end_of_stream" and (end.body["state"], end.body["reason"]) == ("ended", "stopped")
        dets = on_topic[:-1]
        # Nothing queued was lost: every frame the source handed over was analysed and published.
        assert [m.body["frame_no"] for m in dets] == list(range(len(dets)))
        assert [m.seq for m in on_topic] == list(range(len(on_topic)))
        assert end.body["frames_analysed"] == len(dets) == report["streams"][sid]["frames_analysed"] > 0
        assert report["streams"][sid]["state"] == "ended" and report["streams"][sid]["reason"] == "stopped"


def test_stream_stuck_opening_a_silent_server_does_not_hold_up_the_shutdown(models, tmp_path):
    # FFmpeg cannot be interrupted while it opens: the stuck stream's end is published for it.
    endpoint = free_endpoint()
    with SilentServer() as silent:
        streams = {**STREAMS, "stuck": {"url": f"http://127.0.0.1:{silent.port}/x.mp4", "open_timeout_s": 60}}
        toml = write_pipeline(tmp_path / "stuck.toml", models, endpoint, streams)
        with Subscriber(endpoint) as sub:
            child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                messages = wait_for_results(sub)
                child.send_signal(signal.SIGINT)
                signalled = time.monotonic()
                messages += collect_until_all_ended(sub, streams, timeout=30)
                _, err = child.communicate(timeout=30)
                took = time.monotonic() - signalled
            finally:
                child.kill()
    assert child.returncode == 130, err
    assert took < 5.0, f"exit took {took:.1f} s"
    ends = {m.stream_id: (m.body["state"], m.body["reason"]) for m in messages if m.kind == "end_of_stream"}
    assert ends == {"cam-a": ("ended", "stopped"), "cam-b": ("ended", "stopped"),
                    "stuck": ("failed", "source did not stop within the shutdown timeout")}


def test_second_signal_exits_at_once_even_while_a_stream_holds_up_the_first(models, tmp_path):
    endpoint = free_endpoint()
    with SilentServer() as silent:
        streams = {**STREAMS, "stuck": {"url": f"http://127.0.0.1:{silent.port}/x.mp4", "open_timeout_s": 60}}
        toml = write_pipeline(tmp_path / "stuck.toml", models, endpoint, streams)
        with Subscriber(endpoint) as sub:
            child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                wait_for_results(sub, count=10)
                child.send_signal(signal.SIGINT)  # the graceful stop now waits ~3 s for the stuck stream
                time.sleep(0.5)
                child.send_signal(signal.SIGINT)
                sent = time.monotonic()
                _, err = child.communicate(timeout=30)
                took = time.monotonic() - sent
            finally:
                child.kill()
    assert child.returncode == 130, err
    assert took < 2.0, f"the second signal took {took:.1f} s"  # the graceful path needs 2.5 s more
