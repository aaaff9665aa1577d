"""The wire format, version 1.1 (docs/wire-format.md is the specification; keep them in step).

Every message is three ZeroMQ frames ``[topic, header, body]``:

* topic: ASCII ``<prefix>.<stream_id>.``; the trailing dot keeps a prefix subscription to one
  stream from matching another (``det.cam-1.`` never matches ``det.cam-10.``).
* header: msgpack array ``[major, minor, kind, publisher_id, epoch, seq, emit_ns]``.
* body: msgpack map, by kind. Columns of detections are little-endian binary arrays.

1.1 appended to 1.0: the ``layers`` map of a detections body (further layers of the same frame)
and of a metadata body (their class lists), and kinds defined by stages (``ctx.emit``), each on
the topic named by its kind.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import msgpack
import numpy as np

from vidinfer.detections import Attribute, Detections

__all__ = ["SCHEMA_VERSION", "Kind", "TOPIC_PREFIX", "topic", "encode_header", "decode_header",
           "detections_body", "decode_body", "STREAM_ID_PATTERN", "STAGE_KIND_PATTERN", "check_stage_kind",
           "valid_stream_id", "REPLAY", "RETAINED", "with_flags"]

SCHEMA_VERSION = (1, 1)
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

# Kinds a stage defines for its own messages (`StageContext.emit`) travel on the topic
# ``<kind>.<stream_id>.``; they must not be taken for the pipeline's own.
STAGE_KIND_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
_STAGE_KIND = re.compile(STAGE_KIND_PATTERN)
_RESERVED = {Kind.DETECTIONS.value, Kind.END_OF_STREAM.value, Kind.STATUS.value, Kind.METADATA.value,
             *TOPIC_PREFIX.values()} - {Kind.BRAND_EXPOSURE.value, "brand"}


def check_stage_kind(kind: str) -> str:
    """``kind`` if a stage may emit messages of that kind; else ValueError saying why."""
    if not _STAGE_KIND.match(kind):
        raise ValueError(f"message kind {kind!r} must match {STAGE_KIND_PATTERN} (lower-case letters, digits, '_')")
    if kind in _RESERVED:
        raise ValueError(f"message kind {kind!r} is the pipeline's own; give your stage's messages another kind")
    return kind


def topic_prefix(kind: Kind | str) -> str:
    """The topic prefix of a kind: the table above, else the stage-defined kind itself."""
    if isinstance(kind, Kind):
        return TOPIC_PREFIX[kind]
    try:
        return TOPIC_PREFIX[Kind(kind)]
    except ValueError:
        return kind


def valid_stream_id(stream_id: str) -> bool:
    """Whether ``stream_id`` can name a stream on the wire (`STREAM_ID_PATTERN`)."""
    return bool(_STREAM_ID.match(stream_id))


def topic(kind: Kind | str, stream_id: str) -> bytes:
    if not _STREAM_ID.match(stream_id):
        raise ValueError(f"stream id {stream_id!r} must match {STREAM_ID_PATTERN}")
    return f"{topic_prefix(kind)}.{stream_id}.".encode("ascii")


# Header flags (1.1, the header's eighth field).
REPLAY = 1  # a repeat of an earlier message for a subscriber that joined after it (never a new one)
RETAINED = 2  # state: the latest message of its topic is kept and replayed to late joiners


def encode_header(kind: Kind | str, publisher_id: str, epoch: int, seq: int, emit_ns: int, flags: int = 0) -> bytes:
    name = kind.value if isinstance(kind, Kind) else kind
    return msgpack.packb([SCHEMA_VERSION[0], SCHEMA_VERSION[1], name, publisher_id, epoch, seq, emit_ns, flags])


def with_flags(raw_header: bytes, flags: int) -> bytes:
    """The same header with ``flags`` set as well (a replay of a kept message: same seq and times)."""
    fields = msgpack.unpackb(raw_header)
    while len(fields) < 8:
        fields.append(0)
    fields[7] = int(fields[7] or 0) | flags
    return msgpack.packb(fields)


def decode_header(raw: bytes) -> dict[str, Any]:
    """Header fields by name (``flags`` 0 when a 1.0 header has none). Fields appended by later
    minor versions are kept under ``extra``."""
    fields = msgpack.unpackb(raw)
    if not isinstance(fields, list) or len(fields) < 7:
        raise ValueError("not a vidinfer header: expected a msgpack array of at least 7 fields")
    major, minor, kind, publisher_id, epoch, seq, emit_ns = fields[:7]
    header = {"version": f"{major}.{minor}", "major": major, "minor": minor, "kind": kind,
              "publisher_id": publisher_id, "epoch": epoch, "seq": seq, "emit_ns": emit_ns}
    flags = fields[7] if len(fields) > 7 and isinstance(fields[7], int) else 0
    header["flags"] = flags
    header["replay"] = bool(flags & REPLAY)
    if len(fields) > 8:
        header["extra"] = fields[8:]
    return header


def _columns(det: Detections, tracked: bool) -> dict[str, Any]:
    """One layer's rows as raw little-endian columns: no per-box work."""
    return {
        "count": len(det),
        "xyxy": det.xyxy.astype("<f4").tobytes(),
        "score": det.score.astype("<f4").tobytes(),
        "class_id": det.class_id.astype("<i4").tobytes(),
        "track_id": det.track_id.astype("<i8").tobytes() if tracked else None,
        "attributes": {name: [a.label_id.astype("<i4").tobytes(), a.score.astype("<f4").tobytes()]
                       for name, a in det.attributes.items()},
    }


