"""The sink seam, and the sinks vidinfer ships: ZeroMQ PUB, the acknowledged channel, an append-only file, callbacks.

A `Sink` gets every batch after the stages ran (``write``), every stream event and every message
a stage emitted (``on_event``), in order, and is closed at the end. The pipeline opens sinks when
the run starts (after the stages, so the layers' class lists are known) and catches what a sink
raises: a failing sink is reported and counted, the others and the streams go on.

The message sinks put vidinfer's wire format (docs/wire-format.md) on a transport:

- `ZmqSink` (``type = "zmq"``): an XPUB socket; never blocks the pipeline, a slow subscriber loses
  messages at its high-water mark (counted, and visible as gaps in the sequence numbers). For
  dashboards and live views.
- `vidinfer.publish.reliable.ReliableSink` (``type = "reliable"``): the acknowledged channel. One
  `ReliableConsumer` gets every message at least once, with a delivery number, even when it is
  killed and restarted; unacknowledged messages wait in a bounded spool on disk (the pipeline
  waits only when it is full, and never past a stop). For a database writer or billing job that
  needs every result.
- `FileSink` (``type = "file"``): an append-only file, one record per message: the three frames
  as a msgpack array ``[topic, header, body]``, flushed per message. Read it back with
  `read_file_sink`. For audit and replays.

Each numbers its own messages (per topic, from 0), so a reader of any of them sees no gap unless
something was lost on its own way. A message sink publishes the rows of its ``layers``: the first
in the detections body's own columns, further ones under the body's ``layers`` key; by default
the last layer the stages make (the pipeline's result: ``"brand"`` in brand impact).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, ClassVar, Iterator, Optional, Protocol, Union, runtime_checkable

import msgpack
from pydantic import Field, PrivateAttr, model_validator

from vidinfer.batch import Batch, LayerSchema, Pixels, StageMessage
from vidinfer.component import Component
from vidinfer.detections import Detections
from vidinfer.errors import ConfigError, PublishError
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.limits import why
from vidinfer.publish.subscriber import Message
from vidinfer.publish.wire import RETAINED, SCHEMA_VERSION, Kind, decode_body, decode_header, detections_body, topic

__all__ = ["Sink", "SinkContext", "Event", "MessageSink", "ZmqSink", "FileSink", "CallbackSink", "read_file_sink"]

log = logging.getLogger(__name__)

Event = Union[StreamEvent, StageMessage]
_STATE_KINDS = frozenset({Kind.METADATA.value, Kind.STATUS.value, Kind.END_OF_STREAM.value})


@dataclass(frozen=True)
class SinkContext:
    """What the pipeline tells a sink when the run starts.

    Attributes:
        name: the sink's name in the pipeline.
        pipeline_name: the pipeline's name.
        stream_ids: the streams this process analyses (its shard's share).
        layers: every layer the stages make, in order, with its class lists.
        output_layer: the layer sinks publish by default (the last one made), or None.
        stopping: set when the pipeline is told to stop: a sink waiting (for a consumer) gives up.
    """

    name: str
    pipeline_name: str
    stream_ids: tuple[str, ...]
    layers: Mapping[str, LayerSchema]
    output_layer: str | None
    stopping: threading.Event = field(default_factory=threading.Event)


@runtime_checkable
class Sink(Protocol):
    """Where results go."""

    name: str | None

    def open(self, ctx: SinkContext) -> None:
        """The run starts: bind sockets, open files, say hello (before any stream starts)."""
        ...

    def write(self, batch: Batch) -> None:
        """One batch's frames with every layer, after the stages ran."""
        ...

    def on_event(self, event: Event) -> None:
        """A stream event (status, end of stream) or a message a stage emitted, in order."""
        ...

    def close(self) -> None:
        """The run ended: flush and free."""
        ...


class MessageSink(Component):
    """Turns batches and events into wire-format messages; a subclass puts them on a transport.

    Args:
        layers: the layers to publish, the first in the body's own columns (default: the
            pipeline's last layer).
    """

    pixels: ClassVar[Pixels] = Pixels.NONE

    layers: Optional[list[str]] = Field(default=None, min_length=1,
                                        description="layers published, the first in the body's own columns")

    _sent: int = PrivateAttr(default=0)
    _dropped: int = PrivateAttr(default=0)
    _retained_kinds: set[str] = PrivateAttr(default_factory=set)

    @property
    def sent(self) -> int:
        """Messages handed to the transport."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Messages the transport refused (a subscriber's high-water mark)."""
        return self._dropped

    def open(self, ctx: SinkContext) -> None:
        names = list(self.layers) if self.layers is not None else ([ctx.output_layer] if ctx.output_layer else [])
        unknown = [n for n in names if n not in ctx.layers]
        if unknown:
            raise ConfigError(f"sink {ctx.name!r}: key 'layers' names {unknown}, which no stage makes "
                              f"(layers: {list(ctx.layers)}); fix the names")
        self._ctx = ctx
        self._primary = ctx.layers[names[0]] if names else None
        self._extra = [ctx.layers[n] for n in names[1:]]
        self._connect(ctx)
        try:
            for sid in ctx.stream_ids:
                self._send(Kind.METADATA, sid, self.metadata_body(sid, {}))
        except OSError as exc:  # e.g. a file sink on a full disk: say so before anything starts
            self.close()
            raise ConfigError(f"sink {ctx.name!r} cannot write its first messages ({exc.strerror or exc}); free some "
                              "space or give it another location") from None

    # -- what subclasses provide --
    def _connect(self, ctx: SinkContext) -> None:
        """Open the transport."""

    def ready(self) -> None:
        """Every sink of the pipeline is open; the sources start next (a publisher may wait for
        its subscribers here, after every other sink has bound its endpoint)."""

    def _send(self, kind: Kind | str, stream_id: str, body: bytes | dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the wire format --
    def metadata_body(self, stream_id: str, source: dict[str, Any]) -> dict[str, Any]:
        p = self._primary
        body: dict[str, Any] = {
            "stream_id": stream_id, "pipeline": self._ctx.pipeline_name,
            "classes": list(p.classes) if p is not None else [],
            "attributes": {k: list(v) for k, v in p.attributes.items()} if p is not None else {},
            "source": source}
        if self._extra:
            body["layers"] = {s.name: {"classes": list(s.classes), "attributes": {k: list(v) for k, v in
                                                                                   s.attributes.items()},
                                       "tracked": s.tracked} for s in self._extra}
        return body

    def write(self, batch: Batch) -> None:
        p = self._primary
        for i, f in enumerate(batch.frames):
            det = batch[p.name][i] if p is not None and p.name in batch else Detections.empty()
            extra = {s.name: (batch[s.name][i] if s.name in batch else Detections.empty(), s.tracked)
                     for s in self._extra}
            self._send(Kind.DETECTIONS, f.stream_id,
                       detections_body(f.stream_id, f.frame_no, f.pts_ns, f.capture_ns, f.width, f.height, det,
                                       f.discontinuity, p is not None and p.tracked, extra))

    def retained(self, kind: Kind | str) -> bool:
        """Whether messages of ``kind`` are state, whose latest per topic a late joiner gets again:
        metadata, status and end of stream, and stage messages emitted with ``retain``."""
        name = kind.value if isinstance(kind, Kind) else kind
        return name in _STATE_KINDS or name in self._retained_kinds

    def on_event(self, event: Event) -> None:
        if isinstance(event, StageMessage):
            if event.retain:
                self._retained_kinds.add(event.kind)
            self._send(event.kind, event.stream_id, event.body)
            return
        sid = event.stream_id
        if event.state is StreamState.CONNECTED:
            self._send(Kind.METADATA, sid, self.metadata_body(sid, event.info))
        self._send(Kind.STATUS, sid, {"stream_id": sid, "state": event.state.value, "reason": event.reason,
                                      "time_ns": event.time_ns, **event.info})
        if event.end_of_stream:
            self._send(Kind.END_OF_STREAM, sid, {"stream_id": sid, "state": event.state.value,
                                                 "reason": event.reason, **event.info})

    def close(self) -> None:
        pass


class ZmqSink(MessageSink):
    """ZeroMQ XPUB: results for any number of subscribers, never blocking the pipeline.

    Args:
        endpoint: e.g. ``tcp://127.0.0.1:5555``, ``tcp://*:5555``, ``ipc:///run/vidinfer.sock``.
        publisher_id: names this publisher in every header (default: host name and process id).
        connect: connect to the endpoint (a `vidinfer proxy`'s frontend) instead of binding it.
        sndhwm: messages queued per subscriber before drops start.
        linger_ms: how long closing waits for queued messages to go out.
        wait_for_subscribers: wait at start for this many subscriptions (at most ``wait_timeout_s``).
        curve_server_key, curve_secret_key: CurveZMQ to a proxy started with keys (connect = true).
        curve_server_secret_key, curve_clients: CurveZMQ on this publisher itself (it binds).
        layers: see `MessageSink`.
    """

    type: ClassVar[str] = "zmq"

    endpoint: str = Field(default="tcp://127.0.0.1:5555", min_length=1)
    publisher_id: Optional[str] = None
    connect: bool = False
    sndhwm: Annotated[int, why("messages queued per subscriber, each up to tens of KB; a million is GBs for one "
                               "slow subscriber")] = Field(default=10000, ge=1, le=1_000_000)
    linger_ms: Annotated[int, why("a minute; closing waits this long for queued messages, and the shutdown with "
                                  "it")] = Field(default=1000, ge=0, le=60_000)
    wait_for_subscribers: Annotated[int, why("subscriptions counted at start; a fleet that large connects "
                                             "through a proxy")] = Field(default=0, ge=0, le=10_000)
    wait_timeout_s: Annotated[float, why("an hour; the run starts anyway when it passes")] = Field(
        default=10.0, ge=0, le=3600)
    curve_server_key: Optional[Path] = Field(default=None, description="the proxy's public certificate (.key)")
    curve_secret_key: Optional[Path] = Field(default=None, description="this client's certificate (.key_secret)")
    curve_server_secret_key: Optional[Path] = Field(default=None, description="own certificate (.key_secret)")
    curve_clients: Optional[Path] = Field(default=None, description="folder of allowed clients' .key files")

    @model_validator(mode="after")
    def _curve_pair(self) -> ZmqSink:
        if (self.curve_server_key is None) != (self.curve_secret_key is None):
            raise ValueError("give both curve_server_key (the proxy's .key) and curve_secret_key "
                             "(this publisher's .key_secret) for CurveZMQ, or neither")
        if (self.curve_server_secret_key is None) != (self.curve_clients is None):
            raise ValueError("give both curve_server_secret_key (this publisher's .key_secret) and curve_clients "
                             "(the folder of allowed subscribers' .key files) for CurveZMQ, or neither")
        if self.curve_server_secret_key is not None and self.curve_server_key is not None:
            raise ValueError("curve_server_secret_key (a bound, secured publisher) and curve_server_key (connecting "
                             "to a secured proxy) exclude each other; keep the one that matches connect")
        return self

    def _connect(self, ctx: SinkContext) -> None:
        from vidinfer.publish.publisher import Publisher

        curve = curve_server = None
        if self.curve_server_key is not None and self.curve_secret_key is not None:
            from vidinfer.publish.proxy import load_curve_client

            curve = load_curve_client(self.curve_server_key, self.curve_secret_key,
                                      names=(f"sink {ctx.name!r}: key 'curve_server_key'",
                                             f"sink {ctx.name!r}: key 'curve_secret_key'"))
        if self.curve_server_secret_key is not None and self.curve_clients is not None:
            from vidinfer.publish.security import load_publisher_curve

            curve_server = load_publisher_curve(self.curve_server_secret_key, self.curve_clients, ctx.name)
        try:
            self._publisher = Publisher(self.endpoint, self.publisher_id, self.sndhwm, self.linger_ms, self.connect,
                                        curve=curve, curve_server=curve_server)
        except PublishError as exc:  # name the key, as every other sink error does
            raise PublishError(f"sink {ctx.name!r}: key 'endpoint': {exc}") from None

    @property
    def publisher(self) -> Any:
        """The `Publisher` (once open)."""
        return getattr(self, "_publisher", None)

    def ready(self) -> None:
        pub, want = self._publisher, self.wait_for_subscribers
        deadline = time.monotonic() + self.wait_timeout_s
        while want and not self._ctx.stopping.is_set():  # a signal ends the wait at once
            left = deadline - time.monotonic()
            if pub.wait_for_subscribers(want, max(0.0, min(0.1, left))):
                return
            if left <= 0:
                log.warning("sink %s: only %d of %d subscriptions arrived within %.1f s; starting anyway",
                            self._ctx.name, pub.subscriptions, want, self.wait_timeout_s)
                return

    def _send(self, kind: Kind | str, stream_id: str, body: bytes | dict[str, Any]) -> None:
        self._publisher.publish(kind, stream_id, body, retain=self.retained(kind))
        self._sent, self._dropped = self._publisher.sent, self._publisher.dropped

    def close(self) -> None:
        pub = self.publisher
        if pub is not None:
            self._sent, self._dropped = pub.sent, pub.dropped
            pub.close()
            del self._publisher


class _Framed(MessageSink):
    """A message sink that numbers its own messages (per topic, from 0)."""

    def _connect(self, ctx: SinkContext) -> None:
        from vidinfer.publish.publisher import Framer

        self._framer = Framer()
        self._open_transport(ctx)

    def _open_transport(self, ctx: SinkContext) -> None:
        raise NotImplementedError

    def _send(self, kind: Kind | str, stream_id: str, body: bytes | dict[str, Any]) -> None:
        raw = body if isinstance(body, bytes) else msgpack.packb(body)
        t = topic(kind, stream_id)
        self._put([t, self._framer.header(t, kind, RETAINED if self.retained(kind) else 0), raw])
        self._sent += 1

    def _put(self, frames: list[bytes]) -> None:
        raise NotImplementedError


class FileSink(_Framed):
    """Appends every message to a file as one msgpack array ``[topic, header, body]``.

    Args:
        path: the file (made with its folder if missing; appended to if it exists).
    """

    type: ClassVar[str] = "file"

    path: Path

    def _open_transport(self, ctx: SinkContext) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: each record goes to the OS as it is written, so nothing is left to flush
            # (or to fail again) at close when the disk has filled.
            self._f: BinaryIO | None = open(self.path, "ab", buffering=0)
        except OSError as exc:
            raise ConfigError(f"sink {ctx.name!r}: key 'path': cannot open the results file '{self.path}' "
                              f"({exc.strerror}); give a writable path") from None

    def _put(self, frames: list[bytes]) -> None:
        assert self._f is not None
        record = memoryview(msgpack.packb(frames))
        while record:  # a raw file may take part of a write
            record = record[self._f.write(record) or 0:]

    def close(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            self._f = None
            f.close()


class CallbackSink:
    """Calls your functions, in the pipeline's thread (keep them quick: they hold up the next batch).

    Args:
        on_frame: ``on_frame(frame, layers)`` for every analysed frame, ``layers`` mapping each
            layer's name to the frame's `Detections`.
        on_event: ``on_event(event)`` for stream events and stage messages.
        on_close: ``on_close()`` at the end of the run.
        pixels: what ``on_frame`` reads of the pixels (default: nothing; ``"host"`` gives NumPy frames).
        name: the sink's name.
    """

    def __init__(self, on_frame: Callable[[Frame, dict[str, Detections]], Any] | None = None,
                 on_event: Callable[[Event], Any] | None = None, on_close: Callable[[], Any] | None = None,
                 pixels: Pixels | str = Pixels.NONE, name: str = "callback"):
        self._on_frame, self._on_event, self._on_close = on_frame, on_event, on_close
        self.pixels = Pixels(pixels)
        self.name: str | None = name
        self.frames = 0

    def open(self, ctx: SinkContext) -> None:
        pass

    def write(self, batch: Batch) -> None:
        if self._on_frame is None:
            return
        for i, f in enumerate(batch.frames):
            self._on_frame(f, batch.frame_layers(i))
            self.frames += 1

    def on_event(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


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
