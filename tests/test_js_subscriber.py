"""A subscriber in another language: tests/js/subscriber.mjs (Node.js, the npm packages `zeromq`
and `@msgpack/msgpack`), written from docs/wire-format.md alone, against a real pipeline.

The pipeline publishes three layers (the shape detector's boxes, classified and tracked, in the
body's own columns; under ``layers`` two that a function stage derives from them, one with track
ids beyond 2^53 and -1, one untracked and empty on every other frame) and a stage message of its
own, over two sample clips. The Node subscriber (in its own process) and vidinfer's Python
`Subscriber` are connected to it at the same time; every message each decoded is compared, field
by field, exactly: topic, every header field, every box, score, class id, track id and attribute
of every layer, every key of every other body (floats bit for bit, 64-bit integers exact).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ground_truth import CLIPS, load_gt

import vidinfer as vi
from vidinfer.publish import Subscriber
from vidinfer.testing.shape_models import SHADE_LABELS, SHAPE_CLASSES

JS = Path(__file__).parent / "js"
SCRIPT = JS / "subscriber.mjs"
PACKAGES = ("zeromq", "@msgpack/msgpack")
INSTALL = "cd tests/js && npm ci --ignore-scripts (.ci/run does it)"

# The fields docs/wire-format.md names 64-bit: the Node subscriber prints them as decimal strings.
SIXTY_FOUR = {"epoch", "seq", "emit_ns", "pts_ns", "capture_ns", "time_ns"}
MAX_SAFE = 2**53 - 1
STREAMS = {"cam-a": "shapes_a", "cam-b": "shapes_b"}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"Node.js is not installed (`node` not on PATH): install Node.js 18+ and npm, then {INSTALL}")
    missing = [p for p in PACKAGES if not (JS / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.skip(f"the npm packages {missing} of the Node.js subscriber are not installed: "
                    f"with Node.js 18+ and npm, {INSTALL}")
    return node


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# -- what the Python side decoded, in the Node subscriber's JSON form --
def _float(v: float) -> float | str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0 and math.copysign(1.0, v) < 0:
        return "-0"
    return v


def _plain(v: Any, key: str = "") -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        if key in SIXTY_FOUR:
            return str(v)
        return v if -MAX_SAFE <= v <= MAX_SAFE else str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, bytes):
        return {"$bin": v.hex()}
    if isinstance(v, (list, tuple)):
        return [_plain(x, key) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x, k) for k, x in v.items()}
    raise TypeError(f"unexpected {type(v).__name__} {v!r} in a decoded body")


def _floats(a: np.ndarray) -> list:
    assert a.dtype == np.float32
    return [_float(x) for x in a.tolist()]  # float32 -> float64 is exact


def _layer(cols: dict[str, Any]) -> dict[str, Any]:
    n = cols["count"]
    xyxy = cols["xyxy"]
    assert xyxy.shape == (n, 4)
    track = cols["track_id"]
    return {
        "count": n,
        "xyxy": [_floats(row) for row in xyxy],
        "score": _floats(cols["score"]),
        "class_id": [int(c) for c in cols["class_id"]],
        "track_id": None if track is None else [str(int(t)) for t in track],
        "attributes": {name: {"label_id": [int(x) for x in lab], "score": _floats(sc)}
                       for name, (lab, sc) in cols["attributes"].items()},
    }


def _python_view(msg: vi.Message) -> dict[str, Any]:
    h = msg.header
    assert h["version"] == f"{h['major']}.{h['minor']}"
    header = {"major": h["major"], "minor": h["minor"], "kind": h["kind"], "publisher_id": h["publisher_id"],
              "epoch": str(h["epoch"]), "seq": str(h["seq"]), "emit_ns": str(h["emit_ns"]), "flags": h["flags"],
              "replay": bool(h["flags"] & 1), "retained": bool(h["flags"] & 2)}
    assert h["replay"] == header["replay"]
    if "extra" in h:
        header["extra"] = _plain(h["extra"])
    if msg.kind == "detections":
        body = _layer(msg.body)
        for k, v in msg.body.items():
            if k == "layers":
                body["layers"] = {name: _layer(cols) for name, cols in v.items()}
            elif k not in body:
                body[k] = _plain(v, k)
    else:
        body = _plain(msg.body)
    return {"topic": msg.topic, "header": header, "gap": msg.gap, "duplicate": False, "body": body}


def _derived(batch: vi.Batch) -> None:
    """Two more layers. ``centres``: a 2-pixel box at the centre of every object, classed by the
    frame's half it is in, with track ids of its own (-1 on the left, above 2^53 on the right).
    ``halves``: on odd frames the frame's left half, on even frames nothing (empty columns); no
    track ids."""
    centres, halves = [], []
    for f, det in zip(batch.frames, batch["objects"]):
        centre = (det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2
        right = centre[:, 0] >= f.width / 2
        centres.append(vi.Detections(np.concatenate([centre - 1, centre + 1], axis=1), det.score * np.float32(0.5),
                                     right.astype(np.int32), np.where(right, 2**53 + 1 + det.track_id, -1)))
        halves.append(vi.Detections([[0, 0, f.width / 2, f.height]], [1.0], [0]) if f.frame_no % 2
                      else vi.Detections.empty())
    batch["centres"], batch["halves"] = centres, halves


_derived.open = lambda ctx: ctx.mark_tracked("centres")  # type: ignore[attr-defined]
derived = vi.FunctionStage(_derived, pixels="none", name="derived",
                           makes={"centres": ["left", "right"], "halves": ["left"]})


@vi.stage(pixels="none")
def tally(batch: vi.Batch, ctx: vi.StageContext) -> None:
    """A stage message of its own per frame, with values a JavaScript decoder gets wrong easily."""
    for i, f in enumerate(batch.frames):
        ctx.emit("tally", f.stream_id, {
            "frame_no": f.frame_no, "pts_ns": f.pts_ns, "objects": len(batch["objects"][i]),
            "centres": len(batch["centres"][i]), "halves": len(batch["halves"][i]),
            "big": 2**62 + f.frame_no, "neg": -(2**40) - f.frame_no,
            "third": 1 / 3, "zero": -0.0, "nothing": None, "raw": bytes([f.frame_no % 256, 0, 255]),
            "nested": {"names": ["a", "é"], "capture_ns": f.capture_ns}})


def _diff(a: Any, b: Any, path: str = "") -> str:
    """Where two JSON values first differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := _diff(a[k], b[k], f"{path}.{k}"))), "")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _diff(x, y, f"{path}[{i}]"))), "")
    return "" if a == b and type(a) is type(b) or (a == b and {type(a), type(b)} <= {int, float}) else \
        f"{path}: {a!r} != {b!r}"


