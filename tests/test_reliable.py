"""The acknowledged channel (`type = "reliable"`, `vidinfer.ReliableConsumer`) with real processes and
sockets on 127.0.0.1: consumers SIGKILLed mid-stream and restarted lose nothing, no consumer at all
neither blocks nor loses, CurveZMQ keeps strangers out, the spool's bound holds and never outlasts a
stop. Each test prints its figures (run with -s; docs/reliability.md quotes them)."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from ground_truth import CLIPS
from proc_helpers import free_port, get, samples, wait_until
from test_pipeline_e2e import free_endpoint

import vidinfer as vi
from vidinfer.errors import ConfigError
from vidinfer.publish.proxy import load_curve_client
from vidinfer.publish.security import create_keys
from vidinfer.publish.sinks import read_file_sink

# A consumer process: every message it takes goes to OUT as one JSON line (flushed), then it sleeps
# DELAY (a slow database writer). It ends when nothing arrives for IDLE seconds.
CONSUMER = """
import json, sys, time
import vidinfer as vi
endpoint, out, state = sys.argv[1], sys.argv[2], sys.argv[3] or None
delay, idle = float(sys.argv[4]), float(sys.argv[5])
with vi.ReliableConsumer(endpoint, state_file=state) as rx, open(out, "a") as f:
    for m in rx.iter(timeout=idle):
        f.write(json.dumps({"d": m.delivery_seq, "topic": m.topic, "seq": m.seq, "kind": m.kind,
                            "frame_no": m.body.get("frame_no"), "count": m.body.get("count")}) + "\\n")
        f.flush()
        time.sleep(delay)
