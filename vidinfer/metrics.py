"""Prometheus metrics and health probes of a vidinfer process.

One HTTP endpoint per process (``vidinfer run --metrics-port 9100`` or ``[metrics] port``):

* ``/metrics``: Prometheus text format (prometheus-client);
* ``/healthz``: liveness; 200 unless a batch has been inside the models for longer than
  `STALL_S` (a hung engine), then 503;
* ``/readyz``: readiness; 200 once the models are loaded, the publisher is up and the first
  stream has connected (a shard with no streams is ready once it runs), else 503. A reliable
  sink (``type = "reliable"``) also makes it 503, with the reason, while it has no consumer
  connected or its buffer is over half full (results are piling up).

Naming follows Prometheus' rules: ``vidinfer_`` prefix, base units (seconds), ``_total`` on
counters, and the labels are the stream id, the stage name (both sets fixed by the pipeline), a
drop ``reason`` and ``backend`` on the one info gauge `vidinfer_backend_info`: no per-object labels.

Backend metrics (both backends, so dashboards work on either): ``vidinfer_backend_info{stage,
backend}`` says which backend each part got (decoder, preprocessing, detector, classifiers) and
``vidinfer_device_info{device}`` the device. Per pipeline stage (label ``stage``: the stage's
name, e.g. ``detect:logo``): ``vidinfer_stage_duration_seconds`` times each batch through it,
``vidinfer_stage_failures_total`` counts the frames it failed on. GPU backend only:
``vidinfer_nvdec_frames_decoded_total{stream}`` and ``vidinfer_decoder_recreations_total{stream}``
(NVDEC decoders re-created after an error).

Cost on the hot path: counters are not incremented per frame at all. The pipeline already keeps
them (decoder, queue, report and publisher counters); a custom collector reads them at scrape
time. Only the histograms are fed by the pipeline thread: once per batch (size, inference time)
and once per frame (end-to-end latency); never per box.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import selectors
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterable, Mapping, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vidinfer.errors import ConfigError
from vidinfer.frame import StreamState

__all__ = ["PipelineMetrics", "MetricsServer", "serve_pipeline_metrics", "STALL_S"]

log = logging.getLogger(__name__)

STALL_S = 120.0  # /healthz fails when one batch has been in the models this long
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_UP_STATES = (StreamState.CONNECTED, StreamState.DEGRADED)


def _batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    sizes = {1, max_batch_size}
    b = 2
    while b < max_batch_size:
        sizes.add(b)
        b *= 2
    return tuple(float(s) for s in sorted(sizes))


class _PipelineCollector(Collector):
    """Reads the pipeline's own counters when Prometheus scrapes: nothing to do per frame."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def collect(self) -> Iterable[Any]:
        p = self.pipeline
        decoded = CounterMetricFamily("vidinfer_frames_decoded", "Frames out of the decoder.", labels=["stream"])
        analysed = CounterMetricFamily("vidinfer_frames_analysed",
                                       "Frames that went through the models and were published.", labels=["stream"])
        dropped = CounterMetricFamily(
            "vidinfer_frames_dropped", "Decoded frames not analysed: reason=queue_full (a live stream's queue was "
            "full: the pipeline is behind), reason=not_sampled (skipped by sample_fps).", labels=["stream", "reason"])
        errors = CounterMetricFamily("vidinfer_decode_errors", "Damaged packets the decoder skipped.",
                                     labels=["stream"])
        retimed = CounterMetricFamily("vidinfer_retimed_frames", "Frames whose container time went back or stood "
                                      "still, published one frame after the last.", labels=["stream"])
        gpu = p.device == "gpu"
        nvdec = CounterMetricFamily("vidinfer_nvdec_frames_decoded", "Frames the NVDEC hardware decoder produced.",
                                    labels=["stream"])
        recreations = CounterMetricFamily("vidinfer_decoder_recreations",
                                          "NVDEC decoders re-created after a decoder error (only that stream's).",
                                          labels=["stream"])
        reconnects = CounterMetricFamily("vidinfer_stream_reconnects", "Reconnection attempts.", labels=["stream"])
        up = GaugeMetricFamily("vidinfer_stream_up", "1 while the stream is connected (or degraded), else 0.",
                               labels=["stream"])
        depth = GaugeMetricFamily("vidinfer_queue_depth", "Frames waiting in the stream's queue for the batcher.",
                                  labels=["stream"])
        capacity = GaugeMetricFamily("vidinfer_queue_capacity", "Size of the stream's queue in frames.",
                                     labels=["stream"])
        for src in p.sources:
            sid = src.stream_id
            st = src.stats
            queue = p.queues[sid]
            decoded.add_metric([sid], st.decoded)
            analysed.add_metric([sid], p.report.streams[sid].frames_analysed)
            dropped.add_metric([sid, "queue_full"], queue.dropped)
            spec = getattr(src, "spec", None)
            if spec is None or not spec.keyframes_only:  # keyframes_only decodes only what it keeps
                dropped.add_metric([sid, "not_sampled"], max(0, st.decoded - st.queued))
            errors.add_metric([sid], st.decode_errors)
            retimed.add_metric([sid], st.retimed_frames)
            if gpu:
                nvdec.add_metric([sid], st.decoded)
                recreations.add_metric([sid], st.decoder_recreations)
            reconnects.add_metric([sid], st.reconnects)
            up.add_metric([sid], 1.0 if st.state in _UP_STATES else 0.0)
            depth.add_metric([sid], queue.depth)
            capacity.add_metric([sid], queue.capacity)
        yield from (decoded, analysed, dropped, errors, retimed, reconnects, up, depth, capacity)
        if gpu:
            yield from (nvdec, recreations)
        backend = GaugeMetricFamily("vidinfer_backend_info", "1 for the backend each stage runs on.",
                                    labels=["stage", "backend"])
        for stage, name in p.report.backends.items():
            backend.add_metric([stage, name], 1.0)
        yield backend
        failures = CounterMetricFamily("vidinfer_stage_failures", "Frames a stage failed on (published without "
                                       "its output).", labels=["stage"])
        for name, st_rep in p.report.stages.items():
            failures.add_metric([name], st_rep.failures)
        yield failures
        device = GaugeMetricFamily("vidinfer_device_info", "1 for the device the pipeline runs on (cpu or gpu).",
                                   labels=["device"])
        device.add_metric([p.device], 1.0)
        yield device

        sent = sum(int(getattr(s, "sent", 0)) for s in p.sinks)
        refused = sum(int(getattr(s, "dropped", 0)) for s in p.sinks)
        yield CounterMetricFamily("vidinfer_messages_published", "Messages handed to the sinks' transports.",
                                  value=sent)
        yield CounterMetricFamily("vidinfer_messages_dropped",
                                  "Messages refused at a subscriber's high-water mark (sndhwm).", value=refused)
        yield from _reliable_metrics(p)
        yield GaugeMetricFamily("vidinfer_streams", "Streams this process analyses (its shard's share).",
                                value=len(p.sources))
        shard = p.shard
        yield GaugeMetricFamily("vidinfer_shard_index", "This process's shard index (0 when not sharded).",
                                value=shard.index if shard is not None else 0)
        yield GaugeMetricFamily("vidinfer_shard_count", "How many shards share the stream list (1 when not sharded).",
                                value=shard.count if shard is not None else 1)


