"""`vidinfer bench`: the pipeline against its limits and against the hand-written loop, in one run.

    vidinfer bench [PIPELINE.toml] [--quick] [--streams N] [--max-frames N] [--rounds R] [--out DIR]
    vidinfer bench [PIPELINE.toml] --live [--quick] [--probe-s S]

One run measures, on the same streams and the same model, in rounds (each round measures every
stage once, one after the other, so a ratio is taken between figures measured side by side; the
medians over the rounds are reported):

* **decode**: the pipeline's own sources (PyAV demux, decode, sampling, one swscale resize to the
  detector input) on all streams at once, frames thrown away: the decode limit;
* **inference**: the detector alone (ONNX Runtime run + YOLO decode and NMS) on ready tensors at
  the pipeline's ``max_batch_size``: the inference limit;
* **analysis**: everything the pipeline does to a batch of decoded frames but publish it
  (fill the input tensor, detector, NMS, secondary stages: classifiers, OCR, brands, tracker);
* **pipeline**: the full pipeline (``Pipeline.run``) on the streams, publishing on a private
  ZeroMQ ipc endpoint;
* **hand-written loop**: what a user writes without vidinfer, per stream in turn: PyAV decode,
  ``to_ndarray`` RGB, OpenCV resize, ONNX Runtime at batch 1, NMS, and the pipeline's secondary
  stages on that one frame (so both do the same analysis).

All rates are frames the pipeline analyses per second (with ``sample_fps`` fewer frames are
analysed than decoded; the decoded rate is reported too). The serial bound is
1 / (1/decode + 1/inference) per frame: doing first one then the other with nothing overlapped.

``--live`` finds how many live streams (files paced at real time and looped) the pipeline sustains
with no dropped frame and p99 latency within a budget, each probe in its own process, and reports
resident memory at 1, 8 and 32 streams.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vidinfer.config import PipelineConfig, load_pipeline
from vidinfer.frame import Frame
from vidinfer.redact import redact_url

__all__ = ["run_bench", "run_live", "live_probe"]

DEFAULT_PIPELINE = Path(__file__).resolve().parent.parent / "pipelines" / "brand_impact.toml"
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1e6


# -- memory ----------------------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_MB
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1e6 if sys.platform == "darwin" else kb / 1e3


class RssSampler:
    """Samples resident memory on a thread while a stage runs: its peak and its last value."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak = self.last = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-rss")

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.last = rss_mb()
            self.peak = max(self.peak, self.last)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.last = rss_mb()
        self.peak = max(self.peak, self.last)


# -- preparing the streams -------------------------------------------------------------------------
def cut_clip(src: str, dst: Path, max_frames: int) -> int:
    """Copy ``src`` to ``dst`` (remuxed, not re-encoded) up to the first keyframe at or after
    ``max_frames`` frames, so the cut is clean. Returns the number of video frames kept."""
    import av

    with av.open(src) as inp, av.open(str(dst), "w") as out:
        vs = inp.streams.video[0]
        os_ = out.add_stream_from_template(vs)
        kept = 0
        for packet in inp.demux(vs):
            if packet.dts is None and packet.size == 0:
                continue
            if packet.is_keyframe and kept >= max_frames:
                break
            packet.stream = os_
            out.mux(packet)
            kept += 1
    return kept


def prepare_spec(path: str | Path, workdir: Path, streams: int | None = None,
                 max_frames: int | None = None) -> PipelineConfig:
    """The pipeline file's spec for benchmarking: ``streams`` streams (the file's, repeated in turn
    with new ids), each cut to about ``max_frames`` frames, publishing on a private ipc endpoint,
    no brand report files."""
    spec = load_pipeline(path)
    base = list(spec.streams)
    if max_frames:
        cut: dict[str, str] = {}
        for s in base:
            if s.url not in cut:
                dst = workdir / f"clip{len(cut)}_{Path(s.url).stem}.mp4"
                cut_clip(s.url, dst, max_frames)
                cut[s.url] = str(dst)
        base = [s.model_copy(update={"url": cut[s.url]}) for s in base]
    if streams:
        base = [base[i % len(base)].model_copy(update={"id": f"{base[i % len(base)].id}-{i // len(base)}"})
                if streams > len(base) else base[i] for i in range(streams)]
    spec.streams = base
    from vidinfer.publish.sinks import ZmqSink

    zmq = spec.sink_of(ZmqSink)
    spec.sinks = [ZmqSink(endpoint=f"ipc://{workdir}/publish.sock", layers=zmq.layers if zmq else None)]
    spec.metrics.port = 0
    spec.shard = None
    for stage in spec.stages:  # no report files
        if getattr(stage, "report_dir", None) is not None:
            stage.report_dir = None
    return spec


