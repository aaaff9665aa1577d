"""One place to subscribe: an XSUB/XPUB forwarder between many publishers and many subscribers.

    vidinfer proxy --frontend tcp://*:5556 --backend tcp://*:5555

Shards publish into the frontend (a zmq sink with ``connect = true``, ``endpoint`` = the
frontend); subscribers connect to the backend exactly as they would to one publisher.
Subscriptions travel upstream (the backend is XPUB_VERBOSE, so every subscription is seen and
forwarded, and each publisher replays its own state too); messages travel downstream unchanged,
headers included, so per-topic sequence numbers and loss detection work across the proxy.

State for late subscribers: the proxy subscribes to every stream's metadata and status upstream
itself, keeps the latest *retained* message of every topic that passes through (the header's
retained flag: metadata, status, end of stream, brand exposure figures; for a 1.0 publisher without
flags, its metadata), and replays the matching ones, flagged as replays, whenever a subscription
arrives on the backend. So a subscriber that connects after a shard's stream failed or ended still
learns it from the stream's last status (the end-of-stream message itself and stage state are kept
once some subscriber's subscription made them flow; detections are never pulled through the proxy
for nobody). A replay goes
to every subscriber of its topic; `vidinfer.Subscriber` drops the ones it already has.

The proxy never blocks on a slow subscriber: when one subscriber's queue is full (``sndhwm``)
ZeroMQ drops the message for that subscriber only, who sees the gap in sequence numbers.

CurveZMQ: given a server certificate (``zmq.auth.create_certificates`` format, with its secret
key), a folder of the publishers' allowed public certificates and a separate folder of the
subscribers', both sides require encryption, and a subscriber's key cannot publish into the
frontend (nor a publisher's key subscribe): each side has its own ZAP domain and allow-list.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import msgpack
import zmq

from vidinfer.errors import ConfigError, PublishError
from vidinfer.publish.wire import REPLAY, RETAINED, with_flags

__all__ = ["Proxy", "CurveServer", "load_curve_server", "load_curve_client"]

log = logging.getLogger(__name__)

META_PREFIX = b"meta."
ALWAYS = (META_PREFIX, b"status.")  # what the proxy subscribes to upstream for itself
DRAIN = 1000  # messages handled per socket per poll round, so neither direction starves the other


class CurveServer:
    """The proxy's CurveZMQ keys: its own key pair and the folder of allowed client certificates."""

    def __init__(self, public: bytes, secret: bytes, clients_dir: Path):
        self.public, self.secret, self.clients_dir = public, secret, clients_dir


def load_curve_server(secret_file: str | Path, clients_dir: str | Path, secret_key: str = "--curve-secret-key",
                      clients_key: str = "--curve-clients", peers: str = "client",
                      maker: str = "zmq.auth.create_certificates") -> CurveServer:
    """Read a server certificate with its secret key and check the client folder; `ConfigError` if unusable.

    ``secret_key``/``clients_key`` name the option or configuration key in messages, ``peers`` what the
    clients are, ``maker`` the tool that makes certificates.
    """
    import zmq.auth

    secret_file, clients_dir = Path(secret_file), Path(clients_dir)
    public, secret = _load_cert(secret_file, secret_key, need_secret=True)
    if not clients_dir.is_dir():
        raise ConfigError(f"{clients_key}: folder '{clients_dir}' does not exist; give the folder that holds "
                          f"the allowed {peers}s' public certificates (*.key)")
    if not zmq.auth.load_certificates(str(clients_dir)):
        raise ConfigError(f"{clients_key}: folder '{clients_dir}' holds no public certificate; put each allowed "
                          f"{peers}'s .key file there ({maker} makes them)")
    assert secret is not None  # _load_cert(need_secret=True) refused a file without one
    return CurveServer(public, secret, clients_dir)


