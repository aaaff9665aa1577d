"""Sinks for consumers that must not lose a single result.

The PUB/XPUB publisher never blocks the pipeline: a slow subscriber loses messages at its
high-water mark (counted, and visible as gaps in the sequence numbers). Where losing anything is
not acceptable, add one of these next to it (``[publish]`` keys):

- ``reliable_endpoint``: a bound ZeroMQ PUSH socket. A PULL consumer receives every message, in
  order, exactly as on the PUB socket (same three frames, same sequence numbers). When the
  consumer is slow or absent, sending **blocks the pipeline** once ``reliable_hwm`` messages are
  queued: analysis slows to the consumer's pace (live streams then drop their oldest *frames*
  before analysis, counted as ``frames_dropped``, but no analysed result is ever lost).
- ``file``: an append-only file, one record per message: the three frames as a msgpack array
  ``[topic, header, body]``, flushed per message. Read it back with `read_file_sink`.

Use PUB for dashboards and live views (many consumers, never slows the cameras); use the PUSH
sink for a database writer or billing job that needs every result; use the file for audit and
for replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, Iterator

import msgpack
import zmq

from vidinfer.errors import ConfigError
from vidinfer.publish.subscriber import Message, Subscriber
from vidinfer.publish.wire import SCHEMA_VERSION, decode_body, decode_header

__all__ = ["PushSink", "FileSink", "ReliableReceiver", "read_file_sink"]


class PushSink:
    """A bound PUSH socket: blocking, lossless delivery to PULL consumers (load-balanced if several)."""

    def __init__(self, endpoint: str, hwm: int = 1000, linger_ms: int = -1, context: zmq.Context | None = None):
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise ConfigError(f"key 'publish.reliable_endpoint': cannot bind {endpoint!r} ({zmq.strerror(exc.errno)}); "
                               "choose a free port or a valid endpoint such as tcp://127.0.0.1:5557") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sent = 0

    def write(self, t: bytes, header: bytes, raw: bytes) -> None:
        self._sock.send_multipart([t, header, raw], copy=False)  # blocks when the consumer is behind
        self.sent += 1

    def close(self) -> None:
        self._sock.close()


class FileSink:
    """Appends every message to a file as one msgpack array ``[topic, header, body]``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: BinaryIO = open(self.path, "ab")
        except OSError as exc:
            raise ConfigError(f"key 'publish.file': cannot open the results file '{self.path}' ({exc.strerror}); "
                               "give a writable path in [publish] file") from None
        self.sent = 0

    def write(self, t: bytes, header: bytes, raw: bytes) -> None:
        self._f.write(msgpack.packb([t, header, raw]))
        self._f.flush()
        self.sent += 1

    def close(self) -> None:
        self._f.close()


def _message(frames: list[bytes], gap: int = 0) -> Message | None:
    header = decode_header(frames[1])
    if header["major"] != SCHEMA_VERSION[0]:
        return None
    return Message(frames[0].decode("ascii"), header, decode_body(header["kind"], frames[2]), gap)


def read_file_sink(path: str | Path) -> Iterator[Message]:
    """Every message a `FileSink` wrote, in order (a record cut short by a crash ends the file)."""
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False)
        for record in unpacker:
            msg = _message([bytes(x) for x in record])
            if msg is not None:
                yield msg


class ReliableReceiver(Subscriber):
    """A PULL client of a `PushSink`: the same `recv`/`iter` and gap tracking as `Subscriber`."""

    def __init__(self, endpoint: str, rcvhwm: int = 1000, context: zmq.Context | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._topics: dict[Any, Any] = {}
        self.gaps = 0
        self.incompatible = 0
