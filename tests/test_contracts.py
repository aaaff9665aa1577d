"""The seams' contracts, each run over every implementation vidinfer ships.

* Engine: ONNX Runtime (real) and TensorRT (its runtime is a fake `tensorrt` over ONNX Runtime and
  a fake CuPy over NumPy: mocks at the GPU boundary, named "fake" below). ONNX Runtime's GPU
  engine needs a real CUDA provider and is left to tools/gpu_check.sh.
* Source: the PyAV source on a file, the same source with the NVDEC decoding strategy over a fake
  PyNvVideoCodec, and the array source fed by an iterable and by push.
* Sink: ZeroMQ PUB, PUSH, the append-only file and the callback sink, each read back.
"""

from __future__ import annotations

import threading
import time

import av
import numpy as np
import pytest
from gpu_fakes import install_fake_gpu, kernel_emulator

import vidinfer as vi
from ground_truth import CLIPS, load_gt
from test_pipeline_e2e import free_endpoint
from vidinfer.engines.base import Engine
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.publish import Subscriber
from vidinfer.publish.sinks import read_file_sink
from vidinfer.sources.base import DecodeHints, Source
from vidinfer.testing.shape_models import SHAPE_CLASSES

CLIP = CLIPS / "shapes_b.mp4"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return kernel_emulator(tmp_path_factory.mktemp("kernels"))


# ---------------------------------------------------------------------------------------- engines

def _onnxruntime(models, tmp_path, monkeypatch, emulator):
    from vidinfer.engines.onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(models / "detector.onnx"), np.asarray


def _fake_tensorrt(models, tmp_path, monkeypatch, emulator):
    fakes = install_fake_gpu(monkeypatch, emulator)
    from vidinfer.engines.tensorrt import TensorRTEngine

    return TensorRTEngine(models / "detector.onnx", max_batch_size=4, cache_dir=tmp_path), fakes.cupy.asarray


@pytest.mark.parametrize("make", [_onnxruntime, _fake_tensorrt], ids=["onnxruntime", "tensorrt-with-fake-cuda"])
def test_engine_contract(make, models, tmp_path, monkeypatch, emulator):
    engine, to_device = make(models, tmp_path, monkeypatch, emulator)
    assert isinstance(engine, Engine)
    inp = engine.input
    assert (inp.channels, inp.height, inp.width) == (3, 640, 640) and inp.batch is None
    assert isinstance(engine.backend, str) and isinstance(engine.device, str)
    assert engine.output_names == list(engine.output_shapes)
    rng = np.random.default_rng(0)
    for n in (1, 3):
        out = engine.run(to_device(rng.random((n, 3, 640, 640), dtype=np.float32)))
        assert set(out) == set(engine.output_names)
        assert all(np.asarray(v).shape[0] == n for v in out.values()), {k: v.shape for k, v in out.items()}
    engine.close()


# ---------------------------------------------------------------------------------------- sources