def test_node_subscriber_decodes_exactly_what_python_decodes(models, tmp_path):
    node = _node()
    endpoint = _free_endpoint()
    child = subprocess.Popen([node, str(SCRIPT), endpoint, "--streams", str(len(STREAMS)), "--timeout", "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=JS)
    try:
        with Subscriber(endpoint) as sub:
            pipeline = vi.Pipeline(
                sources=[vi.StreamSpec(id=sid, url=str(CLIPS / f"{clip}.mp4")) for sid, clip in STREAMS.items()],
                stages=[vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, conf_threshold=0.5,
                                  iou_threshold=0.5, layer="objects"),
                        vi.Classify(name="shade", model=models / "shade.onnx", labels=SHADE_LABELS, layer="objects"),
                        vi.Track(layer="objects"),
                        derived, tally],
                sinks=[vi.ZmqSink(endpoint=endpoint, layers=["objects", "centres", "halves"], wait_for_subscribers=2,
                                  wait_timeout_s=30)],
                name="js", max_batch_size=8, max_delay_ms=20)
            report = pipeline.run()
            python, ended = [], set()
            while ended != set(STREAMS):
                msg = sub.recv(timeout=10)
                assert msg is not None, f"the Python subscriber heard nothing for 10 s; ended: {sorted(ended)}"
                python.append(msg)
                if msg.kind == "end_of_stream":
                    ended.add(msg.stream_id)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert report.exit_code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    node_new = [m for m in lines if not m["duplicate"]]
    mine = [_python_view(m) for m in python]

    # Every message, in order: both subscribers got the same ones, and decoded them identically.
    assert len(node_new) == len(mine), (
        f"Node decoded {len(node_new)} messages (and {len(lines) - len(node_new)} duplicate replays), "
        f"Python {len(mine)}; first topics: {[m['topic'] for m in node_new[:6]]} / {[m['topic'] for m in mine[:6]]}")
    for i, (js, py) in enumerate(zip(node_new, mine)):
        assert js == py and not _diff(js, py), f"message {i} ({py['topic']} seq {py['header']['seq']}): {_diff(js, py)}"

    # A replay Node got of a message it already had (a replay goes to every subscriber of the
    # topic) repeats that message exactly, header included, with the replay flag added.
    seen = {(m["header"]["publisher_id"], m["header"]["epoch"], m["topic"], m["header"]["seq"]): m for m in node_new}
    for m in lines:
        if m["duplicate"]:
            first = seen[(m["header"]["publisher_id"], m["header"]["epoch"], m["topic"], m["header"]["seq"])]
            assert m["header"]["replay"] and m["header"]["flags"] == first["header"]["flags"] | 1
            assert {**m["header"], "flags": 0, "replay": False} == {**first["header"], "flags": 0, "replay": False}
            assert m["body"] == first["body"] and m["gap"] == 0

    # What the comparison covered: every kind, all three layers, track ids, attributes,
    # 64-bit values beyond 2^53, flags of live, retained and replayed messages.
    kinds = {m["header"]["kind"] for m in mine}
    assert kinds == {"metadata", "status", "detections", "end_of_stream", "tally"}, kinds
    dets = [m["body"] for m in mine if m["header"]["kind"] == "detections"]
    assert len(dets) == sum(len(load_gt(c)) for c in STREAMS.values()) == report.frames
    assert sum(d["count"] for d in dets) > 0
    assert all(d["layers"]["centres"]["count"] == d["count"] for d in dets)
    assert {c for d in dets for c in d["layers"]["centres"]["class_id"]} == {0, 1}
    assert {d["layers"]["halves"]["count"] for d in dets} == {0, 1}
    assert all(d["track_id"] is not None and d["layers"]["halves"]["track_id"] is None for d in dets)
    ids = {int(t) for d in dets for t in d["layers"]["centres"]["track_id"]}
    assert -1 in ids and any(t > 2**53 for t in ids)
    assert any(t != "-1" for d in dets for t in d["track_id"])
    assert any(x != -1 for d in dets for x in d["attributes"]["shade"]["label_id"])
    assert all(int(m["header"]["epoch"]) > 2**53 and int(m["header"]["emit_ns"]) > 2**53 for m in mine)
    assert all(int(d["capture_ns"]) > 2**53 for d in dets)
    meta = [m for m in mine if m["header"]["kind"] == "metadata"]
    further = {"centres": {"classes": ["left", "right"], "attributes": {}, "tracked": True},
               "halves": {"classes": ["left"], "attributes": {}, "tracked": False}}
    assert all(m["body"]["classes"] == SHAPE_CLASSES and m["body"]["attributes"] == {"shade": SHADE_LABELS}
               and m["body"]["layers"] == further for m in meta)
    flags = {(m["header"]["kind"], m["header"]["flags"]) for m in mine}
    assert ("detections", 0) in flags and ("tally", 0) in flags and ("end_of_stream", 2) in flags
    assert ("metadata", 3) in flags, "the metadata sent at start reaches a subscriber as a replay"
    assert all(m["gap"] == 0 for m in mine + node_new)
