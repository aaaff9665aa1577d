"""Model input conventions (`input_scale`, `channel_order`) and the check of a forced `layout`
against what the model really outputs, on shape-detector exports made to take 0-255 BGR input or to
write YOLOX's raw output, against the sample clip's ground truth."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from gpu_fakes import install_fake_gpu, kernel_emulator
from ground_truth import CLIPS, assert_matches_gt, load_gt
from onnx import TensorProto, helper, numpy_helper

import vidinfer as vi
from vidinfer.config import parse_pipeline
from vidinfer.errors import ConfigError, ModelError
from vidinfer.models.yolo import YoloAdapter, yolox_grid
from vidinfer.preprocess import gpu
from vidinfer.preprocess.crops import yuv_to_rgb_matrix
from vidinfer.preprocess.letterbox import PAD_VALUE, InputConvention, Letterbox, fill_batch_slot
from vidinfer.preprocess.reference import letterbox_nv12_reference, nv12_from_rgb, nv12_to_yuv420
from vidinfer.testing.shape_models import SHAPE_CLASSES, build_shape_detector

CLIP = "shapes_a"
CONVENTIONS = [InputConvention(scale, order) for scale in ("0-1", "0-255") for order in ("rgb", "bgr")]


# --- models -----------------------------------------------------------------------------------

def _const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _save(model: onnx.ModelProto, path) -> str:
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return str(path)


def _bgr255_detector(path, tmp_path) -> str:
    """The shape detector behind an input that takes BGR planes of 0..255 values (as OpenCV-fed
    exports do): it reorders and divides them before the original graph."""
    model = onnx.load(build_shape_detector(tmp_path / "rgb01.onnx"))
    g = model.graph
    old = g.input[0]
    new = helper.make_tensor_value_info("bgr255", TensorProto.FLOAT, [d.dim_param or d.dim_value
                                                                      for d in old.type.tensor_type.shape.dim])
    g.initializer.extend([_const("bgr_to_rgb", [2, 1, 0], np.int64), _const("inv255", 1 / 255)])
    nodes = [helper.make_node("Gather", ["bgr255", "bgr_to_rgb"], ["rgb255"], axis=1),
             helper.make_node("Mul", ["rgb255", "inv255"], [old.name])]
    for node in reversed(nodes):
        g.node.insert(0, node)
    g.input.remove(old)
    g.input.append(new)
    return _save(model, path)


def _yolox_detector(path, tmp_path) -> str:
    """The shape detector (YOLOv5 layout, one stride-8 grid at 640x640) rewritten into YOLOX's raw
    export: x, y in cells from the anchor's cell, log w, log h in strides, then the stride 16 and
    32 grids appended with zero scores: [N, 8400, 8]."""
    model = onnx.load(build_shape_detector(tmp_path / "v5.onnx", layout="yolov5"))
    g = model.graph
    for node in g.node:
        node.output[:] = ["v5" if o == "output0" else o for o in node.output]
    cells = yolox_grid(640, 640)[:6400, :2][None]  # the stride-8 grid, in the detector's anchor order
    g.initializer.extend([_const("cells", cells), _const("eight", 8.0), _const("pads", [0, 0, 0, 0, 2000, 0], np.int64),
                          *(_const(f"s{i}", [i], np.int64) for i in (0, 2, 4, 99)), _const("ax2", [2], np.int64)])
    g.node.extend([
        helper.make_node("Slice", ["v5", "s0", "s2", "ax2"], ["cxcy"]),
        helper.make_node("Slice", ["v5", "s2", "s4", "ax2"], ["wh"]),
        helper.make_node("Slice", ["v5", "s4", "s99", "ax2"], ["scores"]),
        helper.make_node("Div", ["cxcy", "eight"], ["cxcy8"]),
        helper.make_node("Sub", ["cxcy8", "cells"], ["xy"]),
        helper.make_node("Div", ["wh", "eight"], ["wh8"]),
        helper.make_node("Log", ["wh8"], ["logwh"]),  # sides are >= 1 px (sqrt(12 var + 1))
        helper.make_node("Concat", ["xy", "logwh", "scores"], ["stride8"], axis=2),
        helper.make_node("Pad", ["stride8", "pads"], ["output0"]),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 8400, 8]))
    return _save(model, path)


@pytest.fixture(scope="module")
def bgr255(tmp_path_factory):
    d = tmp_path_factory.mktemp("bgr255")
    return _bgr255_detector(d / "bgr255.onnx", d)


@pytest.fixture(scope="module")
def yolox(tmp_path_factory):
    d = tmp_path_factory.mktemp("yolox")
    return _yolox_detector(d / "yolox.onnx", d)


def _run(model, pipeline=None, **detect) -> dict[int, vi.Detections]:
    """The detections of every keyframe of the clip, one frame per batch (so that the first
    batches are several)."""
    seen: dict[int, vi.Detections] = {}
    sink = vi.CallbackSink(on_frame=lambda f, layers: seen.__setitem__(f.frame_no, layers["objects"]))
    pipe = vi.Pipeline([vi.StreamSpec(id="a", url=str(CLIPS / f"{CLIP}.mp4"), keyframes_only=True)],
                       [vi.Detect(model=model, classes=SHAPE_CLASSES, conf_threshold=0.5, iou_threshold=0.5,
                                  **detect)], [sink], max_batch_size=1, **(pipeline or {}))
    report = pipe.run()
    assert report.exit_code == 0 and report.device == (pipeline or {}).get("device", "cpu")
    assert len(seen) == 4  # keyframes 0, 25, 50, 75
    return seen


# --- input_scale, channel_order ------------------------------------------------------------------

def test_a_0_255_bgr_model_finds_the_ground_truth_boxes_when_configured_so(bgr255):
    gt = load_gt(CLIP)
    for frame_no, det in _run(bgr255, input_scale="0-255", channel_order="bgr").items():
        assert_matches_gt(det.xyxy, det.class_id, gt[frame_no], where=f"frame {frame_no}")


def test_a_0_255_bgr_model_fed_the_default_0_1_rgb_finds_nothing(bgr255):
    assert sum(len(d) for d in _run(bgr255).values()) == 0  # every value under 1/255: no colour mask


def test_a_bgr_model_fed_rgb_swaps_red_and_blue(bgr255):
    """Right range, wrong order: every box is found, but red objects come out blue and back."""
    gt = load_gt(CLIP)
    swapped = {0: 2, 1: 1, 2: 0}
    for frame_no, det in _run(bgr255, input_scale="0-255").items():
        truth = [dict(o, class_id=swapped[o["class_id"]]) for o in gt[frame_no]]
        assert_matches_gt(det.xyxy, det.class_id, truth, where=f"frame {frame_no}")
        assert any(o["class_id"] != 1 for o in truth)  # the frame shows a red or a blue object


def test_fill_batch_slot_writes_the_models_range_and_channel_order():
    box = Letterbox.fit(4, 2, 4, 4)  # one pad row above and below
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    batch = np.zeros((1, 3, 4, 4), np.float32)
    fill_batch_slot(batch, 0, image, box, InputConvention("0-255", "bgr"))
    assert np.array_equal(batch[0, :, 1:3], image.transpose(2, 0, 1)[::-1].astype(np.float32))
    assert np.all(batch[0, :, 0] == PAD_VALUE) and np.all(batch[0, :, 3] == PAD_VALUE)


def _stage_error(key: str, value) -> str:
    stage = {"type": "detect", "model": "m.onnx", "classes": ["red", "green", "blue"], key: value}
    with pytest.raises(ConfigError) as err:
        parse_pipeline({"streams": [{"id": "a", "url": str(CLIPS / f"{CLIP}.mp4")}], "stages": [stage]}, "x.toml")
    return str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("input_scale", 255, "x.toml: key 'stages[0].input_scale': must be \"0-1\" (the model takes pixel / 255) or "
                          "\"0-255\" (pixel values as they are), got 255"),
    ("input_scale", "0..255", "x.toml: key 'stages[0].input_scale': must be \"0-1\" (the model takes pixel / 255) "
                               "or \"0-255\" (pixel values as they are), got '0..255'"),
    ("channel_order", "BGR", "x.toml: key 'stages[0].channel_order': must be \"rgb\" or \"bgr\" (the order of the "
                              "model's colour planes), got 'BGR'"),
    ("layout", "yolov7", "x.toml: key 'stages[0].layout': input should be 'auto', 'yolov5', 'yolov8', 'end2end' or "
                          "'yolox', got 'yolov7'"),
])
def test_invalid_conventions_are_one_sentence_naming_the_key_and_the_choices(key, value, message):
    assert _stage_error(key, value) == message


# --- the GPU kernel's parameters ----------------------------------------------------------------

def _scene(h: int, w: int) -> np.ndarray:
    """Smooth gradients in three different colours, so that a swapped plane shows."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 37 + c) * np.cos(yy / 23 - 2 * c) for c in range(3)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: f"{c.scale}-{c.channel_order}")