class _Queue:
    """Records what a source puts, like the pipeline's queue; refuses frames once closed."""

    def __init__(self):
        self.items: list = []
        self.dropped = 0
        self.closed = False
        self.cond = threading.Condition()

    def put(self, item):
        with self.cond:
            if self.closed and isinstance(item, Frame):
                return False
            self.items.append(item)
            self.cond.notify_all()
            return True

    def wait_for(self, check, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check(self.items):
                assert self.cond.wait(max(0.0, deadline - time.monotonic())), "the source put nothing more"


def _clip_arrays():
    with av.open(str(CLIP)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _pyav(monkeypatch, emulator):
    from vidinfer.sources.pyav import PyAVSource

    return PyAVSource(vi.StreamSpec(id="cam", url=str(CLIP)))


def _nvdec_with_fake_pynvvideocodec(monkeypatch, emulator):
    fakes = install_fake_gpu(monkeypatch, emulator)
    from vidinfer.sources.nvdec import NvdecDecoding
    from vidinfer.sources.pyav import PyAVSource

    return PyAVSource(vi.StreamSpec(id="cam", url=str(CLIP)), decoding=NvdecDecoding(cupy=fakes.cupy))


def _array_from_iterable(monkeypatch, emulator):
    return vi.ArraySource("cam", frames=iter(_clip_arrays()), fps=25)


class _Pushed(vi.ArraySource):
    """An array source fed by the caller's own thread once it starts."""

    def start(self, queue, hints):
        super().start(queue, hints)

        def feed():
            for image in _clip_arrays():
                if not self.push(image):
                    return
            self.end()

        threading.Thread(target=feed, daemon=True).start()


def _array_pushed(monkeypatch, emulator):
    return _Pushed("cam", fps=25)


SOURCES = [_pyav, _nvdec_with_fake_pynvvideocodec, _array_from_iterable, _array_pushed]
SOURCE_IDS = ["pyav", "nvdec-with-fake-pynvvideocodec", "array-iterable", "array-push"]


@pytest.mark.parametrize("make", SOURCES, ids=SOURCE_IDS)
def test_source_contract_connected_then_every_frame_in_order_then_one_end(make, monkeypatch, emulator):
    source = make(monkeypatch, emulator)
    assert isinstance(source, Source)
    assert source.stream_id == "cam" and source.live is False and source.queue_size >= 1
    q = _Queue()
    source.start(q, DecodeHints(size=(640, 640), full_frames=True))
    source.join(60)
    q.wait_for(lambda items: any(isinstance(i, StreamEvent) and i.end_of_stream for i in items))
    assert not source.alive
    first, *frames, last = q.items
    assert isinstance(first, StreamEvent) and first.state is StreamState.CONNECTED
    assert (first.info["width"], first.info["height"]) == (640, 360)
    assert isinstance(last, StreamEvent) and last.end_of_stream and last.state is StreamState.ENDED
    assert all(isinstance(f, Frame) for f in frames)
    gt = load_gt("shapes_b")
    assert [f.frame_no for f in frames] == sorted(gt)
    pts = [f.pts_ns for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts) and pts[1] - pts[0] == 40_000_000
    for f in frames:
        assert f.stream_id == "cam" and (f.width, f.height) == (640, 360)
        assert (f.letterbox.dst_w, f.letterbox.dst_h) == (640, 640)  # letterboxed for the first detector
        assert f.source is not None or type(f.image).__name__ == "DeviceNV12"  # full frames kept
    assert source.stats.decoded == len(frames) == source.stats.queued


@pytest.mark.parametrize("make", SOURCES, ids=SOURCE_IDS)
def test_source_contract_stop_ends_it_with_one_end_of_stream(make, monkeypatch, emulator):
    source = make(monkeypatch, emulator)
    q = _Queue()
    source.start(q, DecodeHints(size=(320, 320)))
    q.wait_for(lambda items: sum(isinstance(i, Frame) for i in items) >= 5)
    source.stop()
    q.closed = True  # the pipeline's queue refuses frames while it stops
    source.join(10)
    q.wait_for(lambda items: any(isinstance(i, StreamEvent) and i.end_of_stream for i in items), timeout=10)
    ends = [i for i in q.items if isinstance(i, StreamEvent) and i.end_of_stream]
    assert len(ends) == 1 and q.items[-1] is ends[0] and not source.alive
    assert ends[0].reason == "stopped" and ends[0].state is StreamState.ENDED


def test_array_source_refuses_an_image_that_is_not_rgb_with_one_sentence():
    source = vi.ArraySource("cam")
    source.start(_Queue(), DecodeHints())
    with pytest.raises(ValueError) as err:
        source.push(np.zeros((360, 640), np.uint8))
    assert str(err.value) == ("an ArraySource frame must be an HxWx3 uint8 RGB array, got shape (360, 640) dtype "
                              "uint8; convert it first (e.g. image[..., ::-1] for BGR)")


def test_array_source_frames_through_a_pipeline_find_every_box(models):
    gt = load_gt("shapes_b")
    boxes: dict[int, np.ndarray] = {}
    report = vi.Pipeline([vi.ArraySource("arrays", frames=_clip_arrays(), fps=25)],
                         [vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, conf_threshold=0.5,
                                    iou_threshold=0.5)],
                         [vi.CallbackSink(on_frame=lambda f, layers: boxes.__setitem__(f.frame_no, layers["objects"]))]
                         ).run()
    from ground_truth import assert_matches_gt

    assert report.exit_code == 0 and sorted(boxes) == sorted(gt)
    for frame_no, det in boxes.items():
        assert_matches_gt(det.xyxy, det.class_id, gt[frame_no], where=f"frame {frame_no}")


# ------------------------------------------------------------------------------------------ sinks

def _stage_messages():
    @vi.stage(pixels="none", name="counter")
    def count(batch, ctx):
        for f, det in zip(batch.frames, batch["objects"]):
            ctx.emit("count", f.stream_id, {"frame_no": f.frame_no, "n": len(det)})
    return count


def _zmq(tmp_path):
    endpoint = free_endpoint()
    sub = Subscriber(endpoint)
    sink = vi.ZmqSink(endpoint=endpoint, wait_for_subscribers=1)

    def read():
        msgs = list(sub.iter(timeout=1))
        sub.close()
        return msgs
    return sink, read


def _reliable(tmp_path):
    endpoint = free_endpoint()
    consumer = vi.ReliableConsumer(endpoint)
    msgs: list = []

    def consume():  # while the pipeline runs: its sink waits at the end for what is not yet acknowledged
        first = consumer.recv(timeout=30)  # the pipeline loads its models first
        if first is not None:
            msgs.append(first)
            msgs.extend(consumer.iter(timeout=1))
        consumer.close()
    reader = threading.Thread(target=consume)
    reader.start()

    def read():
        reader.join(30)
        return msgs
    return vi.ReliableSink(endpoint=endpoint, spool_dir=tmp_path / "spool"), read


def _file(tmp_path):
    path = tmp_path / "results.msgpack"
    return vi.FileSink(path=path), lambda: list(read_file_sink(path))


@pytest.mark.parametrize("make", [_zmq, _reliable, _file], ids=["zmq", "reliable", "file"])
def test_message_sink_contract_every_frame_event_and_stage_message_in_order(make, models, tmp_path):
    sink, read = make(tmp_path)
    pipeline = vi.Pipeline([vi.StreamSpec(id="cam", url=str(CLIP))],
                           [vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, conf_threshold=0.5),
                            _stage_messages()], [sink])
    report = pipeline.run()
    messages = read()
    assert report.exit_code == 0 and isinstance(sink, vi.Sink)
    gt = load_gt("shapes_b")
    by_topic: dict[str, list] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m)
    det = by_topic["det.cam."]
    assert [m.kind for m in det] == ["detections"] * len(gt) + ["end_of_stream"]
    assert [m.body["frame_no"] for m in det[:-1]] == sorted(gt)
    assert [m.body["count"] for m in det[:-1]] == [len(gt[k]) for k in sorted(gt)]
    assert det[-1].body["frames_analysed"] == len(gt) == report.streams["cam"].frames_analysed
    counts = by_topic["count.cam."]
    assert [(m.body["frame_no"], m.body["n"]) for m in counts] == [(k, len(gt[k])) for k in sorted(gt)]
    assert [m.body["state"] for m in by_topic["status.cam."]] == ["connected", "ended"]
    assert by_topic["meta.cam."][0].body["classes"] == SHAPE_CLASSES
    for topic, msgs in by_topic.items():
        if topic != "meta.cam.":  # a PUB replays metadata to a late subscription: a gap there is no loss
            assert [m.seq for m in msgs] == list(range(msgs[0].seq, msgs[0].seq + len(msgs))), topic
        assert all(m.gap == 0 for m in msgs), topic
    assert report.sinks[sink.name or pipeline.sink_names[0]]["sent"] == sink.sent > len(gt)


def test_callback_sink_contract_sees_every_frame_and_event_and_is_closed(models):
    frames, events, closed = [], [], []
    sink = vi.CallbackSink(on_frame=lambda f, layers: frames.append((f.frame_no, sorted(layers))),
                           on_event=events.append, on_close=lambda: closed.append(True))
    report = vi.Pipeline([vi.StreamSpec(id="cam", url=str(CLIP))],
                         [vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES), _stage_messages()],
                         [sink]).run()
    assert report.exit_code == 0 and isinstance(sink, vi.Sink)
    assert [n for n, _ in frames] == sorted(load_gt("shapes_b")) and {tuple(lay) for _, lay in frames} == {("objects",)}
    states = [e.state.value for e in events if isinstance(e, vi.StreamEvent)]
    assert states == ["connected", "ended"] and events[-1].end_of_stream
    assert sum(isinstance(e, vi.StageMessage) and e.kind == "count" for e in events) == len(frames)
    assert closed == [True]

