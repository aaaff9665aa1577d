"""Pipelines composed of stages: several detectors, your own stages and functions, the errors a
user can make when composing, and what happens when a stage or a sink fails on one stream."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import vidinfer as vi
from ground_truth import CLIPS, assert_matches_gt, load_gt
from vidinfer.config import parse_pipeline
from vidinfer.testing.shape_models import SHADE_LABELS, SHAPE_CLASSES, build_shape_detector


def streams(**clips):
    return [vi.StreamSpec(id=sid, url=str(CLIPS / f"{clip}.mp4")) for sid, clip in clips.items()]


def detect(models, **kw):
    return vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, conf_threshold=0.5, iou_threshold=0.5,
                     **kw)


class Collect(vi.CallbackSink):
    """Every frame's layers and every event, by stream."""

    def __init__(self):
        self.seen: dict[str, dict[int, dict[str, vi.Detections]]] = {}
        self.events: list = []
        super().__init__(on_frame=lambda f, layers: self.seen.setdefault(f.stream_id, {}).__setitem__(
            f.frame_no, layers), on_event=self.events.append)


def test_two_detectors_with_different_input_sizes_each_make_their_own_layer(models, tmp_path):
    """The first detector's input comes from the decoder; the second (640x384) is cut from the
    full frame; both find every ground-truth box, and neither touches the other's classes."""
    wide = build_shape_detector(tmp_path / "wide.onnx", input_size=(384, 640))
    sink = Collect()
    pipe = vi.Pipeline(streams(a="shapes_a", hd="shapes_1080p"),
                       [detect(models, layer="first"),
                        vi.Detect(model=wide, classes=["R", "G", "B"], conf_threshold=0.5, iou_threshold=0.5,
                                  layer="second")], [sink])
    assert pipe.hints.size == (640, 640) and pipe.hints.full_frames  # the second one needs whole frames
    assert pipe.layers["second"].classes == ("R", "G", "B") and pipe.layers["first"].classes == tuple(SHAPE_CLASSES)
    report = pipe.run()
    assert report.exit_code == 0
    for sid, clip in (("a", "shapes_a"), ("hd", "shapes_1080p")):
        gt = load_gt(clip)
        assert sorted(sink.seen[sid]) == sorted(gt)
        for frame_no, layers in sink.seen[sid].items():
            for layer in ("first", "second"):
                det = layers[layer]
                assert_matches_gt(det.xyxy, det.class_id, gt[frame_no], where=f"{sid} {frame_no} {layer}")


def test_one_detector_keeps_no_full_frame_and_the_decoder_sizes_its_input(models):
    pipe = vi.Pipeline(streams(a="shapes_a"), [detect(models), vi.Track(detect_cuts=False)], [])
    assert pipe.hints.size == (640, 640) and not pipe.hints.full_frames
    pipe = vi.Pipeline(streams(a="shapes_a"), [detect(models), vi.Classify(name="shade", model=models / "shade.onnx",
                                                                            labels=SHADE_LABELS)], [])
    assert pipe.hints.full_frames  # crops are cut from the full-resolution frame


class LargeShapes:
    """A stage class of a user's own: a layer of the large boxes of another layer."""

    pixels = vi.Pixels.NONE

    def __init__(self, min_area: float, name: str = "large"):
        self.name = name
        self.min_area = min_area

    def open(self, ctx):
        self.classes = ctx.layer("objects").classes
        ctx.add_layer("large", self.classes)

    def __call__(self, batch):
        batch["large"] = [det[det.wh.prod(axis=1) >= self.min_area] for det in batch["objects"]]

    def on_stream_end(self, stream_id):
        pass

    def close(self):
        pass


