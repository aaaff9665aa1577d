"""A live RTSP camera that stalls, dies and comes back: a real RTSP server (GStreamer's, from
Debian's packages, in its own process) on loopback, and a real pipeline watching it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from ground_truth import REPO
from test_pipeline_e2e import free_endpoint
from vidinfer.config import parse_pipeline
from vidinfer.publish import Subscriber
from vidinfer.testing.shape_models import SHAPE_CLASSES, build_shape_detector

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = REPO / "tools" / "rtsp_server.py"


def gstreamer_available() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not gstreamer_available(), reason="GStreamer's RTSP server (python3-gi, "
                                "gir1.2-gst-rtsp-server-1.0) is not installed; .ci/run installs it")


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(port), "live"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving"), proc.stderr.read()
    return proc


def next_message(sub, predicate, timeout=30.0, seen=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(timeout=max(0.1, deadline - time.monotonic()))
        if msg is None:
            break
        if seen is not None:
            seen.append(msg)
        if predicate(msg):
            return msg
    raise AssertionError("the expected message did not arrive")


def test_stalled_then_dead_camera_reconnects_with_backoff_and_marks_the_discontinuity(tmp_path):
    port = int(free_endpoint().rsplit(":", 1)[1])
    endpoint = free_endpoint()
    config = parse_pipeline({
        "name": "live",
        "streams": [{"id": "cam", "url": f"rtsp://127.0.0.1:{port}/live", "options": {"rtsp_transport": "tcp"},
                     "open_timeout_s": 2, "read_timeout_s": 2, "reconnect_max_s": 2, "sample_fps": 5}],
        "stages": [{"type": "detect", "model": str(build_shape_detector(tmp_path / "d.onnx")),
                    "classes": SHAPE_CLASSES}],
        "sinks": [{"type": "zmq", "endpoint": endpoint}],
    })
    server = start_server(port)
    seen = []
    with Subscriber(endpoint, topics=["det.cam.", "status.cam."]) as sub:
        pipeline = config.build()
        runner = threading.Thread(target=pipeline.run)
        runner.start()
        try:
            for _ in range(5):
                next_message(sub, lambda m: m.kind == "detections", seen=seen)

            # 1. The server stops answering but keeps the connection (SIGSTOP): the read watchdog fires.
            os.kill(server.pid, signal.SIGSTOP)
            stalled = next_message(sub, lambda m: m.body.get("state") == "reconnecting", seen=seen)
            os.kill(server.pid, signal.SIGCONT)
            next_message(sub, lambda m: m.body.get("state") == "connected", seen=seen)
            next_message(sub, lambda m: m.kind == "detections" and m.body["discontinuity"], seen=seen)

            # 2. The server dies: retries back off (capped at 2 s), then it comes back.
            server.kill()
            server.wait()
            retries = []
            while len(retries) < 3:
                retries.append(next_message(sub, lambda m: m.body.get("state") == "reconnecting", seen=seen))
            server = start_server(port)
            next_message(sub, lambda m: m.body.get("state") == "connected", seen=seen)
            first = next_message(sub, lambda m: m.kind == "detections", seen=seen)
            assert first.body["discontinuity"] is True
            next_message(sub, lambda m: m.kind == "detections" and not m.body["discontinuity"], seen=seen)
        finally:
            pipeline.stop()
            runner.join(30)
            server.kill()
        end = next_message(sub, lambda m: m.kind == "end_of_stream", seen=seen)
    assert end.body["reason"] == "stopped"
    assert "retrying in" in stalled.body["reason"]
    delays = [float(re.search(r"retrying in ([\d.]+) s", m.body["reason"]).group(1)) for m in retries]
    attempts = [m.body["attempt"] for m in retries]
    assert attempts == sorted(attempts) and attempts[0] >= 1
    assert all(0.5 <= d <= 2.0 for d in delays), delays  # jittered, never above reconnect_max_s
    assert pipeline.report.streams["cam"].reconnects >= 4
    # Sequence numbers of the detections topic never repeat or go back across reconnects.
    seqs = [m.seq for m in seen if m.topic == "det.cam."]
    assert seqs == sorted(set(seqs))