"""


def _pipeline(path: Path, models: Path, streams: dict[str, dict], sink: str, results: Path | None = None,
              name: str = "rel", extra: str = "") -> Path:
    """The shape detector on ``streams``, a reliable sink (``sink``: its keys) and a file sink of the same messages."""
    lines = [f'name = "{name}"', "max_batch_size = 8", "max_delay_ms = 20", "",
             "[[stages]]", 'type = "detect"', f'model = "{models / "detector.onnx"}"',
             'classes = ["red", "green", "blue"]', "conf_threshold = 0.5", "",
             "[[sinks]]", 'type = "reliable"', sink, ""]
    if results is not None:
        lines += ["[[sinks]]", 'type = "file"', f'path = "{results}"', ""]
    lines += [extra, ""]
    for sid, keys in streams.items():
        lines += ["[[streams]]", f'id = "{sid}"'] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()] + [""]
    path.write_text("\n".join(lines))
    return path


def _vidinfer(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidinfer", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _key(m) -> tuple:
    """What identifies a message whatever carried it: its topic, its sink-side number, its kind, its frame."""
    if isinstance(m, dict):
        return m["topic"], m["seq"], m["kind"], m["frame_no"], m["count"]
    return m.topic, m.seq, m.kind, m.body.get("frame_no"), m.body.get("count")


def _results(keys) -> int:
    return sum(_key(k)[2] in ("detections", "end_of_stream") if not isinstance(k, tuple) else
               k[2] in ("detections", "end_of_stream") for k in keys)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


# ------------------------------------------------------------------------------- consumer killed


@pytest.mark.parametrize("state", [True, False], ids=["state-file", "no-state-file"])
def test_consumer_sigkilled_three_times_mid_stream_loses_nothing(models, tmp_path, state):
    seed = int(os.environ.get("VIDINFER_TEST_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    endpoint, results, out = free_endpoint(), tmp_path / "results.msgpack", tmp_path / "received.jsonl"
    credit = 32
    streams = {"cam-a": {"url": str(CLIPS / "shapes_a.mp4"), "loop": 2},
               "cam-b": {"url": str(CLIPS / "shapes_b.mp4"), "loop": 2}}
    # linger_s: the run waits for the consumer to come back and take the rest before it exits.
    toml = _pipeline(tmp_path / "r.toml", models, streams,
                     f'endpoint = "{endpoint}"\nspool_dir = "{tmp_path / "spool"}"\ncredit = {credit}\nlinger_s = 60',
                     results)
    state_file = str(tmp_path / "consumer.state") if state else ""
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    child = _vidinfer("-q", "run", toml, "--report", report_path)
    kills: list[tuple[float, int]] = []  # (seconds since the run started, lines received before the kill)
    consumer = None
    try:
        for _ in range(3):
            consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, endpoint, str(out), state_file, "0.005", "20"])
            target = len(_lines(out)) + rng.randint(20, 120)
            wait_until(lambda n=target: len(_lines(out)) >= n, "the consumer to take its share", consumer, timeout=60)
            assert child.poll() is None, "the kill must land while the run goes on"
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            kills.append((time.monotonic() - started, len(_lines(out))))
        consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, endpoint, str(out), state_file, "0.005", "3"])
        _, err = child.communicate(timeout=120)
        assert consumer.wait(timeout=60) == 0
    finally:
        child.kill()
        if consumer is not None:
            consumer.kill()
    assert child.returncode == 0, err
    produced = [_key(m) for m in read_file_sink(results)]
    received = _lines(out)
    got = {_key(r) for r in received}
    lost = [k for k in produced if k not in got]
    assert lost == [], f"{len(lost)} lost, e.g. {lost[:3]}"
    assert len(got) == len(produced)  # nothing else arrived either
    ends = [k for k in got if k[2] == "end_of_stream"]
    assert sorted(k[0] for k in ends) == ["det.cam-a.", "det.cam-b."]
    frames = {sid: sorted(k[3] for k in got if k[0] == f"det.{sid}." and k[2] == "detections") for sid in streams}
    assert frames == {sid: list(range(200)) for sid in streams}  # two plays of 100 frames each, every one
    # Delivery numbers: 1..N, each message always under the same number.
    by_delivery = {}
    for r in received:
        assert by_delivery.setdefault(r["d"], _key(r)) == _key(r)
    assert sorted(by_delivery) == list(range(1, len(produced) + 1))
    # Duplicates come only after a kill, only of what that consumer had taken but not acknowledged: the run
    # of delivery numbers that ends with the last one it took, at most one credit window long.
    dups, cut = [], [0] + [n for _, n in kills] + [len(received)]
    seen: set[int] = set()
    for i in range(len(cut) - 1):
        part = [r["d"] for r in received[cut[i]:cut[i + 1]]]
        again = [d for d in part if d in seen]
        if i:
            last_before = received[cut[i] - 1]["d"]
            assert again == list(range(last_before - len(again) + 1, last_before + 1)), again
            assert len(again) <= (1 if state else credit), again
        else:
            assert again == []
        dups.append(len(again))
        seen.update(part)
    report = json.loads(report_path.read_text())
    figures = report["sinks"]["reliable"]
    assert figures == {"sent": len(produced), "dropped": 0, "buffered": 0, "buffered_bytes": 0,
                       "acknowledged": len(produced), "redelivered": figures["redelivered"],
                       "consumer_connected": figures["consumer_connected"], "errors": 0}
    assert figures["redelivered"] >= sum(dups)
    print(f"\nreliable, consumer SIGKILLed ({'with' if state else 'without'} a state file, seed {seed}): 3 kills at "
          f"{', '.join(f'{t:.1f} s' for t, _ in kills)} (after {', '.join(str(n) for _, n in kills)} lines); "
          f"{_results(produced)} results ({len(produced)} messages), 0 lost, {sum(dups)} duplicates "
          f"({'+'.join(map(str, dups[1:]))}), {figures['redelivered']} redelivered")


# ------------------------------------------------------------------------------- no consumer


def test_no_consumer_the_run_goes_on_says_so_sigterm_stops_it_and_a_later_run_delivers_everything(models,
                                                                                                  tmp_path):
    endpoint, spool, mport = free_endpoint(), tmp_path / "spool", free_port()
    results = tmp_path / "run1.msgpack"
    toml = _pipeline(tmp_path / "r1.toml", models, {"cam-a": {"url": str(CLIPS / "shapes_a.mp4"), "loop": True}},
                     f'endpoint = "{endpoint}"\nspool_dir = "{spool}"', results,
                     extra=f"[metrics]\nport = {mport}")
    report1 = tmp_path / "report1.json"
    child = _vidinfer("-q", "run", toml, "--report", report1)
    try:
        wait_until(lambda: sum(1 for _ in read_file_sink(results)) >= 150 if results.exists() else False,
                   "150 messages produced", child, timeout=60)
        code, why = get(mport, "/readyz")
        assert code == 503
        assert re.fullmatch(rf"sink 'reliable': no consumer connected to {endpoint} \(\d+ messages, [\d.]+ [kM]?B "
                            r"buffered\)\n", why), why
        m = samples(mport)
        assert m[("vidinfer_reliable_consumer_connected", (("sink", "reliable"),))] == 0
        assert m[("vidinfer_reliable_buffered_messages", (("sink", "reliable"),))] >= 150
        t0 = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert took < 5.0, f"SIGTERM took {took:.1f} s"
    produced = list(read_file_sink(results))
    n = len(produced)
    figures = json.loads(report1.read_text())["sinks"]["reliable"]
    assert figures == {"sent": n, "dropped": 0, "buffered": n, "buffered_bytes": figures["buffered_bytes"],
                       "acknowledged": 0, "redelivered": 0, "consumer_connected": 0, "errors": 0}
    assert produced[-1].kind == "end_of_stream" and produced[-1].body["reason"] == "stopped"
    size = r"[\d.]+ [kMG]?B"
    assert re.search(rf"WARNING vidinfer\.publish\.reliable: sink reliable: no consumer connected to {endpoint}; "
                     rf"messages are kept in the spool '{spool}' \(up to 1\.1 GB; the pipeline waits when it is "
                     rf"full\): \d+ buffered\n", err), err
    assert re.search(rf"sink reliable: 0 of the {n} messages sent were acknowledged; {n} \({size}\) stay in the spool "
                     rf"'{spool}' \(no consumer connected during the run\) and go to the consumer when a pipeline "
                     rf"with this spool_dir runs again\n", err), err

    # A later run with the same spool: the consumer gets every message of the first run, then its own.
    results2, report2 = tmp_path / "run2.msgpack", tmp_path / "report2.json"
    toml2 = _pipeline(tmp_path / "r2.toml", models, {"cam-b": {"url": str(CLIPS / "shapes_b.mp4")}},
                      f'endpoint = "{endpoint}"\nspool_dir = "{spool}"', results2)
    with vi.ReliableConsumer(endpoint) as rx:
        child = _vidinfer("-q", "run", toml2, "--report", report2)
        try:
            received = []
            while not (received and received[-1].kind == "end_of_stream" and received[-1].stream_id == "cam-b"):
                msg = rx.recv(timeout=60)
                assert msg is not None, "the reliable sink went quiet"
                received.append(msg)
            rx.ack()
            _, err2 = child.communicate(timeout=60)
        finally:
            child.kill()
    assert child.returncode == 0, err2
    assert f"sink reliable: {n} messages of an earlier run (" in err2 and f") were never acknowledged; they stay " \
           f"in the spool '{spool}' and go to the consumer first" in err2
    second = list(read_file_sink(results2))
    assert [_key(m) for m in received] == [_key(m) for m in produced] + [_key(m) for m in second]
    assert [m.delivery_seq for m in received] == list(range(1, n + len(second) + 1))
    assert rx.duplicates == 0
    figures2 = json.loads(report2.read_text())["sinks"]["reliable"]
    assert figures2 == {"sent": len(second), "dropped": 0, "buffered": 0, "buffered_bytes": 0,
                        "acknowledged": n + len(second), "redelivered": 0, "consumer_connected": 1, "errors": 0}
    print(f"\nreliable, no consumer: {n} messages ({_results(produced)} results) buffered, SIGTERM -> exit 130 in "
          f"{took:.1f} s; the next run delivered all {n} first, then its own {len(second)}: 0 lost, 0 duplicates")


# ------------------------------------------------------------------------------- CurveZMQ


def test_clients_without_an_allowed_key_get_nothing_from_a_secured_reliable_sink(models, tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    for name in ("server", "good", "stranger"):
        create_keys(keys, name)
    allowed.mkdir()
    (allowed / "good.key").write_bytes((keys / "good.key").read_bytes())
    endpoint, results = free_endpoint(), tmp_path / "results.msgpack"
    toml = _pipeline(tmp_path / "c.toml", models, {"cam-a": {"url": str(CLIPS / "shapes_a.mp4")}},
                     f'endpoint = "{endpoint}"\nspool_dir = "{tmp_path / "spool"}"\n'
                     f'curve_server_secret_key = "{keys / "server.key_secret"}"\ncurve_clients = "{allowed}"', results)
    ctx = zmq.Context.instance()
    plain_dealer, plain_pull = ctx.socket(zmq.DEALER), ctx.socket(zmq.PULL)
    for s in (plain_dealer, plain_pull):
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
    plain_dealer.send_multipart([b"HELLO", msgpack.packb([1, "thief", "", 0, 1000])])  # the protocol, without keys
    stranger = vi.ReliableConsumer(endpoint, consumer_id="stranger",
                                   curve=load_curve_client(keys / "server.key", keys / "stranger.key_secret"))
    good = vi.ReliableConsumer(endpoint, consumer_id="good",
                               curve=load_curve_client(keys / "server.key", keys / "good.key_secret"))
    try:
        child = _vidinfer("-q", "run", toml)
        try:
            received = []
            while not received or received[-1].kind != "end_of_stream":
                msg = good.recv(timeout=60)
                assert msg is not None, "the keyed consumer got nothing"
                received.append(msg)
            good.ack()
            _, err = child.communicate(timeout=60)
        finally:
            child.kill()
        assert child.returncode == 0, err
        assert [_key(m) for m in received] == [_key(m) for m in read_file_sink(results)]
        assert stranger.recv(timeout=0.5) is None and not stranger.welcomed
        assert plain_dealer.poll(200) == 0 and plain_pull.poll(200) == 0
        assert "takes over" not in err
    finally:
        for s in (plain_dealer, plain_pull):
            s.close(0)
        stranger.close()
        good.close()
    print(f"\nreliable with CurveZMQ: the keyed consumer got {len(received)} of {len(received)}; a DEALER and a PULL "
          f"without keys and a consumer with a key not allowed got 0")


# ------------------------------------------------------------------------------- spool bound


def test_a_full_spool_makes_the_pipeline_wait_live_frames_drop_and_stop_still_ends_it(tmp_path, caplog):
    def camera():
        image = np.zeros((48, 64, 3), np.uint8)
        while True:
            yield image

    spool = tmp_path / "spool"
    sink = vi.ReliableSink(endpoint="tcp://127.0.0.1:*", spool_dir=spool, max_buffer_bytes=4096)
    source = vi.ArraySource("cam", frames=camera(), fps=25, live=True, queue_size=4)
    pipe = vi.Pipeline([source], [vi.stage(lambda batch: None, pixels="none", name="nothing")], [sink], name="tiny")
    reports = []
    caplog.set_level(logging.INFO, logger="vidinfer.publish.reliable")
    runner = threading.Thread(target=lambda: reports.append(pipe.run()))
    runner.start()
    try:
        wait_until(lambda: any("the buffer is full" in r.getMessage() for r in caplog.records), "the buffer full")
        waited_from = pipe.report.streams["cam"].frames_analysed
        wait_until(lambda: pipe.queues["cam"].dropped > 50, "live frames dropped while the pipeline waits")
        assert pipe.report.streams["cam"].frames_analysed == waited_from  # it waits: nothing analysed meanwhile
        t0 = time.monotonic()
        pipe.stop()
        runner.join(5)
        took = time.monotonic() - t0
    finally:
        pipe.stop()
        runner.join(10)
    assert not runner.is_alive() and took < 2.0, f"stop took {took:.1f} s"
    report = reports[0]
    assert report.exit_code == 130 and report.streams["cam"].frames_dropped > 50
    figures = report.sinks["reliable"]
    assert figures["buffered"] == figures["sent"] == report.frames + 5  # metadata x2, status x2, end, every frame
    full = [r.getMessage() for r in caplog.records if "the buffer is full" in r.getMessage()]
    assert len(full) == 1 and re.fullmatch(
        rf"sink reliable: the buffer is full \([\d.]+ k?B of max_buffer_bytes 4\.1 kB, \d+ messages, no consumer "
        rf"connected to {re.escape(sink.bound_endpoint or '')}\): the pipeline waits for the consumer; live streams "
        r"drop frames before analysis meanwhile", full[0]), full

    # Nothing produced was lost: what the stopped run kept is all in the spool, for the next run's consumer.
    later = vi.ReliableSink(endpoint="tcp://127.0.0.1:*", spool_dir=spool, max_buffer_bytes=4096)
    idle = vi.Pipeline([], [vi.stage(lambda batch: None, pixels="none", name="nothing")], [later], name="tiny")
    runner = threading.Thread(target=idle.run)
    runner.start()
    try:
        wait_until(lambda: later.bound_endpoint, "the second sink bound")
        with vi.ReliableConsumer(later.bound_endpoint or "") as rx:
            got = list(rx.iter(timeout=2))
            rx.ack()
            wait_until(lambda: later.figures()["buffered"] == 0, "everything acknowledged")
    finally:
        idle.stop()
        runner.join(10)
    assert [m.delivery_seq for m in got] == list(range(1, figures["sent"] + 1))
    det = [m.body["frame_no"] for m in got if m.kind == "detections"]
    assert len(det) == report.frames and det == sorted(det)
    assert got[-1].kind == "end_of_stream" and got[-1].body["reason"] == "stopped"
    print(f"\nreliable, spool bound 4096 B, no consumer: {report.frames} frames analysed, "
          f"{report.streams['cam'].frames_dropped} live frames dropped while it waited, stop() ended it in "
          f"{took:.2f} s, all {figures['sent']} messages delivered from the spool afterwards")


def test_a_consumer_that_outlives_the_pipeline_gets_the_rest_from_the_next_run(tmp_path):
    endpoint, spool = free_endpoint(), tmp_path / "spool"
    nothing = vi.stage(lambda batch: None, pixels="none", name="nothing")
    image = np.zeros((48, 64, 3), np.uint8)

    def start(stream_id: str, reports: list) -> tuple[vi.ArraySource, threading.Thread]:
        source = vi.ArraySource(stream_id, fps=25)
        pipe = vi.Pipeline([source], [nothing], [vi.ReliableSink(endpoint=endpoint, spool_dir=spool, credit=8,
                                                                 linger_s=1)])
        runner = threading.Thread(target=lambda: reports.append(pipe.run()))
        runner.start()
        return source, runner

    first_reports: list = []
    second_reports: list = []
    with vi.ReliableConsumer(endpoint) as rx:
        source, runner = start("first", first_reports)
        got = [rx.recv(timeout=30)]  # its metadata, sent at open: the consumer is in
        for _ in range(40):
            source.push(image)
        source.end()
        got += list(rx.iter(timeout=30, count=14))  # 15 taken, then it stops reading; the run ends
        runner.join(30)
        assert first_reports[0].sinks["reliable"]["acknowledged"] == 15
        assert first_reports[0].sinks["reliable"]["buffered"] == 45 - 15
        source, runner = start("second", second_reports)  # the same endpoint and spool; nobody told the consumer
        while got[-1].stream_id != "second":  # what was in flight, then (after RESET and HELLO) the rest
            got.append(rx.recv(timeout=30))
        for _ in range(40):
            source.push(image)
        source.end()
        while got[-1].kind != "end_of_stream" or got[-1].stream_id != "second":
            got.append(rx.recv(timeout=30))
        rx.ack()
        runner.join(30)
    assert [m.delivery_seq for m in got] == list(range(1, 45 + 45 + 1))  # each once, in order
    assert [m.stream_id for m in got].count("first") == 45 and rx.duplicates == 0
    assert second_reports[0].sinks["reliable"]["buffered"] == 0
    assert second_reports[0].sinks["reliable"]["acknowledged"] == 45 + 45 - 15


# ------------------------------------------------------------------------------- the command line, the TOML


def test_subscribe_reliable_prints_every_message_and_resumes_with_its_state_file(tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 30
    nothing = vi.stage(lambda batch: None, pixels="none", name="nothing")
    report = vi.Pipeline([vi.ArraySource("cam", frames=frames, fps=25)], [nothing],
                         [vi.ReliableSink(endpoint="tcp://127.0.0.1:*", spool_dir=tmp_path / "spool")]).run()
    assert report.sinks["reliable"]["buffered"] == 35  # nobody consumed: all in the spool
    # A pipeline with no streams (it idles until stopped) serves that spool to `vidinfer subscribe --reliable`.
    sink = vi.ReliableSink(endpoint="tcp://127.0.0.1:*", spool_dir=tmp_path / "spool")
    pipe = vi.Pipeline([], [nothing], [sink])
    runner = threading.Thread(target=pipe.run)
    runner.start()
    try:
        wait_until(lambda: sink.bound_endpoint, "the sink bound")
        state = tmp_path / "state.json"
        cmd = [sys.executable, "-m", "vidinfer", "subscribe", sink.bound_endpoint or "", "--reliable",
               "--state-file", str(state)]
        first = subprocess.run([*cmd, "--count", "20"], capture_output=True, text=True, timeout=60)
        second = subprocess.run([*cmd, "--timeout", "1"], capture_output=True, text=True, timeout=60)
        wait_until(lambda: sink.figures()["buffered"] == 0, "every message acknowledged")
    finally:
        pipe.stop()
        runner.join(20)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    lines = [json.loads(x) for x in first.stdout.splitlines()] + [json.loads(x) for x in second.stdout.splitlines()]
    assert [x["delivery_seq"] for x in lines] == list(range(1, 36))  # resumed at 21: nothing twice, nothing lost
    assert [x["kind"] for x in lines] == (["metadata", "metadata", "status"] + ["detections"] * 30
                                          + ["status", "end_of_stream"])
    assert [x["body"]["frame_no"] for x in lines if x["kind"] == "detections"] == list(range(30))
    assert json.loads(state.read_text())["processed"] == 35
    assert sink.figures()["acknowledged"] == 35


def test_a_push_sink_in_a_pipeline_file_says_to_use_reliable(models, tmp_path):
    toml = _pipeline(tmp_path / "p.toml", models, {"cam": {"url": "a.mp4"}}, 'endpoint = "tcp://127.0.0.1:5557"')
    toml.write_text(toml.read_text().replace('type = "reliable"', 'type = "push"'))
    with pytest.raises(ConfigError) as e:
        vi.load_pipeline(toml)
    assert str(e.value) == (f"{toml}: key 'sinks[0].type': type = \"push\" (the PUSH socket) is replaced by the "
                            "acknowledged channel: write type = \"reliable\" (keys: endpoint, spool_dir, "
                            "max_buffer_bytes, credit; docs/configuration.md)")
