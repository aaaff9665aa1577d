"""The wire format, version 1.0 (docs/wire-format.md is the specification; keep them in step).

Every message is three ZeroMQ frames ``[topic, header, body]``:

* topic: ASCII ``<prefix>.<stream_id>.``; the trailing dot keeps a prefix subscription to one
  stream from matching another (``det.cam-1.`` never matches ``det.cam-10.``).
* header: msgpack array ``[major, minor, kind, publisher_id, epoch, seq, emit_ns]``.
* body: msgpack map, by kind. Columns of detections are little-endian binary arrays.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import msgpack
import numpy as np

from vidinfer.detections import Attribute, Detections

__all__ = ["SCHEMA_VERSION", "Kind", "TOPIC_PREFIX", "topic", "encode_header", "decode_header",
           "detections_body", "decode_body", "STREAM_ID_PATTERN"]

SCHEMA_VERSION = (1, 0)
STREAM_ID_PATTERN = r"^[A-Za-z0-9_\-:]{1,128}$"  # no dots: the dot terminates a topic
_STREAM_ID = re.compile(STREAM_ID_PATTERN)


class Kind(str, Enum):
    """What a message's body holds; also the header's third field."""

    DETECTIONS = "detections"
    END_OF_STREAM = "end_of_stream"
    STATUS = "status"
    METADATA = "metadata"
    BRAND_EXPOSURE = "brand_exposure"


# Which topic each kind travels on. End of stream shares the detections topic, so a subscriber
# to a stream's detections sees where they end, in order.
TOPIC_PREFIX = {Kind.DETECTIONS: "det", Kind.END_OF_STREAM: "det", Kind.STATUS: "status",
                Kind.METADATA: "meta", Kind.BRAND_EXPOSURE: "brand"}


def topic(kind: Kind, stream_id: str) -> bytes:
    if not _STREAM_ID.match(stream_id):
        raise ValueError(f"stream id {stream_id!r} must match {STREAM_ID_PATTERN}")
    return f"{TOPIC_PREFIX[kind]}.{stream_id}.".encode("ascii")


def encode_header(kind: Kind, publisher_id: str, epoch: int, seq: int, emit_ns: int) -> bytes:
    return msgpack.packb([SCHEMA_VERSION[0], SCHEMA_VERSION[1], kind.value, publisher_id, epoch, seq, emit_ns])


def decode_header(raw: bytes) -> dict[str, Any]:
    """Header fields by name. Fields appended by later minor versions are kept under ``extra``."""
    fields = msgpack.unpackb(raw)
    if not isinstance(fields, list) or len(fields) < 7:
        raise ValueError("not a vidinfer header: expected a msgpack array of at least 7 fields")
    major, minor, kind, publisher_id, epoch, seq, emit_ns = fields[:7]
    header = {"version": f"{major}.{minor}", "major": major, "minor": minor, "kind": kind,
              "publisher_id": publisher_id, "epoch": epoch, "seq": seq, "emit_ns": emit_ns}
    if len(fields) > 7:
        header["extra"] = fields[7:]
    return header


def detections_body(stream_id: str, frame_no: int, pts_ns: int, capture_ns: int, width: int,
                    height: int, det: Detections, discontinuity: bool = False,
                    tracked: bool = False) -> bytes:
    """Encode one frame's detections. Columns go out as raw little-endian bytes: no per-box work."""
    attrs = {name: [a.label_id.astype("<i4").tobytes(), a.score.astype("<f4").tobytes()]
             for name, a in det.attributes.items()}
    return msgpack.packb({
        "stream_id": stream_id,
        "frame_no": frame_no,
        "pts_ns": pts_ns,
        "capture_ns": capture_ns,
        "width": width,
        "height": height,
        "discontinuity": discontinuity,
        "count": len(det),
        "xyxy": det.xyxy.astype("<f4").tobytes(),
        "score": det.score.astype("<f4").tobytes(),
        "class_id": det.class_id.astype("<i4").tobytes(),
        "track_id": det.track_id.astype("<i8").tobytes() if tracked else None,
        "attributes": attrs,
    })


def decode_body(kind: str, raw: bytes) -> dict[str, Any]:
    """Decode a body; detection columns become NumPy arrays (zero-copy views of the message)."""
    body = msgpack.unpackb(raw)
    if kind == Kind.DETECTIONS.value:
        n = body["count"]
        body["xyxy"] = np.frombuffer(body["xyxy"], "<f4").reshape(n, 4)
        body["score"] = np.frombuffer(body["score"], "<f4")
        body["class_id"] = np.frombuffer(body["class_id"], "<i4")
        if body.get("track_id") is not None:
            body["track_id"] = np.frombuffer(body["track_id"], "<i8")
        body["attributes"] = {name: (np.frombuffer(lab, "<i4"), np.frombuffer(sc, "<f4"))
                              for name, (lab, sc) in body.get("attributes", {}).items()}
    return body


def body_to_detections(body: dict[str, Any]) -> Detections:
    """The `Detections` of a decoded detections body."""
    attrs = {name: Attribute(lab, sc) for name, (lab, sc) in body["attributes"].items()}
    return Detections(body["xyxy"], body["score"], body["class_id"], body.get("track_id"), attrs)
