"""`vidinfer proxy` as a real process: forwarding, subscriptions upstream, metadata for late joiners, Curve."""

import zmq
import zmq.auth

from proc_helpers import samples, start_proxy, stop, wait_until
from vidinfer.cli import main
from vidinfer.detections import Detections
from vidinfer.publish import Kind, Publisher, Subscriber
from vidinfer.publish.proxy import load_curve_client
from vidinfer.publish.wire import detections_body


def _det(sid, i):
    return detections_body(sid, i, i, 0, 64, 64, Detections.empty())


def test_a_late_subscriber_gets_metadata_from_the_proxy_after_the_publisher_is_gone():
    proxy, frontend, backend, mport = start_proxy()
    try:
        with Publisher(frontend, publisher_id="shard-gone", connect=True) as pub:
            # The proxy itself subscribes to meta. upstream, so metadata reaches it with nobody listening yet.
            assert pub.wait_for_subscribers(1, timeout_s=20), "the proxy never subscribed to metadata"
            pub.publish(Kind.METADATA, "cam-1", {"stream_id": "cam-1", "classes": ["red", "green", "blue"]})
        wait_until(lambda: samples(mport)[("vidinfer_proxy_state_topics", ())] == 1,
                   "the proxy never cached the metadata", proxy)
        with Subscriber(backend, topics=["meta."]) as late:
            msg = late.recv(timeout=20)
        assert msg is not None, "no metadata replayed to the late subscriber"
        assert (msg.kind, msg.stream_id, msg.body["classes"]) == ("metadata", "cam-1", ["red", "green", "blue"])
        assert msg.header["publisher_id"] == "shard-gone" and msg.seq == 0  # the message as published
        assert samples(mport)[("vidinfer_proxy_state_replayed_total", ())] == 1
    finally:
        code, _, err = stop(proxy)
    assert code == 0, err


def test_subscriptions_travel_upstream_and_messages_come_back_filtered_in_order():
    proxy, frontend, backend, mport = start_proxy()
    try:
        with Subscriber(backend, topics=["det.cam-1."]) as sub:
            wait_until(lambda: samples(mport)[("vidinfer_proxy_subscriptions_total", ())] >= 1,
                       "the subscription never reached the proxy", proxy)
            with Publisher(frontend, publisher_id="shard-0", connect=True) as pub:
                # On connecting, the proxy sends its whole subscription set: its own meta. and det.cam-1.
                assert pub.wait_for_subscribers(2, timeout_s=20)
                for i in range(50):
                    pub.publish(Kind.DETECTIONS, "cam-1", _det("cam-1", i))
                    pub.publish(Kind.DETECTIONS, "cam-10", _det("cam-10", i))
                got = [sub.recv(timeout=20) for _ in range(50)]
        assert [m.body["frame_no"] for m in got if m] == list(range(50))
        assert {m.topic for m in got} == {"det.cam-1."} and sub.gaps == 0
        # The publisher filtered upstream: cam-10 never crossed the proxy.
        assert samples(mport)[("vidinfer_proxy_messages_forwarded_total", ())] == 50
    finally:
        code, _, err = stop(proxy)
    assert code == 0, err


def _curve_proxy(tmp_path):
    """A proxy with CurveZMQ: one allow-list for publishers (shard), another for subscribers (viewer)."""
    keys, publishers, subscribers = tmp_path / "keys", tmp_path / "publishers", tmp_path / "subscribers"
    for d in (keys, publishers, subscribers):
        d.mkdir()
    server_pub, server_secret = zmq.auth.create_certificates(keys, "server")
    for name, folder in (("shard", publishers), ("viewer", subscribers)):
        public, _ = zmq.auth.create_certificates(keys, name)
        (folder / f"{name}.key").write_bytes(open(public, "rb").read())
    zmq.auth.create_certificates(keys, "rogue")
    proxy = start_proxy("--curve-secret-key", server_secret, "--curve-publishers", str(publishers),
                        "--curve-subscribers", str(subscribers))
    return proxy, {name: load_curve_client(server_pub, keys / f"{name}.key_secret")
                   for name in ("shard", "viewer", "rogue")}


