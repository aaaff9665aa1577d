"""Secrets, limits and signals (issue 12, points 5 and 7): URLs redacted failing closed, an upper
bound with its reason on every numeric key, unknown FFmpeg options reported, a metrics server with
bounded threads and timeouts, signals honoured in every phase of `vidinfer run`, writable places
checked at start and report files written whole."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import annotated_types
import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

import vidinfer as vi
from fault_helpers import CLIP_A, SilentServer, closed_port
from ground_truth import CLIPS
from helpers import shapes_pipeline
from proc_helpers import free_port, get, wait_until
from test_pipeline_e2e import collect_until_all_ended, free_endpoint
from vidinfer.config import GpuSpec, MetricsSpec, ShardSpec, StreamSpec, _Settings, is_live_url, parse_pipeline
from vidinfer.errors import ConfigError
from vidinfer.metrics import MetricsServer
from vidinfer.publish.sinks import read_file_sink
from vidinfer.redact import redact_url, scrub
from vidinfer.sources.ffmpeg_options import unknown_options

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "shapes"


def run_cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidinfer", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def nothing(batch):
    """A stage that does nothing: the faults here are in the sources, not the models."""


NOTHING = vi.stage(nothing, pixels="none")


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize("url, safe", [
    ("rtsp://viewer:s3cret@10.0.0.5:554/stream", "rtsp://***@10.0.0.5:554/stream"),
    ("rtsp://10.0.0.5/live?user=viewer&password=s3cret&channel=1",
     "rtsp://10.0.0.5/live?user=viewer&password=***&channel=1"),
    ("https://cdn.example/a.m3u8?token=abc&X-Amz-Signature=f00&X-Amz-Credential=me&x=1",
     "https://cdn.example/a.m3u8?token=***&X-Amz-Signature=***&X-Amz-Credential=***&x=1"),
    ("http://h/x?access_token=a;api_key=b&sig=c&auth=d&secret=e&pwd=f&session=g",
     "http://h/x?access_token=***;api_key=***&sig=***&auth=***&secret=***&pwd=***&session=***"),
    ("http://h/x?PassWord=a&Pass%57ord=b", "http://h/x?PassWord=***&Pass%57ord=***"),  # any case, percent-decoded
    ("rtsp://h:554/user=admin&password=s3cret&channel=1&stream=0.sdp",  # parameters in the path (XMEye cameras)
     "rtsp://h:554/user=admin&password=***&channel=1&stream=0.sdp"),
    ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1"),
    ("rtsp://u:p@h/x?token=t", "rtsp://***@h/x?token=***"),
    ("rtsp://[bad", "rtsp://<unparsable url>"),
    ("rtsp://viewer:s3cret@[fe80::1/x?password=y", "rtsp://<unparsable url>"),
    ("http://x\uff03y:pw@h/", "http://<unparsable url>"),  # urlsplit: invalid characters under NFKC
    ("rtsp://10.0.0.5/live?channel=1", "rtsp://10.0.0.5/live?channel=1"),
    ("/videos/a?password=b.mp4", "/videos/a?password=b.mp4"),  # a local file is shown as it is
])
def test_redact_url_masks_user_info_secret_parameters_and_anything_unparsable(url, safe):
    assert redact_url(url) == safe


def test_scrub_masks_the_url_and_each_of_its_secrets_wherever_they_appear():
    url = "rtsp://cam:pa55word@h/x?token=t0kenvalue"
    text = f"cannot open {url}: 401; retried with user cam password pa55word and token=t0kenvalue"
    assert scrub(text, url) == ("cannot open rtsp://***@h/x?token=***: 401; retried with user *** password *** and "
                                "token=***")


def test_an_unparsable_url_is_refused_with_the_key_and_without_the_url():
    with pytest.raises(ConfigError) as err:
        parse_pipeline({"streams": [{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "rtsp://viewer:s3cret@[bad/x"}],
                        "stages": [{"type": "python", "function": "builtins:len"}]}, source="p.toml")
    assert str(err.value) == ("p.toml: key 'streams[1].url': the URL cannot be parsed (Invalid IPv6 URL); fix it (it "
                              "is not shown here, since it may hold a password: rtsp://<unparsable url>)")
    with pytest.raises(ValidationError) as verr:  # the same in Python code, never a bare ValueError at start
        StreamSpec(id="b", url="rtsp://viewer:s3cret@[bad/x")
    assert "s3cret" not in str(verr.value).split("input_value")[0]
    assert is_live_url("rtsp://[bad") is True and is_live_url("http://[bad") is False  # reads only the scheme


def test_secrets_in_query_strings_and_user_info_reach_no_log_status_message_or_report(tmp_path, caplog):
    """Real sources: an RTSP port that refuses, an HTTP server that never answers; every message
    published (read back from a file sink), every log record at debug level and the run report."""
    port = closed_port()
    results = tmp_path / "results.msgpack"
    secrets = ("s3cretpw", "t0kenvalue", "pa55word", "acc3sstok", "s1gnature")
    with SilentServer() as silent:
        streams = [
            vi.StreamSpec(id="rtsp-q", url=f"rtsp://127.0.0.1:{port}/live?user=viewer&password=s3cretpw&token=t0kenvalue",
                          max_reconnects=1, reconnect_max_s=0.2, open_timeout_s=1),
            vi.StreamSpec(id="http-q", url=f"http://cam:pa55word@127.0.0.1:{silent.port}/clip.mp4?access_token=acc3sstok"
                          "&sig=s1gnature", open_timeout_s=1)]
        pipe = vi.Pipeline(streams, [NOTHING], [vi.FileSink(path=results)], device="cpu")
        with caplog.at_level(logging.DEBUG):
            report = pipe.run()
    rtsp = f"rtsp://127.0.0.1:{port}/live?user=viewer&password=***&token=***"
    http = f"http://***@127.0.0.1:{silent.port}/clip.mp4?access_token=***&sig=***"
    assert report.streams["rtsp-q"].reason == f"cannot open {rtsp}: [Errno 111] Connection refused: '{rtsp}'"
    assert report.streams["http-q"].reason == (f"no answer from {http} within the open timeout ([Errno 1414092869] "
                                               f"Immediate exit requested: '{http}')")
    messages = list(read_file_sink(results))
    statuses = [(m.stream_id, m.body["state"]) for m in messages if m.kind == "status"]
    assert statuses == [("rtsp-q", "reconnecting"), ("rtsp-q", "failed"), ("http-q", "failed")]
    wire = json.dumps([m.to_json() for m in messages])
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert rtsp in wire and http in wire and rtsp in logs
    for where, text in {"logs": logs, "status messages": wire, "report": json.dumps(report.to_dict())}.items():
        for secret in secrets:
            assert secret not in text, (where, secret)


# ---------------------------------------------------------------- upper bounds

# Keys whose bound is their meaning (a share, a score, a ratio): pydantic's own text says enough.
SELF_EXPLAINED = {"conf_threshold", "iou_threshold", "high_score", "low_score", "match_iou", "reference_share",
                  "match_threshold", "logo_confirm_score"}


def _components() -> dict[str, type[BaseModel]]:
    from vidinfer.analytics.brand_stage import BrandExposure
    from vidinfer.publish.sinks import ZmqSink
    from vidinfer.stages.read_text import ReadText
    from vidinfer.stages.track import TrackOptions

    return {"stream": StreamSpec, "top level": _Settings, "metrics": MetricsSpec, "shard": ShardSpec,
            "gpu": GpuSpec, "detect": vi.Detect, "classify": vi.Classify, "read_text": ReadText,
            "track": TrackOptions, "brand_exposure": BrandExposure, "zmq sink": ZmqSink}


def _numeric_fields():
    for where, model in _components().items():
        for name, info in model.model_fields.items():
            kinds = {a for a in typing.get_args(info.annotation) if a is not type(None)} or {info.annotation}
            if kinds & {int, float} and bool not in kinds:
                yield pytest.param(model, name, info, id=f"{where}.{name}")


@pytest.mark.parametrize("model, name, info", list(_numeric_fields()))
def test_every_numeric_key_has_an_upper_bound_and_says_why_when_over_it(model, name, info):
    bounds = [m for m in info.metadata if isinstance(m, (annotated_types.Le, annotated_types.Lt))]
    assert bounds, f"{model.__name__}.{name} has no upper bound"
    bound = getattr(bounds[0], "le", None)
    bound = bound if bound is not None else bounds[0].lt
    over = bound + 1 if isinstance(bound, int) else bound * 2 + 1
    with pytest.raises(ValidationError) as err:
        model.__pydantic_validator__.validate_assignment(model.model_construct(), name, over)
    msg = err.value.errors()[0]["msg"]
    if name in SELF_EXPLAINED:
        assert "less than" in msg
    else:
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        assert msg.startswith(f"Value error, must be at most {shown} ("), msg


@pytest.mark.parametrize("table, key, message", [
    ({"streams": [{"id": "a", "url": "a.mp4", "queue_size": 5000}]}, "streams[0].queue_size",
     "must be at most 1024 (every queued frame holds a decoded image, several MB at 1080p; a deeper queue adds only "
     "latency and memory), got 5000"),
    ({"streams": [{"id": "a", "url": "a.mp4", "open_timeout_s": 1e9}]}, "streams[0].open_timeout_s",
     "must be at most 3600 (an hour; a source silent for longer is down, and a live stream reconnects instead), "
     "got 1000000000.0"),
    ({"streams": [{"id": "a", "url": "a.mp4", "loop": 10_000_000}]}, "streams[0].loop",
     "loop must be at most 1000000 plays (use loop = true to play a file forever), got 10000000"),
    ({"stages": [{"type": "detect", "model": "m.onnx", "classes": ["x"], "max_detections": 10 ** 6}]},
     "stages[0].max_detections", "must be at most 10000 (boxes kept per frame after NMS; a 640x640 YOLO model "
     "proposes 8400 in all), got 1000000"),
    ({"stages": [{"type": "detect", "model": "m.onnx", "classes": ["x"], "input_size": [640, 100000]}]},
     "stages[0].input_size[1]", "must be at most 8192 (a model input's side; a 8192x8192 input already takes 800 MB "
     "a frame as float), got 100000"),
    ({"sinks": [{"type": "zmq", "sndhwm": 10 ** 9}]}, "sinks[0].sndhwm",
     "must be at most 1000000 (messages queued per subscriber, each up to tens of KB; a million is GBs for one slow "
     "subscriber), got 1000000000"),
])
def test_over_a_bound_is_one_sentence_naming_the_key(table, key, message):
    doc = {"streams": [{"id": "a", "url": "a.mp4"}], "stages": [{"type": "python", "function": "builtins:len"}],
           **table}
    with pytest.raises(ConfigError) as err:
        parse_pipeline(doc, source="p.toml")
    assert str(err.value) == f"p.toml: key '{key}': {message}"


def _bad_pipeline(tmp_path: Path, top: str = "", stream: str = "") -> Path:
    path = tmp_path / "bounds.toml"
    path.write_text(f'{top}\n[[streams]]\nid = "cam-a"\nurl = "{CLIP_A}"\n{stream}\n'
                    f'[[stages]]\ntype = "detect"\nmodel = "{MODELS / "detector.onnx"}"\n'
                    f'labels_file = "{MODELS / "labels.txt"}"\n')
    return path


@pytest.mark.parametrize("top, stream, message", [
    ("max_batch_size = 100000", "", "key 'max_batch_size': must be at most 1024 (a batch holds that many model inputs "
     "at once: a 640x640 detector input takes 4.9 MB a frame, 5 GB at 1024, and throughput stops growing after a few "
     "dozen frames), got 100000"),
    ("", "decode_threads = 100000", "key 'streams[0].decode_threads': must be at most 64 (FFmpeg's decoders pick at "
     "most 16 threads on their own and warn above that; every thread holds its own copy of the decoder's state, so "
     "thousands stall the start for seconds), got 100000"),
    ("max_delay_ms = 1e7", "", "key 'max_delay_ms': must be at most 60000 (a minute: a partial batch waits this long "
     "for more frames, and results wait with it), got 10000000.0"),
], ids=["max_batch_size", "decode_threads", "max_delay_ms"])
def test_vidinfer_run_refuses_a_value_over_its_bound_in_one_line(tmp_path, top, stream, message):
    path = _bad_pipeline(tmp_path, top, stream)
    child = run_cli("run", path)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 2, err
    assert err == f"vidinfer: error: {path}: {message}\n"


def test_python_api_refuses_a_batch_over_the_bound_with_the_reason():
    with pytest.raises(ConfigError) as err:
        vi.Pipeline([vi.StreamSpec(id="a", url=str(CLIP_A))], [NOTHING], max_batch_size=100000, device="cpu")
    assert str(err.value).startswith("max_batch_size must be at most 1024 (a batch holds that many model inputs")
    assert str(err.value).endswith("), got 100000")


# ---------------------------------------------------------------- FFmpeg options


def test_ffmpeg_option_names_are_checked_against_ffmpegs_own_tables():
    # Demuxer (rtsp_transport), protocol (timeout, user_agent, reconnect), format context (probesize),
    # decoder (threads) options are known; a typo and an option FFmpeg 5 removed (stimeout) are not.
    assert unknown_options(["rtsp_transport", "timeout", "user_agent", "reconnect", "probesize", "fflags",
                            "threads", "no_such_option", "rtsp_tranport", "stimeout"]) == \
        ["no_such_option", "rtsp_tranport", "stimeout"]


def test_an_unknown_ffmpeg_option_is_reported_with_the_stream_and_the_stream_still_runs(caplog):
    streams = [vi.StreamSpec(id="cam-a", url=str(CLIP_A), options={"no_such_option": "1", "probesize": "5000000"}),
               vi.StreamSpec(id="cam-b", url=str(CLIPS / "shapes_b.mp4"),
                             options={"rtsp_tranport": "tcp", "analyzeduraton": "1"}),
               vi.StreamSpec(id="cam-c", url=str(CLIPS / "shapes_c.mp4"), options={"fflags": "+genpts"})]
    with caplog.at_level(logging.WARNING, logger="vidinfer.sources.pyav"):
        report = vi.Pipeline(streams, [NOTHING], device="cpu").run()
    warnings = [r.getMessage() for r in caplog.records if "FFmpeg option" in r.getMessage()]
    assert warnings == [
        "stream cam-a: unknown FFmpeg option 'no_such_option' in its options, ignored by FFmpeg; fix the name or "
        "remove it (`ffmpeg -h full` lists FFmpeg's options)",
        "stream cam-b: unknown FFmpeg options 'rtsp_tranport', 'analyzeduraton' in its options, ignored by FFmpeg; "
        "fix the names or remove them (`ffmpeg -h full` lists FFmpeg's options)"]
    assert [report.streams[s].frames_analysed for s in ("cam-a", "cam-b", "cam-c")] == [100, 100, 100]


# ---------------------------------------------------------------- metrics server


def test_metrics_server_keeps_its_threads_bounded_answers_promptly_and_closes_idle_connections():
    before = threading.active_count()
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, timeout_s=3.0)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(500)]
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a request that never ends (slowloris)
        wait_until(lambda: server.connections == 501, "the server never held the 501 connections", timeout=10)
        took = []
        for path in ("/metrics", "/healthz", "/readyz", "/metrics"):
            t = time.monotonic()
            status, _ = get(server.port, path)
            took.append(time.monotonic() - t)
            assert status == 200
        assert max(took) < 0.5, took
        assert threading.active_count() - before <= 5  # the accept thread and at most 4 workers
        t = time.monotonic()
        slow.settimeout(5)
        assert slow.recv(100) == b""  # closed by the server, unanswered
        for conn in idle:
            conn.settimeout(5)
            assert conn.recv(1) == b""
        assert time.monotonic() - t < 4.0  # the timeout, 3 s after the last connection
        assert server.connections == 0
        assert get(server.port, "/healthz") == (200, "ok\n")
    finally:
        for conn in idle:
            conn.close()
        server.close()


# ---------------------------------------------------------------- report files, written whole


def test_write_atomically_leaves_the_old_file_when_writing_fails_and_no_temporary_file(tmp_path):
    from vidinfer.atomic import write_atomically

    path = tmp_path / "report.json"
    path.write_text('{"old": true}')

    def half_then_full_disk(tmp: Path) -> None:
        tmp.write_text('{"new": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(path, half_then_full_disk)
    assert path.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_atomically(path, lambda tmp: tmp.write_text('{"new": true}'))
    assert path.read_text() == '{"new": true}' and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_brand_report_files_are_written_whole_next_to_no_temporary_file(tmp_path, monkeypatch):
    from vidinfer.analytics import report as brand_report
    from vidinfer.analytics.exposure import ExposureAnalytics

    analytics = ExposureAnalytics(["VOLTA"], 5.0, 2, 0.02)
    analytics.stream("cam-a")
    out = tmp_path / "brand"
    report, files = brand_report.write_report(analytics, "p", out)
    assert [f.name for f in files] == ["report.json", "appearances.csv", "exposure.png", "report.html"]
    assert json.loads((out / "report.json").read_text())["pipeline"] == "p"
    png = (out / "exposure.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    def chart_fails(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(brand_report, "_chart", chart_fails)
    with pytest.raises(OSError):
        brand_report.write_report(analytics, "p2", out)
    assert (out / "exposure.png").read_bytes() == png  # the previous chart, whole
    assert json.loads((out / "report.json").read_text())["pipeline"] == "p2"
    assert sorted(p.name for p in out.iterdir()) == ["appearances.csv", "exposure.png", "report.html", "report.json"]


def test_an_unwritable_report_path_is_refused_at_start_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "report.json"
    child = run_cli("run", _bad_pipeline(tmp_path), "--report", target)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 2, err
    assert err == f"vidinfer: error: --report: cannot write the run report to '{target}' (Not a directory); give a " \
                  "writable path\n"
    assert out == ""  # refused before anything ran


# ---------------------------------------------------------------- signals in every phase

STREAMS = {"cam-a": {"url": str(CLIP_A), "loop": True}, "cam-b": {"url": str(CLIPS / "shapes_b.mp4"), "loop": True}}
STOPPING = "vidinfer: {}: stopping (again to exit at once)\n"


def _signal_pipeline(path: Path, endpoint: str, wait: int = 1, extra: str = "", stages: str = "") -> Path:
    """Two looping streams, the shape detector (and ``stages``), a ZeroMQ sink waiting 30 s for
    ``wait`` subscribers."""
    shapes_pipeline(path, MODELS, endpoint, STREAMS, classify=False, extra=f"{extra}\n\n{stages}")
    path.write_text(path.read_text().replace("wait_for_subscribers = 1", f"wait_for_subscribers = {wait}"))
    return path


def _assert_ended_before_start(messages, report_path):
    ends = {m.stream_id: m.body for m in messages if m.kind == "end_of_stream"}
    assert sorted(ends) == sorted(STREAMS)
    for body in ends.values():
        assert (body["state"], body["reason"], body["frames_analysed"]) == ("ended", "stopped before the stream "
                                                                            "started", 0)
    assert not [m for m in messages if m.kind == "detections"]
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["exit_code"] == 130
    assert {s["reason"] for s in report["streams"].values()} == {"stopped before the stream started"}


def test_sigterm_while_waiting_for_subscribers_exits_130_at_once_with_one_line(tmp_path):
    endpoint, mport = free_endpoint(), free_port()
    toml = _signal_pipeline(tmp_path / "wait.toml", endpoint, extra=f"[metrics]\nport = {mport}")  # none comes
    report_path = tmp_path / "report.json"
    child = run_cli("-q", "run", toml, "--report", report_path)
    try:
        wait_until(lambda: get(mport, "/readyz") == (503, "the pipeline has not started publishing yet\n"),
                   "the pipeline never reached its sinks", child, timeout=60)
        time.sleep(0.3)  # in the sink's wait
        child.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        out, err = child.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert took < 3.0, f"exit took {took:.1f} s after SIGTERM"
    assert err == STOPPING.format("SIGTERM")
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["frames"] == 0


def test_signal_during_the_subscriber_wait_publishes_every_streams_end_to_the_subscriber_there(tmp_path):
    endpoint = free_endpoint()
    toml = _signal_pipeline(tmp_path / "wait2.toml", endpoint, wait=2)  # one subscriber comes: it keeps waiting
    report_path = tmp_path / "report.json"
    with vi.Subscriber(endpoint) as sub:
        child = run_cli("-q", "run", toml, "--report", report_path)
        try:
            first = sub.recv(timeout=60)  # metadata: the sink is open and waits for a second subscriber
            assert first is not None and first.kind == "metadata"
            time.sleep(0.3)
            child.send_signal(signal.SIGINT)
            messages = [first, *collect_until_all_ended(sub, STREAMS, timeout=30)]
            out, err = child.communicate(timeout=30)
        finally:
            child.kill()
    assert child.returncode == 130, err
    assert err == STOPPING.format("SIGINT")
    _assert_ended_before_start(messages, report_path)


SLOW_STAGE = '''
import time
from pathlib import Path


class SlowModel:
    """A stage whose model takes 3 s to load; says when loading starts."""

    name = "slow"
    pixels = "none"

    def __init__(self, marker):
        self.marker = marker

    def open(self, ctx):
        Path(self.marker).write_text("loading")
        time.sleep(3)

    def __call__(self, batch):
        pass

    def on_stream_end(self, stream_id):
        pass

    def close(self):
        pass
'''


def test_signal_while_the_models_load_ends_every_stream_and_exits_130_without_a_traceback(tmp_path):
    (tmp_path / "slowstage.py").write_text(SLOW_STAGE)
    marker = tmp_path / "loading"
    endpoint = free_endpoint()
    slow = f'[[stages]]\ntype = "python"\nfunction = "slowstage:SlowModel"\nmarker = "{marker}"'
    toml = _signal_pipeline(tmp_path / "slow.toml", endpoint, stages=slow)
    report_path = tmp_path / "report.json"
    with vi.Subscriber(endpoint) as sub:
        child = run_cli("-q", "run", toml, "--report", report_path)
        try:
            wait_until(marker.exists, "the slow model never started loading", child, timeout=60)
            child.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            messages = collect_until_all_ended(sub, STREAMS, timeout=30)
            out, err = child.communicate(timeout=30)
            took = time.monotonic() - signalled
        finally:
            child.kill()
    assert child.returncode == 130, err
    assert err == STOPPING.format("SIGTERM")
    assert took < 3.0 + 2.0  # the load in progress finishes (it cannot be interrupted), then nothing starts
    _assert_ended_before_start(messages, report_path)


def _wait_until_vidinfer_handles_sigterm(pid: int, timeout_s: float = 30.0) -> None:
    """Until the process catches SIGTERM (/proc's SigCgt): vidinfer's first import has run. Before
    that no Python code of the process runs, and on a loaded machine the interpreter's own start can
    take longer than the 0.3 s the test gives vidinfer: a signal then meets the kernel's default."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError(f"vidinfer (pid {pid}) installed no SIGTERM handler within {timeout_s:g} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_0_3_s_after_start_exits_130_with_one_line_and_no_traceback(tmp_path, sig):
    toml = _signal_pipeline(tmp_path / "early.toml", free_endpoint())
    child = run_cli("-q", "run", toml)
    _wait_until_vidinfer_handles_sigterm(child.pid)  # the interpreter itself has started
    time.sleep(0.3)  # importing vidinfer (NumPy, ONNX Runtime, FFmpeg) or loading the models
    child.send_signal(sig)
    try:
        out, err = child.communicate(timeout=60)
    finally:  # a child that lost the signal must not run on, looping, under the rest of the suite
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert err in (f"vidinfer: {sig.name}: stopped while starting\n", STOPPING.format(sig.name)), err
