"""`vidinfer quantize`: INT8 QDQ and FP16 copies that run on ONNX Runtime, measured against FP32."""

import json
import subprocess
import sys

import onnx
import pytest

from ground_truth import REPO

PIPELINE = REPO / "pipelines" / "brand_impact.toml"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    out = tmp_path_factory.mktemp("q")
    done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "quantize", str(PIPELINE), "--out", str(out),
                           "--frames", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def _model_stem():
    from vidinfer import Detect
    from vidinfer.config import load_pipeline

    return load_pipeline(PIPELINE).stage_of(Detect).model.stem


def test_int8_copy_has_explicit_qdq_nodes(quantized):
    out, _ = quantized
    model = onnx.load(str(out / f"{_model_stem()}.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    # Symmetric INT8 activations, as TensorRT's explicit quantisation expects.
    zero_points = [i for i in model.graph.initializer
                   if i.name.endswith("_zero_point") and not i.name.endswith("_quantized_zero_point")]  # not biases
    assert zero_points and all(onnx.numpy_helper.to_array(z).dtype.name == "int8" for z in zero_points)


def test_fp16_copy_keeps_float32_inputs_and_outputs(quantized):
    out, _ = quantized
    model = onnx.load(str(out / f"{_model_stem()}.fp16.onnx"))
    f32 = onnx.TensorProto.FLOAT
    assert all(t.type.tensor_type.elem_type == f32 for t in [*model.graph.input, *model.graph.output])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_report_measures_every_precision_against_fp32(quantized):
    out, stdout = quantized
    report = json.loads((out / f"{_model_stem()}.precision.json").read_text())
    rows = {r["precision"]: r for r in report["results"]}
    assert set(rows) == {"fp32", "fp16", "int8"}
    assert rows["fp32"]["map50_vs_fp32"] == 1.0 and rows["fp32"]["speedup_vs_fp32"] == 1.0
    assert all(r["ms_per_image"] > 0 for r in rows.values())
    # Accuracy kept: the logo detector's INT8 and FP16 copies find what FP32 finds.
    assert rows["int8"]["map50_vs_fp32"] >= 0.9 and rows["fp16"]["map50_vs_fp32"] >= 0.9, rows
    assert report["measured_frames"] > 0
    assert "mAP@0.5 vs FP32" in stdout