def _detector(pipe: Any) -> Any:
    """The pipeline's first detect stage (the one the decoder sizes frames for)."""
    from vidinfer.stages.detect import Detect

    det = next((s for s in pipe.stages if isinstance(s, Detect)), None)
    if det is None:
        raise ValueError("vidinfer bench measures a pipeline with a detect stage; this one has none")
    return det


# -- the stages ------------------------------------------------------------------------------------
class _Sink:
    """Stands in for a stream queue: counts frames, keeps the first ``keep`` of them."""

    def __init__(self, keep: int):
        self.keep = keep
        self.frames: list[Frame] = []
        self.count = 0
        self.dropped = 0

    def put(self, item: Any) -> bool:
        if isinstance(item, Frame):
            self.count += 1
            if len(self.frames) < self.keep:
                self.frames.append(item)
        return True


def measure_decode(pipe: Any, pipe_spec: PipelineConfig, keep_per_stream: int
                   ) -> tuple[dict[str, Any], list[list[Frame]]]:
    """The pipeline's sources (its backend's: FFmpeg on the CPU, NVDEC on the GPU) on every stream
    at once, as the pipeline runs them, no inference."""
    spec = pipe_spec
    sinks = [_Sink(keep_per_stream) for _ in spec.streams]
    sources = [pipe.backend.make_source(s) for s in spec.streams]
    with RssSampler() as mem:
        t0 = time.perf_counter()
        for src, q in zip(sources, sinks):
            src.start(q, pipe.hints)  # the pipeline's own decode size, threads and full frames
        for src in sources:
            src.join()
        elapsed = time.perf_counter() - t0
    analysed = sum(q.count for q in sinks)
    decoded = sum(src.stats.decoded for src in sources)
    return {"fps": analysed / elapsed, "decoded_fps": decoded / elapsed, "frames": analysed,
            "frames_decoded": decoded, "elapsed_s": elapsed, "peak_rss_mb": mem.peak,
            "frames_per_stream": {s.id: q.count for s, q in zip(spec.streams, sinks)}}, \
        [q.frames for q in sinks]


def _interleave(per_stream: list[list[Frame]]) -> list[Frame]:
    """Frames round-robin across streams, as the batcher takes them."""
    out: list[Frame] = []
    for k in range(max((len(f) for f in per_stream), default=0)):
        out += [f[k] for f in per_stream if k < len(f)]
    return out


def _timed_loop(step: Callable[[int], int], min_s: float, min_steps: int) -> tuple[int, float]:
    """Call ``step(i)`` (returns frames done) until both bounds are reached; (frames, seconds)."""
    step(0)  # warm-up: first run allocates
    frames, i = 0, 0
    t0 = time.perf_counter()
    while True:
        frames += step(i)
        i += 1
        elapsed = time.perf_counter() - t0
        if i >= min_steps and elapsed >= min_s:
            return frames, elapsed


def measure_inference(pipe: Any, frames: list[Frame], min_s: float) -> dict[str, Any]:
    """The detector alone on ready tensors at the pipeline's batch size (run + YOLO decode/NMS)."""
    from vidinfer._xp import to_numpy
    from vidinfer.batch import Batch

    b = pipe.max_batch_size
    chosen = [frames[i % len(frames)] for i in range(b)]
    det = _detector(pipe)
    # The pipeline's backend fills the tensor once (swscale'd RGB on the CPU, the NV12 kernel on
    # the GPU); then only the detector runs, and its outputs come to the host for NMS.
    tensor, boxes = det.fill(Batch(chosen))

    def step(_i: int) -> int:
        det.adapter.decode({k: to_numpy(v) for k, v in det.engine.run(tensor).items()}, boxes)
        return b

    with RssSampler() as mem:
        n, elapsed = _timed_loop(step, min_s, 3)
    return {"fps": n / elapsed, "batch_size": b, "frames": n, "elapsed_s": elapsed, "peak_rss_mb": mem.peak}


