"""The pipeline: sources -> bounded queues -> cross-stream batcher -> stages, in order -> sinks.

    import vidinfer as vi

    pipeline = vi.Pipeline(
        sources=[vi.StreamSpec(id="cam-1", url="cam1.mp4"), vi.StreamSpec(id="cam-2", url="rtsp://...")],
        stages=[vi.Detect(model="models/shapes/detector.onnx", labels_file="models/shapes/labels.txt"),
                vi.Track()],
        sinks=[vi.ZmqSink(endpoint="tcp://127.0.0.1:5555")],
    )
    report = pipeline.run()

The core knows no model and no analytics: it batches frames across streams, runs each stage on
each batch (a stage reads and makes named layers, `vidinfer.batch`), hands every batch and every
stream event to every sink, and keeps the run's figures. Everything else is a stage or a sink.

Threads: one per source (demux, decode, resize: FFmpeg releases the GIL) and the caller's thread,
which batches, runs the stages and feeds the sinks. ONNX Runtime also releases the GIL while it
runs. What differs between the CPU and the GPU backend (decoding, the detector input, engines,
crops, host copies of frames) lives in `vidinfer.backends`; ``device`` picks one per pipeline.

Faults: a stage that raises fails only the frames of the stream it fails on (docs/composition.md,
"When a stage fails"); a sink that raises is counted and reported, and the others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.backends import make_backend
from vidinfer.batch import Batch, Pixels, StageMessage
from vidinfer.batching import Batcher, Collected
from vidinfer.config import GpuSpec, ShardSpec, StreamSpec
from vidinfer.detections import Detections
from vidinfer.devices import plan_device
from vidinfer.errors import ConfigError
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.limits import MAX_BATCH_SIZE, MAX_BATCH_WHY
from vidinfer.publish.sinks import Event, Sink, SinkContext
from vidinfer.publish.wire import check_stage_kind
from vidinfer.sharding import select_streams
from vidinfer.sources.base import DecodeHints, Source
from vidinfer.stages.base import FrameFailures, FrameNeeds, FunctionStage, Layers, ReportSection, Stage, StageContext
from vidinfer.tracking.cuts import ShotCuts

__all__ = ["Pipeline", "RunReport", "StreamReport", "StageReport"]

log = logging.getLogger(__name__)

_NOT_ENDED = {StreamState.CONNECTING.value, StreamState.CONNECTED.value, StreamState.RECONNECTING.value,
              StreamState.DEGRADED.value}
# All sources together get this long to stop (a source blocked in a silent server's open cannot be
# interrupted); the whole shutdown must stay within 5 s.
SOURCE_JOIN_TIMEOUT_S = 3.0


@dataclass
class StreamReport:
    """How one stream's run went."""

    stream_id: str
    state: str = StreamState.CONNECTING.value
    reason: str = ""
    frames_decoded: int = 0
    frames_analysed: int = 0  # frames that went through the stages and were handed to the sinks
    frames_dropped: int = 0  # live frames dropped because the pipeline was behind
    decode_errors: int = 0
    retimed_frames: int = 0  # frames whose time went back or stood still, moved one frame on
    decoder_recreations: int = 0  # hardware decoders re-created after an error (GPU backend)
    reconnects: int = 0
    stage_failures: int = 0  # frames some stage failed on (published without that stage's output)


@dataclass
class StageReport:
    """How one stage's run went."""

    name: str
    kind: str  # the stage's type ("detect", "classify", ..., "function")
    pixels: str
    calls: int = 0  # batches it ran on
    frames: int = 0
    seconds: float = 0.0  # time inside the stage (prepare and call)
    failures: int = 0  # frames it failed on