def load_curve_client(server_public_file: str | Path, client_secret_file: str | Path,
                      names: tuple[str, str] = ("publish.curve_server_key", "publish.curve_secret_key"),
                      ) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a socket that connects to a Curve proxy.

    ``names`` are how the two files were given (keys or flags), for error messages.
    """
    server_public, _ = _load_cert(Path(server_public_file), names[0], need_secret=False)
    public, secret = _load_cert(Path(client_secret_file), names[1], need_secret=True)
    assert secret is not None  # need_secret=True refused a file without one
    return public, secret, server_public


def _load_cert(path: Path, key: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise ConfigError(f"{key}: certificate file '{path}' does not exist; fix the path "
                          "(zmq.auth.create_certificates makes a .key and a .key_secret file)")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{key}: '{path}' is not a ZeroMQ certificate ({exc}); "
                          "give a file made by zmq.auth.create_certificates") from None
    if need_secret and not secret:
        raise ConfigError(f"{key}: '{path}' holds no secret key; give the .key_secret file, not the public .key")
    return public, secret


def apply_curve_client(sock: zmq.Socket, keys: tuple[bytes, bytes, bytes] | None) -> None:
    """Make ``sock`` a CurveZMQ client of a proxy (no-op for None)."""
    if keys is None:
        return
    public, secret, server_public = keys
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public


class Proxy:
    """Binds ``frontend`` (XSUB, publishers connect) and ``backend`` (XPUB, subscribers connect).

    Call `run` (blocks until `stop`), or `start` to run it on a thread.
    """

    def __init__(self, frontend: str, backend: str, sndhwm: int = 10000, curve: CurveServer | None = None,
                 context: zmq.Context | None = None, publishers: str | Path | None = None):
        self._ctx = context or zmq.Context.instance()
        self.forwarded = 0  # messages passed from publishers to subscribers
        self.subscriptions = 0  # subscribe messages seen on the backend
        self.replayed = 0  # kept state messages sent again to late subscribers
        self.kept: dict[bytes, list[bytes]] = {}  # topic -> the frames of its latest retained message
        self.last_round = time.monotonic()  # liveness: when the loop last went round
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._auth: Any = None
        self.front = self._ctx.socket(zmq.XSUB)
        self.back = self._ctx.socket(zmq.XPUB)
        self.back.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, so each late joiner is seen
        self.back.setsockopt(zmq.SNDHWM, sndhwm)
        for s in (self.front, self.back):
            s.setsockopt(zmq.LINGER, 1000)
        if curve is not None:
            if publishers is None:
                raise ConfigError("CurveZMQ on the proxy needs the publishers' allow-list as well as the subscribers'; "
                                  "give --curve-publishers DIR and --curve-subscribers DIR")
            self._start_auth(curve, Path(publishers))
        for sock, endpoint, flag in ((self.front, frontend, "--frontend"), (self.back, backend, "--backend")):
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                self.close(linger=0)
                raise PublishError(f"{flag}: cannot bind {endpoint!r} ({zmq.strerror(exc.errno or 0)}); choose a free "
                                   "port or a valid endpoint such as tcp://*:5556") from None
        self.frontend = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.backend = self.back.getsockopt_string(zmq.LAST_ENDPOINT)
        # Always receive every stream's metadata and status, so there is state to replay before
        # any subscriber asked for it (and a stream's end shows in its last status).
        for prefix in ALWAYS:
            self.front.send(b"\x01" + prefix)

    def _start_auth(self, curve: CurveServer, publishers: Path) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        # One ZAP domain per side, each with its own allow-list: a subscriber's key cannot publish.
        self._auth.configure_curve(domain="publishers", location=str(publishers))
        self._auth.configure_curve(domain="subscribers", location=str(curve.clients_dir))
        for s, domain in ((self.front, "publishers"), (self.back, "subscribers")):
            s.zap_domain = domain.encode()
            s.curve_server = True
            s.curve_publickey, s.curve_secretkey = curve.public, curve.secret

    # -- running --
    def start(self) -> Proxy:
        self._thread = threading.Thread(target=self.run, name="vidinfer-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        log.info("proxy: publishers into %s, subscribers from %s", self.frontend, self.backend)
        try:
            while not self._stopped.is_set():
                ready = dict(poller.poll(200))
                self.last_round = time.monotonic()
                if self.back in ready:
                    self._subscriptions()
                if self.front in ready:
                    self._forward()
        finally:
            self.close()

    def _forward(self) -> None:
        for _ in range(DRAIN):
            try:
                frames = self.front.recv_multipart(zmq.DONTWAIT, copy=False)
            except zmq.Again:
                return
            if len(frames) == 3 and _retained(frames[0].bytes, frames[1].bytes):
                self.kept[frames[0].bytes] = [f.bytes for f in frames]
            # Without XPUB_NODROP a full subscriber loses this message alone; the others still get it.
            self.back.send_multipart(frames, copy=False)
            self.forwarded += 1

    def _subscriptions(self) -> None:
        for _ in range(DRAIN):
            try:
                msg = self.back.recv(zmq.DONTWAIT)
            except zmq.Again:
                return
            self.front.send(msg)  # upstream: publishers filter and replay their own metadata
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                prefix = msg[1:]
                for t, (topic, header, body) in list(self.kept.items()):
                    if t.startswith(prefix):
                        self.back.send_multipart([topic, with_flags(header, REPLAY), body], copy=False)
                        self.replayed += 1

    def close(self, linger: int | None = None) -> None:
        for s in (self.front, self.back):
            if not s.closed:
                s.close(linger)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    # -- probes --
    def live(self) -> tuple[bool, str]:
        idle = time.monotonic() - self.last_round
        return (idle < 30, "ok" if idle < 30 else f"the forwarding loop has not turned for {idle:.0f} s")

    def ready(self) -> tuple[bool, str]:
        return (True, "ok") if not self.front.closed else (False, "closed")


def _retained(topic: bytes, raw_header: bytes) -> bool:
    """Whether a message is state to keep for late subscribers (and not itself a replay)."""
    try:
        fields = msgpack.unpackb(raw_header)
    except Exception:  # not a vidinfer header: forwarded, never kept
        return False
    if not isinstance(fields, list) or len(fields) < 7:
        return False
    if len(fields) > 7 and isinstance(fields[7], int):
        return bool(fields[7] & RETAINED) and not fields[7] & REPLAY
    return topic.startswith(META_PREFIX)  # a 1.0 publisher: its metadata


def proxy_collector(proxy: Proxy) -> Any:
    """A Prometheus collector of the proxy's counters (read at scrape time, nothing per message)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class _ProxyCollector(Collector):
        def collect(self) -> Iterable[Any]:
            yield CounterMetricFamily("vidinfer_proxy_messages_forwarded",
                                      "Messages passed from publishers to subscribers.", value=proxy.forwarded)
            yield CounterMetricFamily("vidinfer_proxy_subscriptions", "Subscriptions that arrived from subscribers.",
                                      value=proxy.subscriptions)
            yield CounterMetricFamily("vidinfer_proxy_state_replayed",
                                      "Kept state messages replayed to late subscribers.", value=proxy.replayed)
            yield GaugeMetricFamily("vidinfer_proxy_state_topics", "Topics whose latest retained message is kept.",
                                    value=len(proxy.kept))

    return _ProxyCollector()