def measure_analysis(pipe: Any, frames: list[Frame]) -> dict[str, Any]:
    """Everything the pipeline does to decoded frames but publish: batches of ``max_batch_size``
    through the input fill, detector, NMS and every secondary stage (and brand analytics)."""
    b = pipe.max_batch_size
    with RssSampler() as mem:
        t0 = time.perf_counter()
        for k in range(0, len(frames), b):
            pipe.analyse(frames[k:k + b])
        elapsed = time.perf_counter() - t0
    return {"fps": len(frames) / elapsed, "frames": len(frames), "elapsed_s": elapsed,
            "stages": list(pipe.stage_names), "peak_rss_mb": mem.peak}


def measure_pipeline(spec: PipelineConfig) -> dict[str, Any]:
    """The full pipeline, from its construction's end to the last stream's end."""
    pipe = spec.build()
    with RssSampler() as mem:
        t0 = time.perf_counter()
        report = pipe.run()
        elapsed = time.perf_counter() - t0
    return {"fps": report.frames / elapsed, "frames": report.frames, "elapsed_s": elapsed,
            "batches": report.batches, "mean_batch_size": report.mean_batch_size,
            "latency_ms": dict(report.latency_ms), "max_delay_ms": spec.max_delay_ms,
            "frames_per_stream": {s.stream_id: s.frames_analysed for s in report.streams.values()},
            "frames_dropped": sum(s.frames_dropped for s in report.streams.values()),
            "failed_streams": report.failed_streams, "peak_rss_mb": mem.peak}


class _Sampler:
    """The sample_fps rule of the sources, for the hand-written loop (same frames analysed)."""

    def __init__(self, fps: float | None):
        self.period = int(1e9 / fps) if fps else 0
        self.next: int | None = None

    def __call__(self, pts_ns: int) -> bool:
        if not self.period:
            return True
        if self.next is None or pts_ns + self.period // 100 >= self.next:
            base = pts_ns if self.next is None or pts_ns - self.next >= self.period else self.next
            self.next = base + self.period
            return True
        return False


def measure_hand_loop(spec: PipelineConfig, later: Any) -> dict[str, Any]:
    """What a user writes without vidinfer: one stream after the other, one frame at a time.
    ``later`` is an opened pipeline whose stages after the first detector run on each frame."""
    import av
    import cv2
    import onnxruntime as ort

    from vidinfer.batch import Batch
    from vidinfer.preprocess.letterbox import PAD_VALUE, Letterbox

    first = _detector(later)
    det = first
    stages = later.stages[later.stages.index(first) + 1:]
    with RssSampler() as mem:
        t0 = time.perf_counter()
        session = ort.InferenceSession(str(det.model), providers=["CPUExecutionProvider"])  # defaults
        inp = session.get_inputs()[0]
        h, w = (det.input_size[1], det.input_size[0]) if det.input_size else inp.shape[2:4]
        outputs = {o.name: tuple(o.shape) for o in session.get_outputs()}
        adapter = det.make_adapter(det.class_names(), "detector")
        adapter.bind(outputs, "detector", (w, h))
        convention = det.input_convention
        names = list(outputs)
        frames = 0
        per_stream: dict[str, int] = {}
        for s in spec.streams:
            sampled = _Sampler(s.sample_fps)
            n = 0
            with av.open(s.url) as container:
                vs = container.streams.video[0]
                start: int | None = None
                for f in container.decode(vs):
                    pts_ns = int(f.pts * vs.time_base * 1_000_000_000)
                    start = pts_ns if start is None else start
                    if not sampled(pts_ns - start):
                        continue
                    rgb = f.to_ndarray(format="rgb24")
                    box = Letterbox.fit(f.width, f.height, w, h)
                    resized = cv2.resize(rgb, (box.new_w, box.new_h), interpolation=cv2.INTER_AREA)
                    canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
                    canvas[box.pad_y:box.pad_y + box.new_h, box.pad_x:box.pad_x + box.new_w] = resized
                    planes = canvas[..., ::-1] if convention.bgr else canvas  # the model's own convention
                    x = (planes.transpose(2, 0, 1)[None].astype(np.float32) / convention.divisor)
                    out = dict(zip(names, session.run(names, {inp.name: x})))
                    detections = adapter.decode(out, [box])
                    if stages:
                        frame = Frame(s.id, n, pts_ns - start, time.time_ns(), resized, box, source=f)
                        batch = Batch([frame], later.layers.schemas)
                        batch[det.layer] = detections
                        for stage in stages:
                            stage(batch)
                    n += 1
            per_stream[s.id] = n
            frames += n
        elapsed = time.perf_counter() - t0
    return {"fps": frames / elapsed, "frames": frames, "elapsed_s": elapsed, "frames_per_stream": per_stream,
            "peak_rss_mb": mem.peak}


