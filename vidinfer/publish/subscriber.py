"""A subscriber client for vidinfer's results, in Python.

    with Subscriber("tcp://127.0.0.1:5555", topics=["det.cam-1."]) as sub:
        for msg in sub.iter(timeout=5):
            print(msg.stream_id, msg.kind, msg.body["count"])

Other languages: see docs/wire-format.md; any ZeroMQ and msgpack library will do.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import zmq

from vidinfer.detections import Detections
from vidinfer.publish.wire import SCHEMA_VERSION, body_to_detections, decode_body, decode_header

__all__ = ["Subscriber", "Message"]

log = logging.getLogger(__name__)


@dataclass
class Message:
    """One received message. ``gap`` counts messages of this topic lost just before it."""

    topic: str
    header: dict[str, Any]
    body: dict[str, Any]
    gap: int = 0

    @property
    def kind(self) -> str:
        return self.header["kind"]

    @property
    def stream_id(self) -> str:
        return self.topic.split(".", 1)[1][:-1]

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def replay(self) -> bool:
        """A repeat of kept state for a subscriber that joined after it was first sent."""
        return bool(self.header.get("replay"))

    def detections(self, layer: str | None = None) -> Detections:
        """The rows of a detections message as `Detections`: the body's own (the publisher's
        first layer), or those of one of the further ``layers`` it carries (wire format 1.1)."""
        if self.kind != "detections":
            raise ValueError(f"a {self.kind} message carries no detections")
        if layer is None:
            return body_to_detections(self.body)
        layers = self.body.get("layers", {})
        if layer not in layers:
            raise KeyError(f"this message carries no layer {layer!r} (it has: {sorted(layers) or 'none'}); "
                           "list it in the sink's layers")
        return body_to_detections(layers[layer])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: arrays become lists (boxes as [[x1, y1, x2, y2], ...])."""
        return {"topic": self.topic, **{k: v for k, v in self.header.items() if k != "extra"},
                "gap": self.gap, "body": _jsonable(self.body)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


class SequenceGaps:
    """Per (publisher, topic), the sequence number expected next: a publisher numbers each topic's
    messages from 0 within an epoch (a restarted publisher starts a new epoch)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], tuple[int, int]] = {}  # (publisher, topic) -> (epoch, next seq)

    def observe(self, publisher_id: str, topic: str, epoch: int, seq: int, replay: bool = False) -> int:
        """Messages lost on this topic just before this one (0 for an old one again); -1 for a
        replay of a message already received."""
        key = (publisher_id, topic)
        prev_epoch, expected = self._next.get(key, (None, 0))
        if prev_epoch != epoch:
            expected = seq  # a new publisher or epoch: nothing before it can be missed
        elif seq < expected:
            return -1 if replay else 0
        self._next[key] = (epoch, seq + 1)
        return seq - expected


class Subscriber:
    """Connects a SUB socket to one or more publisher (or proxy) endpoints.

    Args:
        endpoints: one endpoint or several; a SUB socket fair-queues across them.
        topics: topic prefixes to subscribe to (``det.``, ``det.cam-1.``, ``status.`` ...);
            everything when empty.
        rcvhwm: messages buffered before the subscriber itself starts to lose them.
        curve: CurveZMQ client keys (own public, own secret, server public), e.g. from
            ``vidinfer.publish.proxy.load_curve_client``, for a proxy that requires them.
    """

    def __init__(self, endpoints: str | Sequence[str], topics: Sequence[str] = (), rcvhwm: int = 100000,
                 context: zmq.Context | None = None, curve: tuple[bytes, bytes, bytes] | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        if curve is not None:  # a CurveZMQ client of a proxy: (own public, own secret, server public)
            self._sock.curve_publickey, self._sock.curve_secretkey, self._sock.curve_serverkey = curve
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        for t in topics or [""]:
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode("ascii"))
        for ep in [endpoints] if isinstance(endpoints, str) else endpoints:
            self._sock.connect(ep)
        self._init_counters()

    def _init_counters(self) -> None:
        self._sequences = SequenceGaps()
        self.gaps = 0  # messages lost in transit, summed over topics
        self.incompatible = 0  # messages of another major version, skipped
        self.malformed = 0  # messages that are not vidinfer's (wrong frames, undecodable), skipped with a warning
        self.replays_skipped = 0  # replays of state this subscriber already had

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none arrives within ``timeout`` seconds. Messages that are
        not vidinfer's are skipped with one warning each (and counted in ``malformed``), replays
        of messages already received are dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait_ms, zmq.POLLIN):
                return None
            msg = self._parse(self._sock.recv_multipart())
            if msg is not None:
                return msg

    def _parse(self, frames: list[bytes]) -> Message | None:
        topic = frames[0][:80].decode("ascii", "replace") if frames else ""
        if len(frames) != 3:
            self._skip(topic, f"{len(frames)} frames instead of 3")
            return None
        try:
            header = decode_header(frames[1])
        except Exception as exc:  # anything a broken or hostile sender can put there
            self._skip(topic, f"its header cannot be decoded ({exc})")
            return None
        if header["major"] != SCHEMA_VERSION[0]:
            self.incompatible += 1
            return None
        try:
            t = frames[0].decode("ascii")
            body = decode_body(header["kind"], frames[2])
            if not isinstance(body, dict):
                raise ValueError("the body is not a map")
            gap = self._track(t, header)
        except Exception as exc:
            self._skip(topic, f"its body cannot be decoded ({type(exc).__name__}: {exc})")
            return None
        if gap < 0:  # a replay of a message already received
            self.replays_skipped += 1
            return None
        return Message(t, header, body, gap)

    def _skip(self, topic: str, why: str) -> None:
        self.malformed += 1
        log.warning("skipped a message on topic %r that is not a vidinfer message: %s (%d skipped so far)",
                    topic, why[:200], self.malformed)

    def _track(self, t: str, header: dict[str, Any]) -> int:
        """Messages lost on this topic just before this one; -1 for a replay already received."""
        epoch = header["epoch"]
        if not isinstance(epoch, int):
            raise ValueError("its epoch is not an integer")
        gap = self._sequences.observe(header["publisher_id"], t, epoch, int(header["seq"]), bool(header.get("replay")))
        self.gaps += max(gap, 0)
        return gap

    def iter(self, timeout: float | None = None, count: int | None = None) -> Iterator[Message]:
        """Yield messages until ``count`` have arrived or none arrives for ``timeout`` seconds."""
        n = 0
        while count is None or n < count:
            msg = self.recv(timeout)
            if msg is None:
                return
            n += 1
            yield msg

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
