"""Bad input in one pipeline next to a good stream: each bad stream reports `failed` or `degraded`
with its reason on the status topic, and the good stream runs to its end with complete results.
One real `vidinfer run` process, a real subscriber, damaged files made from the sample clips and a
server on loopback that accepts connections and never answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fault_helpers import (CLIP_A, SilentServer, bit_flipped, enormous, truncated, unknown_codec,
                           write_pipeline)
from test_pipeline_e2e import check_results, collect_until_all_ended, free_endpoint
from vidinfer.publish import Subscriber

DAMAGED = "decoding past damaged data: [Errno 1094995529] Invalid data found when processing input: " \
          "'avcodec_send_packet()'"


@pytest.fixture(scope="module")
def fault_run(models, tmp_path_factory):
    """Run the pipeline once: (messages, exit code, stderr, report, file paths, silent server)."""
    d = tmp_path_factory.mktemp("faults")
    files = {"truncated": truncated(d / "truncated.mp4"), "flipped": bit_flipped(d / "flipped.mp4"),
             "unknown": unknown_codec(d / "unknown.mp4"), "huge": enormous(d / "huge.mp4")}
    with SilentServer() as silent:
        streams = {"cam-a": {"url": str(CLIP_A)}, **{k: {"url": str(v)} for k, v in files.items()},
                   "silent": {"url": f"http://127.0.0.1:{silent.port}/clip.mp4", "open_timeout_s": 1.5,
                              "read_timeout_s": 1.5}}
        endpoint = free_endpoint()
        toml = write_pipeline(d / "faults.toml", models, endpoint, streams)
        report_path = d / "report.json"
        with Subscriber(endpoint) as sub:
            child = subprocess.Popen([sys.executable, "-m", "vidinfer", "-q", "run", str(toml),
                                      "--report", str(report_path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                messages = collect_until_all_ended(sub, streams, timeout=60)
                _, err = child.communicate(timeout=60)
            finally:
                child.kill()
        accepted = silent.accepted
    return messages, child.returncode, err, json.loads(report_path.read_text()), files, accepted, silent.port


def statuses(messages, sid):
    return [(m.body["state"], m.body["reason"]) for m in messages if m.topic == f"status.{sid}."]


def end_of(messages, sid):
    return next(m.body for m in messages if m.kind == "end_of_stream" and m.stream_id == sid)


def test_good_stream_runs_to_its_end_with_every_result_next_to_bad_ones(fault_run):
    messages, code, err, report, *_ = fault_run
    check_results(messages, {"cam-a": "shapes_a"})
    assert report["streams"]["cam-a"]["state"] == "ended" and report["streams"]["cam-a"]["frames_analysed"] == 100
    assert code == 1  # documented: some stream failed, the others ran to the end
    assert "Traceback" not in err


@pytest.mark.parametrize("sid", ["truncated", "flipped"])
def test_damaged_file_is_degraded_and_every_decoded_frame_is_published(fault_run, sid):
    messages, _, _, report, *_ = fault_run
    assert statuses(messages, sid)[:2] == [("connected", ""), ("degraded", DAMAGED)]
    end = end_of(messages, sid)
    assert (end["state"], end["reason"]) == ("ended", "end of file")
    assert end["decode_errors"] >= 1
    dets = [m for m in messages if m.topic == f"det.{sid}." and m.kind == "detections"]
    # Whatever decoded was analysed and published once, in order, without a gap in the sequence.
    assert len(dets) == end["frames_decoded"] == end["frames_analysed"] > 0
    assert [m.body["frame_no"] for m in dets] == list(range(len(dets)))
    assert [m.seq for m in dets] == list(range(len(dets)))
    assert report["streams"][sid]["decode_errors"] == end["decode_errors"]


def test_unsupported_codec_fails_with_that_reason(fault_run):
    messages, _, err, _, files, *_ = fault_run
    reason = (f"{files['unknown']}: its video codec cannot be decoded by this FFmpeg build; re-encode it "
              "(e.g. to H.264) or use an FFmpeg build with that decoder")
    assert statuses(messages, "unknown") == [("failed", reason)]
    assert f"vidinfer: stream unknown failed: {reason}" in err


def test_enormous_resolution_fails_with_the_limit_and_the_fix(fault_run):
    messages, _, err, _, files, *_ = fault_run
    reason = ("resolution 8192x8192 is larger than max_pixels (33177600); raise the stream's max_pixels "
              "if frames this large are intended")
    assert statuses(messages, "huge") == [("failed", reason)]
    assert [m for m in messages if m.topic == "det.huge." and m.kind == "detections"] == []
    assert f"vidinfer: stream huge failed: {reason}" in err


def test_server_that_accepts_and_never_answers_fails_on_the_open_timeout(fault_run):
    messages, _, err, _, _, accepted, port = fault_run
    assert accepted >= 1  # the connection really was accepted: this is silence, not refusal
    [(state, reason)] = statuses(messages, "silent")
    assert state == "failed"
    assert reason.startswith(f"no answer from http://127.0.0.1:{port}/clip.mp4 within the open timeout"), reason


def test_rtsp_server_that_accepts_and_never_answers_fails_on_the_open_timeout_without_hanging():
    from test_sources import run_source

    with SilentServer() as silent:
        url = f"rtsp://viewer:s3cret@127.0.0.1:{silent.port}/stream"
        run = run_source(url, live=True, reconnect=False, open_timeout_s=1.5, timeout_s=30)
    assert run.frames == [] and [e.state.value for e in run.events] == ["failed"]
    assert run.end.reason == f"no answer from rtsp://***@127.0.0.1:{silent.port}/stream within the open timeout (1.5 s)"


def test_silent_camera_is_retried_with_backoff_and_each_retry_says_why(monkeypatch):
    import vidinfer.sources.pyav as pyav_source
    from test_sources import run_source

    monkeypatch.setattr(pyav_source, "BACKOFF_START_S", 0.05)
    with SilentServer() as silent:
        url = f"rtsp://127.0.0.1:{silent.port}/stream"
        run = run_source(url, open_timeout_s=0.5, reconnect_max_s=0.2, timeout_s=30,
                         stop_after=lambda items: len(items) >= 3)
        accepted = silent.accepted
    retries = [e for e in run.events if e.state.value == "reconnecting"]
    assert len(retries) >= 3 and accepted >= 3
    assert all(e.reason.startswith(f"no answer from {url} within the open timeout (0.5 s); retrying in ")
               for e in retries)
    assert (run.end.state.value, run.end.reason) == ("ended", "stopped")