def test_curve_proxy_serves_allowed_clients_only(tmp_path):
    (proxy, frontend, backend, mport), key = _curve_proxy(tmp_path)
    try:
        with Subscriber(backend, topics=["det."], curve=key["viewer"]) as good, \
                Subscriber(backend, topics=["det."], curve=key["rogue"]) as bad, \
                Subscriber(backend, topics=["det."], curve=key["shard"]) as publisher_key, \
                Subscriber(backend, topics=["det."]) as plain:
            wait_until(lambda: samples(mport)[("vidinfer_proxy_subscriptions_total", ())] >= 1,
                       "the allowed subscriber never got through", proxy)
            with Publisher(frontend, publisher_id="shard-0", connect=True, curve=key["shard"]) as pub:
                assert pub.wait_for_subscribers(2, timeout_s=20)
                pub.publish(Kind.DETECTIONS, "cam-1", _det("cam-1", 0))
                msg = good.recv(timeout=20)
            assert msg is not None and msg.body["frame_no"] == 0
            assert bad.recv(timeout=1) is None and plain.recv(timeout=1) is None
            assert publisher_key.recv(timeout=1) is None  # a publisher's key does not open the backend
        assert samples(mport)[("vidinfer_proxy_subscriptions_total", ())] == 1  # only the allowed one
    finally:
        code, _, err = stop(proxy)
    assert code == 0, err


def test_curve_proxy_refuses_a_subscribers_key_on_the_publishers_side(tmp_path):
    """A subscriber's key cannot publish into the frontend: forged ends of stream never arrive."""
    (proxy, frontend, backend, mport), key = _curve_proxy(tmp_path)
    try:
        with Subscriber(backend, topics=["det."], curve=key["viewer"]) as viewer:
            wait_until(lambda: samples(mport)[("vidinfer_proxy_subscriptions_total", ())] >= 1,
                       "the allowed subscriber never got through", proxy)
            with Publisher(frontend, publisher_id="forger", connect=True, curve=key["viewer"]) as forger:
                assert not forger.wait_for_subscribers(1, timeout_s=2)  # the proxy never lets it in
                forger.publish(Kind.END_OF_STREAM, "cam-1", {"stream_id": "cam-1", "state": "ended", "reason": "x"})
            with Publisher(frontend, publisher_id="shard-0", connect=True, curve=key["shard"]) as pub:
                assert pub.wait_for_subscribers(2, timeout_s=20)
                pub.publish(Kind.DETECTIONS, "cam-1", _det("cam-1", 7))
                msgs = list(viewer.iter(timeout=2))
        assert [(m.header["publisher_id"], m.kind) for m in msgs] == [("shard-0", "detections")]
        assert samples(mport)[("vidinfer_proxy_messages_forwarded_total", ())] == 1
    finally:
        code, _, err = stop(proxy)
    assert code == 0, err


def test_proxy_refuses_half_a_curve_configuration(capsys, tmp_path):
    code = main(["proxy", "--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0",
                 "--curve-secret-key", str(tmp_path / "server.key_secret")])
    assert code == 2
    assert capsys.readouterr().err == (
        "vidinfer: error: CurveZMQ needs --curve-secret-key (the proxy's .key_secret certificate), --curve-publishers "
        "and --curve-subscribers (the folders of allowed .key files); give all three or none\n")
    code = main(["proxy", "--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0",
                 "--curve-secret-key", str(tmp_path / "server.key_secret"), "--curve-publishers", str(tmp_path),
                 "--curve-subscribers", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"vidinfer: error: --curve-secret-key: certificate file '{tmp_path / 'server.key_secret'}' does not exist; "
        "fix the path (zmq.auth.create_certificates makes a .key and a .key_secret file)\n")
    code = main(["proxy", "--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0",
                 "--curve-secret-key", str(tmp_path / "server.key_secret"), "--curve-clients", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err == (
        "vidinfer: error: --curve-clients is gone: publishers and subscribers have separate allow-lists now; give "
        "--curve-publishers DIR and --curve-subscribers DIR (the same folder twice keeps the old behaviour)\n")


def test_a_publisher_needs_both_curve_keys():
    from pathlib import Path

    import pytest

    from vidinfer.config import parse_pipeline
    from vidinfer.errors import ConfigError

    root = Path(__file__).resolve().parents[1]
    data = {"stages": [{"type": "detect", "model": str(root / "models/shapes/detector.onnx"),
                        "classes": ["red", "green", "blue"]}],
            "streams": [{"id": "cam-1", "url": "x.mp4"}],
            "sinks": [{"type": "zmq", "endpoint": "tcp://proxy:5556", "connect": True,
                       "curve_server_key": "server.key"}]}
    with pytest.raises(ConfigError) as err:
        parse_pipeline(data, source="p.toml")
    assert str(err.value) == ("p.toml: key 'sinks[0]': give both curve_server_key (the proxy's .key) and "
                              "curve_secret_key (this publisher's .key_secret) for CurveZMQ, or neither")
