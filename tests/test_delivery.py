"""Results reach every subscriber, with real processes and sockets: a stuck subscriber costs the
others nothing, and a subscriber that joins before or after the run, or later on, learns the state
of every stream (metadata, status, end of stream, retained stage figures), flagged as replays."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

import vidinfer as vi
from ground_truth import CLIPS
from proc_helpers import samples, start_proxy, stop, wait_until
from test_pipeline_e2e import free_endpoint
from vidinfer.publish import Kind, Publisher, Subscriber

FRAMES = 10_000  # per stream; three streams: 30,000 detections messages
STUCK = """
import sys, time, pathlib, zmq
from vidinfer.publish import Subscriber
sub = Subscriber(sys.argv[1], rcvhwm=100)
go = pathlib.Path(sys.argv[2])
while not go.exists():  # stops reading: its queue fills while the run goes on
    time.sleep(0.05)
got = list(sub.iter(timeout=2))
print(len(got), sub.gaps, sum(m.kind == "end_of_stream" for m in got))
"""


@vi.stage(pixels="none", makes={"objects": ["thing"]})
def one_box(batch: vi.Batch) -> None:
    batch["objects"] = [vi.Detections(np.float32([[1, 2, 3, 4]]), np.float32([0.9]), np.int32([0]))
                        for _ in batch.frames]


def test_a_stuck_subscriber_costs_a_healthy_one_nothing_over_30000_messages(tmp_path):
    endpoint = free_endpoint()
    go = tmp_path / "go"
    stuck = subprocess.Popen([sys.executable, "-c", STUCK, endpoint, str(go)], stdout=subprocess.PIPE, text=True)
    healthy = subprocess.Popen([sys.executable, "-m", "vidinfer", "subscribe", endpoint, "--timeout", "10"],
                               stdout=subprocess.PIPE, text=True)
    image = np.zeros((32, 32, 3), np.uint8)
    sources = [vi.ArraySource(f"cam-{k}", frames=(image for _ in range(FRAMES)), fps=1000) for k in range(3)]
    try:
        report = vi.Pipeline(sources, [one_box], [vi.ZmqSink(endpoint=endpoint, wait_for_subscribers=2,
                                                             wait_timeout_s=30)], max_batch_size=16).run()
        lines = [json.loads(line) for line in healthy.communicate(timeout=120)[0].splitlines()]
        go.touch()
        stuck_got, stuck_gaps, stuck_ends = map(int, stuck.communicate(timeout=60)[0].split())
    finally:
        healthy.kill()
        stuck.kill()
    assert report.exit_code == 0 and report.frames == 3 * FRAMES
    for k in range(3):
        det = [m for m in lines if m["topic"] == f"det.cam-{k}."]
        assert [m["body"]["frame_no"] for m in det[:-1]] == list(range(FRAMES)), f"cam-{k}"
        assert det[-1]["kind"] == "end_of_stream" and det[-1]["body"]["frames_analysed"] == FRAMES
        live = [m for m in det if not m["replay"]]
        assert [m["seq"] for m in live] == list(range(FRAMES + 1))
    assert all(m["gap"] == 0 for m in lines)
    # The stuck one lost messages, only its own: what came after its queue filled, ends included
    # (a loss at the tail shows as no gap: nothing of those topics came after it).
    assert stuck_got < 3 * FRAMES and stuck_ends < 3, (stuck_got, stuck_gaps, stuck_ends)


def test_a_subscriber_started_before_the_run_learns_that_a_stream_failed_in_its_first_millisecond(models):
    endpoint = free_endpoint()
    with Subscriber(endpoint) as sub:  # connected before anything binds the endpoint
        report = vi.Pipeline([vi.StreamSpec(id="gone", url=str(CLIPS / "no_such_clip.mp4"))],
                             [vi.Detect(model=models / "detector.onnx", classes=["red", "green", "blue"])],
                             [vi.ZmqSink(endpoint=endpoint)]).run()
        got = list(sub.iter(timeout=2))
    assert report.exit_code == 1
    by_kind = {m.kind: m for m in got}
    assert set(by_kind) == {"metadata", "status", "end_of_stream"}, [m.kind for m in got]
    reason = f"file '{CLIPS / 'no_such_clip.mp4'}' does not exist; check the stream's url"
    assert (by_kind["status"].body["state"], by_kind["status"].body["reason"]) == ("failed", reason)
    assert (by_kind["end_of_stream"].body["state"], by_kind["end_of_stream"].body["reason"]) == ("failed", reason)
    assert by_kind["metadata"].body["classes"] == ["red", "green", "blue"]
    assert sub.gaps == 0


def test_a_late_subscriber_gets_every_streams_state_as_replays_then_the_live_messages_gap_free(models):
    endpoint = free_endpoint()
    pipeline = vi.Pipeline(
        [vi.StreamSpec(id="gone", url=str(CLIPS / "no_such_clip.mp4")),
         vi.StreamSpec(id="cam", url=str(CLIPS / "shapes_a.mp4"), realtime=True, loop=True, live=True)],
        [vi.Detect(model=models / "detector.onnx", classes=["red", "green", "blue"])],
        [vi.ZmqSink(endpoint=endpoint)])
    import threading

    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: pipeline.report.streams["gone"].state == "failed", "the missing file never failed")
        time.sleep(0.5)  # the failure is long gone by the time this subscriber arrives
        with Subscriber(endpoint) as late:
            got, until = [], time.monotonic() + 1.5  # the live stream never goes quiet: read for 1.5 s
            while time.monotonic() < until and (msg := late.recv(timeout=0.5)) is not None:
                got.append(msg)
    finally:
        pipeline.stop()
        runner.join(10)
    replays = [m for m in got if m.replay]
    assert {(m.stream_id, m.kind) for m in replays} == {
        ("gone", "metadata"), ("gone", "status"), ("gone", "end_of_stream"), ("cam", "metadata"), ("cam", "status")}
    state = {(m.stream_id, m.kind): m.body for m in replays}
    assert state[("gone", "status")]["state"] == "failed" and state[("gone", "end_of_stream")]["state"] == "failed"
    assert state[("cam", "status")]["state"] == "connected"
    live = [m for m in got if not m.replay and m.kind == "detections"]
    assert len(live) > 10 and all(m.stream_id == "cam" for m in live)
    assert late.gaps == 0  # the replays did not use up live sequence numbers


def test_retained_stage_messages_are_replayed_and_a_subscriber_drops_replays_it_already_has():
    endpoint = free_endpoint()
    with Publisher(endpoint, publisher_id="p") as pub, Subscriber(endpoint, topics=["brand."]) as early:
        assert pub.wait_for_subscribers(1, 5)
        for k in range(3):
            pub.publish("brand_exposure", "cam", {"k": k}, retain=True)
            pub.publish("zones", "cam", {"k": k})  # not retained: an event, never replayed
        first = list(early.iter(timeout=0.5))
        with Subscriber(endpoint, topics=["brand.", "zones."]) as late:
            deadline = time.monotonic() + 5
            while pub.replayed == 0 and time.monotonic() < deadline:
                pub.publish("zones", "cam", {"k": 99})  # the publisher handles subscriptions as it sends
                time.sleep(0.05)
            got = list(late.iter(timeout=0.5))
            again = list(early.iter(timeout=0.5))
    assert [(m.body["k"], m.replay) for m in first] == [(0, False), (1, False), (2, False)]
    brand = [m for m in got if m.topic == "brand.cam."]
    assert [(m.body["k"], m.seq, m.replay) for m in brand] == [(2, 2, True)]  # the latest, as first sent
    assert all(not m.replay for m in got if m.topic == "zones.cam.")
    assert again == [] and early.replays_skipped == 1  # the early one already had it


def test_the_proxy_keeps_a_gone_publishers_state_for_late_subscribers():
    proxy, frontend, backend, mport = start_proxy()
    try:
        with Publisher(frontend, publisher_id="shard-gone", connect=True) as pub:
            assert pub.wait_for_subscribers(2, timeout_s=20), "the proxy never subscribed to meta. and status."
            pub.publish(Kind.METADATA, "cam-1", {"stream_id": "cam-1", "classes": ["red"]})
            pub.publish(Kind.STATUS, "cam-1", {"stream_id": "cam-1", "state": "connected", "reason": ""})
            pub.publish(Kind.STATUS, "cam-1", {"stream_id": "cam-1", "state": "failed", "reason": "camera unplugged"})
        wait_until(lambda: samples(mport)[("vidinfer_proxy_state_topics", ())] == 2, "the proxy kept nothing", proxy)
        with Subscriber(backend) as late:
            got = list(late.iter(timeout=2))
        assert [(m.kind, m.replay, m.seq) for m in got] == [("metadata", True, 0), ("status", True, 1)]
        assert got[1].body["state"] == "failed" and got[1].header["publisher_id"] == "shard-gone"
    finally:
        code, _, err = stop(proxy)
    assert code == 0, err


def test_a_subscriber_skips_and_counts_a_malformed_message_instead_of_crashing(caplog):
    import msgpack
    import zmq

    from vidinfer.publish.wire import encode_header

    endpoint = free_endpoint()
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.bind(endpoint)
    with Subscriber(endpoint) as sub:
        time.sleep(0.3)  # the subscription reaches the bare PUB socket
        raw.send_multipart([b"det.cam.", b"\xc1not msgpack", b"x"])
        raw.send_multipart([b"det.cam."])
        raw.send_multipart([b"det.cam.", encode_header(Kind.STATUS, "p", 1, 0, 0),
                            msgpack.packb({"stream_id": "cam", "state": "ended", "reason": ""})])
        msg = sub.recv(timeout=5)
    raw.close(0)
    assert msg is not None and msg.kind == "status" and sub.malformed == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings[0].startswith("skipped a message on topic 'det.cam.' that is not a vidinfer message: its header "
                                  "cannot be decoded") and warnings[1] == (
        "skipped a message on topic 'det.cam.' that is not a vidinfer message: 1 frames instead of 3 (2 skipped so far)")
