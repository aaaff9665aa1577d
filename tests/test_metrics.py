"""The Prometheus endpoint and the probes of a running pipeline, scraped over real HTTP."""

import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import vidinfer as vi
from vidinfer.config import ShardSpec
from vidinfer.errors import ConfigError
from vidinfer.metrics import MetricsServer, PipelineMetrics

ROOT = Path(__file__).resolve().parents[1]


def _pipeline(streams, **kw):
    """The shape detector over sample clips, no sink (nothing published)."""
    return vi.Pipeline(
        [vi.StreamSpec(id=sid, url=str(ROOT / f"sample_streams/shapes_{c}.mp4"), **opts) for sid, c, opts in streams],
        [vi.Detect(model=ROOT / "models/shapes/detector.onnx", labels_file=ROOT / "models/shapes/labels.txt",
                   conf_threshold=0.5)],
        name="metrics-test", max_batch_size=4, max_delay_ms=5, **kw)


def _get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_what_the_pipeline_did_and_probes_follow_its_state():
    pipeline = _pipeline([("cam-a", "a", {}), ("cam-c", "c", {"sample_fps": 5})])
    metrics = PipelineMetrics(pipeline)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0, live=metrics.live, ready=metrics.ready)
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        assert _get(server.port, "/readyz") == (503, "the pipeline has not started publishing yet\n")
        report = pipeline.run()
        assert _get(server.port, "/readyz") == (200, "ok\n")
        status, text = _get(server.port, "/metrics")
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.close()
    assert status == 200
    m = _samples(text)
    a, c = (("stream", "cam-a"),), (("stream", "cam-c"),)
    assert m[("vidinfer_frames_decoded_total", a)] == 100
    assert m[("vidinfer_frames_analysed_total", a)] == 100
    # sample_fps = 5 on a 25 fps clip: one frame in five is analysed; the decoder skips most B-frames
    # (reference frames only), and the decoded frames that were not analysed are "not sampled".
    assert m[("vidinfer_frames_analysed_total", c)] == report.streams["cam-c"].frames_analysed == 20
    assert 20 < m[("vidinfer_frames_decoded_total", c)] == report.streams["cam-c"].frames_decoded < 100
    assert m[("vidinfer_frames_dropped_total", (("reason", "not_sampled"), ("stream", "cam-c")))] == \
        report.streams["cam-c"].frames_decoded - 20
    assert m[("vidinfer_frames_dropped_total", (("reason", "queue_full"), ("stream", "cam-a")))] == 0
    assert m[("vidinfer_stream_up", a)] == 0  # the file ended
    assert m[("vidinfer_batch_size_frames_count", ())] == report.batches
    assert m[("vidinfer_batch_size_frames_sum", ())] == 120
    assert m[("vidinfer_inference_duration_seconds_count", ())] == report.batches
    assert m[("vidinfer_frame_latency_seconds_count", ())] == 120
    assert m[("vidinfer_streams", ())] == 2
    # Which backend each part got, and each pipeline stage's own time and failures (both backends
    # export these).
    assert m[("vidinfer_device_info", (("device", "cpu"),))] == 1
    assert m[("vidinfer_backend_info", (("backend", "onnxruntime (CPU)"), ("stage", "detector")))] == 1
    assert m[("vidinfer_backend_info", (("backend", "pyav (FFmpeg software decode)"), ("stage", "decoder")))] == 1
    detect = (("stage", "detect:objects"),)
    assert m[("vidinfer_stage_duration_seconds_count", detect)] == report.batches
    assert 0 < m[("vidinfer_stage_duration_seconds_sum", detect)] <= report.stages["detect:objects"].seconds + 1e-6
    assert m[("vidinfer_stage_failures_total", detect)] == report.stages["detect:objects"].failures == 0
    assert {dict(k[1]).get("stage") for k in m if k[0] == "vidinfer_stage_duration_seconds_count"} == {"detect:objects"}
    assert not any(name.startswith("vidinfer_detector_duration") for name, _ in m)  # per stage now
    assert not any(name.startswith("vidinfer_nvdec") for name, _ in m)  # GPU-only counters
    # Naming rules: the prefix, counters end in _total, and no label but the stream (and a drop
    # reason); the two info gauges label what they describe, the per-stage metrics their stage.
    info_labels = {"vidinfer_backend_info": {"stage", "backend"}, "vidinfer_device_info": {"device"},
                   "vidinfer_stage_duration_seconds": {"stage"}, "vidinfer_stage_duration_seconds_created": {"stage"},
                   "vidinfer_stage_failures": {"stage"}}
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("vidinfer_"), fam.name
        for s in fam.samples:
            assert set(s.labels) <= {"stream", "reason", "le"} | info_labels.get(fam.name, set()), (s.name, s.labels)
            if fam.type == "counter":
                assert s.name.endswith(("_total", "_created")), s.name


def test_a_metrics_port_in_use_is_refused_with_the_fix():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            MetricsServer(CollectorRegistry(), "127.0.0.1", port)
    assert str(err.value) == (f"cannot serve metrics on 127.0.0.1:{port} (Address already in use); choose a free "
                              "port with --metrics-port or [metrics] port, or 0 to turn the endpoint off")


def test_a_shard_with_no_streams_idles_ready_until_stopped():
    # cam-a goes to shard 2 of 3 (see test_sharding): shard 1 of 3 has nothing to do.
    pipeline = _pipeline([("cam-a", "a", {})], shard=ShardSpec(index=1, count=3))
    assert pipeline.sources == []
    metrics = PipelineMetrics(pipeline)
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("report", pipeline.run()))
    runner.start()
    try:
        for _ in range(100):
            if pipeline.running:
                break
            runner.join(0.05)
        assert metrics.ready() == (True, "ok")
        assert runner.is_alive()  # a pod must not exit (and be restarted) for having no streams
    finally:
        pipeline.stop(interrupted=False)
        runner.join(10)
    assert not runner.is_alive() and result["report"].exit_code == 0