@dataclass
class RunReport:
    """What a run did: per stream, per stage, per sink, and in total; stages add sections."""

    streams: dict[str, StreamReport] = field(default_factory=dict)
    device: str = "cpu"
    device_reason: str = ""
    backends: dict[str, str] = field(default_factory=dict)  # what each part runs on: decoder, detector, ...
    stages: dict[str, StageReport] = field(default_factory=dict)
    sinks: dict[str, dict[str, int]] = field(default_factory=dict)  # per sink: sent, dropped, errors
    batches: int = 0
    frames: int = 0
    elapsed_s: float = 0.0
    messages_sent: int = 0  # summed over the sinks
    messages_dropped: int = 0  # refused at a subscriber's high-water mark, summed over the sinks
    latency_ms: dict[str, float] = field(default_factory=dict)  # decoded -> handed to the sinks, p50/p95/p99
    interrupted: bool = False
    sections: dict[str, ReportSection] = field(default_factory=dict)  # added by stages (e.g. "brand_impact")

    @property
    def mean_batch_size(self) -> float:
        return self.frames / self.batches if self.batches else 0.0

    @property
    def failed_streams(self) -> list[str]:
        return [s.stream_id for s in self.streams.values() if s.state == StreamState.FAILED.value]

    @property
    def exit_code(self) -> int:
        """0: every stream ended normally; 1: at least one failed (the others still ran); 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed_streams else 0

    @property
    def report_files(self) -> list[str]:
        """Every file the stages wrote (their report sections' files)."""
        return [f for s in self.sections.values() for f in s.files]

    def section(self, name: str) -> Any:
        """The figures of a stage's section (e.g. ``report.section("brand_impact")``), or None."""
        s = self.sections.get(name)
        return s.data if s is not None else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sections"] = {name: s.data for name, s in self.sections.items()}
        d["report_files"] = self.report_files
        d["mean_batch_size"] = round(self.mean_batch_size, 3)
        d["failed_streams"] = self.failed_streams
        d["exit_code"] = self.exit_code
        return d


class _Failures:
    """Stage and sink faults: each (stage, stream) and each sink is logged once, then counted."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()


class Pipeline:
    """Sources, stages and sinks, run together.

    Args:
        sources: the streams: `StreamSpec` (a file or URL, decoded by the backend's decoder) or any
            `Source` (e.g. `vidinfer.ArraySource`).
        stages: run in this order on every batch: `Detect`, `Classify`, `Track`, `ReadText`,
            `BrandExposure`, functions made stages with `vidinfer.stage`, or any `Stage`. A plain
            function ``fn(batch)`` is taken as ``vidinfer.stage(fn)``.
        sinks: where results go (`ZmqSink`, `ReliableSink`, `FileSink`, `CallbackSink`, any `Sink`).
        name: the pipeline's name (in metadata, reports and logs).
        device: ``"auto"`` (the GPU when it works here, else the CPU), ``"cpu"`` or ``"gpu"``.
        max_batch_size: frames per batch, taken across streams.
        max_delay_ms: a partial batch goes when its first frame has waited this long.
        gpu: the GPU backend's settings.
        shard: run only this shard's share of the sources (`vidinfer.sharding`).

    Everything that can fail on user input (a model that does not fit, a layer no stage makes, a
    device that is missing) fails here, with one sentence, before any stream starts.
    """

    def __init__(self, sources: Sequence[Source | StreamSpec], stages: Sequence[Stage | Callable[..., Any]],
                 sinks: Sequence[Sink] = (), *, name: str = "pipeline", device: str = "auto",
                 max_batch_size: int = 8, max_delay_ms: float = 20.0, gpu: GpuSpec | None = None,
                 shard: ShardSpec | None = None):
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_batch_size > MAX_BATCH_SIZE:
            raise ConfigError(f"max_batch_size must be at most {MAX_BATCH_SIZE} ({MAX_BATCH_WHY}), "
                              f"got {max_batch_size}")
        if not 0 <= max_delay_ms <= 60_000:
            raise ConfigError(f"max_delay_ms must be from 0 to 60000 (a minute), got {max_delay_ms}")
        if device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_ms = max_delay_ms
        self.shard = shard
        self.metrics: Any = None  # vidinfer.metrics.PipelineMetrics when attached (histogram hooks)
        self.running = False  # sinks up and sources started: what /readyz waits for
        self._interrupted = False
        self._stopped = threading.Event()
        self._stopping = threading.Event()  # set by stop() only: sinks waiting for a consumer give up
        self._latencies: deque[float] = deque(maxlen=100_000)
        self._failures = _Failures()
        self._in_batch = False
        self._batch_messages: list[StageMessage] = []

        self.plan = plan_device(device)  # ConfigError when device = "gpu" cannot be had
        self.device, self.device_reason = self.plan.device, self.plan.reason
        self.report = RunReport(device=self.device, device_reason=self.device_reason, backends=dict(self.plan.stages))
        self.backend = make_backend(self.plan, gpu)
        self.sources: list[Source] = self._make_sources(sources)
        self.stages: list[Stage] = [_as_stage(s) for s in stages]
        self.sinks: list[Sink] = list(sinks)
        self.stage_names = _unique_names(self.stages, "stage")
        self.sink_names = _unique_names(self.sinks, "sink")
        self.layers = Layers()
        self.cuts = ShotCuts()  # one hard-cut detection per frame, for every stage that asks
        self._needs = FrameNeeds()
        self._open_stages()
        self.batcher = Batcher(max_batch_size, max_delay_ms)
        self.queues = {s.stream_id: self.batcher.add_stream(s.stream_id, s.queue_size, drop_oldest=s.live)
                       for s in self.sources}
        for s in self.sources:
            self.report.streams[s.stream_id] = StreamReport(s.stream_id)
        # Many streams share few cores: one decoder thread each. A single stream may use more.
        self.hints = DecodeHints(self._needs.size, self._needs.full, 1 if len(self.sources) > 1 else 0)

    @classmethod
    def from_toml(cls, path: str | Path) -> Pipeline:
        """The pipeline a TOML file describes (`vidinfer.config.load_pipeline`)."""
        from vidinfer.config import load_pipeline

        return load_pipeline(path).build()

    # -- construction --
    def _make_sources(self, given: Sequence[Source | StreamSpec]) -> list[Source]:
        items = list(given)
        if self.shard is not None:
            mine = select_streams(items, self.shard.index, self.shard.count, key=_stream_id)
            log.info("shard %d of %d: %d of %d streams (%s)", self.shard.index, self.shard.count, len(mine),
                     len(items), ", ".join(_stream_id(s) for s in mine) or "none: idle until stopped")
            items = mine
        seen: set[str] = set()
        sources: list[Source] = []
        for item in items:
            sid = _stream_id(item)
            if sid in seen:
                raise ConfigError(f"stream id {sid!r} is used twice; give every stream its own id")
            seen.add(sid)
            sources.append(self.backend.make_source(item) if isinstance(item, StreamSpec) else item)
        return sources

    def _open_stages(self) -> None:
        opened: list[Stage] = []
        try:
            for stage, name in zip(self.stages, self.stage_names):
                ctx = StageContext(name, self.name, self.backend, self.layers, [s.stream_id for s in self.sources],
                                   self.max_batch_size, self._emit, self._add_section, self.cuts, self._needs)
                stage.open(ctx)
                opened.append(stage)
                self.report.stages[name] = StageReport(name, _kind(stage), Pixels(stage.pixels).value)
        except BaseException:
            for stage in reversed(opened):
                _quietly(stage.close, f"closing stage {stage!r}")
            self.backend.close()
            raise

    @property
    def output_layer(self) -> str | None:
        """The layer sinks publish unless told otherwise: the last one a stage makes."""
        names = self.layers.names
        return names[-1] if names else None

    # -- running --
    def run(self) -> RunReport:
        """Run until every stream has ended (or `stop` is called). Returns the run's report."""
        started = time.monotonic()
        self._open_sinks()
        log.info("pipeline %s: %d streams on %s (%s); %s; stages: %s", self.name, len(self.sources), self.device,
                 self.device_reason, "; ".join(f"{k}: {v}" for k, v in self.report.backends.items()),
                 ", ".join(self.stage_names))
        try:
            if self._stopping.is_set():  # stop() came before the sources started (e.g. while a sink waited)
                self._end_unstarted()
                return self.report
            for src in self.sources:
                src.start(self.queues[src.stream_id], self.hints)
            self.running = True
            if not self.sources:  # a shard whose share is empty idles until stopped (a pod must not exit)
                log.warning("this shard has no streams; idling until stopped")
                self._stopped.wait()
            self._loop()
            deadline = time.monotonic() + SOURCE_JOIN_TIMEOUT_S
            for src in self.sources:
                src.join(max(0.0, deadline - time.monotonic()))
            self._loop()  # what the sources queued while stopping: their end-of-stream events
            self._end_stuck_sources()
        finally:
            self._stopped.set()
            self.batcher.stop()
            self._finish(time.monotonic() - started)
        return self.report

    def _open_sinks(self) -> None:
        opened: list[Sink] = []
        try:
            for sink, name in zip(self.sinks, self.sink_names):
                sink.open(SinkContext(name, self.name, tuple(s.stream_id for s in self.sources),
                                      dict(self.layers.schemas), self.output_layer, self._stopping))
                opened.append(sink)
            for sink in self.sinks:  # once every sink has bound: e.g. a publisher waiting for subscribers
                ready = getattr(sink, "ready", None)
                if callable(ready):
                    ready()
        except BaseException:
            for sink in reversed(opened):
                _quietly(sink.close, f"closing sink {sink!r}")
            self._close_stages()
            self.backend.close()
            raise

    def stop(self, interrupted: bool = True) -> None:
        """Stop the sources; queued frames are still analysed and every stream's end is published.

        Safe before `run` and while it opens the sinks (a signal while the models load, or while a
        sink waits for subscribers): `run` then starts no stream and returns at once, every
        stream's end published."""
        self._interrupted = self._interrupted or interrupted
        self._stopping.set()
        self._stopped.set()
        for src in self.sources:
            src.stop()
        self.batcher.stop()

    def _end_unstarted(self) -> None:
        """`stop` before the sources started: no stream is opened, and every stream's end is published."""
        log.info("pipeline %s: stopped before its streams started", self.name)
        for src in self.sources:
            self._on_event(StreamEvent(src.stream_id, StreamState.ENDED, "stopped before the stream started",
                                       {"frames_decoded": 0, "frames_dropped": 0, "decode_errors": 0,
                                        "retimed_frames": 0},
                                       end_of_stream=True))

    def _end_stuck_sources(self) -> None:
        """A source still blocked (e.g. opening a server that never answers) gets its end published here."""
        for src in self.sources:
            if src.alive and self.report.streams[src.stream_id].state in _NOT_ENDED:
                self._on_event(StreamEvent(src.stream_id, StreamState.FAILED,
                                           "source did not stop within the shutdown timeout",
                                           {"frames_decoded": src.stats.decoded}, end_of_stream=True))

    def _loop(self) -> None:
        """Prepare each batch, then finish it. A pipelined backend (GPU) finishes batch k after
        preparing k+1 when k+1 was already waiting, so k+1's detector inputs and runs overlap k's
        later stages and sinks; otherwise (idle, or the CPU backend) at once."""
        pending: tuple[Collected, Batch, float] | None = None
        while (taken := self.batcher.next_batch()) is not None:
            prepared = self._prepare(taken)
            if pending is not None:
                self._complete(*pending)
            pending = prepared
            if not self.backend.pipelined or not any(q.depth for q in self.batcher.queues):
                self._complete(*pending)
                pending = None
        if pending is not None:
            self._complete(*pending)

    def _prepare(self, taken: Collected) -> tuple[Collected, Batch, float]:
        batch = Batch(taken.frames, self.layers.schemas)
        t0 = time.perf_counter()
        seconds: dict[str, float] = {}
        batch.scratch["seconds"] = seconds  # per stage, for the metrics
        if batch.frames:
            if self.metrics is not None:
                self.metrics.batch_started()
            for stage, name in zip(self.stages, self.stage_names):
                prepare = getattr(stage, "prepare", None)
                if prepare is not None:
                    t = time.perf_counter()
                    try:
                        prepare(batch)
                    except Exception:  # the stage's call starts again on its own and reports what fails
                        batch.scratch.pop(id(stage), None)
                    seconds[name] = time.perf_counter() - t
                    self.report.stages[name].seconds += seconds[name]
        return taken, batch, t0

    def _complete(self, taken: Collected, batch: Batch, t0: float) -> None:
        for ev in taken.events_before:
            self._on_event(ev)
        if batch.frames:
            self._analyse(batch)
            stage_s = time.perf_counter() - t0
            self._deliver(batch)
            self._account(batch, stage_s)
        for ev in taken.events_after:
            self._on_event(ev)

    def analyse(self, frames: Sequence[Frame]) -> Batch:
        """Every stage on these frames, nothing handed to the sinks; returns the batch with its
        layers (for tools and benchmarks; stream ends are not signalled)."""
        _, batch, _ = self._prepare(Collected(frames=list(frames)))
        self._analyse(batch)
        self._batch_messages.clear()
        return batch

    def _analyse(self, batch: Batch) -> None:
        """Run the stages in order; what they emit waits for the batch to be delivered."""
        host: Batch | None = None
        self._in_batch = True
        try:
            for stage, name in zip(self.stages, self.stage_names):
                view = batch
                if Pixels(stage.pixels) is Pixels.HOST:
                    if host is None:  # one host copy per batch, however many stages ask
                        host = batch.with_frames(self.backend.host_frames(batch.frames))
                    view = host
                self._run_stage(stage, name, view)
            batch.scratch["host"] = host
        finally:
            self._in_batch = False

    def _run_stage(self, stage: Stage, name: str, batch: Batch) -> None:
        rep = self.report.stages[name]
        before = {layer: list(rows) for layer, rows in batch.items()}
        t = time.perf_counter()
        try:
            stage(batch)
        except FrameFailures as ff:
            for frame, exc in ff.failures:
                self._stage_failed(name, frame.stream_id, [frame.frame_no], exc)
        except Exception as exc:
            self._isolate(stage, name, batch, before, exc)
        finally:
            took = time.perf_counter() - t
            rep.seconds += took
            rep.calls += 1
            rep.frames += len(batch.frames)
            seconds = batch.scratch.get("seconds")
            if seconds is not None:
                seconds[name] = seconds.get(name, 0.0) + took
        self._fill_missing_layers(batch, name)

    def _isolate(self, stage: Stage, name: str, batch: Batch, before: dict[str, list[Detections]],
                 exc: BaseException) -> None:
        """A stage raised on a batch: undo what it set, then run it on each stream's frames alone,
        so that only the stream it fails on loses its output."""
        batch.restore(before)
        by_stream: dict[str, list[int]] = {}
        for i, f in enumerate(batch.frames):
            by_stream.setdefault(f.stream_id, []).append(i)
        if len(by_stream) == 1:
            sid, idx = next(iter(by_stream.items()))
            self._stage_failed(name, sid, [batch.frames[i].frame_no for i in idx], exc)
            return
        for sid, idx in by_stream.items():
            sub = batch.select(idx)
            try:
                stage(sub)
            except FrameFailures as ff:
                for frame, e in ff.failures:
                    self._stage_failed(name, frame.stream_id, [frame.frame_no], e)
                batch.merge(sub, idx)
            except Exception as e:
                self._stage_failed(name, sid, [batch.frames[i].frame_no for i in idx], e)
            else:
                batch.merge(sub, idx)

    def _fill_missing_layers(self, batch: Batch, stage_name: str) -> None:
        """Every layer a stage declared exists after it ran (empty rows where it failed)."""
        for schema in self.layers.schemas.values():
            if schema.made_by == stage_name:
                batch.fill(schema.name)

    def _stage_failed(self, name: str, stream_id: str, frame_nos: list[int], exc: BaseException) -> None:
        self.report.stages[name].failures += len(frame_nos)
        rep = self.report.streams.get(stream_id)
        if rep is not None:
            rep.stage_failures += len(frame_nos)
        key = (name, stream_id)
        if key in self._failures.seen:
            log.debug("stage %r failed again on stream %s", name, stream_id, exc_info=exc)
            return
        self._failures.seen.add(key)
        what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__
        frames = f"frame {frame_nos[0]}" if len(frame_nos) == 1 else f"frames {frame_nos[0]}-{frame_nos[-1]}"
        log.error("stage %r failed on stream %s (%s): %s; its results are published without this stage's output, "
                  "and the other streams go on (later failures of this stage on this stream are counted in the "
                  "run report)", name, stream_id, frames, what)
        log.debug("stage %r: traceback", name, exc_info=exc)
        if rep is not None:  # subscribers learn it too, once
            self._to_sinks(StreamEvent(stream_id, StreamState.DEGRADED, f"stage {name!r} failed: {what}"))

    def _deliver(self, batch: Batch) -> None:
        host = batch.scratch.get("host")
        for sink, name in zip(self.sinks, self.sink_names):
            view = batch
            if Pixels(getattr(sink, "pixels", Pixels.NONE)) is Pixels.HOST:
                host = host if host is not None else batch.with_frames(self.backend.host_frames(batch.frames))
                view = host
            self._sink_call(sink, name, sink.write, view)
        messages, self._batch_messages = self._batch_messages, []
        for msg in messages:
            self._to_sinks(msg)

    def _account(self, batch: Batch, stage_s: float) -> None:
        now = time.monotonic()
        for f in batch.frames:
            self._latencies.append(now - f.decoded_at)
            self.report.streams[f.stream_id].frames_analysed += 1
        self.report.batches += 1
        self.report.frames += len(batch.frames)
        if self.metrics is not None:
            self.metrics.batch_done(batch.frames, stage_s, batch.scratch.get("seconds", {}))

    # -- events and messages --
    def _on_event(self, ev: StreamEvent) -> None:
        rep = self.report.streams[ev.stream_id]
        rep.state, rep.reason = ev.state.value, ev.reason
        if ev.end_of_stream:
            # What the sinks were handed, not what the source queued (live drops happen between).
            ev.info["frames_analysed"] = rep.frames_analysed
            for stage, name in zip(self.stages, self.stage_names):
                try:
                    stage.on_stream_end(ev.stream_id)
                except Exception as exc:  # the stream's end still goes out, to every sink
                    log.error("stage %r failed at the end of stream %s: %s: %s", name, ev.stream_id,
                              type(exc).__name__, exc)
        self._to_sinks(ev)

    def _emit(self, stage: str, kind: str, stream_id: str, body: dict[str, Any], retain: bool = False) -> None:
        check_stage_kind(kind)
        msg = StageMessage(stage, kind, stream_id, body, retain)
        if self._in_batch:
            self._batch_messages.append(msg)  # after the batch's results
        else:
            self._to_sinks(msg)

    def _to_sinks(self, event: Event) -> None:
        for sink, name in zip(self.sinks, self.sink_names):
            self._sink_call(sink, name, sink.on_event, event)

    def _sink_call(self, sink: Sink, name: str, fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception as exc:  # one sink's fault (a full disk, a database down) stops nothing else
            counts = self.report.sinks.setdefault(name, {})
            counts["errors"] = counts.get("errors", 0) + 1
            if ("sink", name) not in self._failures.seen:
                self._failures.seen.add(("sink", name))
                what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__
                log.error("sink %r failed: %s; the other sinks and the streams go on (its later failures are "
                          "counted in the run report)", name, what)
                log.debug("sink %r: traceback", name, exc_info=exc)
                # Subscribers of the other sinks learn it, once, on every stream's status topic.
                for src in self.sources:
                    degraded = StreamEvent(src.stream_id, StreamState.DEGRADED,
                                           f"sink {name!r} failed: {what}; its results may be missing from now on")
                    for other, other_name in zip(self.sinks, self.sink_names):
                        if other is not sink:
                            self._sink_call(other, other_name, other.on_event, degraded)

    def _add_section(self, name: str, section: ReportSection) -> None:
        self.report.sections[name] = section

    # -- the end --
    def _finish(self, elapsed: float) -> None:
        rep = self.report
        rep.elapsed_s = round(elapsed, 3)
        rep.interrupted = self._interrupted
        for src in self.sources:
            s = rep.streams[src.stream_id]
            s.frames_decoded = src.stats.decoded
            s.frames_dropped = self.queues[src.stream_id].dropped
            s.decode_errors = src.stats.decode_errors
            s.retimed_frames = src.stats.retimed_frames
            s.decoder_recreations = src.stats.decoder_recreations
            s.reconnects = src.stats.reconnects
            if src.alive:  # did not stop in time; say so rather than hang
                s.state, s.reason = StreamState.FAILED.value, "source did not stop within the shutdown timeout"
        if self._latencies:
            lat = np.asarray(self._latencies) * 1000
            rep.latency_ms = {f"p{p}": round(float(np.percentile(lat, p)), 2) for p in (50, 95, 99)}
        self._close_stages()  # stages first: their last messages and report sections still reach the sinks
        for sink, name in zip(self.sinks, self.sink_names):
            _quietly(sink.close, f"closing sink {name!r}")
            counts = rep.sinks.setdefault(name, {})
            counts["sent"] = int(getattr(sink, "sent", 0))
            counts["dropped"] = int(getattr(sink, "dropped", 0))
            figures = getattr(sink, "figures", None)  # a sink's own figures (the reliable sink's buffered, ...)
            if callable(figures):
                counts.update({k: int(v) for k, v in figures().items() if k != "errors"})
            counts.setdefault("errors", 0)
        rep.messages_sent = sum(c["sent"] for c in rep.sinks.values())
        rep.messages_dropped = sum(c["dropped"] for c in rep.sinks.values())
        self.backend.close()

    def _close_stages(self) -> None:
        for stage, name in zip(self.stages, self.stage_names):
            _quietly(stage.close, f"closing stage {name!r}")

    def streams_progress(self) -> Sequence[tuple[str, int, int, str]]:
        """(stream id, frames decoded, frames analysed, state) per stream, safe to call from any thread."""
        return [(src.stream_id, src.stats.decoded, self.report.streams[src.stream_id].frames_analysed,
                 self.report.streams[src.stream_id].state) for src in self.sources]

    def stage(self, name: str) -> Stage:
        """The stage of that name."""
        try:
            return self.stages[self.stage_names.index(name)]
        except ValueError:
            raise KeyError(f"this pipeline has no stage {name!r} (its stages: {self.stage_names})") from None


def _stream_id(item: Any) -> str:
    return item.id if isinstance(item, StreamSpec) else item.stream_id


_STAGE_METHODS = ("open", "on_stream_end", "close")


def _as_stage(obj: Any) -> Stage:
    """A stage object as given; a plain function as `vidinfer.stage(fn)`; anything half a stage is refused."""
    has = [m for m in _STAGE_METHODS if callable(getattr(obj, m, None))]
    if len(has) == len(_STAGE_METHODS) and callable(obj):
        return obj
    if not has and callable(obj):
        return FunctionStage(obj)
    missing = [m for m in ("__call__", *_STAGE_METHODS) if not callable(getattr(obj, m, None))]
    raise ConfigError(f"{obj!r} is not a stage: it lacks {', '.join(missing)}; a stage has open(ctx), __call__(batch), "
                      "on_stream_end(stream_id) and close(), or is a function of the batch")


def _kind(stage: Any) -> str:
    kind = getattr(type(stage), "type", "")
    return kind if isinstance(kind, str) and kind else ("function" if isinstance(stage, FunctionStage)
                                                        else type(stage).__name__)


def _unique_names(items: Iterable[Any], what: str) -> list[str]:
    """Each item's name: its own, else its default; defaults repeated get -2, -3, ... Given
    names must be unique."""
    names: list[str] = []
    given: set[str] = set()
    for item in items:
        own = getattr(item, "name", None)
        if own:
            if own in given:
                raise ConfigError(f"{what} name {own!r} is used twice; give every {what} its own name")
            given.add(own)
    for item in items:
        own = getattr(item, "name", None)
        if own:
            names.append(own)
            continue
        default_name = getattr(item, "default_name", None)
        base = default_name() if callable(default_name) else (getattr(type(item), "type", "") or type(item).__name__)
        name, k = base, 2
        while name in given or name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _quietly(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except Exception as exc:
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
