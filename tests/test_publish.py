"""Wire format, publisher and subscriber over real ZeroMQ sockets."""

import json
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import zmq

from vidinfer.detections import Attribute, Detections
from vidinfer.errors import PublishError
from vidinfer.publish import Kind, Publisher, Subscriber
from vidinfer.publish.wire import decode_body, decode_header, detections_body, topic


def _dets():
    return Detections([[1.5, 2, 30, 40], [100, 120, 150, 190]], [0.9, 0.75], [2, 0],
                      attributes={"shade": Attribute(np.array([1, -1], np.int32), np.array([0.8, 0], np.float32))})


def test_topics_are_terminated_so_prefixes_do_not_cross_streams():
    assert topic(Kind.DETECTIONS, "cam-1") == b"det.cam-1."
    assert not topic(Kind.DETECTIONS, "cam-10").startswith(topic(Kind.DETECTIONS, "cam-1"))
    assert topic(Kind.END_OF_STREAM, "cam-1") == b"det.cam-1."
    with pytest.raises(ValueError, match="must match"):
        topic(Kind.DETECTIONS, "cam.1")


def test_detections_body_round_trips_columns():
    raw = detections_body("cam-1", 7, 280_000_000, 123, 1920, 1080, _dets(), discontinuity=True)
    body = decode_body("detections", raw)
    assert (body["stream_id"], body["frame_no"], body["pts_ns"], body["width"], body["height"]) == \
        ("cam-1", 7, 280_000_000, 1920, 1080)
    assert body["count"] == 2 and body["discontinuity"] is True
    np.testing.assert_array_equal(body["xyxy"], _dets().xyxy)
    assert body["class_id"].tolist() == [2, 0]
    assert body["track_id"] is None
    assert body["attributes"]["shade"][0].tolist() == [1, -1]
    # The bytes are exactly the documented little-endian layout, readable without vidinfer.
    plain = msgpack.unpackb(raw)
    assert np.frombuffer(plain["xyxy"], "<f4")[0] == 1.5


def test_header_is_versioned_and_appended_fields_are_kept():
    raw = msgpack.packb([1, 3, "detections", "pub", 5, 9, 11, 1, "future-field"])
    h = decode_header(raw)
    assert h["version"] == "1.3" and h["seq"] == 9 and h["extra"] == ["future-field"]
    assert h["flags"] == 1 and h["replay"] is True
    old = decode_header(msgpack.packb([1, 0, "detections", "pub", 5, 9, 11]))  # a 1.0 header: no flags
    assert old["flags"] == 0 and old["replay"] is False and "extra" not in old


def test_subscriber_in_another_process_receives_everything_in_order(tmp_path):
    """`vidinfer subscribe` in a child process prints one JSON line per message."""
    pub = Publisher("tcp://127.0.0.1:*", publisher_id="test-pub")
    endpoint = pub.bound_endpoint
    child = subprocess.Popen([sys.executable, "-m", "vidinfer", "subscribe", endpoint, "--topic", "det.cam-1.",
                              "--topic", "meta.", "--count", "7", "--timeout", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert pub.wait_for_subscribers(2, timeout_s=20), "the child never subscribed"
        pub.publish(Kind.METADATA, "cam-1", {"stream_id": "cam-1", "classes": ["a", "b", "c"]})
        for i in range(5):
            pub.publish(Kind.DETECTIONS, "cam-1", detections_body("cam-1", i, i, 0, 640, 360, _dets()))
            pub.publish(Kind.DETECTIONS, "cam-10", detections_body("cam-10", i, i, 0, 640, 360, _dets()))
        pub.publish(Kind.END_OF_STREAM, "cam-1", {"stream_id": "cam-1", "state": "ended"})
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        pub.close()
    lines = [json.loads(line) for line in out.splitlines()]
    assert child.returncode == 0, err
    assert [m["topic"] for m in lines] == ["meta.cam-1."] + ["det.cam-1."] * 6  # never cam-10
    dets = [m for m in lines if m["kind"] == "detections"]
    assert [m["seq"] for m in dets] == list(range(5))
    assert [m["body"]["frame_no"] for m in dets] == list(range(5))
    assert dets[0]["body"]["xyxy"] == [[1.5, 2.0, 30.0, 40.0], [100.0, 120.0, 150.0, 190.0]]
    assert dets[0]["publisher_id"] == "test-pub" and dets[0]["version"] == "1.1"
    assert lines[-1]["kind"] == "end_of_stream"
    assert lines[0]["body"]["classes"] == ["a", "b", "c"]


def test_late_subscriber_gets_metadata_replayed():
    with Publisher("tcp://127.0.0.1:*") as pub:
        pub.publish(Kind.METADATA, "cam-1", {"classes": ["x"]})
        with Subscriber(pub.bound_endpoint, topics=["meta."]) as sub:
            assert pub.wait_for_subscribers(1, 10)
            pub.publish(Kind.STATUS, "cam-1", {"state": "connected"})  # any publish handles subscriptions
            msg = sub.recv(timeout=10)
    assert msg is not None and msg.kind == "metadata" and msg.body["classes"] == ["x"]


def test_slow_subscriber_never_blocks_publisher_and_sees_its_losses_as_gaps():
    """ZeroMQ drops at a full subscriber's queue without telling the publisher (that is what keeps
    other subscribers unaffected): the loss is counted where it happens, by the subscriber."""
    ctx = zmq.Context()
    pub = Publisher("inproc://hwm", sndhwm=10, context=ctx)
    sub = Subscriber("inproc://hwm", topics=["det."], rcvhwm=10, context=ctx)
    assert pub.wait_for_subscribers(1, 5)
    body = detections_body("cam-1", 0, 0, 0, 10, 10, _dets())
    for _ in range(100):  # the subscriber reads nothing meanwhile: sends must not block
        assert pub.publish(Kind.DETECTIONS, "cam-1", body)
    assert pub.sent == 100 and pub.dropped == 0
    received = list(sub.iter(timeout=0.5))
    assert 0 < len(received) < 100 and [m.seq for m in received] == list(range(len(received)))
    pub.publish(Kind.DETECTIONS, "cam-1", body)
    last = sub.recv(timeout=5)
    lost = 100 - len(received)
    assert last.seq == 100 and last.gap == lost and sub.gaps == lost
    sub.close()
    pub.close()
    ctx.term()


def test_endpoint_in_use_is_a_one_line_error():
    with Publisher("tcp://127.0.0.1:*") as first:
        with pytest.raises(PublishError, match=r"cannot bind publish endpoint 'tcp://127\.0\.0\.1:\d+' "
                                               r"\(Address already in use\); choose a free port"):
            Publisher(first.bound_endpoint)