def _reliable_metrics(p: Any) -> Iterable[Any]:
    """The acknowledged channels' figures (sinks offering `figures()` with a consumer), per sink."""
    buffered = GaugeMetricFamily("vidinfer_reliable_buffered_messages",
                                 "Messages a reliable sink keeps until its consumer acknowledges them.",
                                 labels=["sink"])
    size = GaugeMetricFamily("vidinfer_reliable_buffered_bytes", "Bytes of those messages (bounded by "
                             "max_buffer_bytes; the pipeline waits when it is reached).", labels=["sink"])
    connected = GaugeMetricFamily("vidinfer_reliable_consumer_connected",
                                  "1 while a reliable sink's consumer is connected, else 0.", labels=["sink"])
    for name, sink in zip(getattr(p, "sink_names", ()), p.sinks):
        figures = getattr(sink, "figures", None)
        f = figures() if callable(figures) else {}
        if "consumer_connected" in f:
            buffered.add_metric([name], f["buffered"])
            size.add_metric([name], f["buffered_bytes"])
            connected.add_metric([name], f["consumer_connected"])
    return (buffered, size, connected)


class PipelineMetrics:
    """The metrics of one `Pipeline`, in their own registry (several pipelines may share a process)."""

    def __init__(self, pipeline: Any, registry: CollectorRegistry | None = None):
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        self.registry.register(_PipelineCollector(pipeline))
        self.batch_size = Histogram("vidinfer_batch_size_frames", "Frames per batch.",
                                    buckets=_batch_buckets(pipeline.max_batch_size), registry=self.registry)
        self.inference = Histogram("vidinfer_inference_duration_seconds",
                                   "Time of one batch through every stage.",
                                   buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.stage = Histogram("vidinfer_stage_duration_seconds",
                               "Time of one batch through one stage (a detector: filling its input to its outputs "
                               "on the host; on the GPU it may overlap the previous batch's later stages).",
                               labelnames=["stage"], buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.latency = Histogram("vidinfer_frame_latency_seconds",
                                 "End-to-end latency of a frame: decoded to its result published.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self._busy_since: float | None = None
        pipeline.metrics = self

    # -- called by the pipeline thread --
    def batch_started(self) -> None:
        self._busy_since = time.monotonic()

    def batch_done(self, frames: Sequence[Any], inference_s: float,
                   stage_s: Mapping[str, float] | None = None) -> None:
        self._busy_since = None
        self.batch_size.observe(len(frames))
        self.inference.observe(inference_s)
        for name, seconds in (stage_s or {}).items():
            self.stage.labels(stage=name).observe(seconds)
        now = time.monotonic()
        for f in frames:
            self.latency.observe(now - f.decoded_at)

    # -- probes --
    def live(self) -> tuple[bool, str]:
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > STALL_S:
            return False, f"a batch has been in the models for {time.monotonic() - busy:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        p = self.pipeline
        if not getattr(p, "running", False):
            return False, "the pipeline has not started publishing yet"
        for sink in p.sinks:  # a reliable sink without its consumer, or with its buffer over half full
            not_ready = getattr(sink, "not_ready", None)
            why = not_ready() if callable(not_ready) else None
            if why:
                return False, why
        if p.sources and not any(s.stats.decoded > 0 or s.stats.state in _UP_STATES for s in p.sources):
            return False, "no stream has connected yet"
        return True, "ok"


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, with a bounded number of threads.

    One selector thread accepts connections and holds them, without a thread each, until the
    request's header has arrived; a pool of ``workers`` threads then answers them (http.server's
    request handler, one request per connection). A connection whose request is not complete
    within ``timeout_s`` is closed, as is the oldest held one when ``max_connections`` are held,
    so idle or slow clients can neither pile up threads nor keep a scrape waiting.
    (prometheus_client's own server, like http.server's ThreadingHTTPServer used before, starts a
    thread per connection and sets no timeout: 1,000 idle connections held 964 threads.)
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 live: Callable[[], tuple[bool, str]] | None = None,
                 ready: Callable[[], tuple[bool, str]] | None = None, flag: str = "--metrics-port", *,
                 workers: int = 4, timeout_s: float = 10.0, max_connections: int = 1024):
        def always() -> tuple[bool, str]:
            return True, "ok"

        probes = {"/healthz": live or always, "/readyz": ready or always}

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:  # the request, read by the selector thread, and the socket to answer on
                self.connection, buffered = self.request
                self.connection.settimeout(timeout_s)
                self.rfile = io.BytesIO(buffered)
                self.wfile = self.connection.makefile("wb")

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif path in probes:
                    ok, why = probes[path]()
                    body, ctype, code = (why + "\n").encode(), "text/plain; charset=utf-8", 200 if ok else 503
                else:
                    body, ctype, code = b"not found: try /metrics, /healthz or /readyz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("metrics: " + format, *args)

        self._handler = Handler
        self.timeout_s, self.max_connections = timeout_s, max_connections
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            # A backlog as deep as the connections held: a burst that outruns the accept thread waits
            # in the kernel's queue, not in SYN-ACK retries that back off for seconds (the kernel
            # caps it at net.core.somaxconn).
            self._listener = socket.create_server((host, port), family=family, backlog=max_connections)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)  # create_server adds the address to strerror
            raise ConfigError(f"cannot serve metrics on {host}:{port} ({why}); choose a free port "
                              f"with {flag} or [metrics] port, or 0 to turn the endpoint off") from None
        self._listener.setblocking(False)
        self.host, self.port = host, self._listener.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics-http")
        self._held: OrderedDict[socket.socket, tuple[float, bytearray, Any]] = OrderedDict()  # oldest first
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="metrics-accept", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (probes /healthz, /readyz)", host, self.port)

    @property
    def connections(self) -> int:
        """Connections held waiting for their request."""
        return len(self._held)

    def _serve(self) -> None:
        while not self._closing:
            oldest = next(iter(self._held.values()), None)
            wait = 1.0 if oldest is None else max(0.0, min(1.0, oldest[0] + self.timeout_s - time.monotonic()))
            for key, _ in self._selector.select(wait):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    return
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            deadline = time.monotonic() - self.timeout_s
            while self._held and next(iter(self._held.values()))[0] <= deadline:
                self._drop(next(iter(self._held)))

    def _accept(self) -> None:
        while True:
            try:
                conn, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: drop the oldest held connection
                log.debug("metrics: accept failed: %s", exc)
                if self._held:
                    self._drop(next(iter(self._held)))
                return
            if len(self._held) >= self.max_connections:
                self._drop(next(iter(self._held)))
            conn.setblocking(False)
            self._held[conn] = (time.monotonic(), bytearray(), addr)
            self._selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        _since, buf, addr = self._held[conn]
        buf += data
        if b"\r\n\r\n" in buf or b"\n\n" in buf:  # the whole header: a GET has no body
            self._selector.unregister(conn)
            del self._held[conn]
            conn.setblocking(True)
            self._pool.submit(self._answer, conn, bytes(buf), addr)
        elif len(buf) > 16384:
            self._drop(conn)

    def _answer(self, conn: socket.socket, request: bytes, addr: Any) -> None:
        try:
            self._handler((conn, request), addr, self)  # type: ignore[arg-type]
        except Exception as exc:  # a client that went away while being answered
            log.debug("metrics: answering %s failed: %s", addr, exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _drop(self, conn: socket.socket) -> None:
        self._held.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5.0)
        for conn in list(self._held):
            self._drop(conn)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def serve_pipeline_metrics(pipeline: Any, host: str = "127.0.0.1", port: int = 9100) -> MetricsServer:
    """Attach metrics to ``pipeline`` and serve them; ``vidinfer run`` calls this for ``[metrics] port``."""
    m = PipelineMetrics(pipeline)
    return MetricsServer(m.registry, host, port, live=m.live, ready=m.ready)
