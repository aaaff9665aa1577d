"""The `vidinfer` command.

    vidinfer run PIPELINE.toml [--publish ENDPOINT] [--report FILE] [--quiet]
    vidinfer subscribe ENDPOINT [--topic PREFIX ...] [--count N] [--timeout SECONDS] [--reliable [--state-file F]]
    vidinfer proxy --frontend ENDPOINT --backend ENDPOINT [--metrics-port PORT]
    vidinfer info
    vidinfer models
    vidinfer build-engine PIPELINE.toml [--cache-dir DIR]
    vidinfer bench [PIPELINE.toml] [--quick] [--live]

Exit codes: 0 success; 1 at least one stream failed (the others ran to the end); 2 the
configuration, a model or the endpoint is unusable (one line on stderr says which and why);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from vidinfer.errors import ConfigError, ModelError, PublishError, VidinferError

EXIT_OK, EXIT_STREAM_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.func is not cmd_run:  # `run` installs its own handlers at once; the others get Python's
        from vidinfer._startup import restore_default_handlers

        restore_default_handlers()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except (ConfigError, ModelError, PublishError) as exc:
        print(f"vidinfer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VidinferError as exc:
        print(f"vidinfer: error: {exc}", file=sys.stderr)
        return EXIT_STREAM_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidinfer", description="Multi-stream video analytics.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline from a TOML file")
    run.add_argument("pipeline", type=Path, help="pipeline .toml file")
    run.add_argument("--publish", metavar="ENDPOINT", help="publish on this ZeroMQ endpoint instead of the file's")
    run.add_argument("--report", metavar="FILE", type=Path, help="write the run report as JSON here")
    run.add_argument("--shard-index", metavar="I", default=None,
                     help="analyse only shard I's share of the streams (0..N-1, or 'ordinal': the trailing -N of "
                          "the host name, a StatefulSet pod's ordinal); default $VIDINFER_SHARD_INDEX or [shard]")
    run.add_argument("--shard-count", metavar="N", default=None,
                     help="how many shards share the stream list; default $VIDINFER_SHARD_COUNT or [shard]")
    run.add_argument("--metrics-port", metavar="PORT", type=int, default=None,
                     help="serve Prometheus /metrics and /healthz, /readyz on this port (0: off); "
                          "default [metrics] port")
    run.add_argument("--metrics-host", metavar="HOST", default=None,
                     help="address of the metrics endpoint (default [metrics] host, 127.0.0.1; 0.0.0.0 in a pod)")
    run.set_defaults(func=cmd_run)

    px = sub.add_parser("proxy", help="one subscription point for many publishers (shards): XSUB/XPUB forwarder")
    px.add_argument("--frontend", required=True, metavar="ENDPOINT",
                    help="where publishers connect (their [publish] connect = true), e.g. tcp://*:5556")
    px.add_argument("--backend", required=True, metavar="ENDPOINT",
                    help="where subscribers connect, e.g. tcp://*:5555")
    px.add_argument("--sndhwm", type=int, default=10000, help="messages queued per subscriber before drops")
    px.add_argument("--metrics-port", metavar="PORT", type=int, default=0,
                    help="serve Prometheus /metrics and /healthz, /readyz on this port (default 0: off)")
    px.add_argument("--metrics-host", metavar="HOST", default="127.0.0.1", help="address of the metrics endpoint")
    px.add_argument("--curve-secret-key", metavar="FILE", type=Path, default=None,
                    help="CurveZMQ: the proxy's certificate with its secret key (.key_secret); needs "
                         "--curve-publishers and --curve-subscribers")
    px.add_argument("--curve-publishers", metavar="DIR", type=Path, default=None,
                    help="CurveZMQ: folder of the public certificates (*.key) of the publishers allowed into the "
                         "frontend")
    px.add_argument("--curve-subscribers", metavar="DIR", type=Path, default=None,
                    help="CurveZMQ: folder of the public certificates (*.key) of the subscribers allowed on the "
                         "backend (a separate list: a subscriber's key cannot publish)")
    px.add_argument("--curve-clients", metavar="DIR", type=Path, default=None, help=argparse.SUPPRESS)
    px.set_defaults(func=cmd_proxy)

    s = sub.add_parser("subscribe", help="print a publisher's messages as JSON lines")
    s.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    s.add_argument("--topic", action="append", default=[], metavar="PREFIX",
                   help="topic prefix, e.g. det.cam-1. (repeatable; default: everything)")
    s.add_argument("--count", type=int, default=None, help="stop after N messages")
    s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop when no message arrives for this long")
    s.add_argument("--curve-server-key", metavar="FILE", type=Path, default=None,
                   help="CurveZMQ: the proxy's public certificate (.key); needs --curve-secret-key")
    s.add_argument("--curve-secret-key", metavar="FILE", type=Path, default=None,
                   help="CurveZMQ: this subscriber's certificate with its secret key (.key_secret)")
    s.add_argument("--reliable", action="store_true",
                   help="consume a reliable sink (type = \"reliable\"): every message at least once, acknowledged "
                        "once printed")
    s.add_argument("--state-file", metavar="FILE", type=Path, default=None,
                   help="with --reliable: keep the last processed delivery number here, to resume after a restart "
                        "and skip what was already printed")
    s.set_defaults(func=cmd_subscribe)

    q = sub.add_parser("quantize", help="write INT8 (QDQ) and FP16 copies of the detector and measure them")
    q.add_argument("pipeline", type=Path, help="pipeline .toml file (its detector and streams are used)")
    q.add_argument("--out", type=Path, default=None, help="folder for the copies (default: next to the model)")
    q.add_argument("--frames", type=int, default=16, help="calibration frames per stream (default 16)")
    q.set_defaults(func=cmd_quantize)

    be = sub.add_parser("build-engine", help="build and cache TensorRT engines for a pipeline's models ahead of time")
    be.add_argument("pipeline", type=Path, help="pipeline .toml file")
    be.add_argument("--cache-dir", type=Path, default=None, help="engine cache folder (default: ~/.cache/vidinfer)")
    be.set_defaults(func=cmd_build_engine)

    models = sub.add_parser("models", help="the named models (e.g. ppocr:rec) and where they are installed")
    models.set_defaults(func=cmd_models)

    keys = sub.add_parser("keys", help="make a CurveZMQ key pair (NAME.key public, NAME.key_secret private)")
    keys.add_argument("directory", type=Path, help="folder to write the two files into (made if missing)")
    keys.add_argument("--name", default="vidinfer", help="file name of the pair (default: vidinfer)")
    keys.set_defaults(func=cmd_keys)

    info = sub.add_parser("info", help="which decoders, engines and devices work here, and why not")
    info.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="the pipeline against its decode and inference limits and the hand-written "
                                     "loop; --live: how many live streams it sustains")
    b.add_argument("pipeline", type=Path, nargs="?", default=None,
                   help="pipeline .toml file (default pipelines/brand_impact.toml)")
    b.add_argument("--quick", action="store_true", help="short clips, one round (under 2 minutes on 2 cores)")
    b.add_argument("--streams", type=int, default=None, metavar="N", help="N streams (the file's, repeated)")
    b.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="cut each clip at the first keyframe at or after N frames (--quick: 50)")
    b.add_argument("--rounds", type=int, default=None, help="rounds of every stage (default 3; --quick 1)")
    b.add_argument("--out", type=Path, default=None,
                   help="folder for bench.json and bench.png (default out/bench/NAME)")
    b.add_argument("--no-plot", action="store_true", help="no PNG")
    b.add_argument("--live", action="store_true", help="find the largest number of live streams sustained")
    b.add_argument("--probe-s", type=float, default=None, help="seconds per live probe (default 30; --quick 15)")
    b.add_argument("--warmup-s", type=float, default=5.0, help="first seconds of a live probe not counted")
    b.add_argument("--sample-fps", type=float, default=2.0, help="analysed frames per second per live stream")
    b.add_argument("--p99-ms", type=float, default=500.0, help="latency budget of a live probe (p99)")
    b.add_argument("--live-probe", type=int, default=None, help=argparse.SUPPRESS)  # one probe, JSON to --out
    b.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    from vidinfer import bench

    pipeline = args.pipeline or bench.DEFAULT_PIPELINE
    if args.live_probe is not None:
        result = bench.live_probe(pipeline, args.live_probe, args.probe_s or 30.0, args.warmup_s, args.sample_fps)
        Path(args.out).write_text(json.dumps(result, indent=2))
    elif args.live:
        bench.run_live(pipeline, quick=args.quick, probe_s=args.probe_s, warmup_s=args.warmup_s,
                       sample_fps=args.sample_fps, p99_budget_ms=args.p99_ms, out_dir=args.out)
    else:
        bench.run_bench(pipeline, quick=args.quick, streams=args.streams, max_frames=args.max_frames,
                        rounds=args.rounds, out_dir=args.out, plot=not args.no_plot)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from vidinfer._startup import is_cli

    # Signals are honoured in every phase: a first one while the models load stops the pipeline as
    # soon as it exists (it then starts no stream and publishes every stream's end).
    held = threading.Event()  # the first Ctrl-C/SIGTERM also ends [metrics] hold_s
    signals = _install_signal_handlers(None, on_stop=held.set)
    try:
        code = _run(args, signals, held)
    finally:
        if not is_cli():  # main() called from Python: its caller's handlers again
            signals.restore()
    if is_cli() and signals.pipeline is not None and any(src.alive for src in signals.pipeline.sources):
        _exit_leaving_stuck_sources(code)
    return code


def _exit_leaving_stuck_sources(code: int) -> None:
    """A source still inside FFmpeg (an open or read that cannot be interrupted) calls back into
    Python from its thread; finalising the interpreter under it crashes the process (SIGSEGV).
    Every result is out, the sinks are closed and the report written: leave without finalising."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run(args: argparse.Namespace, signals: _Signals, held: threading.Event) -> int:
    from vidinfer.config import load_pipeline

    spec = load_pipeline(args.pipeline)
    if args.publish is not None:
        _replace_endpoint(spec, args.publish)
    _apply_scale_out_options(spec, args)
    if args.report is not None:
        _check_report_path(args.report)
    try:
        pipeline = spec.build()
    except (ConfigError, ModelError) as exc:  # a model, layer or device that does not fit: say which file
        raise type(exc)(f"{args.pipeline}: {exc}") from None
    signals.attach(pipeline)
    metrics_server = None
    if spec.metrics.port:
        from vidinfer.metrics import serve_pipeline_metrics

        metrics_server = serve_pipeline_metrics(pipeline, spec.metrics.host, spec.metrics.port)
    show_progress = sys.stderr.isatty() and not args.quiet
    stop_progress = _start_progress(pipeline) if show_progress else None
    try:
        report = pipeline.run()
    except (PublishError, ConfigError) as exc:  # sinks bind their endpoints and open files when the run starts
        raise type(exc)(f"{args.pipeline}: {exc}") from None
    finally:
        if stop_progress:
            stop_progress()
    _print_summary(report)
    _print_sections(report)
    code = report.exit_code
    if args.report:
        from vidinfer.atomic import write_atomically

        text = json.dumps(report.to_dict(), indent=2)
        try:  # whole or not at all: a reader never sees half a report
            write_atomically(args.report, lambda tmp: tmp.write_text(text))
        except OSError as exc:  # e.g. the disk filled during the run
            print(f"vidinfer: error: --report: cannot write the run report to '{args.report}' "
                  f"({exc.strerror or exc}); the run's results were published", file=sys.stderr)
            code = code or EXIT_STREAM_FAILED
    for sid in report.failed_streams:
        print(f"vidinfer: stream {sid} failed: {report.streams[sid].reason}", file=sys.stderr)
    if metrics_server is not None:
        held.wait(spec.metrics.hold_s)  # let the last scrape see the final counts of a file job
        metrics_server.close()
    return code