def test_a_stage_of_your_own_makes_a_layer_that_sinks_publish(models):
    from test_pipeline_e2e import free_endpoint
    from vidinfer.publish import Subscriber

    endpoint = free_endpoint()
    with Subscriber(endpoint, topics=["det.", "meta."]) as sub:
        report = vi.Pipeline(streams(b="shapes_b"), [detect(models), LargeShapes(min_area=1100)],
                             [vi.ZmqSink(endpoint=endpoint, wait_for_subscribers=1, layers=["large", "objects"])]
                             ).run()
        messages = list(sub.iter(timeout=1))
    assert report.exit_code == 0 and report.stages["large"].kind == "LargeShapes"
    meta = next(m.body for m in messages if m.kind == "metadata")
    assert meta["classes"] == SHAPE_CLASSES and meta["layers"]["objects"]["classes"] == SHAPE_CLASSES
    gt = load_gt("shapes_b")
    dets = [m for m in messages if m.kind == "detections"]
    assert [m.body["frame_no"] for m in dets] == sorted(gt)
    for m in dets:
        objects, large = m.detections("objects"), m.detections()  # "large" in the body's own columns
        assert len(objects) == len(gt[m.body["frame_no"]])
        keep = objects.wh.prod(axis=1) >= 1100
        assert np.array_equal(large.xyxy, objects.xyxy[keep]) and np.array_equal(large.class_id, objects.class_id[keep])
    large = sum(len(m.detections()) for m in dets)
    assert 0 < large < sum(len(m.detections("objects")) for m in dets)  # some boxes are large, not all


def test_plain_function_is_a_stage_and_sees_the_layers_made_before_it(models):
    seen = []
    report = vi.Pipeline(streams(a="shapes_a"), [detect(models), lambda batch: seen.append(len(batch["objects"]))],
                         []).run()
    assert report.exit_code == 0 and sum(seen) == 100 and "<lambda>" in report.stages


# ----------------------------------------------------------------------------------- failures

def test_a_stage_that_fails_on_one_stream_leaves_the_others_alone(models, caplog):
    @vi.stage(pixels="none", name="fragile", makes={"checked": SHAPE_CLASSES})
    def fragile(batch, ctx):
        if any(f.stream_id == "bad" for f in batch.frames):
            raise ValueError("cannot handle this camera")
        batch["checked"] = [det[det.score > 0.9] for det in batch["objects"]]

    sink = Collect()
    with caplog.at_level(logging.ERROR, logger="vidinfer.pipeline"):
        report = vi.Pipeline(streams(good="shapes_a", bad="shapes_b"), [detect(models), fragile], [sink],
                             max_batch_size=8).run()
    assert report.exit_code == 0  # both streams ran to their end
    good, bad = sink.seen["good"], sink.seen["bad"]
    assert len(good) == len(bad) == 100
    assert all(len(layers["checked"]) == len(layers["objects"]) > 0 for layers in good.values())
    assert all(len(layers["checked"]) == 0 and len(layers["objects"]) > 0 for layers in bad.values())
    assert report.stages["fragile"].failures == 100 == report.streams["bad"].stage_failures
    assert report.streams["good"].stage_failures == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(
        "stage 'fragile' failed on stream bad (frames ") and errors[0].endswith(
        "): ValueError: cannot handle this camera; its results are published without this stage's output, and the "
        "other streams go on (later failures of this stage on this stream are counted in the run report)")
    degraded = [e for e in sink.events if isinstance(e, vi.StreamEvent) and e.state is vi.StreamState.DEGRADED]
    assert [(e.stream_id, e.reason) for e in degraded] == [
        ("bad", "stage 'fragile' failed: ValueError: cannot handle this camera")]