def test_kernel_reference_equals_the_cpu_path_in_each_convention(convention):
    """Same NV12 planes: the letterbox kernel's NumPy reference against the CPU pipeline's swscale
    resize and fill_batch_slot. At an exact 2x downscale they differ only by the CPU path's uint8
    rounding (<= 0.51 pixel levels, as in tests/test_gpu_kernels.py), in whatever units the model takes."""
    import av

    from vidinfer.sources.pyav import INTERPOLATION

    y, uv = nv12_from_rgb(_scene(360, 640), "bt601", False)
    box = Letterbox.fit(640, 360, 320, 320)
    frame = av.VideoFrame(640, 360, "yuv420p")
    for plane, arr in zip(frame.planes, nv12_to_yuv420(y, uv)):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :arr.shape[1]] = arr
    rgb = frame.reformat(width=box.new_w, height=box.new_h, format="rgb24", interpolation=INTERPOLATION).to_ndarray()
    cpu = np.zeros((1, 3, 320, 320), np.float32)
    fill_batch_slot(cpu, 0, rgb, box, convention)
    ref = letterbox_nv12_reference(y, uv, box, *yuv_to_rgb_matrix("bt601", False), convention=convention)
    level = 1 / convention.divisor  # one pixel level in the model's units
    assert np.abs(ref - cpu[0]).max() < 0.6 * level
    assert ref[:, 0, 0].tolist() == [np.float32(PAD_VALUE / convention.divisor)] * 3  # padding
    plain = letterbox_nv12_reference(y, uv, box, *yuv_to_rgb_matrix("bt601", False))
    order = [2, 1, 0] if convention.bgr else [0, 1, 2]
    np.testing.assert_allclose(ref, plain[order] * (255 * level), rtol=1e-6)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return kernel_emulator(tmp_path_factory.mktemp("kernel_emulation"))


@pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: f"{c.scale}-{c.channel_order}")
def test_letterbox_kernel_source_follows_the_convention_it_is_given(emulator, convention):
    """The .cu kernel run on the CPU with the launcher's arguments equals the reference bit for bit."""
    y, uv = nv12_from_rgb(_scene(61, 97), "bt709", False)
    box = Letterbox.fit(97, 61, 64, 48)
    m, off = yuv_to_rgb_matrix("bt709", False)
    for dtype in (np.float32, np.float16):
        batch = np.full((2, 3, 48, 64), np.nan, dtype)
        emulator(*gpu.letterbox_nv12_args(batch, 1, y, uv, box, m, off, convention=convention))
        ref = letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype, convention=convention)
        np.testing.assert_array_equal(batch[1], ref)
        assert np.isnan(batch[0]).all()


def test_gpu_backend_with_fake_cuda_modules_gives_a_0_255_bgr_model_the_ground_truth(bgr255, emulator, monkeypatch,
                                                                                    tmp_path):
    """The GPU backend's letterbox kernel (run from its .cu source on the CPU by the fakes) gets
    the convention as its parameters: the same boxes as on the CPU."""
    fakes = install_fake_gpu(monkeypatch, emulator)
    gt = load_gt(CLIP)
    seen = _run(bgr255, {"device": "gpu", "gpu": vi.GpuSpec(engine_cache_dir=tmp_path)}, input_scale="0-255",
                channel_order="bgr")
    assert fakes.cupy.launches["letterbox_nv12_f32"] == len(seen)
    for frame_no, det in seen.items():
        assert_matches_gt(det.xyxy, det.class_id, gt[frame_no], where=f"frame {frame_no}")


# --- layout against the output ---------------------------------------------------------------------

def test_a_yolox_model_decoded_as_yolox_finds_the_ground_truth(yolox):
    gt = load_gt(CLIP)
    for frame_no, det in _run(yolox, layout="yolox").items():
        assert_matches_gt(det.xyxy, det.class_id, gt[frame_no], where=f"frame {frame_no}")


def _layout_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vidinfer.models.yolo"]


def test_a_yolox_model_forced_to_yolov5_warns_once_naming_yolox(yolox, caplog):
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    _run(yolox, layout="yolov5")
    assert _layout_warnings(caplog) == [
        "stage 'detect:objects': detector model 'yolox.onnx' gives output [N, 8400, 8] but layout = \"yolov5\" "
        "decodes no plausible box; it looks like yolox: set layout = \"yolox\""]


