"""The acknowledged channel: every result reaches one consumer at least once, whatever happens to it.

    [[sinks]]
    type = "reliable"
    endpoint = "tcp://127.0.0.1:5557"

    with vidinfer.ReliableConsumer("tcp://127.0.0.1:5557", state_file="consumer.state") as rx:
        for msg in rx.iter(timeout=5):
            store(msg)                     # acknowledged once you ask for the next one

The pattern is the ZeroMQ Guide's **credit-based flow control** (chapter 7, "Advanced
Architecture using ZeroMQ", sections "Transferring Files" and "Credit-Based Flow Control":
https://zguide.zeromq.org/docs/chapter7/#Credit-Based-Flow-Control; its file-transfer example
``fileio3``): the consumer's DEALER connects to the sink's bound ROUTER and grants *credit*, the
number of messages it is ready to take; the sink sends at most that many and the consumer grants
one more for each it receives. On top of it, as the Guide's reliability chapter (4, "Reliable
Request-Reply Patterns") advises for a server that must not lose work, the sink keeps every
message until the consumer says it has processed it:

- every message gets a **delivery sequence number** (1, 2, 3 ... per sink, continued across
  pipeline restarts with the same ``spool_dir``);
- the consumer **acknowledges cumulatively** (``ACK n``: everything up to n is processed) and
  says in its ``HELLO`` what it processed last, so a consumer killed at any moment and restarted
  gets again everything after that: nothing is lost, and what comes twice (at most the messages
  between its last acknowledgement and its death) carries the same delivery number;
- unacknowledged messages are kept in a **bounded outbox spilled to disk** (the spool: written
  through, so a pipeline that dies keeps them too; the newest ``memory_messages`` also stay in
  memory for sending); when it holds ``max_buffer_bytes`` the pipeline waits (lossless
  backpressure) until the consumer catches up or the pipeline is stopped;
- both sides send ``PING`` when idle: a sink that restarted answers a consumer it does not know
  with ``RESET`` and the consumer says ``HELLO`` again; ZeroMQ's own heartbeats (ZMTP 3.1) end a
  connection whose peer vanished, and the ROUTER (``ROUTER_MANDATORY``) then reports the consumer
  gone.

The frames are specified in docs/wire-format.md, "The acknowledged channel". One consumer at a
time: a ``HELLO`` takes the channel over (a restarted consumer does not wait for its old
connection to time out). A background thread owns the ROUTER socket and the spool (ZeroMQ
sockets are not thread-safe); the pipeline's thread hands it messages through a queue and a
wake-up pipe, so a sink's ``_send`` never waits on the network.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from array import array
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Iterator, Optional

import msgpack
import zmq
from pydantic import Field, model_validator

from vidinfer.errors import ConfigError, PublishError
from vidinfer.publish.sinks import SinkContext, _Framed
from vidinfer.publish.subscriber import Message, SequenceGaps
from vidinfer.publish.wire import SCHEMA_VERSION, decode_body, decode_header

__all__ = ["ReliableSink", "ReliableConsumer", "DeliveredMessage", "PROTOCOL_VERSION"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
# Commands, the first frame after the ROUTER's routing id (ASCII).
HELLO, ACK, CREDIT, PING = b"HELLO", b"ACK", b"CREDIT", b"PING"  # consumer -> sink (PING both ways)
WELCOME, MSG, RESET = b"WELCOME", b"MSG", b"RESET"  # sink -> consumer
HEARTBEAT_S = 1.0  # a side that sent nothing for this long sends PING
ABSENT_GRACE_S = 1.0  # no consumer this long after the start while messages wait: the log says so
_ACK_SAVE_S = 0.05  # the acknowledged number is written to the spool at most this often
_SEGMENT_MIN, _SEGMENT_MAX = 64 * 1024, 64 * 1024 * 1024


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


# ---------------------------------------------------------------------------------------- spool

class _Segment:
    """One spool file: records ``[seq, topic, header, body]`` (msgpack), seq ``first`` onwards."""

    def __init__(self, path: Path, first: int):
        self.path, self.first = path, first
        self.offsets = array("Q")  # where record first+i starts
        self.end = 0  # bytes in the file

    @property
    def last(self) -> int:
        return self.first + len(self.offsets) - 1

    def start_of(self, seq: int) -> int:
        return self.offsets[seq - self.first]

    def end_of(self, seq: int) -> int:
        i = seq - self.first + 1
        return self.offsets[i] if i < len(self.offsets) else self.end


class _Spool:
    """The outbox on disk: a folder of append-only segment files, the channel's id and the
    number acknowledged so far. Only the sink's thread uses it once the run started."""

    def __init__(self, folder: Path, segment_bytes: int, memory_messages: int, key: str):
        self.folder, self.segment_bytes, self.key = folder, segment_bytes, key
        self._writer: BinaryIO | None = None
        self._readers: dict[Path, BinaryIO] = {}
        self._lock: BinaryIO | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(folder / "lock", "a+b")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot use the spool folder '{folder}' ({exc.strerror or exc}); give a "
                              "writable folder") from None
        import fcntl

        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"{key}: the spool folder '{folder}' is in use by another running pipeline; give "
                              "each reliable sink its own spool_dir") from None
        try:
            self.channel = self._channel_id()
            self.acked = self._read_acked()
            self.segments: list[_Segment] = self._load_segments()
        except OSError as exc:
            self.close()
            raise ConfigError(f"{key}: cannot read the spool folder '{folder}' ({exc.strerror or exc}); give a "
                              "readable, writable folder") from None
        last = self.segments[-1].last if self.segments else 0
        self.last = max(last, self.acked)  # the newest delivery number given out
        self.acked = min(self.acked, self.last)
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()  # the newest records, for sending
        self._memory_messages = memory_messages
        self._memory_only: dict[int, tuple[list[bytes], int]] | None = None  # after a write failed
        self._acked_saved = self.acked
        self.write_error = ""
        self._drop_acked_segments()

    # -- loading --
    def _channel_id(self) -> str:
        path = self.folder / "channel"
        if path.exists():
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if text:
                return text
        channel = uuid.uuid4().hex
        _write_atomic(path, channel.encode("ascii"))
        return channel

    def _read_acked(self) -> int:
        try:
            return max(0, int((self.folder / "acked").read_text().strip() or 0))
        except FileNotFoundError:
            return 0
        except ValueError:
            log.warning("%s: the spool's acknowledged number '%s' is unreadable; everything still in the spool "
                        "will be delivered again", self.key, self.folder / "acked")
            return 0

    def _load_segments(self) -> list[_Segment]:
        segments: list[_Segment] = []
        for path in sorted(self.folder.glob("segment-*.log")):
            m = re.fullmatch(r"segment-(\d+)\.log", path.name)
            if m is None:
                continue
            seg = _Segment(path, int(m.group(1)))
            with open(path, "rb") as f:
                unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=2**31 - 1)
                pos = 0
                try:
                    for record in unpacker:
                        if not (isinstance(record, list) and len(record) == 4 and record[0] == seg.first +
                                len(seg.offsets)):
                            break
                        seg.offsets.append(pos)
                        pos = unpacker.tell()
                except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                    pass
            if pos < path.stat().st_size:  # a record cut short (the pipeline died writing it): drop the tail
                os.truncate(path, pos)
            seg.end = pos
            if not seg.offsets:
                path.unlink()
                continue
            if segments and seg.first != segments[-1].last + 1:
                log.warning("%s: spool segment %s does not follow %s; the messages between are missing",
                            self.key, path.name, segments[-1].path.name)
            segments.append(seg)
        return segments

    # -- writing (the sink's thread) --
    def append(self, seq: int, frames: list[bytes], record: bytes) -> None:
        if self._memory_only is not None:
            self._memory_only[seq] = (frames, len(record))
            return
        try:
            seg = self.segments[-1] if self.segments else None
            if seg is None or seg.end >= self.segment_bytes or self._writer is None:
                seg = self._new_segment(seq)
            assert self._writer is not None
            self._writer.write(record)
        except OSError as exc:  # a full or failing disk: keep going in memory, and say what that means
            self.write_error = f"{exc.strerror or exc}"
            log.error("%s: cannot write the spool '%s' (%s): unacknowledged messages are kept in memory from now on "
                      "(still bounded by max_buffer_bytes); they are lost if the pipeline ends before the consumer "
                      "acknowledges them", self.key, self.folder, self.write_error)
            self._memory_only = {seq: (frames, len(record))}
            return
        seg.offsets.append(seg.end)
        seg.end += len(record)
        self.last = seq
        self._cache[seq] = frames
        while len(self._cache) > self._memory_messages:
            self._cache.popitem(last=False)

    def _new_segment(self, first: int) -> _Segment:
        if self._writer is not None:
            self._writer.close()
        seg = _Segment(self.folder / f"segment-{first:020d}.log", first)
        self._writer = open(seg.path, "ab")
        self.segments.append(seg)
        return seg

    def flush(self) -> None:
        if self._writer is not None and self._memory_only is None:
            try:
                self._writer.flush()
            except OSError as exc:
                self.write_error = f"{exc.strerror or exc}"

    # -- reading --
    def read(self, seq: int) -> list[bytes] | None:
        frames = self._cache.get(seq)
        if frames is not None:
            return frames
        if self._memory_only is not None and seq in self._memory_only:
            return self._memory_only[seq][0]
        seg = self._segment_of(seq)
        if seg is None:
            return None
        if seg is self.segments[-1]:
            self.flush()
        f = self._readers.get(seg.path)
        if f is None:
            f = self._readers[seg.path] = open(seg.path, "rb")
        start = seg.start_of(seq)
        f.seek(start)
        record = msgpack.unpackb(f.read(seg.end_of(seq) - start), raw=False)
        return [record[1], record[2], record[3]]

    def _segment_of(self, seq: int) -> _Segment | None:
        for seg in self.segments:
            if seg.first <= seq <= seg.last:
                return seg
        return None

    # -- acknowledging --
    def ack(self, seq: int) -> int:
        """Everything up to ``seq`` is processed: returns the bytes that frees."""
        seq = min(seq, self.last)
        if seq <= self.acked:
            return 0
        freed = self.bytes_between(self.acked + 1, seq)
        self.acked = seq
        if self._memory_only is not None:
            for s in [s for s in self._memory_only if s <= seq]:
                del self._memory_only[s]
        self._drop_acked_segments()
        return freed

    def bytes_between(self, first: int, last: int) -> int:
        """Bytes of the records first..last (inclusive) still kept."""
        total = 0
        for seg in self.segments:
            lo, hi = max(first, seg.first), min(last, seg.last)
            if lo <= hi:
                total += seg.end_of(hi) - seg.start_of(lo)
        if self._memory_only is not None:
            total += sum(n for s, (_, n) in self._memory_only.items() if first <= s <= last)
        return total

    def _drop_acked_segments(self) -> None:
        while self.segments and self.segments[0].last <= self.acked:
            seg = self.segments[0]
            if len(self.segments) == 1 and self._writer is not None:  # the one being written: start a new one
                self._writer.close()
                self._writer = None
            reader = self._readers.pop(seg.path, None)
            if reader is not None:
                reader.close()
            try:
                seg.path.unlink()
            except OSError:
                pass
            self.segments.pop(0)

    def save_acked(self, force: bool = False) -> None:
        if self.acked != self._acked_saved or force:
            try:
                _write_atomic(self.folder / "acked", str(self.acked).encode("ascii"))
                self._acked_saved = self.acked
            except OSError as exc:
                self.write_error = f"{exc.strerror or exc}"

    @property
    def unacked(self) -> int:
        return self.last - self.acked

    def in_memory_only(self) -> int:
        return len(self._memory_only) if self._memory_only is not None else 0

    def close(self) -> None:
        for f in [self._writer, *self._readers.values()]:
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._writer = None
        self._readers = {}
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- the sink