def test_a_per_frame_function_that_raises_fails_only_that_frame(models, caplog):
    @vi.stage(pixels="none", per_frame=True)
    def tag(frame, layers, ctx):
        if frame.stream_id == "b" and frame.frame_no == 10:
            raise RuntimeError("frame ten")
        ctx.state[frame.stream_id] = ctx.state.get(frame.stream_id, 0) + len(layers["objects"])

    with caplog.at_level(logging.ERROR, logger="vidinfer.pipeline"):
        pipe = vi.Pipeline(streams(a="shapes_a", b="shapes_b"), [detect(models), tag], [])
        report = pipe.run()
    assert report.stages["tag"].failures == 1 and report.streams["b"].stage_failures == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["stage 'tag' failed on stream b (frame 10): RuntimeError: frame ten; its results are published "
                      "without this stage's output, and the other streams go on (later failures of this stage on "
                      "this stream are counted in the run report)"]
    gt_a, gt_b = load_gt("shapes_a"), load_gt("shapes_b")
    state = pipe.stage("tag")._ctx.state
    assert state["a"] == sum(len(v) for v in gt_a.values())
    assert state["b"] == sum(len(v) for k, v in gt_b.items() if k != 10)


def test_a_sink_that_fails_is_counted_and_the_other_sinks_get_everything(models, caplog):
    def broken(frame, layers):
        raise OSError(28, "No space left on device")

    good = Collect()
    with caplog.at_level(logging.ERROR, logger="vidinfer.pipeline"):
        report = vi.Pipeline(streams(a="shapes_a"), [detect(models)],
                             [vi.CallbackSink(on_frame=broken, name="disk"), good]).run()
    assert report.exit_code == 0 and len(good.seen["a"]) == 100
    assert report.sinks["disk"]["errors"] > 0 and report.sinks["callback"]["errors"] == 0
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "sink 'disk' failed: OSError: [Errno 28] No space left on device; the other sinks and the streams go on "
        "(its later failures are counted in the run report)"]
    degraded = [e for e in good.events if isinstance(e, vi.StreamEvent) and e.state is vi.StreamState.DEGRADED]
    assert [(e.stream_id, e.reason) for e in degraded] == [
        ("a", "sink 'disk' failed: OSError: [Errno 28] No space left on device; its results may be missing from now on")]


def _run_with_file_sink(tmp_path, models, path, limit_bytes=None):
    """`vidinfer run` of the shapes pipeline with a zmq sink and a file sink at ``path``; the child's
    files may grow to ``limit_bytes`` (RLIMIT_FSIZE: a write beyond fails, as on a full disk)."""
    import resource
    import subprocess
    import sys

    from helpers import shapes_pipeline
    from test_pipeline_e2e import free_endpoint
    from vidinfer.publish import Subscriber

    endpoint = free_endpoint()
    toml = shapes_pipeline(tmp_path / "full.toml", models, endpoint,
                           {"a": {"url": str(CLIPS / "shapes_a.mp4")}, "b": {"url": str(CLIPS / "shapes_b.mp4")}},
                           extra=f'[[sinks]]\ntype = "file"\npath = "{path}"\n')
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))) if limit_bytes else None
    with Subscriber(endpoint) as sub:
        done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "run", str(toml), "--report",
                               str(tmp_path / "report.json")], capture_output=True, text=True, timeout=120,
                              preexec_fn=limit)
        messages = list(sub.iter(timeout=1))
    return done, messages


def test_a_disk_that_fills_mid_run_degrades_the_file_sink_and_every_stream_still_ends(models, tmp_path):
    import json

    done, messages = _run_with_file_sink(tmp_path, models, tmp_path / "results.msgpack", limit_bytes=24_000)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "sink 'file' failed: OSError: [Errno 27] File too large; the other sinks and the streams go on (its later " \
           "failures are counted in the run report)" in done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sinks"]["file"]["errors"] > 0 and report["sinks"]["zmq"]["errors"] == 0
    assert 0 < (tmp_path / "results.msgpack").stat().st_size <= 24_000
    for sid in ("a", "b"):
        on_det = [m for m in messages if m.topic == f"det.{sid}." and not m.replay]
        assert [m.kind for m in on_det] == ["detections"] * 100 + ["end_of_stream"], sid
        states = [m.body for m in messages if m.topic == f"status.{sid}." and not m.replay]
        assert [b["state"] for b in states] == ["connected", "degraded", "ended"], sid
        assert states[1]["reason"] == ("sink 'file' failed: OSError: [Errno 27] File too large; its results may be "
                                       "missing from now on")


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
def test_a_file_sink_on_a_full_disk_is_refused_before_anything_starts(models, tmp_path):
    done, _ = _run_with_file_sink(tmp_path, models, "/dev/full")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"vidinfer: error: {tmp_path / 'full.toml'}: sink 'file' cannot write its first "
                                   "messages (No space left on device); free some space or give it another location")