def test_a_yolox_model_under_auto_warns_too(yolox, caplog):
    """Its shape is YOLOv5's, so "auto" decodes it as yolov5: the same silence, the same warning."""
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    _run(yolox)
    assert _layout_warnings(caplog) == [
        "stage 'detect:objects': detector model 'yolox.onnx' gives output [N, 8400, 8] but layout = \"auto\" "
        "(yolov5, from the output shape) decodes no plausible box; it looks like yolox: set layout = \"yolox\""]


def test_the_right_layout_gives_no_warning(models, caplog):
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    _run(models / "detector.onnx", layout="yolov8")
    assert _layout_warnings(caplog) == []


def test_a_layout_the_output_shape_cannot_have_is_refused_at_open_with_the_one_it_looks_like(models):
    with pytest.raises(ModelError) as err:
        vi.Pipeline([vi.StreamSpec(id="a", url=str(CLIPS / f"{CLIP}.mp4"))],
                    [vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, layout="yolov5")], [])
    assert str(err.value) == (
        "stage 'detect:objects': detector model 'detector.onnx' output has shape ['batch', 7, 6400] but layout "
        "'yolov5' with 3 classes expects [N, anchors, 8]; it looks like yolov8: set layout = \"auto\" or \"yolov8\"")


def test_a_yolox_layout_whose_grids_do_not_hold_the_anchors_is_refused():
    with pytest.raises(ModelError) as err:
        YoloAdapter(SHAPE_CLASSES, layout="yolox").bind({"o": ("batch", 6400, 8)}, "detector model 'v5.onnx'",
                                                        (640, 640))
    assert str(err.value) == ("detector model 'v5.onnx' output has shape ['batch', 6400, 8] but layout 'yolox' "
                              "expects 8400 anchors for its input (grids of strides 8, 16 and 32); check the layout "
                              "and input_size")


def _adapter(layout: str, shape=(1, 7, 50)) -> YoloAdapter:
    adapter = YoloAdapter(SHAPE_CLASSES, layout=layout, conf_threshold=0.25)
    adapter.bind({"o": shape}, "detector model 'x.onnx'", (640, 640))
    return adapter


@pytest.mark.parametrize("bad", ["nan", "negative", "padding", "score"])
def test_impossible_boxes_of_three_batches_warn(bad, caplog):
    """Boxes no detector means: non-finite, negative size, only in the letterbox padding, or a
    score over 1; yolov8 has no other layout of this shape, so no layout is named."""
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    box = Letterbox.fit(640, 360, 640, 640)  # 140 rows of padding above and below
    out = np.zeros((1, 7, 50), np.float32)
    out[0, :4, 0] = {"nan": [np.nan, 300, 20, 20], "negative": [300, 300, -20, 20],
                     "padding": [300, 60, 40, 40], "score": [300, 300, 20, 20]}[bad]
    out[0, 4, 0] = 3.0 if bad == "score" else 0.9
    adapter = _adapter("yolov8")
    for _ in range(3):
        adapter.decode({"o": out}, [box])
    adapter.decode({"o": out}, [box])  # once only
    assert _layout_warnings(caplog) == [
        "detector model 'x.onnx' gives output [1, 7, 50] but layout = \"yolov8\" decodes no plausible box; no other "
        "layout decodes one either: check the class list, input_scale and channel_order"]


def test_boxes_of_padded_batch_slots_are_not_judged(caplog):
    """A fixed-batch model runs 2 slots for 1 frame: the second slot's boxes belong to no frame."""
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    box = Letterbox.fit(640, 360, 640, 640)
    out = np.zeros((2, 7, 50), np.float32)
    out[1, :4, 0], out[1, 4, 0] = [300, 60, 40, 40], 0.9  # slot 1, in the padding: implausible
    adapter = _adapter("yolov8", (2, 7, 50))
    for _ in range(5):
        assert len(adapter.decode({"o": out}, [box])[0]) == 0
    assert _layout_warnings(caplog) == []


def test_a_plausible_box_ends_the_check_and_a_model_that_sees_nothing_is_not_judged(caplog):
    caplog.set_level(logging.WARNING, logger="vidinfer.models.yolo")
    box = Letterbox.fit(640, 360, 640, 640)
    empty = np.zeros((1, 7, 50), np.float32)
    bad = empty.copy()
    bad[0, :4, 0], bad[0, 4, 0] = [300, 60, 40, 40], 0.9  # in the padding
    good = bad.copy()
    good[0, :4, 1], good[0, 4, 1] = [300, 300, 40, 40], 0.9
    adapter = _adapter("yolov8")
    for out in [empty] * 5 + [bad, good] + [bad] * 5:
        adapter.decode({"o": out}, [box])
    assert _layout_warnings(caplog) == []
