"""OnnxRuntimeEngine: any batch size on dynamic models, padding and chunking on fixed-batch ones,
and a one-sentence refusal at load time for every model vidinfer cannot feed."""

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vidinfer.engines import OnnxRuntimeEngine
from vidinfer.errors import ModelError
from vidinfer.testing.shape_models import build_shape_detector

H, W = 64, 96  # small detector input: fast, still a real detector of the squares drawn below
SQUARE = 20


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine-models")
    return {"dynamic": build_shape_detector(d / "dynamic.onnx", input_size=(H, W)),
            "fixed4": build_shape_detector(d / "fixed4.onnx", input_size=(H, W), batch=4)}


def _images(n):
    """n different images: one red or blue square per image, each further right than the last."""
    x = np.full((n, 3, H, W), 0.45, np.float32)
    for i in range(n):
        colour = [0.9, 0.1, 0.1] if i % 2 == 0 else [0.1, 0.1, 0.9]
        x0 = 8 + 6 * i
        x[i, :, 20:20 + SQUARE, x0:x0 + SQUARE] = np.asarray(colour, np.float32)[:, None, None]
    return x


def _best_box(out_row):
    """(class, cx, cy, w, h) of the highest-scoring anchor of one image's YOLOv8 output."""
    scores = out_row[4:]
    anchor = int(np.argmax(scores.max(0)))
    return int(np.argmax(scores[:, anchor])), *(float(v) for v in out_row[:4, anchor])


def _identity_model(path, shape, elem_type=TensorProto.FLOAT, n_inputs=1):
    inputs = [helper.make_tensor_value_info(f"x{i}", elem_type, shape) for i in range(n_inputs)]
    graph = helper.make_graph([helper.make_node("Identity", ["x0"], ["y"])], "g", inputs,
                              [helper.make_tensor_value_info("y", elem_type, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_dynamic_batch_model_runs_any_batch_size_and_finds_each_images_square(detectors):
    with OnnxRuntimeEngine(detectors["dynamic"]) as engine:
        assert engine.input.batch is None
        assert (engine.input.height, engine.input.width) == (H, W)
        for n in (1, 2, 5, 9):
            x = _images(n)
            out = engine.run(x)["output0"]
            assert out.shape == (n, 7, (H // 8) * (W // 8))
            for i in range(n):
                cls, cx, cy, w, h = _best_box(out[i])
                assert cls == (0 if i % 2 == 0 else 2)  # red / blue
                assert (cx, cy, w, h) == pytest.approx((8 + 6 * i + SQUARE / 2, 30, SQUARE, SQUARE), abs=0.5)


@pytest.mark.parametrize("n", [1, 3, 4, 6])
def test_fixed_batch_model_pads_and_chunks_to_the_same_outputs_as_the_dynamic_model(detectors, n):
    x = _images(n)
    with OnnxRuntimeEngine(detectors["dynamic"]) as dynamic:
        # Reference: every image on its own, so nothing of the batching can leak into it.
        reference = np.concatenate([dynamic.run(x[i:i + 1])["output0"] for i in range(n)])
    with OnnxRuntimeEngine(detectors["fixed4"]) as fixed:
        assert fixed.input.batch == 4
        assert fixed.input.padded_size(n) == 4 * -(-n // 4)
        out = fixed.run(x)
    assert list(out) == ["output0"]
    assert out["output0"].shape == (n, 7, (H // 8) * (W // 8))  # padding rows are cut off
    np.testing.assert_allclose(out["output0"], reference, rtol=1e-6, atol=1e-5)


def test_input_size_is_width_then_height(detectors):
    with OnnxRuntimeEngine(detectors["dynamic"], input_size=(W, H)) as engine:  # agrees: accepted
        assert (engine.input.width, engine.input.height) == (W, H)
    with pytest.raises(ModelError) as err:
        OnnxRuntimeEngine(detectors["dynamic"], input_size=(H, W), role="detector model")
    assert str(err.value) == (
        "detector model 'dynamic.onnx' input 'images' is 96x64 (shape ['batch', 3, 64, 96]) but the "
        "configuration says input_size = [64, 96]; make them agree")


def test_missing_model_file_is_refused(tmp_path):
    path = tmp_path / "nothere.onnx"
    with pytest.raises(ModelError) as err:
        OnnxRuntimeEngine(path, role="detector model")
    assert str(err.value) == f"detector model file '{path}' does not exist; check the model path"


def test_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\x01this is not a protobuf\xff\xfe" * 20)
    with pytest.raises(ModelError) as err:
        OnnxRuntimeEngine(path)
    msg = str(err.value)
    # The part in parentheses is ONNX Runtime's own first line, which differs between releases.
    assert re.fullmatch(re.escape(f"model file '{path}' is not a loadable ONNX model (") + r"[^\n]+"
                        + re.escape("); export the model to ONNX and point to the .onnx file"), msg), msg


REFUSALS = [
    ("two_inputs", dict(shape=["N", 3, 8, 8], n_inputs=2), (8, 8),
     "model 'two_inputs.onnx' has 2 inputs ('x0', 'x1'); vidinfer expects exactly one image input of "
     "shape [N, 3, H, W]"),
    ("rank3", dict(shape=[3, 8, 8]), (8, 8),
     "model 'rank3.onnx' input 'x0' has rank 3 (shape [3, 8, 8]); vidinfer expects a 4-D image batch "
     "[N, 3, H, W]"),
    ("int32", dict(shape=["N", 3, 8, 8], elem_type=TensorProto.INT32), (8, 8),
     "model 'int32.onnx' input 'x0' has type tensor(int32); vidinfer expects tensor(float) or tensor(float16)"),
    ("uint8", dict(shape=["N", 3, 8, 8], elem_type=TensorProto.UINT8), (8, 8),
     "model 'uint8.onnx' input 'x0' has type tensor(uint8); vidinfer expects tensor(float) or tensor(float16)"),
    ("gray", dict(shape=["N", 1, 8, 8]), (8, 8),
     "model 'gray.onnx' input 'x0' has 1 channel (shape ['N', 1, 8, 8]); vidinfer expects 3 (RGB) in "
     "NCHW order"),
    ("fixed_size", dict(shape=["N", 3, 8, 16]), (8, 8),
     "model 'fixed_size.onnx' input 'x0' is 16x8 (shape ['N', 3, 8, 16]) but the configuration says "
     "input_size = [8, 8]; make them agree"),
    ("dynamic_size", dict(shape=["N", 3, "H", "W"]), None,
     "model 'dynamic_size.onnx' input 'x0' has dynamic spatial size (shape ['N', 3, 'H', 'W']); set "
     "input_size = [width, height] in the configuration"),
]


@pytest.mark.parametrize("name, kwargs, input_size, expected", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_model_that_does_not_fit_is_refused_at_load(tmp_path, name, kwargs, input_size, expected):
    path = _identity_model(tmp_path / f"{name}.onnx", **kwargs)
    with pytest.raises(ModelError) as err:
        OnnxRuntimeEngine(path, input_size=input_size)
    assert str(err.value) == expected


def test_dynamic_spatial_model_takes_its_size_from_input_size(tmp_path):
    path = _identity_model(tmp_path / "dynamic_size.onnx", ["N", 3, "H", "W"])
    with OnnxRuntimeEngine(path, input_size=(16, 8)) as engine:
        assert (engine.input.batch, engine.input.channels, engine.input.height, engine.input.width) == \
            (None, 3, 8, 16)
        x = np.arange(2 * 3 * 8 * 16, dtype=np.float32).reshape(2, 3, 8, 16)
        np.testing.assert_array_equal(engine.run(x)["y"], x)