# -- one benchmark run -----------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def run_bench(pipeline: str | Path = DEFAULT_PIPELINE, quick: bool = False, streams: int | None = None,
              max_frames: int | None = None, rounds: int | None = None, out_dir: str | Path | None = None,
              plot: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every stage in ``rounds`` rounds and write ``bench.json`` (and ``bench.png``)."""
    if quick and max_frames is None:
        max_frames = 50  # two GOPs of the sample clips
    rounds = rounds or (1 if quick else 3)
    min_s = 1.0 if quick else 4.0
    keep = 16 if quick else 48  # decoded frames kept per stream for the analysis stage
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in ("decode", "inference", "analysis", "pipeline",
                                                              "hand_loop")}
    with tempfile.TemporaryDirectory(prefix="vidinfer-bench-") as tmp:
        spec = prepare_spec(pipeline, Path(tmp), streams, max_frames)
        log(f"bench {spec.name}: {len(spec.streams)} streams, batch {spec.max_batch_size}, "
            f"max_delay_ms {spec.max_delay_ms}, {rounds} round(s)")
        for r in range(rounds):
            unsunk = spec.copy()
            unsunk.sinks = []  # analysis and the hand loop publish nothing
            bench_pipe = unsunk.build()
            dec, kept = measure_decode(bench_pipe, spec, keep)
            rows["decode"].append(dec)
            log(f"  round {r + 1}: decode    {dec['fps']:8.1f} fps ({dec['decoded_fps']:.1f} decoded/s)")
            frames = _interleave(kept)
            rows["inference"].append(measure_inference(bench_pipe, frames, min_s))
            log(f"  round {r + 1}: inference {rows['inference'][-1]['fps']:8.1f} fps")
            rows["analysis"].append(measure_analysis(bench_pipe, frames))
            log(f"  round {r + 1}: analysis  {rows['analysis'][-1]['fps']:8.1f} fps")
            del bench_pipe, frames, kept
            rows["pipeline"].append(measure_pipeline(spec))
            log(f"  round {r + 1}: pipeline  {rows['pipeline'][-1]['fps']:8.1f} fps")
            hand_pipe = unsunk.build()  # fresh later stages for the loop
            rows["hand_loop"].append(measure_hand_loop(spec, hand_pipe))
            del hand_pipe
            log(f"  round {r + 1}: hand loop {rows['hand_loop'][-1]['fps']:8.1f} fps")
    result = summarise(spec, rows, pipeline, quick)
    out = Path(out_dir) if out_dir else Path("out") / "bench" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    files = [str(out / "bench.json")]
    if plot:
        files.append(str(plot_bench(result, out / "bench.png")))
    result["files"] = files
    log(format_bench(result))
    for f in files:
        log(f"wrote {f}")
    return result


def summarise(spec: PipelineConfig, rows: dict[str, list[dict[str, Any]]], pipeline: str | Path,
              quick: bool) -> dict[str, Any]:
    """Medians over rounds, and each ratio taken within its round, then the median."""
    def bound(a: float, b: float) -> float:
        return 1.0 / (1.0 / a + 1.0 / b) if a > 0 and b > 0 else 0.0

    per_round = []
    for dec, inf, ana, pipe, hand in zip(*(rows[k] for k in rows)):
        sb = bound(dec["fps"], inf["fps"])
        ab = bound(dec["fps"], ana["fps"])
        per_round.append({"serial_bound_fps": sb, "analysis_bound_fps": ab,
                          "pipeline_vs_serial_bound": pipe["fps"] / sb if sb else 0.0,
                          "pipeline_vs_analysis_bound": pipe["fps"] / ab if ab else 0.0,
                          "pipeline_vs_hand_loop": pipe["fps"] / hand["fps"] if hand["fps"] else 0.0})
    med = {k: _median([x["fps"] for x in rows[k]]) for k in rows}
    last_pipe = rows["pipeline"][-1]
    lat = {p: _median([x["latency_ms"].get(p, 0.0) for x in rows["pipeline"]]) for p in ("p50", "p95", "p99")}
    return {
        "pipeline_file": str(pipeline),
        "name": spec.name,
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "streams": len(spec.streams),
        "stream_urls": sorted({redact_url(s.url) for s in spec.streams}),  # bench.json may be shared
        "max_batch_size": spec.max_batch_size,
        "max_delay_ms": spec.max_delay_ms,
        "rounds": len(rows["pipeline"]),
        "fps": {k: round(v, 3) for k, v in med.items()},
        "decoded_fps": round(_median([x["decoded_fps"] for x in rows["decode"]]), 3),
        "serial_bound_fps": round(_median([r["serial_bound_fps"] for r in per_round]), 3),
        "analysis_bound_fps": round(_median([r["analysis_bound_fps"] for r in per_round]), 3),
        "ratios": {k: round(_median([r[k] for r in per_round]), 3)
                   for k in ("pipeline_vs_serial_bound", "pipeline_vs_analysis_bound", "pipeline_vs_hand_loop")},
        "ratios_per_round": per_round,
        "latency_ms": {k: round(v, 2) for k, v in lat.items()},
        "mean_batch_size": round(_median([x["mean_batch_size"] for x in rows["pipeline"]]), 3),
        "frames": {"pipeline": last_pipe["frames"], "expected": rows["decode"][-1]["frames"],
                   "hand_loop": rows["hand_loop"][-1]["frames"],
                   "decoded": rows["decode"][-1]["frames_decoded"],
                   "pipeline_per_stream": last_pipe["frames_per_stream"],
                   "expected_per_stream": rows["decode"][-1]["frames_per_stream"]},
        "peak_rss_mb": {"process": round(peak_rss_mb(), 1),
                        **{k: round(max(x["peak_rss_mb"] for x in rows[k]), 1) for k in rows}},
        "stages": rows,
    }


def machine() -> dict[str, Any]:
    import platform

    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:  # pragma: no cover
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):  # pragma: no cover
        mem_gb = 0.0
    import av

    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gb": round(mem_gb, 1), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "pyav": av.__version__, "gpu": None}


def format_bench(r: dict[str, Any]) -> str:
    f, rt, lat = r["fps"], r["ratios"], r["latency_ms"]
    lines = [
        f"{r['name']}: {r['streams']} streams, {r['frames']['pipeline']} frames analysed "
        f"({r['frames']['decoded']} decoded), batch {r['max_batch_size']}, max_delay_ms {r['max_delay_ms']}, "
        f"median of {r['rounds']} round(s) on {r['machine']['cores']} cores",
        f"  {'stage':<22}{'fps':>10}",
        f"  {'decode limit':<22}{f['decode']:>10.1f}   ({r['decoded_fps']:.1f} frames decoded/s)",
        f"  {'inference limit':<22}{f['inference']:>10.1f}   (detector alone, batch {r['max_batch_size']})",
        f"  {'analysis limit':<22}{f['analysis']:>10.1f}   (input fill, detector and every secondary stage)",
        f"  {'serial bound':<22}{r['serial_bound_fps']:>10.1f}   1/(1/decode + 1/inference)",
        f"  {'pipeline':<22}{f['pipeline']:>10.1f}",
        f"  {'hand-written loop':<22}{f['hand_loop']:>10.1f}",
        f"  pipeline / serial bound   {rt['pipeline_vs_serial_bound']:.3f}",
        f"  pipeline / analysis bound {rt['pipeline_vs_analysis_bound']:.3f}   "
        f"(bound {r['analysis_bound_fps']:.1f} fps)",
        f"  pipeline / hand loop      {rt['pipeline_vs_hand_loop']:.3f}",
        f"  latency decoded -> published: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms; "
        f"mean batch {r['mean_batch_size']:.2f}",
        f"  peak RSS: process {r['peak_rss_mb']['process']:.0f} MB, "
        f"pipeline stage {r['peak_rss_mb']['pipeline']:.0f} MB",
    ]
    return "\n".join(lines)


def plot_bench(r: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["decode limit", "inference limit", "analysis limit", "serial bound", "pipeline", "hand-written loop"]
    vals = [r["fps"]["decode"], r["fps"]["inference"], r["fps"]["analysis"], r["serial_bound_fps"],
            r["fps"]["pipeline"], r["fps"]["hand_loop"]]
    colors = ["#888888", "#888888", "#888888", "#bbbbbb", "#1f77b4", "#d62728"]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.barh(names[::-1], vals[::-1], color=colors[::-1])
    ax.bar_label(bars, fmt="%.1f", padding=3)
    ax.set_xscale("log")
    ax.set_xlabel("frames analysed per second (log scale)")
    rt = r["ratios"]
    ax.set_title(f"{r['name']}: {r['streams']} streams; pipeline/serial bound {rt['pipeline_vs_serial_bound']:.2f}, "
                 f"pipeline/hand loop {rt['pipeline_vs_hand_loop']:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- live capacity ---------------------------------------------------------------------------------
def live_spec(pipeline: str | Path, workdir: Path, n: int, sample_fps: float) -> tuple[PipelineConfig, bool]:
    """``n`` live streams: the file's clips paced at real time and looped, at ``sample_fps``;
    keyframes only when the clips have a keyframe at least every 1/sample_fps seconds."""
    spec = prepare_spec(pipeline, workdir)
    keyframes = all(_keyframe_interval_s(s.url) <= 1.0 / sample_fps + 1e-6 for s in spec.streams)
    base = spec.streams
    # Each live stream keeps its file stream's other settings (queue size, options, threads).
    spec.streams = [base[i % len(base)].model_copy(update={
        "id": f"live-{i}", "realtime": True, "loop": True, "live": True, "sample_fps": sample_fps,
        "keyframes_only": keyframes}) for i in range(n)]
    return spec, keyframes


def _keyframe_interval_s(url: str) -> float:
    import av

    with av.open(url) as c:
        vs = c.streams.video[0]
        times = [float(p.pts * vs.time_base) for p, _ in zip(c.demux(vs), range(400))
                 if p.is_keyframe and p.pts is not None]
    return float(np.max(np.diff(times))) if len(times) > 1 else float("inf")


def live_probe(pipeline: str | Path, n: int, seconds: float, warmup_s: float, sample_fps: float) -> dict[str, Any]:
    """Run ``n`` live streams for ``seconds``; figures after the first ``warmup_s`` seconds."""
    from vidinfer.publish.sinks import CallbackSink

    with tempfile.TemporaryDirectory(prefix="vidinfer-live-") as tmp:
        spec, keyframes = live_spec(pipeline, Path(tmp), n, sample_fps)
        latencies: list[tuple[float, float]] = []

        def on_frame(frame: Frame, _layers: Any) -> None:
            now = time.monotonic()
            latencies.append((now, now - frame.decoded_at))

        spec.sinks.append(CallbackSink(on_frame=on_frame))
        pipe = spec.build()
        base_rss = rss_mb()
        marks: dict[str, Any] = {}

        def timer() -> None:
            time.sleep(warmup_s)
            marks["t"] = time.monotonic()
            marks["dropped"] = sum(q.dropped for q in pipe.batcher.queues)
            marks["rss"] = rss_mb()
            # Resident memory every tenth of the measured window: growth shows as a trend.
            step = max(0.0, seconds - warmup_s) / 10
            marks["rss_series"] = [marks["rss"]]
            for _ in range(10):
                time.sleep(step)
                marks["rss_series"].append(rss_mb())
            marks["end"] = time.monotonic()
            marks["dropped_end"] = sum(q.dropped for q in pipe.batcher.queues)
            pipe.stop(interrupted=False)

        threading.Thread(target=timer, daemon=True).start()
        with RssSampler(0.2) as mem:
            report = pipe.run()
    steady = [lat for t, lat in latencies if marks.get("t", 0) <= t <= marks.get("end", float("inf"))]
    window = marks.get("end", 0) - marks.get("t", 0)
    lat = np.asarray(steady) * 1000 if steady else np.zeros(1)
    dropped = marks.get("dropped_end", 0) - marks.get("dropped", 0)
    return {"streams": n, "seconds": seconds, "warmup_s": warmup_s, "sample_fps": sample_fps,
            "keyframes_only": keyframes,
            "analysed_fps": len(steady) / window if window > 0 else 0.0, "wanted_fps": n * sample_fps,
            "dropped_after_warmup": int(dropped),
            "dropped_total": int(sum(s.frames_dropped for s in report.streams.values())),
            "latency_ms": {f"p{p}": round(float(np.percentile(lat, p)), 1) for p in (50, 95, 99)},
            "latency_ms_whole_run": dict(report.latency_ms),
            "mean_batch_size": round(report.mean_batch_size, 3),
            "rss_mb": {"after_build": round(base_rss, 1), "steady": round(marks.get("rss", 0.0), 1),
                       "end": round(marks.get("rss_series", [0.0])[-1], 1), "peak": round(mem.peak, 1),
                       "series": [round(v, 1) for v in marks.get("rss_series", [])]},
            # Growth from the end of the warm-up to the end of the run.
            "rss_growth": round(marks["rss_series"][-1] / marks["rss"] - 1, 4) if marks.get("rss") else None}


def _probe_subprocess(pipeline: str | Path, n: int, seconds: float, warmup_s: float,
                      sample_fps: float) -> dict[str, Any]:
    """One probe in a fresh process, so memory figures do not carry over from the last probe."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, "-m", "vidinfer", "-q", "bench", str(pipeline), "--live-probe", str(n),
               "--probe-s", str(seconds), "--warmup-s", str(warmup_s), "--sample-fps", str(sample_fps),
               "--out", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
        if proc.returncode != 0:
            raise RuntimeError(f"live probe of {n} streams failed: {proc.stderr.strip()[-500:]}")
        return json.loads(Path(f.name).read_text())