def _check_report_path(path: Path) -> None:
    """--report: the file must be writable before anything starts, not only after all the work."""
    from vidinfer.atomic import check_writable

    try:
        check_writable(path)
    except OSError as exc:
        raise ConfigError(f"--report: cannot write the run report to '{path}' ({exc.strerror or exc}); give a "
                          "writable path") from None


def _replace_endpoint(spec: Any, endpoint: str) -> None:
    """--publish: the first ZeroMQ sink's endpoint, or a ZeroMQ sink added when there is none."""
    from vidinfer.publish.sinks import ZmqSink

    sink = spec.sink_of(ZmqSink)
    if sink is None:
        spec.sinks.append(ZmqSink(endpoint=endpoint))
    else:
        sink.endpoint = endpoint


def _apply_scale_out_options(spec: Any, args: argparse.Namespace) -> None:
    """--shard-index/--shard-count (then the environment, then [shard]) and --metrics-port/-host."""
    from vidinfer.config import MetricsSpec, ShardSpec
    from vidinfer.sharding import resolve_shard

    file_shard = (spec.shard.index, spec.shard.count) if spec.shard is not None else None
    shard = resolve_shard(file_shard, args.shard_index, args.shard_count)
    spec.shard = ShardSpec(index=shard[0], count=shard[1]) if shard is not None else None
    if args.metrics_port is not None or args.metrics_host is not None:
        if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port {args.metrics_port} is not a port; give a number from 1 to 65535, "
                              "or 0 to turn the endpoint off")
        spec.metrics = MetricsSpec(port=spec.metrics.port if args.metrics_port is None else args.metrics_port,
                                   host=args.metrics_host or spec.metrics.host, hold_s=spec.metrics.hold_s)