# ------------------------------------------------------------------------- composition errors

@pytest.mark.parametrize("stages, message", [
    (lambda m: [vi.Classify(name="shade", model=m / "shade.onnx", labels=SHADE_LABELS, layer="cars")],
     "stage 'shade' reads layer 'cars', which no stage before it makes (layers made before it: none); fix the name "
     "or put the stage that makes it first"),
    (lambda m: [detect(m), vi.Classify(name="shade", model=m / "shade.onnx", labels=SHADE_LABELS,
                                       operate_on_classes=["red", "purple"])],
     "stage 'shade': operate_on_classes names ['purple'], which layer 'objects' does not have (its classes: ['red', "
     "'green', 'blue'])"),
    (lambda m: [detect(m), detect(m, name="second")],
     "stage 'second' makes layer 'objects', which stage 'detect:objects' already makes; give one of them another "
     "layer name"),
    (lambda m: [detect(m, name="x"), vi.Track(name="x")], "stage name 'x' is used twice; give every stage its own name"),
    (lambda m: [vi.Track(), detect(m)],
     "stage 'track:objects' reads layer 'objects', which no stage before it makes (layers made before it: none); fix "
     "the name or put the stage that makes it first"),
])
def test_composition_errors_are_one_sentence_before_anything_starts(models, stages, message):
    with pytest.raises(vi.ConfigError) as err:
        vi.Pipeline(streams(a="shapes_a"), stages(models), [])
    assert str(err.value) == message


def test_half_a_stage_is_refused_with_what_it_lacks(models):
    class NoEnd:
        def open(self, ctx):
            pass

        def __call__(self, batch):
            pass

        def __repr__(self):
            return "NoEnd()"

    with pytest.raises(vi.ConfigError) as err:
        vi.Pipeline(streams(a="shapes_a"), [detect(models), NoEnd()], [])
    assert str(err.value) == ("NoEnd() is not a stage: it lacks on_stream_end, close; a stage has open(ctx), "
                              "__call__(batch), on_stream_end(stream_id) and close(), or is a function of the batch")


def test_brand_exposure_without_logo_or_text_layer_names_the_layers_there_are(models):
    with pytest.raises(vi.ConfigError) as err:
        vi.Pipeline(streams(a="shapes_a"), [detect(models), vi.BrandExposure(brands=[{"name": "RED CO"}],
                                                                              report_dir=None)], [])
    assert str(err.value) == ("stage 'brand_exposure' finds no layer 'logo' or 'text' to read brands from (layers made "
                              "before it: 'objects'); name them with logos = \"...\" and/or text = \"...\"")


def test_a_stage_message_of_a_reserved_kind_fails_the_stage_with_the_reason(models, caplog):
    @vi.stage(pixels="none")
    def impostor(batch, ctx):
        ctx.emit("status", batch.frames[0].stream_id, {"state": "ended"})

    with caplog.at_level(logging.ERROR, logger="vidinfer.pipeline"):
        report = vi.Pipeline(streams(a="shapes_a"), [detect(models), impostor], []).run()
    assert report.stages["impostor"].failures == 100
    assert "ValueError: message kind 'status' is the pipeline's own; give your stage's messages another kind" in \
        caplog.records[0].getMessage()