class ReliableSink(_Framed):
    """Every message to one acknowledging consumer, at least once: a ROUTER with credit-based flow
    control, cumulative acknowledgements and a bounded outbox spilled to disk (module docstring).

    Args:
        endpoint: the endpoint it binds, e.g. ``tcp://127.0.0.1:5557``.
        spool_dir: where unacknowledged messages are kept (default: a folder named after the
            pipeline and the sink under the system's temporary folder). Reuse it and a restarted
            pipeline continues the delivery numbers and re-sends what was never acknowledged.
        max_buffer_bytes: the spool's bound; when unacknowledged messages fill it the pipeline waits.
        memory_messages: the newest unacknowledged messages also kept in memory for sending.
        credit: the consumer's window (messages in flight) when its HELLO asks for the default.
        linger_s: at the end of the run, how long closing waits for the consumer to acknowledge the
            rest, when one connected during the run (at most 1 s when the run was stopped).
        curve_server_secret_key, curve_clients: CurveZMQ: consumers must use an allowed key.
        layers: see `MessageSink`.
    """

    type: ClassVar[str] = "reliable"

    endpoint: str = Field(min_length=1, description="bound ROUTER endpoint")
    spool_dir: Optional[Path] = Field(default=None, description="folder of unacknowledged messages")
    max_buffer_bytes: int = Field(default=1 << 30, ge=1024, le=1 << 44,
                                  description="bound of the spool; the pipeline waits when it is full")
    memory_messages: int = Field(default=1000, ge=0, le=1_000_000,
                                 description="newest unacknowledged messages also kept in memory")
    credit: int = Field(default=64, ge=1, le=100_000, description="messages in flight to the consumer")
    linger_s: float = Field(default=5.0, ge=0, le=3600, description="closing waits this long for acknowledgements")
    curve_server_secret_key: Optional[Path] = Field(default=None, description="own certificate (.key_secret)")
    curve_clients: Optional[Path] = Field(default=None, description="folder of allowed consumers' .key files")

    @model_validator(mode="after")
    def _curve_pair(self) -> ReliableSink:
        if (self.curve_server_secret_key is None) != (self.curve_clients is None):
            raise ValueError("give both curve_server_secret_key (this sink's .key_secret) and curve_clients "
                             "(the folder of allowed consumers' .key files) for CurveZMQ, or neither")
        return self

    # -- opening (the pipeline's thread) --
    def _open_transport(self, ctx: SinkContext) -> None:
        self._name = ctx.name
        self._stopping = ctx.stopping
        curve = None
        if self.curve_server_secret_key is not None and self.curve_clients is not None:
            from vidinfer.publish.security import load_publisher_curve

            curve = load_publisher_curve(self.curve_server_secret_key, self.curve_clients, ctx.name)
        folder = self.spool_dir or Path(tempfile.gettempdir()) / "vidinfer-spool" / _safe(
            f"{ctx.pipeline_name}-{ctx.name}")
        segment = min(_SEGMENT_MAX, max(_SEGMENT_MIN, self.max_buffer_bytes // 16))
        self._spool = _Spool(folder, segment, self.memory_messages, f"sink {ctx.name!r}: key 'spool_dir'")
        try:
            self._bind(ctx, curve)
        except BaseException:
            self._spool.close()
            raise
        self._seq = self._spool.last  # the pipeline's thread numbers messages; the sink's thread writes them
        self._cond = threading.Condition()
        self._bytes = self._spool.bytes_between(self._spool.acked + 1, self._spool.last)  # unacknowledged
        self._queue: deque[tuple[int, list[bytes], bytes]] = deque()
        self._woken = False
        self._closing = False
        self._close_deadline = 0.0
        self._full_logged = False
        self._acked_at_open = self._spool.acked
        self._redelivered = 0
        self._consumer: bytes | None = None
        self._consumer_name = ""
        self._sessions = 0
        self._thread_error = ""
        earlier = self._spool.unacked
        if earlier:
            log.warning("sink %s: %d messages of an earlier run (%s) were never acknowledged; they stay in the spool "
                        "'%s' and go to the consumer first", ctx.name, earlier, _size(self._bytes), folder)
        self._thread = threading.Thread(target=self._run_safely, name=f"sink-{ctx.name}", daemon=True)
        self._thread.start()

    def _bind(self, ctx: SinkContext, curve: Any) -> None:
        self._zctx: zmq.Context | None = zmq.Context()  # its own: the ZAP authenticator then guards only this socket
        self._auth: Any = None
        sock = self._zctx.socket(zmq.ROUTER)
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._zctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(curve.clients_dir))
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = curve.public, curve.secret
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a consumer that is gone raises: we learn it left
        sock.setsockopt(zmq.SNDHWM, 2 * self.credit + 1000)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)  # what is in flight at the end is unacknowledged: it stays in the spool
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT_S * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(5 * HEARTBEAT_S * 1000))
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._stop_zmq()
            raise ConfigError(f"sink {ctx.name!r}: key 'endpoint': cannot bind {self.endpoint!r} "
                              f"({zmq.strerror(exc.errno or 0)}); choose a free port or a valid endpoint such as "
                              "tcp://127.0.0.1:5557") from None
        self._sock = sock
        self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def _stop_zmq(self) -> None:
        if getattr(self, "_auth", None) is not None:
            self._auth.stop()
            self._auth = None
        zctx = getattr(self, "_zctx", None)
        if zctx is not None:
            zctx.term()
            self._zctx = None

    @property
    def bound_endpoint(self) -> str | None:
        """The endpoint actually bound (the port chosen for ``tcp://127.0.0.1:*``), once open."""
        return getattr(self, "_bound", None)

    @property
    def spool_folder(self) -> Path | None:
        """The spool folder in use, once open."""
        spool = getattr(self, "_spool", None)
        return spool.folder if spool is not None else None

    # -- the pipeline's side --
    def _put(self, frames: list[bytes]) -> None:
        if not self._thread.is_alive():
            why = self._thread_error or "closed"
            raise PublishError(f"sink {self._name!r}: its delivery thread has ended ({why}); nothing more is kept")
        self._seq += 1
        seq = self._seq
        record = msgpack.packb([seq, *frames])
        size = len(record)
        with self._cond:
            if self._bytes and self._bytes + size > self.max_buffer_bytes and not self._stopping.is_set():
                if not self._full_logged:
                    self._full_logged = True
                    log.warning("sink %s: the buffer is full (%s of max_buffer_bytes %s, %d messages, %s): the "
                                "pipeline waits for the consumer; live streams drop frames before analysis meanwhile",
                                self._name, _size(self._bytes), _size(self.max_buffer_bytes), seq - 1 - self._acked,
                                self._presence())
                while (self._bytes and self._bytes + size > self.max_buffer_bytes and not self._stopping.is_set()
                       and self._thread.is_alive()):
                    self._cond.wait(0.1)
            self._bytes += size
        self._queue.append((seq, frames, record))
        if not self._woken:
            self._woken = True
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:  # the pipe is full of wake-ups already
                pass

    @property
    def _acked(self) -> int:
        spool = getattr(self, "_spool", None)
        return spool.acked if spool is not None else 0

    def _presence(self) -> str:
        return (f"consumer {self._consumer_name!r} connected" if self._consumer is not None
                else f"no consumer connected to {self._bound}")

    # -- figures, probes --
    def figures(self) -> dict[str, int]:
        """sent, dropped (always 0), buffered (unacknowledged messages, earlier runs' included),
        buffered_bytes, acknowledged (this run), redelivered, consumer_connected (0 or 1)."""
        spool = getattr(self, "_spool", None)
        buffered = (getattr(self, "_seq", 0) - spool.acked) if spool is not None else 0
        return {"sent": self.sent, "dropped": 0, "buffered": buffered, "buffered_bytes": getattr(self, "_bytes", 0),
                "acknowledged": (spool.acked - self._acked_at_open) if spool is not None else 0,
                "redelivered": getattr(self, "_redelivered", 0),
                "consumer_connected": int(getattr(self, "_consumer", None) is not None)}

    @property
    def consumer_connected(self) -> bool:
        return getattr(self, "_consumer", None) is not None

    def not_ready(self) -> str | None:
        """Why /readyz says not ready because of this sink (no consumer, or the buffer over half
        full), or None."""
        if getattr(self, "_spool", None) is None:
            return None
        f = self.figures()
        if not f["consumer_connected"]:
            return (f"sink {self._name!r}: no consumer connected to {self._bound} ({f['buffered']} messages, "
                    f"{_size(f['buffered_bytes'])} buffered)")
        if f["buffered_bytes"] * 2 > self.max_buffer_bytes:
            return (f"sink {self._name!r}: the consumer is behind: the buffer is over half full "
                    f"({_size(f['buffered_bytes'])} of {_size(self.max_buffer_bytes)}, {f['buffered']} messages)")
        return None

    # -- the sink's thread: it alone uses the socket and the spool --
    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception as exc:  # never silently: the pipeline's waits end (thread dead) and close() reports it
            self._thread_error = f"{type(exc).__name__}: {exc}"
            log.error("sink %s: its delivery thread failed: %s; what was not acknowledged stays in the spool '%s'",
                      self._name, self._thread_error, self._spool.folder, exc_info=True)
            with self._cond:
                self._cond.notify_all()
        finally:
            self._sock.close(0)
            self._stop_zmq()
            os.close(self._wake_r)
            self._spool.flush()
            self._spool.save_acked(force=True)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._credit = 0
        self._window = self.credit
        self._cursor = 1  # next delivery number to send to the consumer
        self._max_sent = self._spool.acked
        self._retired: deque[bytes] = deque(maxlen=64)
        self._resets: dict[bytes, float] = {}
        self._last_to_consumer = self._last_ack_save = self._absent_since = time.monotonic()
        self._absent_logged = False
        self._level = 0  # 0: below half, 1: over half
        while True:
            ready = dict(poller.poll(int(HEARTBEAT_S * 250)))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            self._woken = False
            self._take()
            if self._sock in ready:
                self._commands()
            self._deliver()
            self._housekeeping()
            # Closing waits (up to linger_s) for a consumer that was there during the run, even one restarting now.
            if self._closing and not self._queue and (not self._sessions or self._spool.unacked == 0
                                                      or time.monotonic() >= self._close_deadline):
                return

    def _take(self) -> None:
        took = False
        while self._queue:
            seq, frames, record = self._queue.popleft()
            self._spool.append(seq, frames, record)
            took = True
        if took:
            self._spool.flush()

    def _say_absent(self) -> None:
        if self._spool.unacked:
            self._absent_logged = True
            log.warning("sink %s: no consumer connected to %s; messages are kept in the spool '%s' (up to %s; the "
                        "pipeline waits when it is full): %d buffered", self._name, self._bound, self._spool.folder,
                        _size(self.max_buffer_bytes), self._spool.unacked)

    def _commands(self) -> None:
        for _ in range(1000):
            try:
                frames = self._sock.recv_multipart(zmq.DONTWAIT)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            peer, cmd = frames[0], frames[1]
            try:
                if cmd == HELLO:
                    self._hello(peer, msgpack.unpackb(frames[2], raw=False))
                elif peer != self._consumer:
                    if cmd in (ACK, CREDIT, PING) and (peer not in self._retired or self._consumer is None):
                        self._reset(peer)
                elif cmd == ACK:  # it can only have processed what it was sent
                    self._ack(min(int(msgpack.unpackb(frames[2])), max(self._max_sent, self._spool.acked)))
                elif cmd == CREDIT:
                    self._credit = min(self._credit + max(0, int(msgpack.unpackb(frames[2]))), self._window)
            except (IndexError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                    msgpack.StackError) as exc:
                log.warning("sink %s: skipped a malformed %r command (%s)", self._name, cmd[:16], exc)

    def _reset(self, peer: bytes) -> None:
        """A consumer this sink does not know (it talked to an earlier run): HELLO again. Once a
        second at most, however much it had queued while the sink was away."""
        now = time.monotonic()
        if now - self._resets.get(peer, -HEARTBEAT_S) < HEARTBEAT_S:
            return
        if len(self._resets) > 256:
            self._resets.clear()
        self._resets[peer] = now
        self._send_to(peer, [RESET])

    def _hello(self, peer: bytes, fields: Any) -> None:
        version, consumer_id, channel, last, credit = fields[:5]
        if int(version) != PROTOCOL_VERSION:
            log.warning("sink %s: consumer %r speaks protocol %s, not %d; ignored", self._name, consumer_id,
                        version, PROTOCOL_VERSION)
            return
        if self._consumer is not None and self._consumer != peer:
            self._retired.append(self._consumer)
            log.info("sink %s: consumer %r takes over from %r", self._name, consumer_id, self._consumer_name)
        last = int(last) if channel == self._spool.channel else 0  # numbers of another channel mean nothing here
        if last > self._spool.acked:
            self._ack(last)
        self._consumer, self._consumer_name = peer, str(consumer_id)
        self._sessions += 1
        self._window = int(credit) if int(credit) > 0 else self.credit
        self._credit = self._window
        self._cursor = self._spool.acked + 1
        self._absent_logged = False
        self._send_to(peer, [WELCOME, msgpack.packb([PROTOCOL_VERSION, self._spool.channel, self._cursor,
                                                     self._spool.last, self._window])])
        log.info("sink %s: consumer %r connected; delivering from %d (%d waiting)", self._name, self._consumer_name,
                 self._cursor, self._spool.unacked)

    def _ack(self, seq: int) -> None:
        freed = self._spool.ack(seq)
        if freed:
            with self._cond:
                self._bytes -= freed
                if 2 * self._bytes < self.max_buffer_bytes:
                    self._full_logged = False
                self._cond.notify_all()
        if self._cursor <= self._spool.acked:
            self._cursor = self._spool.acked + 1

    def _deliver(self) -> None:
        while self._consumer is not None and self._credit > 0 and self._cursor <= self._spool.last:
            seq = self._cursor
            frames = self._spool.read(seq)
            if frames is None:  # acknowledged meanwhile, or lost from the spool: skip it
                self._cursor += 1
                continue
            if not self._send_to(self._consumer, [MSG, msgpack.packb(seq), *frames]):
                return
            if seq <= self._max_sent:
                self._redelivered += 1
            self._max_sent = max(self._max_sent, seq)
            self._cursor += 1
            self._credit -= 1

    def _send_to(self, peer: bytes, frames: list[bytes]) -> bool:
        try:
            self._sock.send_multipart([peer, *frames], flags=zmq.DONTWAIT, copy=False)
        except zmq.Again:  # its queue is full: it is there but not reading
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                if peer == self._consumer:
                    self._gone()
                return False
            raise
        if peer == self._consumer:
            self._last_to_consumer = time.monotonic()
        return True

    def _gone(self) -> None:
        log.warning("sink %s: consumer %r is gone (its connection closed); %d unacknowledged messages (%s) stay "
                    "buffered and go to the next consumer", self._name, self._consumer_name, self._spool.unacked,
                    _size(self._bytes))
        self._consumer = None
        self._absent_logged = True  # said just now
        self._absent_since = time.monotonic()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._consumer is None and not self._absent_logged and now - self._absent_since >= ABSENT_GRACE_S:
            self._say_absent()
        if self._consumer is not None and now - self._last_to_consumer >= HEARTBEAT_S:
            self._last_to_consumer = now
            self._send_to(self._consumer, [PING])
        if now - self._last_ack_save >= _ACK_SAVE_S:
            self._last_ack_save = now
            self._spool.save_acked()
        level = 1 if self._bytes * 2 > self.max_buffer_bytes else 0
        if level != self._level:
            self._level = level
            if level:
                log.warning("sink %s: the buffer is over half full (%s of %s, %d messages; %s)", self._name,
                            _size(self._bytes), _size(self.max_buffer_bytes), self._spool.unacked, self._presence())
            else:
                log.info("sink %s: the buffer is below half full again (%s, %d messages)", self._name,
                         _size(self._bytes), self._spool.unacked)

    # -- the end (the pipeline's thread) --
    def close(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is None:
            return
        stopping = self._stopping.is_set()
        linger = min(self.linger_s, 1.0) if stopping else self.linger_s
        self._close_deadline = time.monotonic() + linger
        self._closing = True
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass
        thread.join(linger + 5.0)
        os.close(self._wake_w)
        del self._thread  # closed: a second close does nothing
        spool = self._spool
        left, memory_only = spool.unacked, spool.in_memory_only()
        spool.close()
        f = self.figures()
        if left:
            log.warning("sink %s: %d of the %d messages sent were acknowledged; %d (%s) stay in the spool '%s'%s and "
                        "go to the consumer when a pipeline with this spool_dir runs again", self._name,
                        f["acknowledged"], self.sent, left, _size(self._bytes), spool.folder,
                        "" if self._sessions else " (no consumer connected during the run)")
        if memory_only:
            log.error("sink %s: %d unacknowledged messages could not be written to the spool (%s) and are lost",
                      self._name, memory_only, spool.write_error)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "sink"


# ---------------------------------------------------------------------------------------- the consumer

class DeliveredMessage(Message):
    """A `Message` from the acknowledged channel, with its delivery sequence number."""

    def __init__(self, topic: str, header: dict[str, Any], body: dict[str, Any], gap: int = 0,
                 delivery_seq: int = 0):
        super().__init__(topic, header, body, gap)
        self.delivery_seq = delivery_seq

    def to_json(self) -> dict[str, Any]:
        return {"delivery_seq": self.delivery_seq, **super().to_json()}


class ReliableConsumer:
    """The consumer of a `ReliableSink`: receives every message at least once, in delivery order.

    A message is acknowledged once you ask for the next one (`recv` or the next step of `iter`),
    or by `ack`. Killed at any moment and started again, a consumer gets everything after what it
    acknowledged; with ``state_file`` it also remembers what it processed, says so in its HELLO
    and skips redeliveries it already processed (``duplicates``).

    Args:
        endpoint: the sink's endpoint, e.g. ``tcp://127.0.0.1:5557``.
        state_file: a small file where the last processed delivery number is kept (made if missing).
        consumer_id: names this consumer in the sink's log (default: host name and process id).
        credit: messages in flight at most (0: the sink's ``credit``).
        curve: CurveZMQ client keys (own public, own secret, the sink's public), e.g. from
            ``vidinfer.publish.proxy.load_curve_client``.
    """

    def __init__(self, endpoint: str, state_file: str | Path | None = None, consumer_id: str | None = None,
                 credit: int = 0, curve: tuple[bytes, bytes, bytes] | None = None,
                 context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.consumer_id = consumer_id or f"{socket.gethostname()}-{os.getpid()}"
        self.state_file = Path(state_file) if state_file is not None else None
        self._credit_asked = max(0, int(credit))
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        if curve is not None:
            self._sock.curve_publickey, self._sock.curve_secretkey, self._sock.curve_serverkey = curve
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)  # credit bounds what is in flight
        self._sock.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT_S * 1000))
        self._sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(5 * HEARTBEAT_S * 1000))
        self._sock.connect(endpoint)
        self.channel, self.processed = self._load_state()
        self._handed: int | None = None  # the message handed out, not yet processed
        self._acked_sent = self.processed
        self._owed = 0  # credit to give back
        self._window = self._credit_asked or 64
        self._last_flush = self._last_sent = time.monotonic()
        self._sequences = SequenceGaps()
        self.received = 0  # messages handed to the application
        self.duplicates = 0  # redeliveries of what was already processed, skipped
        self.gaps = 0
        self.incompatible = 0
        self.malformed = 0
        self.welcomed = False
        self._hello()

    # -- state --
    def _load_state(self) -> tuple[str, int]:
        if self.state_file is None or not self.state_file.exists():
            return "", 0
        try:
            data = json.loads(self.state_file.read_text())
            return str(data.get("channel", "")), int(data.get("processed", 0))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("reliable consumer: state file '%s' is unreadable (%s); starting from what the sink has not "
                        "had acknowledged", self.state_file, exc)
            return "", 0

    def _save_state(self) -> None:
        if self.state_file is not None:
            _write_atomic(self.state_file, json.dumps({"channel": self.channel, "processed": self.processed,
                                                       "consumer_id": self.consumer_id}).encode())

    # -- protocol --
    def _send(self, frames: list[bytes]) -> None:
        try:
            self._sock.send_multipart(frames, flags=zmq.DONTWAIT)
            self._last_sent = time.monotonic()
        except zmq.Again:  # not connected yet and the queue is full: the next PING or HELLO will do
            pass

    def _hello(self) -> None:
        self._hello_at = time.monotonic()
        self._owed = 0
        self._send([HELLO, msgpack.packb([PROTOCOL_VERSION, self.consumer_id, self.channel, self.processed,
                                          self._credit_asked])])
        self._acked_sent = self.processed

    def _flush(self, force: bool = False) -> None:
        due = force or time.monotonic() - self._last_flush >= 0.2
        batch = max(1, self._window // 4)
        if self.processed > self._acked_sent and (due or self.processed - self._acked_sent >= batch):
            self._send([ACK, msgpack.packb(self.processed)])
            self._acked_sent = self.processed
            self._last_flush = time.monotonic()
        if self._owed and (due or self._owed >= batch):
            self._send([CREDIT, msgpack.packb(self._owed)])
            self._owed = 0
            self._last_flush = time.monotonic()

    def _done_with_handed(self) -> None:
        if self._handed is not None:
            self.processed = max(self.processed, self._handed)
            self._handed = None
            self._save_state()

    def ack(self) -> None:
        """The message last received is processed: acknowledge it (and everything before) now."""
        self._done_with_handed()
        self._flush(force=True)

    # -- receiving --
    def recv(self, timeout: float | None = None) -> DeliveredMessage | None:
        """The next message (the one before it counts as processed), or None if none arrives
        within ``timeout`` seconds."""
        self._done_with_handed()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._flush()
            now = time.monotonic()
            wait = HEARTBEAT_S / 4 if deadline is None else max(0.0, min(HEARTBEAT_S / 4, deadline - now))
            if self._sock.poll(int(wait * 1000), zmq.POLLIN):
                msg = self._handle(self._sock.recv_multipart())
                if msg is not None:
                    return msg
                continue
            self._flush(force=True)  # idle: say what is done
            if time.monotonic() - self._last_sent >= HEARTBEAT_S:
                self._send([PING])
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _handle(self, frames: list[bytes]) -> DeliveredMessage | None:
        cmd = frames[0] if frames else b""
        try:
            if cmd == MSG:
                self._owed += 1
                seq = int(msgpack.unpackb(frames[1]))
                if seq <= self.processed:
                    self.duplicates += 1
                    return None
                msg = self._message(seq, frames[2:])
                if msg is None:  # not readable: count it processed, never stall on it
                    self.processed = seq
                    self._save_state()
                    return None
                self._handed = seq
                self.received += 1
                return msg
            if cmd == WELCOME:
                version, channel, first, last, window = msgpack.unpackb(frames[1], raw=False)[:5]
                self._window = int(window)
                self.welcomed = True
                if channel != self.channel:
                    if self.channel:
                        log.warning("reliable consumer: %s has a new spool (channel %s, was %s): taking its messages "
                                    "from its first", self.endpoint, channel, self.channel)
                    self.channel, self.processed, self._acked_sent = str(channel), 0, 0
                    self._save_state()
            elif cmd == RESET and time.monotonic() - self._hello_at >= 0.5:  # the sink restarted: it does not know us
                self._hello()
        except (IndexError, ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            self.malformed += 1
            log.warning("reliable consumer: skipped a malformed %r frame set (%s)", cmd[:16], exc)
        return None

    def _message(self, seq: int, frames: list[bytes]) -> DeliveredMessage | None:
        if len(frames) != 3:
            self.malformed += 1
            log.warning("reliable consumer: delivery %d has %d frames instead of 3; skipped", seq, len(frames))
            return None
        try:
            header = decode_header(frames[1])
            if header["major"] != SCHEMA_VERSION[0]:
                self.incompatible += 1
                return None
            t = frames[0].decode("ascii")
            body = decode_body(header["kind"], frames[2])
        except Exception as exc:  # anything a broken sender can put there
            self.malformed += 1
            log.warning("reliable consumer: delivery %d cannot be decoded (%s); skipped", seq, exc)
            return None
        gap = self._sequences.observe(header["publisher_id"], t, header["epoch"], int(header["seq"]))
        self.gaps += gap
        return DeliveredMessage(t, header, body, gap, seq)

    def iter(self, timeout: float | None = None, count: int | None = None) -> Iterator[DeliveredMessage]:
        """Yield messages until ``count`` have arrived or none arrives for ``timeout`` seconds;
        each is acknowledged when the loop asks for the next (not when the loop is left by
        ``break`` or an exception: that one comes again)."""
        n = 0
        while count is None or n < count:
            msg = self.recv(timeout)
            if msg is None:
                return
            n += 1
            yield msg
            self._done_with_handed()
        self._flush(force=True)

    def close(self) -> None:
        """Acknowledge what was processed and disconnect (the message last received, unless
        acknowledged, comes again)."""
        if self._sock.closed:
            return
        self._flush(force=True)
        self._sock.close(linger=1000)

    def __enter__(self) -> ReliableConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