def run_live(pipeline: str | Path = DEFAULT_PIPELINE, quick: bool = False, probe_s: float | None = None,
             warmup_s: float = 5.0, sample_fps: float = 2.0, p99_budget_ms: float = 500.0,
             max_streams: int = 64, memory_at: tuple[int, ...] = (1, 8, 32), out_dir: str | Path | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Largest number of live streams with no drop and p99 within budget (double, then bisect)."""
    seconds = probe_s or (15.0 if quick else 30.0)
    probes: dict[int, dict[str, Any]] = {}

    def probe(n: int) -> bool:
        if n not in probes:
            p = probes[n] = _probe_subprocess(pipeline, n, seconds, warmup_s, sample_fps)
            p["sustained"] = p["dropped_after_warmup"] == 0 and p["latency_ms"]["p99"] <= p99_budget_ms
            log(f"  {n:3d} streams: {p['analysed_fps']:6.2f} of {p['wanted_fps']:.0f} frames/s, "
                f"dropped {p['dropped_after_warmup']}, p99 {p['latency_ms']['p99']:.0f} ms, "
                f"RSS {p['rss_mb']['peak']:.0f} MB -> {'sustained' if p['sustained'] else 'not sustained'}")
        return probes[n]["sustained"]

    log(f"live capacity: {seconds:.0f}-s probes ({warmup_s:.0f} s warm-up), sample_fps {sample_fps}, "
        f"p99 budget {p99_budget_ms:.0f} ms")
    good, bad = 0, None
    n = 1
    while n <= max_streams:
        if probe(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is not None:
        while bad - good > 1:
            mid = (good + bad) // 2
            if probe(mid):
                good = mid
            else:
                bad = mid
    log("memory:")
    for n in memory_at:
        probe(n)
    mem = {n: probes[n]["rss_mb"]["peak"] for n in memory_at}
    per_stream = {f"{a}->{b}": round((mem[b] - mem[a]) / (b - a), 2)
                  for a, b in zip(memory_at[:-1], memory_at[1:])}
    if len(memory_at) > 2:
        per_stream[f"{memory_at[0]}->{memory_at[-1]}"] = round(
            (mem[memory_at[-1]] - mem[memory_at[0]]) / (memory_at[-1] - memory_at[0]), 2)
    result = {"pipeline_file": str(pipeline), "mode": "quick" if quick else "full", "machine": machine(),
              "probe_s": seconds, "warmup_s": warmup_s, "sample_fps": sample_fps, "p99_budget_ms": p99_budget_ms,
              "capacity_streams": good, "first_failing_streams": bad,
              "keyframes_only": next(iter(probes.values()))["keyframes_only"],
              "memory_mb": {str(k): v for k, v in mem.items()}, "mb_per_added_stream": per_stream,
              "probes": {str(k): v for k, v in sorted(probes.items())}}
    out = Path(out_dir) if out_dir else Path("out") / "bench" / "live"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(result, indent=2))
    log(f"live capacity: {good} streams sustained (no drop, p99 <= {p99_budget_ms:.0f} ms)"
        + (f"; {bad} are not" if bad else "") + f"; RSS {mem} MB; MB per added stream {per_stream}")
    log(f"wrote {out / 'live.json'}")
    return result
