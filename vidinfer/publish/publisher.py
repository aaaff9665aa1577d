"""ZeroMQ publisher of results. It never blocks the pipeline, and no subscriber slows another.

The socket is an XPUB rather than a PUB: it behaves like PUB for subscribers, and it also tells
us when a subscription arrives. That lets the publisher (a) replay each stream's state to a
subscriber whenever its subscription arrives (below), and (b) wait at start for a given number of
subscriptions, so a consumer that must see the first frame can.

**One slow subscriber loses only its own messages.** Each subscriber has its own queue of
``sndhwm`` messages; when a subscriber stops reading and its queue is full, ZeroMQ drops what
would go to *that* subscriber and delivers the message to every other one (plain PUB behaviour;
XPUB_NODROP, which refuses the message for everyone once any one queue is full, is not used). The
subscriber sees its loss as a gap in the per-topic sequence numbers; ZeroMQ does not tell the
publisher, so drops cannot be counted here, only by each subscriber (`Subscriber.gaps`).

**State for late joiners** (the idea of the ZeroMQ Guide's clone pattern, on the same socket):
the latest message of every *retained* topic is kept: each stream's metadata, its latest status,
its end of stream once it ended, and the latest message of each retained stage topic (brand
impact's ``brand_exposure``). When a subscription arrives, every kept message that matches it is
sent again, unchanged but for the header's replay flag: same sequence number, so it never counts
as a gap and never uses up a live one. (An XPUB sends to every matching subscriber: one that
already had the message sees a replay of a sequence number it has; `Subscriber` drops those.)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import msgpack
import zmq

from vidinfer.errors import PublishError
from vidinfer.publish.wire import REPLAY, RETAINED, Kind, encode_header, topic, with_flags

__all__ = ["Framer", "Publisher"]


class Framer:
    """Headers of one sender: its id, its restart epoch, and a sequence number per topic."""

    def __init__(self, publisher_id: str | None = None):
        self.publisher_id = publisher_id or f"{socket.gethostname()}-{os.getpid()}"
        # The restart epoch: a new value on every start, so subscribers tell restart from loss.
        self.epoch = time.time_ns()
        self._seq: dict[bytes, int] = {}

    def header(self, t: bytes, kind: Kind | str, flags: int = 0) -> bytes:
        """The next header of topic ``t``."""
        seq = self._seq.get(t, 0)
        self._seq[t] = seq + 1
        return encode_header(kind, self.publisher_id, self.epoch, seq, time.time_ns(), flags)


# Kinds whose latest message per topic is state, replayed to late joiners; stages add their own.
STATE_KINDS = frozenset({Kind.METADATA.value, Kind.STATUS.value, Kind.END_OF_STREAM.value})
_REPLAY_ORDER = {Kind.METADATA.value: 0, Kind.STATUS.value: 1, Kind.END_OF_STREAM.value: 3}  # stage kinds: 2

log = logging.getLogger(__name__)


class Publisher:
    """Publishes vidinfer messages on one bound (or connected) endpoint.

    Args:
        endpoint: e.g. ``tcp://*:5555``, ``tcp://127.0.0.1:5555``, ``ipc:///run/vidinfer.sock``.
        publisher_id: names this publisher in every header (default: host name and process id).
        sndhwm: messages queued per subscriber before drops start.
        linger_ms: how long close() waits for queued messages to go out.
        connect: connect to the endpoint (e.g. a proxy's XSUB side) instead of binding it.
        curve: CurveZMQ client keys (own public, own secret, server public) for a proxy that requires them.
        curve_server: a `vidinfer.publish.proxy.CurveServer` (own key pair, folder of allowed client
            certificates): subscribers must use CurveZMQ with an allowed key; others receive nothing.
    """

    def __init__(self, endpoint: str, publisher_id: str | None = None, sndhwm: int = 10000,
                 linger_ms: int = 1000, connect: bool = False, context: zmq.Context | None = None,
                 curve: tuple[bytes, bytes, bytes] | None = None, curve_server: Any = None):
        self.endpoint = endpoint
        self._framer = Framer(publisher_id)
        self.publisher_id, self.epoch = self._framer.publisher_id, self._framer.epoch
        self.sent = 0
        self.dropped = 0  # messages ZeroMQ refused (never at a subscriber's high-water mark: see above)
        self.subscriptions = 0  # subscribe messages seen
        self.replayed = 0  # kept messages sent again to late joiners
        self._linger_ms = linger_ms
        # topic -> (stream id, kind, header, body) of the latest retained message, replayed to late joiners
        self._kept: dict[bytes, tuple[str, str, bytes, bytes]] = {}
        self._auth: Any = None
        if curve_server is not None and context is None:
            context = zmq.Context()  # its own context: the ZAP authenticator then guards only this socket
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        if curve_server is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(curve_server.clients_dir))
            self._sock.curve_server = True
            self._sock.curve_publickey, self._sock.curve_secretkey = curve_server.public, curve_server.secret
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # see every subscription, not just the first per prefix
        if curve is not None:  # a CurveZMQ client of a proxy: (own public, own secret, server public)
            self._sock.curve_publickey, self._sock.curve_secretkey, self._sock.curve_serverkey = curve
        try:
            if connect:
                self._sock.connect(endpoint)
            else:
                self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            self._stop_auth()
            verb = "connect to" if connect else "bind"
            raise PublishError(f"cannot {verb} publish endpoint {endpoint!r} ({zmq.strerror(exc.errno or 0)}); "
                               "choose a free port or a valid endpoint such as tcp://127.0.0.1:5555") from None
        self.bound_endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if not connect else endpoint

    # -- sending --
    def publish(self, kind: Kind | str, stream_id: str, body: bytes | dict[str, Any], retain: bool = False) -> bool:
        """Send one message (``retain``: it is state, kept and replayed to late joiners; always for
        metadata, status and end of stream). False when ZeroMQ refused it."""
        self._poll_subscriptions()
        raw = body if isinstance(body, bytes) else msgpack.packb(body)
        t = topic(kind, stream_id)
        name = kind.value if isinstance(kind, Kind) else kind
        retain = retain or name in STATE_KINDS
        header = self._framer.header(t, kind, RETAINED if retain else 0)
        if retain:
            self._kept.pop(t, None)
            self._kept[t] = (stream_id, name, header, raw)
        try:
            self._sock.send_multipart([t, header, raw], flags=zmq.DONTWAIT, copy=False)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    # -- subscriptions --
    def _poll_subscriptions(self) -> int:
        """Handle subscriptions that arrived since the last call; returns how many were new."""
        new = 0
        while True:
            try:
                msg = self._sock.recv(zmq.DONTWAIT)
            except zmq.Again:
                return new
            if msg[:1] == b"\x01":
                new += 1
                self.subscriptions += 1
                self._replay(msg[1:])

    def _replay(self, prefix: bytes) -> None:
        """Every kept message matching ``prefix``, per stream: metadata, status, stage state, end."""
        matching = [(sid, _REPLAY_ORDER.get(kind, 2), t, header, raw)
                    for t, (sid, kind, header, raw) in self._kept.items() if t.startswith(prefix)]
        for _, _, t, header, raw in sorted(matching, key=lambda m: (m[0], m[1])):
            try:
                self._sock.send_multipart([t, with_flags(header, REPLAY), raw], flags=zmq.DONTWAIT, copy=False)
            except zmq.Again:
                continue
            self.replayed += 1

    def wait_for_subscribers(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` subscriptions have arrived or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while self.subscriptions < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._sock.poll(int(min(remaining, 0.1) * 1000), zmq.POLLIN):
                self._poll_subscriptions()
        return True

    def close(self) -> None:
        """Close, after a short grace for subscriptions still arriving (a subscriber started before
        the run connects up to a reconnect interval after the bind): they get the final state."""
        deadline = time.monotonic() + min(self._linger_ms, 250) / 1000
        while self._kept and (remaining := deadline - time.monotonic()) > 0:
            if self._sock.poll(int(remaining * 1000) + 1, zmq.POLLIN):
                self._poll_subscriptions()
        self._sock.close()
        self._stop_auth()

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