def test_options_of_a_function_stage_are_validated_in_python(models):
    from pydantic import BaseModel

    class Opts(BaseModel):
        threshold: float

    @vi.stage(options=Opts)
    def thresholded(batch, ctx):
        pass

    with pytest.raises(vi.ConfigError) as err:
        thresholded.with_options(threshold="high")
    assert str(err.value) == ("stage 'thresholded': key 'threshold': input should be a valid number, unable to parse "
                              "string as a number")
    with pytest.raises(vi.ConfigError) as err:
        vi.Pipeline(streams(a="shapes_a"), [detect(models), thresholded], [])
    assert str(err.value) == "stage 'thresholded' needs options: key 'threshold': field required"


# ----------------------------------------------------------------------------- python in TOML

def _file(models, stage):
    return {"streams": [{"id": "a", "url": str(CLIPS / "shapes_a.mp4")}],
            "stages": [{"type": "detect", "model": str(models / "detector.onnx"), "classes": SHAPE_CLASSES,
                        "conf_threshold": 0.5}, stage]}


def test_a_python_stage_in_toml_gets_its_own_keys_validated_by_its_model(models, tmp_path):
    (tmp_path / "my_stages.py").write_text(
        "import vidinfer as vi\nfrom pydantic import BaseModel\n\n"
        "class Opts(BaseModel):\n    minimum: int = 1\n\n"
        "@vi.stage(pixels='none', options=Opts)\n"
        "def busy(batch, ctx):\n"
        "    for f, det in zip(batch.frames, batch['objects']):\n"
        "        if len(det) >= ctx.options.minimum:\n"
        "            ctx.state[f.frame_no] = len(det)\n")
    config = parse_pipeline(_file(models, {"type": "python", "function": "my_stages:busy", "minimum": 3}),
                            "p.toml", tmp_path)
    pipe = config.build()
    pipe.run()
    gt = load_gt("shapes_a")
    assert pipe.stage("busy")._ctx.state == {k: len(v) for k, v in gt.items() if len(v) >= 3}
    with pytest.raises(vi.ConfigError) as err:
        parse_pipeline(_file(models, {"type": "python", "function": "my_stages:busy", "minimun": 3}), "p.toml", tmp_path)
    assert str(err.value) == "p.toml: unknown key 'stages[1].minimun' (did you mean 'minimum'?); allowed keys here: minimum"
    with pytest.raises(vi.ConfigError) as err:
        parse_pipeline(_file(models, {"type": "python", "function": "my_stages:busy", "minimum": "many"}), "p.toml",
                       tmp_path)
    assert str(err.value) == ("p.toml: key 'stages[1].minimum': input should be a valid integer, unable to parse string "
                              "as an integer, got 'many'")


@pytest.mark.parametrize("stage, message", [
    ({"type": "python"}, "p.toml: key 'stages[1].function' is required: the 'package.module:name' of your stage"),
    ({"type": "python", "function": "no_such_module:f"},
     "p.toml: key 'stages[1].function': cannot import 'no_such_module' (ModuleNotFoundError: No module named "
     "'no_such_module'); make it importable (the pipeline file's folder is searched first) or fix the name"),
    ({"type": "python", "function": "json:nothing_here"},
     "p.toml: key 'stages[1].function': module 'json' has no 'nothing_here'; fix the name"),
    ({"type": "python", "function": "json.dumps"},
     "p.toml: key 'stages[1].function': 'json.dumps' is not of the form 'package.module:name'; name the module and "
     "the object in it"),
    ({"type": "python", "function": "json:dumps", "indent": 2},
     "p.toml: key 'stages[1].indent': json:dumps takes no options; declare them with @vidinfer.stage(options=YourModel) "
     "or remove the key"),
    ({"type": "detec"}, "p.toml: key 'stages[1].type': unknown stage type 'detec' (did you mean 'detect'?); types: "
                        "brand_exposure, classify, detect, python, read_text, track"),
])
def test_python_and_type_errors_name_the_key(models, tmp_path, stage, message):
    with pytest.raises(vi.ConfigError) as err:
        parse_pipeline(_file(models, stage), "p.toml", tmp_path)
    assert str(err.value) == message