def cmd_proxy(args: argparse.Namespace) -> int:
    from vidinfer.publish.proxy import Proxy, load_curve_server, proxy_collector

    curve = None
    if args.curve_clients is not None:
        raise ConfigError("--curve-clients is gone: publishers and subscribers have separate allow-lists now; give "
                          "--curve-publishers DIR and --curve-subscribers DIR (the same folder twice keeps the old "
                          "behaviour)")
    given = [args.curve_secret_key is not None, args.curve_publishers is not None, args.curve_subscribers is not None]
    if any(given) and not all(given):
        raise ConfigError("CurveZMQ needs --curve-secret-key (the proxy's .key_secret certificate), --curve-publishers "
                          "and --curve-subscribers (the folders of allowed .key files); give all three or none")
    if args.curve_secret_key is not None:
        curve = load_curve_server(args.curve_secret_key, args.curve_subscribers, clients_key="--curve-subscribers",
                                  peers="subscriber")
        load_curve_server(args.curve_secret_key, args.curve_publishers, clients_key="--curve-publishers",
                          peers="publisher")  # the same checks for the publishers' folder
    proxy = Proxy(args.frontend, args.backend, sndhwm=args.sndhwm, curve=curve, publishers=args.curve_publishers)
    server = None
    if args.metrics_port:
        from prometheus_client import CollectorRegistry

        from vidinfer.metrics import MetricsServer

        registry = CollectorRegistry()
        registry.register(proxy_collector(proxy))
        try:
            server = MetricsServer(registry, args.metrics_host, args.metrics_port, live=proxy.live, ready=proxy.ready)
        except ConfigError:
            proxy.close(linger=0)
            raise
    stopping = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            os._exit(EXIT_INTERRUPTED)
        stopping.set()
        proxy._stopped.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    print(f"vidinfer proxy: publishers connect to {proxy.frontend}, subscribers to {proxy.backend}"
          + (" (CurveZMQ)" if curve else ""), file=sys.stderr, flush=True)
    try:
        proxy.run()
    finally:
        if server is not None:
            server.close()
    return EXIT_OK


