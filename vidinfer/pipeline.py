"""The pipeline: sources -> bounded queues -> cross-stream batcher -> detector -> secondary
classifiers -> publisher and callbacks.

    from vidinfer import Pipeline, load_pipeline
    report = Pipeline(load_pipeline("pipelines/brand_impact.toml")).run()

Threads: one per stream (demux, decode, resize: FFmpeg releases the GIL) and the caller's thread,
which batches, runs the models and publishes. ONNX Runtime also releases the GIL while it runs.

What differs between the CPU and the GPU backend (decoding, filling the batch tensor, engines,
crops, host copies of frames) lives in `vidinfer.backends`; ``device`` picks one per pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidinfer.analytics.brand_stage import SOURCE_LABELS, BrandStage
from vidinfer.analytics.brands import Brand, BrandMatcher
from vidinfer.analytics.exposure import ExposureAnalytics
from vidinfer.batching import Batch, Batcher
from vidinfer.config import PipelineSpec, TrackerSpec, check_files, load_pipeline
from vidinfer.detections import Detections
from vidinfer.backends import make_backend
from vidinfer.devices import plan_device
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.models.classifier import ClassifierAdapter, SecondaryClassifier
from vidinfer.models.yolo import YoloAdapter
from vidinfer.publish.publisher import Publisher
from vidinfer.publish.wire import Kind, detections_body
from vidinfer.sharding import apply_shard
from vidinfer.tracking import TrackerStage
from vidinfer.tracking.cuts import ShotCuts

__all__ = ["Pipeline", "RunReport", "StreamReport"]

log = logging.getLogger(__name__)

_NOT_ENDED = {StreamState.CONNECTING.value, StreamState.CONNECTED.value, StreamState.RECONNECTING.value,
              StreamState.DEGRADED.value}
ResultCallback = Callable[[Frame, Detections], None]
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
    frames_analysed: int = 0  # frames that went through the models and were published
    frames_dropped: int = 0  # live frames dropped because the pipeline was behind
    decode_errors: int = 0
    decoder_recreations: int = 0  # hardware decoders re-created after an error (GPU backend)
    reconnects: int = 0


@dataclass
class RunReport:
    """What a run did: per stream, and in total."""

    streams: dict[str, StreamReport] = field(default_factory=dict)
    device: str = "cpu"
    device_reason: str = ""
    stages: dict[str, str] = field(default_factory=dict)  # backend of each stage: decoder, detector, ...
    batches: int = 0
    frames: int = 0
    elapsed_s: float = 0.0
    messages_sent: int = 0
    messages_dropped: int = 0  # refused at a subscriber's high-water mark
    latency_ms: dict[str, float] = field(default_factory=dict)  # decoded -> published p50/p95/p99
    interrupted: bool = False
    brand_report: dict[str, Any] | None = None  # brand impact: figures per stream and brand
    report_files: list[str] = field(default_factory=list)

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_batch_size"] = round(self.mean_batch_size, 3)
        d["failed_streams"] = self.failed_streams
        d["exit_code"] = self.exit_code
        return d


class Pipeline:
    """Runs a `PipelineSpec`.

    Args:
        spec: the pipeline, from `load_pipeline` or built in code.
        on_result: called with each analysed frame and its detections, in the pipeline's thread,
            after the result was published. Keep it quick; it holds up the next batch.
    """

    def __init__(self, spec: PipelineSpec | str | Path, on_result: ResultCallback | None = None):
        self.spec = spec if isinstance(spec, PipelineSpec) else load_pipeline(spec)
        self.spec = apply_shard(self.spec)  # [shard]: only this process's share of the streams
        self.metrics: Any = None  # vidinfer.metrics.PipelineMetrics when attached (histogram hooks)
        self.running = False  # publisher up and sources started: what /readyz waits for
        self.on_result = on_result
        self.plan = plan_device(self.spec.device)  # ConfigError when device = "gpu" cannot be had
        self.device, self.device_reason = self.plan.device, self.plan.reason
        self._stop = threading.Event()
        self._interrupted = False
        self._latencies: deque[float] = deque(maxlen=100_000)
        self.report = RunReport(device=self.device, device_reason=self.device_reason, stages=dict(self.plan.stages))
        self.backend = make_backend(self.plan, self.spec.gpu)
        self._build()

    @classmethod
    def from_toml(cls, path: str | Path, on_result: ResultCallback | None = None) -> Pipeline:
        return cls(load_pipeline(path), on_result)

    # -- construction: everything that can fail on user input fails here, before any stream starts --
    def _build(self) -> None:
        spec = self.spec
        check_files(spec, f"pipeline {spec.name!r}")
        det = spec.detector
        self.classes = det.class_names()
        backend = self.backend
        self.detector = backend.make_engine(det.model, det.input_size, det.intra_op_threads, "detector model",
                                            spec.max_batch_size)
        self.adapter = YoloAdapter(self.classes, det.layout, det.conf_threshold, det.iou_threshold,
                                   det.max_detections, det.output)
        self.adapter.bind(self.detector.output_shapes, f"detector model {det.model.name!r}")
        # Stages run in order on each batch: (frames, detections) -> detections. Those in
        # _host_stages read pixels on the CPU: on the GPU backend they get host copies of the frames.
        self.stages: list[Any] = []
        self._host_stages: set[int] = set()
        self.classifiers: list[SecondaryClassifier] = []
        self.attribute_labels: dict[str, list[str]] = {}
        for c in spec.classifiers:
            labels = c.label_names()
            engine = backend.make_engine(c.model, c.input_size, c.intra_op_threads, f"classifier {c.name!r} model",
                                         c.max_batch_size)
            operate_on = None
            if c.operate_on_classes is not None:
                unknown = [n for n in c.operate_on_classes if n not in self.classes]
                if unknown:
                    from vidinfer.errors import ConfigError

                    raise ConfigError(f"classifier {c.name!r}: operate_on_classes names {unknown}, which "
                                      f"the detector does not have (its classes: {self.classes})")
                operate_on = [self.classes.index(n) for n in c.operate_on_classes]
            self.classifiers.append(SecondaryClassifier(c.name, engine, ClassifierAdapter(labels, c.softmax, c.output),
                                                        operate_on, c.min_size, c.max_batch_size, backend.crops))
            self.attribute_labels[c.name] = labels
        self.stages += self.classifiers
        self.output_classes = self.classes  # what class_id indexes in published results
        self.analytics: ExposureAnalytics | None = None
        self.cuts = ShotCuts()  # one cut detection per frame, for every stage that asks
        reads_text = self._build_brand_impact()
        tracker = spec.tracker or (TrackerSpec() if spec.brand_impact else None)
        self.tracked = tracker is not None
        if tracker is not None:
            self.stages.append(TrackerStage(**tracker.model_dump(), cuts=self.cuts))
            if tracker.detect_cuts:  # cut detection compares thumbnails of the frames
                self._host_stages.add(id(self.stages[-1]))
        inp = self.detector.input
        self.batcher = Batcher(spec.max_batch_size, spec.max_delay_ms)
        # Many streams share few cores: one decoder thread each. A single stream may use more.
        threads = 1 if len(spec.streams) > 1 else 0
        self.sources = []
        for s in spec.streams:
            q = self.batcher.add_stream(s.id, s.queue_size, drop_oldest=s.is_live)
            self.sources.append(backend.make_source(s, (inp.width, inp.height), q, self._stop, threads,
                                                    bool(self.classifiers) or reads_text))
            self.report.streams[s.id] = StreamReport(s.id)
        slots = inp.padded_size(spec.max_batch_size)
        # Two batch tensors when the backend overlaps batch k+1's preparation with batch k's run.
        self._batches = [backend.new_batch(inp, slots) for _ in range(2 if backend.pipelined else 1)]
        self._batch = self._batches[0]
        self._launched = 0
        self.publisher: Publisher | None = None

    def _build_brand_impact(self) -> bool:
        """Brand stage and exposure analytics when configured; returns whether text is read."""
        bi = self.spec.brand_impact
        if bi is None:
            return False
        matcher = BrandMatcher([Brand(b.name, tuple(b.aliases), tuple(b.logo_classes)) for b in bi.brands],
                               bi.match_threshold)
        reader = None
        if bi.read_text:
            from vidinfer.models.ocr import TextReader

            t = bi.text
            reader = TextReader(det_model=t.det_model, cls_model=t.cls_model if t.orientation else None,
                                rec_model=t.rec_model,
                                limit_side=t.limit_side, min_text_height=t.min_text_height,
                                threads=t.intra_op_threads)
        stage = BrandStage(matcher, self.classes, reader, bi.text.interval_s if reader is not None else 0.0,
                           background=bi.text.background, cuts=self.cuts)
        self.stages.append(stage)
        if reader is not None:  # OCR and its camera-motion thumbnails read pixels on the CPU
            self._host_stages.add(id(stage))
        self.output_classes = stage.classes
        self.attribute_labels["source"] = SOURCE_LABELS
        self.analytics = ExposureAnalytics(stage.classes, bi.publish_interval_s, bi.min_track_frames,
                                           bi.reference_share)
        return reader is not None

    # -- running --
    def run(self) -> RunReport:
        """Run until every stream has ended (or `stop` is called). Returns the run's report."""
        started = time.monotonic()
        pub = self.spec.publish
        if pub.endpoint:
            curve = None
            if pub.curve_server_key is not None and pub.curve_secret_key is not None:
                from vidinfer.publish.proxy import load_curve_client

                curve = load_curve_client(pub.curve_server_key, pub.curve_secret_key)
            from vidinfer.publish.security import publish_extras

            curve_server, sinks = publish_extras(pub)
            self.publisher = Publisher(pub.endpoint, pub.publisher_id, pub.sndhwm, pub.linger_ms, pub.connect,
                                       curve=curve, curve_server=curve_server, sinks=sinks)
            for s in self.spec.streams:
                self._publish_metadata(s.id, {})
            if pub.wait_for_subscribers:
                if not self.publisher.wait_for_subscribers(pub.wait_for_subscribers, pub.wait_timeout_s):
                    log.warning("only %d of %d subscriptions arrived within %.1f s; starting anyway",
                                self.publisher.subscriptions, pub.wait_for_subscribers, pub.wait_timeout_s)
        log.info("pipeline %s: %d streams on %s (%s); %s", self.spec.name, len(self.sources), self.device,
                 self.device_reason, "; ".join(f"{k}: {v}" for k, v in self.report.stages.items()))
        try:
            for src in self.sources:
                src.start()
            self.running = True
            if not self.sources:  # a shard whose share is empty idles until stopped (a pod must not exit)
                log.warning("this shard has no streams; idling until stopped")
                self._stop.wait()
            self._loop()
            deadline = time.monotonic() + SOURCE_JOIN_TIMEOUT_S
            for src in self.sources:
                src.join(max(0.0, deadline - time.monotonic()))
            self._loop()  # what the sources queued while stopping: their end-of-stream events
            self._end_stuck_sources()
        finally:
            self._stop.set()
            self.batcher.stop()
            self._finish(time.monotonic() - started)
        return self.report

    def _end_stuck_sources(self) -> None:
        """A source still blocked (e.g. opening a server that never answers) gets its end published here."""
        for src in self.sources:
            if src.alive and self.report.streams[src.spec.id].state in _NOT_ENDED:
                self._on_event(StreamEvent(src.spec.id, StreamState.FAILED,
                                           "source did not stop within the shutdown timeout",
                                           {"frames_decoded": src.stats.decoded, "frames_analysed": src.stats.queued},
                                           end_of_stream=True))

    def stop(self, interrupted: bool = True) -> None:
        """Stop the sources; queued frames are still analysed and every stream's end is published."""
        self._interrupted = self._interrupted or interrupted
        self._stop.set()
        self.batcher.stop()

    def _loop(self) -> None:
        """Launch each batch, then finish it; a pipelined backend (GPU) finishes batch k after
        launching k+1 when k+1 was already waiting, so k+1's preprocessing and inference overlap
        k's post-processing and publishing; otherwise (idle, or the CPU backend) at once."""
        pending: tuple[Batch, Any, float] | None = None
        while (batch := self.batcher.next_batch()) is not None:
            launched = self._launch(batch)
            if pending is not None:
                self._complete(*pending)
            pending = launched
            if not self.backend.pipelined or not any(q.depth for q in self.batcher.queues):
                self._complete(*pending)
                pending = None
        if pending is not None:
            self._complete(*pending)

    def _process(self, batch: Batch) -> None:
        """One batch from start to finish (no overlap)."""
        self._complete(*self._launch(batch))

    def _launch(self, batch: Batch) -> tuple[Batch, Any, float]:
        """Fill the batch tensor and start the detector; events wait for `_complete`, in order."""
        if not batch.frames:
            return batch, None, 0.0
        if self.metrics is not None:
            self.metrics.batch_started()
        t0 = time.perf_counter()
        tensor = self._batches[self._launched % len(self._batches)]
        self._launched += 1
        return batch, self.backend.launch(self.detector, tensor, batch.frames), t0

    def _complete(self, batch: Batch, run: Any, t0: float) -> None:
        for ev in batch.events_before:
            self._on_event(ev)
        frames = batch.frames
        if frames:
            n = len(frames)
            outputs = run.outputs()
            detector_s = time.perf_counter() - t0
            detections = self.adapter.decode(outputs, [f.letterbox for f in frames])
            host: Sequence[Frame] | None = None
            for stage in self.stages:
                if id(stage) in self._host_stages:
                    host = host if host is not None else self.backend.host_frames(frames)
                    detections = stage(host, detections)
                else:
                    detections = stage(frames, detections)
            inference_s = time.perf_counter() - t0
            for f, d in zip(frames, detections):
                self._publish_result(f, d)
            if self.metrics is not None:
                self.metrics.batch_done(frames, inference_s, detector_s)
            self.report.batches += 1
            self.report.frames += n
        for ev in batch.events_after:
            self._on_event(ev)

    def _publish_result(self, frame: Frame, det: Detections) -> None:
        if self.publisher is not None:
            body = detections_body(frame.stream_id, frame.frame_no, frame.pts_ns, frame.capture_ns,
                                   frame.width, frame.height, det, frame.discontinuity, self.tracked)
            self.publisher.publish(Kind.DETECTIONS, frame.stream_id, body)
        if self.analytics is not None:
            update = self.analytics.add(frame.stream_id, frame.pts_ns, frame.width, frame.height, det,
                                        frame.discontinuity)
            if update is not None and self.publisher is not None:
                self.publisher.publish(Kind.BRAND_EXPOSURE, frame.stream_id, update)
        self._latencies.append(time.monotonic() - frame.decoded_at)
        self.report.streams[frame.stream_id].frames_analysed += 1
        if self.on_result is not None:
            self.on_result(frame, det)

    def _on_event(self, ev: StreamEvent) -> None:
        rep = self.report.streams[ev.stream_id]
        rep.state, rep.reason = ev.state.value, ev.reason
        if ev.state is StreamState.CONNECTED:
            self._publish_metadata(ev.stream_id, ev.info)
        final = self.analytics.finish(ev.stream_id) if self.analytics is not None and ev.end_of_stream else None
        if self.publisher is None:
            return
        if final is not None:
            self.publisher.publish(Kind.BRAND_EXPOSURE, ev.stream_id, final)
        self.publisher.publish(Kind.STATUS, ev.stream_id,
                               {"stream_id": ev.stream_id, "state": ev.state.value, "reason": ev.reason,
                                "time_ns": time.time_ns(), **ev.info})
        if ev.end_of_stream:
            self.publisher.publish(Kind.END_OF_STREAM, ev.stream_id,
                                   {"stream_id": ev.stream_id, "state": ev.state.value, "reason": ev.reason,
                                    "frames_analysed": rep.frames_analysed, **ev.info})

    def _publish_metadata(self, stream_id: str, source_info: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        self.publisher.publish(Kind.METADATA, stream_id, {
            "stream_id": stream_id, "pipeline": self.spec.name, "classes": self.output_classes,
            "attributes": self.attribute_labels, "source": source_info})

    def _finish(self, elapsed: float) -> None:
        rep = self.report
        rep.elapsed_s = round(elapsed, 3)
        rep.interrupted = self._interrupted
        for src in self.sources:
            s = rep.streams[src.spec.id]
            s.frames_decoded = src.stats.decoded
            s.frames_dropped = src.queue.dropped
            s.decode_errors = src.stats.decode_errors
            s.decoder_recreations = src.stats.decoder_recreations
            s.reconnects = src.stats.reconnects
            if src.alive:  # did not stop in time; say so rather than hang
                s.state, s.reason = StreamState.FAILED.value, "source did not stop within the shutdown timeout"
        if self._latencies:
            lat = np.asarray(self._latencies) * 1000
            rep.latency_ms = {f"p{p}": round(float(np.percentile(lat, p)), 2) for p in (50, 95, 99)}
        if self.publisher is not None:
            rep.messages_sent, rep.messages_dropped = self.publisher.sent, self.publisher.dropped
            self.publisher.close()
            self.publisher = None
        for stage in self.stages:  # threads of stages (the brand stage's background text reader)
            close = getattr(stage, "close", None)
            if close is not None:
                close()
        for engine in [self.detector, *(st.engine for st in self.classifiers)]:
            engine.close()
        self.backend.close()
        bi = self.spec.brand_impact
        if self.analytics is not None and bi is not None and bi.report_dir is not None:
            from vidinfer.analytics.report import write_report

            rep.brand_report, files = write_report(self.analytics, self.spec.name, bi.report_dir)
            rep.report_files = [str(f) for f in files]

    def streams_progress(self) -> Sequence[tuple[str, int, int, str]]:
        """(stream id, frames decoded, frames analysed, state) per stream, safe to call from any thread."""
        return [(src.spec.id, src.stats.decoded, self.report.streams[src.spec.id].frames_analysed,
                 self.report.streams[src.spec.id].state) for src in self.sources]