def detections_body(stream_id: str, frame_no: int, pts_ns: int, capture_ns: int, width: int,
                    height: int, det: Detections, discontinuity: bool = False,
                    tracked: bool = False, layers: dict[str, tuple[Detections, bool]] | None = None) -> bytes:
    """Encode one frame's detections: ``det`` in the body's own columns, and (1.1) further layers
    of the same frame under ``layers`` (name -> (rows, tracked)) when given."""
    body: dict[str, Any] = {
        "stream_id": stream_id,
        "frame_no": frame_no,
        "pts_ns": pts_ns,
        "capture_ns": capture_ns,
        "width": width,
        "height": height,
        "discontinuity": discontinuity,
        **_columns(det, tracked),
    }
    if layers:
        body["layers"] = {name: _columns(rows, t) for name, (rows, t) in layers.items()}
    return msgpack.packb(body)


def _decode_columns(cols: dict[str, Any]) -> None:
    n = cols["count"]
    cols["xyxy"] = np.frombuffer(cols["xyxy"], "<f4").reshape(n, 4)
    cols["score"] = np.frombuffer(cols["score"], "<f4")
    cols["class_id"] = np.frombuffer(cols["class_id"], "<i4")
    if cols.get("track_id") is not None:
        cols["track_id"] = np.frombuffer(cols["track_id"], "<i8")
    cols["attributes"] = {name: (np.frombuffer(lab, "<i4"), np.frombuffer(sc, "<f4"))
                          for name, (lab, sc) in cols.get("attributes", {}).items()}


def decode_body(kind: str, raw: bytes) -> dict[str, Any]:
    """Decode a body; detection columns become NumPy arrays (zero-copy views of the message)."""
    body = msgpack.unpackb(raw)
    if kind == Kind.DETECTIONS.value:
        _decode_columns(body)
        for cols in body.get("layers", {}).values():
            _decode_columns(cols)
    return body


def body_to_detections(body: dict[str, Any]) -> Detections:
    """The `Detections` of a decoded detections body (or of one of its ``layers``)."""
    attrs = {name: Attribute(lab, sc) for name, (lab, sc) in body["attributes"].items()}
    track = body.get("track_id")
    n = len(body["class_id"])
    return Detections(body["xyxy"], body["score"], body["class_id"],
                      track if track is not None else np.full(n, -1, np.int64), attrs)