class _Signals:
    """SIGINT/SIGTERM of `vidinfer run`. First: stop gracefully (flush, end every stream), or, while
    the pipeline is still being built (models loading), stop it as soon as it exists. Second: exit
    at once."""

    def __init__(self, pipeline: Any, on_stop: Any):
        self.pipeline, self.on_stop, self.count = pipeline, on_stop, 0
        self.previous: dict[int, Any] = {}

    def restore(self) -> None:
        """The handlers that were there before."""
        for signum, old in self.previous.items():
            signal.signal(signum, old)
        self.previous.clear()

    def __call__(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            os._exit(EXIT_INTERRUPTED)
        print(f"vidinfer: {signal.Signals(signum).name}: stopping (again to exit at once)", file=sys.stderr,
              flush=True)
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.on_stop is not None:
            self.on_stop()

    def attach(self, pipeline: Any) -> None:
        """The pipeline exists: a signal that came while it was built stops it now (before `run`)."""
        self.pipeline = pipeline
        if self.count:
            pipeline.stop()


def _install_signal_handlers(pipeline: Any, on_stop: Any = None) -> _Signals:
    """First SIGINT/SIGTERM: stop gracefully (flush, end every stream). Second: exit at once."""
    handler = _Signals(pipeline, on_stop)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler.previous[signum] = signal.signal(signum, handler)
    return handler


def _start_progress(pipeline: Any) -> Any:
    """A live progress display on the terminal; returns the function that stops it."""
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.fields[sid]:<16}"), TextColumn("{task.completed:>7.0f} frames"),
                        TextColumn("{task.fields[rate]:>7.1f} fps"), TextColumn("{task.fields[state]}"),
                        TimeElapsedColumn(), transient=False)
    tasks = {sid: progress.add_task("", total=None, sid=sid, rate=0.0, state="connecting")
             for sid, *_ in pipeline.streams_progress()}
    done = threading.Event()

    def refresh() -> None:
        import time

        last: dict[str, tuple[float, int]] = {}
        while not done.wait(0.5):
            now = time.monotonic()
            for sid, _decoded, analysed, state in pipeline.streams_progress():
                t0, n0 = last.get(sid, (now, analysed))
                rate = (analysed - n0) / (now - t0) if now > t0 else 0.0
                last[sid] = (now, analysed)
                progress.update(tasks[sid], completed=analysed, rate=rate, state=state)

    progress.start()
    _log_through(progress.console)
    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join()
        for sid, _decoded, analysed, state in pipeline.streams_progress():
            progress.update(tasks[sid], completed=analysed, state=state)
        progress.stop()

    return stop


