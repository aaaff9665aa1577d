"""The acknowledged sink for consumers that must not lose anything, CurveZMQ on the publisher itself,
`vidinfer keys`, and credentials that never leave the process: real `vidinfer run` processes,
real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time


from fault_helpers import CLIP_A, closed_port, write_pipeline
from ground_truth import CLIPS
from proc_helpers import free_port, get, stop, wait_until
from test_pipeline_e2e import check_results, collect_until_all_ended, free_endpoint
from vidinfer.publish import Subscriber
from vidinfer.publish.proxy import load_curve_client
from vidinfer.publish.reliable import ReliableConsumer
from vidinfer.publish.sinks import read_file_sink

TWO = {"cam-a": {"url": str(CLIP_A)}, "cam-b": {"url": str(CLIPS / "shapes_b.mp4")}}


def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "vidinfer", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- reliable sinks


def test_slow_consumer_of_the_reliable_sink_gets_every_message_with_no_gap(models, tmp_path):
    pub_endpoint, reliable = free_endpoint(), free_endpoint()
    results = tmp_path / "out" / "results.msgpack"
    # The consumer takes at most 4 messages at a time: the rest waits in the sink's spool.
    toml = write_pipeline(tmp_path / "r.toml", models, pub_endpoint, TWO,
                          extra=f'[[sinks]]\ntype = "reliable"\nendpoint = "{reliable}"\n'
                                f'spool_dir = "{tmp_path / "spool"}"\n\n'
                                f'[[sinks]]\ntype = "file"\npath = "{results}"')
    toml.write_text(toml.read_text().replace("wait_for_subscribers = 1", ""))  # nobody on PUB: no wait
    report_path = tmp_path / "report.json"
    child = run_cli("-q", "run", toml, "--report", report_path)
    try:
        with ReliableConsumer(reliable, credit=4) as rx:
            messages = []
            ended = set()
            while ended != set(TWO):
                msg = rx.recv(timeout=60)
                assert msg is not None, "the reliable sink went quiet"
                messages.append(msg)
                if msg.kind == "end_of_stream":
                    ended.add(msg.stream_id)
                time.sleep(0.005)  # a slow consumer
            rx.ack()  # the last one too: the run then ends without waiting for it
            _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    check_results(messages, {"cam-a": "shapes_a", "cam-b": "shapes_b"})
    assert rx.gaps == 0
    # Each sink numbers its own messages: on every topic (metadata and status too) the reliable consumer sees
    # 0, 1, 2, ... with nothing of the ZeroMQ publisher's (its metadata replays to late subscribers).
    by_topic: dict[str, list[int]] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m.seq)
    assert {t.split(".")[0] for t in by_topic} == {"meta", "status", "det"}
    assert all(seqs == list(range(len(seqs))) for seqs in by_topic.values()), by_topic
    assert [m.kind for m in messages if m.topic == "meta.cam-a."] == ["metadata", "metadata"]  # at start, on connect
    # The file sink holds the same messages, in the same order, with the same sequence numbers.
    from_file = list(read_file_sink(results))
    assert [(m.topic, m.seq, m.kind) for m in from_file] == [(m.topic, m.seq, m.kind) for m in messages]
    check_results(from_file, {"cam-a": "shapes_a", "cam-b": "shapes_b"})
    report = json.loads(report_path.read_text())
    assert report["frames"] == 200
    assert report["sinks"]["file"] == {"sent": len(messages), "dropped": 0, "errors": 0}
    assert report["sinks"]["reliable"] == {"sent": len(messages), "dropped": 0, "buffered": 0, "buffered_bytes": 0,
                                           "acknowledged": len(messages), "redelivered": 0, "consumer_connected": 1,
                                           "errors": 0}
    assert rx.duplicates == 0 and [m.delivery_seq for m in messages] == list(range(1, len(messages) + 1))


def test_reliable_endpoint_in_use_is_refused_at_start_with_the_key_named(models, tmp_path):
    busy = free_endpoint()
    with ReliableConsumer(busy):  # connects only; bind something on the port to make it busy
        import zmq

        ctx = zmq.Context.instance()
        holder = ctx.socket(zmq.ROUTER)
        holder.bind(busy)
        try:
            toml = write_pipeline(tmp_path / "r.toml", models, free_endpoint(), {"cam-a": {"url": str(CLIP_A)}},
                                  extra=f'[[sinks]]\ntype = "reliable"\nendpoint = "{busy}"\n'
                                        f'spool_dir = "{tmp_path / "spool"}"')
            # Nobody subscribes here: the ZeroMQ sink, opened first, must not wait 30 s for a subscriber.
            toml.write_text(toml.read_text().replace("wait_for_subscribers = 1", ""))
            done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "run", str(toml)],
                                  capture_output=True, text=True, timeout=60)
        finally:
            holder.close(0)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"vidinfer: error: {toml}: sink 'reliable': key 'endpoint': cannot bind '{busy}' "
                                   "(Address already in use); choose a free port or a valid endpoint such as "
                                   "tcp://127.0.0.1:5557")


# ---------------------------------------------------------------- CurveZMQ on the publisher


def test_keys_command_writes_a_pair_and_never_overwrites(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vidinfer", "keys", str(tmp_path / "k"), "--name", "cam"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"public key (give to the other side): {tmp_path / 'k' / 'cam.key'}",
                                        f"secret key (keep private): {tmp_path / 'k' / 'cam.key_secret'}"]
    assert (tmp_path / "k" / "cam.key_secret").stat().st_mode & 0o077 == 0
    again = subprocess.run([sys.executable, "-m", "vidinfer", "keys", str(tmp_path / "k"), "--name", "cam"],
                           capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"vidinfer: error: '{tmp_path / 'k' / 'cam.key'}' already exists; choose "
                                    "another --name or folder (keys are never overwritten)")


def test_only_a_subscriber_with_an_allowed_key_receives_anything(models, tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    for name in ("server", "good", "stranger"):
        subprocess.run([sys.executable, "-m", "vidinfer", "keys", str(keys), "--name", name], check=True,
                       capture_output=True)
    allowed.mkdir()
    (allowed / "good.key").write_bytes((keys / "good.key").read_bytes())
    endpoint = free_endpoint()
    toml = write_pipeline(tmp_path / "c.toml", models, endpoint, {"cam-a": {"url": str(CLIP_A)}},
                          sink_keys=f'curve_server_secret_key = "{keys / "server.key_secret"}"\n'
                                    f'curve_clients = "{allowed}"')
    good = Subscriber(endpoint, curve=load_curve_client(keys / "server.key", keys / "good.key_secret"))
    stranger = Subscriber(endpoint, curve=load_curve_client(keys / "server.key", keys / "stranger.key_secret"))
    plain = Subscriber(endpoint)
    try:
        child = run_cli("-q", "run", toml)
        try:
            messages = collect_until_all_ended(good, ["cam-a"], timeout=60)
            _, err = child.communicate(timeout=60)
        finally:
            child.kill()
        assert child.returncode == 0, err
        check_results(messages, {"cam-a": "shapes_a"})
        assert stranger.recv(timeout=1.0) is None and plain.recv(timeout=0.5) is None
    finally:
        for s in (good, stranger, plain):
            s.close()


# ---------------------------------------------------------------- credentials


def test_credentials_in_a_stream_url_appear_in_no_log_status_metric_or_report(models, tmp_path):
    port, mport = closed_port(), free_port()
    url = f"rtsp://viewer:s3cret@127.0.0.1:{port}/x"
    streams = {"cam-a": {"url": str(CLIP_A)},
               "secret-cam": {"url": url, "max_reconnects": 1, "reconnect_max_s": 0.2, "open_timeout_s": 2}}
    endpoint = free_endpoint()
    toml = write_pipeline(tmp_path / "s.toml", models, endpoint, streams,
                          extra=f"\n[metrics]\nport = {mport}\nhold_s = 60")
    report_path = tmp_path / "report.json"
    with Subscriber(endpoint) as sub:
        child = run_cli("-v", "run", toml, "--report", report_path)  # -v: debug logging, the most text
        try:
            messages = collect_until_all_ended(sub, streams, timeout=60)
            metrics = wait_until(lambda: (lambda r: r[1] if r[0] == 200 and "secret-cam" in r[1] else None)(
                get(mport, "/metrics")), "metrics", child, timeout=30)
            wait_until(report_path.exists, "the report", child, timeout=30)  # written before the hold
            code, out, err = stop(child)  # ends the metrics hold
        finally:
            child.kill()
    assert code == 1, err
    secret_states = [m.body["state"] for m in messages if m.stream_id == "secret-cam" and m.kind == "status"]
    assert secret_states[-1] == "failed" and "reconnecting" in secret_states
    wire = json.dumps([m.to_json() for m in messages])
    assert f"rtsp://***@127.0.0.1:{port}/x" in wire  # the URL is reported, redacted
    for where, text in {"stderr (logs)": err, "stdout": out, "status/metadata messages": wire,
                        "metrics": metrics, "report": report_path.read_text()}.items():
        assert "s3cret" not in text and "viewer" not in text, where
