"""The local proof of scale-out: 3 `vidinfer run` shards -> `vidinfer proxy` -> one subscriber, all real
processes on 127.0.0.1. Every stream's results arrive exactly once, and each shard's metrics say so too."""

from collections import Counter, defaultdict
from pathlib import Path

from proc_helpers import free_port, get, samples, start_proxy, stop, vidinfer, wait_until
from vidinfer.publish import Subscriber
from vidinfer.sharding import shard_of

ROOT = Path(__file__).resolve().parents[1]
# Ids chosen so that each of 3 shards gets work: cam-a -> 2, cam-b, cam-c -> 0, cam-e -> 1.
STREAMS = {"cam-a": "shapes_a", "cam-b": "shapes_b", "cam-c": "shapes_c", "cam-e": "shapes_d"}
SHARDS = 3
FRAMES = 100  # every sample clip has 100 frames


def _pipeline(tmp_path: Path, frontend: str) -> Path:
    streams = "".join(f'\n[[streams]]\nid = "{sid}"\nurl = "{ROOT / "sample_streams" / f"{clip}.mp4"}"\n'
                      for sid, clip in STREAMS.items())
    path = tmp_path / "shards.toml"
    path.write_text(f"""
name = "scale-out"
max_batch_size = 8
max_delay_ms = 20

[[stages]]
type = "detect"
model = "{ROOT / 'models/shapes/detector.onnx'}"
labels_file = "{ROOT / 'models/shapes/labels.txt'}"
conf_threshold = 0.5

[[stages]]
type = "classify"
name = "shade"
model = "{ROOT / 'models/shapes/shade.onnx'}"
labels = ["bright", "dim"]

[[sinks]]
type = "zmq"
endpoint = "{frontend}"
connect = true
wait_for_subscribers = 1   # through the proxy: its subscription set arrives when the shard connects
wait_timeout_s = 30

[metrics]
hold_s = 120               # keep /metrics up after the files end, until the test has scraped it
{streams}""")
    return path


def test_three_shards_through_a_proxy_deliver_every_stream_exactly_once(tmp_path):
    assert sorted({shard_of(s, SHARDS) for s in STREAMS}) == [0, 1, 2]  # every shard has work
    proxy, frontend, backend, proxy_port = start_proxy()
    shards, ports = [], []
    try:
        with Subscriber(backend, topics=["det.", "meta."]) as sub:
            # The slow joiner: the subscriber must be known to the proxy before any shard connects, so the
            # proxy hands each shard the subscriptions at once and no shard publishes into the void.
            wait_until(lambda: samples(proxy_port)[("vidinfer_proxy_subscriptions_total", ())] >= 2,
                       "the subscriber's subscriptions never reached the proxy", proxy)
            toml = _pipeline(tmp_path, frontend)
            for i in range(SHARDS):
                ports.append(free_port())
                shards.append(vidinfer("-q", "run", str(toml), "--shard-index", str(i), "--shard-count",
                                       str(SHARDS), "--metrics-port", str(ports[i])))
            messages, ended = [], set()
            while ended != set(STREAMS):
                msg = sub.recv(timeout=60)
                assert msg is not None, f"nothing for 60 s; ended so far: {sorted(ended)}"
                messages.append(msg)
                if msg.kind == "end_of_stream":
                    ended.add(msg.stream_id)
            gaps = sub.gaps

        dets = [m for m in messages if m.kind == "detections"]
        eos = [m for m in messages if m.kind == "end_of_stream"]
        meta = {m.stream_id: m.body for m in messages if m.kind == "metadata"}
        frames = defaultdict(list)
        publishers = defaultdict(set)
        for m in dets:
            frames[m.stream_id].append(m.body["frame_no"])
            publishers[m.stream_id].add(m.header["publisher_id"])
        for sid in STREAMS:
            assert frames[sid] == list(range(FRAMES)), sid  # every frame once, in order
            assert len(publishers[sid]) == 1, sid  # one shard per stream
            assert meta[sid]["classes"] == ["red", "green", "blue"]
            assert meta[sid]["attributes"] == {"shade": ["bright", "dim"]}
        assert Counter(m.stream_id for m in eos) == Counter({sid: 1 for sid in STREAMS})
        assert all(m.body["state"] == "ended" and m.body["frames_analysed"] == FRAMES for m in eos)
        # Gap-free: on each det topic the sequence numbers run 0..100 (100 frames and the end of stream).
        seqs = defaultdict(list)
        for m in dets + eos:
            seqs[m.topic].append(m.seq)
        assert all(s == list(range(FRAMES + 1)) for s in seqs.values()) and gaps == 0
        # Three publishers: one per shard process.
        assert len({p for ps in publishers.values() for p in ps}) == SHARDS

        # Each shard's metrics endpoint counts exactly its share, and it is ready.
        for i, port in enumerate(ports):
            m = samples(port)
            mine = {sid for sid in STREAMS if shard_of(sid, SHARDS) == i}
            counted = {dict(k[1])["stream"]: v for k, v in m.items() if k[0] == "vidinfer_frames_analysed_total"}
            assert counted == {sid: FRAMES for sid in mine}, (i, counted)
            assert all(m[("vidinfer_frames_decoded_total", (("stream", sid),))] == FRAMES for sid in mine)
            assert m[("vidinfer_messages_dropped_total", ())] == 0
            assert m[("vidinfer_frame_latency_seconds_count", ())] == FRAMES * len(mine)
            assert (m[("vidinfer_shard_index", ())], m[("vidinfer_shard_count", ())]) == (i, SHARDS)
            assert get(port, "/readyz") == (200, "ok\n") and get(port, "/healthz")[0] == 200
        pm = samples(proxy_port)
        assert pm[("vidinfer_proxy_messages_forwarded_total", ())] >= len(STREAMS) * (FRAMES + 1)
        # Kept for late subscribers, per stream: its metadata, its last status and its end of stream.
        assert pm[("vidinfer_proxy_state_topics", ())] == 3 * len(STREAMS)
    finally:
        results = [stop(p) for p in shards]
        proxy_code, _, proxy_err = stop(proxy)
    for code, out, err in results:  # the first SIGTERM ends the metrics hold: a normal exit
        assert code == 0, err
        assert "ended" in out
    assert proxy_code == 0, proxy_err