def _log_through(console: Any) -> None:
    """Send log records through rich's console, above the live display instead of through it."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    handler.setLevel(root.level)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _print_summary(report: Any) -> None:
    rows = [f"{'stream':<16} {'state':<10} {'decoded':>8} {'analysed':>8} {'dropped':>8}  reason"]
    for s in report.streams.values():
        rows.append(f"{s.stream_id:<16} {s.state:<10} {s.frames_decoded:>8} {s.frames_analysed:>8} "
                    f"{s.frames_dropped:>8}  {s.reason}")
    lat = report.latency_ms
    rows.append(f"{report.frames} frames in {report.batches} batches (mean {report.mean_batch_size:.2f}) "
                f"in {report.elapsed_s:.1f} s on {report.device}; latency p50 {lat.get('p50', 0):.0f} ms, "
                f"p99 {lat.get('p99', 0):.0f} ms; messages sent {report.messages_sent}, "
                f"dropped {report.messages_dropped}")
    print("\n".join(rows))


def _print_sections(report: Any) -> None:
    """What the stages added to the report: their summaries (e.g. brand impact's table) and files."""
    from rich.console import Console

    console = Console(width=max(120, Console().width))  # tables stay readable in a pipe
    for section in report.sections.values():
        if section.summary is not None:
            console.print(section.summary)
        for path in section.files:
            print(f"report: {path}")


def cmd_quantize(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vidinfer.config import load_pipeline
    from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
    from vidinfer.quantize import _tensor, compare_precisions, convert_fp16, pipeline_frames, quantize_int8
    from vidinfer.stages.detect import Detect

    spec = load_pipeline(args.pipeline)
    detector = spec.stage_of(Detect)
    if detector is None:
        raise ConfigError(f"{args.pipeline}: quantize needs a detect stage, and the pipeline has none")
    model = Path(detector.model)
    out_dir = args.out or model.parent
    inp = OnnxRuntimeEngine(model, detector.input_size).input
    size = (inp.width, inp.height)
    frames = pipeline_frames(spec, size, per_stream=2 * args.frames)
    # Calibrate on even frames, measure on odd ones: agreement is not judged on calibration data.
    calibration, held_out = frames[0::2], frames[1::2]
    int8 = quantize_int8(model, out_dir / f"{model.stem}.int8.onnx",
                         _tensor(calibration, size, detector.input_convention))
    fp16 = convert_fp16(model, out_dir / f"{model.stem}.fp16.onnx")
    results = compare_precisions({"fp32": model, "fp16": fp16, "int8": int8}, held_out, detector,
                                 spec.max_batch_size)
    print(f"{'precision':<10} {'mAP@0.5 vs FP32':>16} {'ms/image (CPU)':>15} {'speed vs FP32':>14} {'MB':>7}  file")
    for r in results:
        print(f"{r.precision:<10} {r.map50_vs_fp32:>16.4f} {r.ms_per_image:>15.2f} {r.speedup_vs_fp32:>13.2f}x "
              f"{r.size_bytes / 1e6:>7.2f}  {r.path}")
    report = out_dir / f"{model.stem}.precision.json"
    report.write_text(json.dumps({"pipeline": str(args.pipeline), "calibration_frames": len(calibration),
                                  "measured_frames": len(held_out), "results": [asdict(r) for r in results]},
                                 indent=2))
    print(f"report: {report}")
    return EXIT_OK


def cmd_build_engine(args: argparse.Namespace) -> int:
    import importlib.util

    from vidinfer.config import load_pipeline

    spec = load_pipeline(args.pipeline)
    missing = [m for m in ("tensorrt", "cupy") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"build-engine needs TensorRT and CuPy on a machine with an NVIDIA GPU, and "
                          f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here; "
                          "run it where the pipeline will run, after pip install 'vidinfer[gpu]'")
    from vidinfer.engines.tensorrt import TensorRTEngine
    from vidinfer.stages.classify import Classify
    from vidinfer.stages.detect import Detect

    jobs = [(s.model, s.input_size, spec.max_batch_size) for s in spec.stages if isinstance(s, Detect)]
    jobs += [(s.model, s.input_size, s.max_batch_size) for s in spec.stages if isinstance(s, Classify)]
    for model, size, batch in jobs:
        engine = TensorRTEngine(model, size, batch, cache_dir=args.cache_dir)
        print(f"{model}: {engine.plan_path}")
        engine.close()
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from vidinfer.models.registry import list_models

    for name, path, description in list_models():
        print(f"{name:<18} {'yes' if path else 'no ':<4} {path or 'not installed'}  ({description})")
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    from vidinfer.publish.subscriber import Subscriber

    curve = None
    if (args.curve_server_key is None) != (args.curve_secret_key is None):
        raise ConfigError("CurveZMQ needs both --curve-server-key (the proxy's .key) and --curve-secret-key "
                          "(this subscriber's .key_secret); give both or neither")
    if args.curve_server_key is not None:
        from vidinfer.publish.proxy import load_curve_client

        curve = load_curve_client(args.curve_server_key, args.curve_secret_key,
                                  names=("--curve-server-key", "--curve-secret-key"))
    if args.reliable:
        return _subscribe_reliable(args, curve)
    if args.state_file is not None:
        raise ConfigError("--state-file belongs to --reliable (a reliable sink's consumer); add --reliable or drop it")
    with Subscriber(args.endpoint, topics=args.topic, curve=curve) as sub:
        try:
            for msg in sub.iter(timeout=args.timeout, count=args.count):
                sys.stdout.write(json.dumps(msg.to_json()) + "\n")
                sys.stdout.flush()
        except BrokenPipeError:  # e.g. piped into `head`
            return EXIT_OK
    return EXIT_OK


def _subscribe_reliable(args: argparse.Namespace, curve: Any) -> int:
    """--reliable: each message printed, then acknowledged (when the next one is asked for)."""
    from vidinfer.publish.reliable import ReliableConsumer

    if args.topic:
        raise ConfigError("--topic does not apply to --reliable: a reliable sink delivers every message to its "
                          "consumer; filter the printed lines instead")
    with ReliableConsumer(args.endpoint, state_file=args.state_file, curve=curve) as rx:
        try:
            for msg in rx.iter(timeout=args.timeout, count=args.count):
                sys.stdout.write(json.dumps(msg.to_json()) + "\n")
                sys.stdout.flush()
        except BrokenPipeError:  # e.g. piped into `head`: that message was not printed, it comes again
            return EXIT_OK
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from vidinfer.publish.security import create_keys

    public, secret = create_keys(args.directory, args.name)
    print(f"public key (give to the other side): {public}")
    print(f"secret key (keep private): {secret}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from vidinfer.devices import capabilities, gpu_advice, plan_device

    caps = capabilities()
    for cap in caps:
        mark = "yes" if cap.available else "no "
        print(f"{cap.kind:<8} {cap.name:<26} {mark}  {cap.detail}")
    plan = plan_device("auto", caps)
    print(f"device = 'auto' runs on: {plan.device} ({plan.reason})")
    for stage, backend in plan.stages.items():
        print(f"  {stage:<14} {backend}")
    for line in gpu_advice(caps):  # on a GPU machine: each missing piece and the package to install
        print(line)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
