"""The committed brand logo detector (models/logos/): ONNX layout, metadata, size, and its
mAP@0.5 on a small held-out generated set, run through ONNX Runtime, vidinfer's letterbox and
the generic YoloAdapter (layout "auto")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from vidinfer.models.yolo import YoloLayout
from vidinfer.testing.brands import BRAND_NAMES
from vidinfer.testing.logo_data import HELDOUT_SEED, make_dataset

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "logos" / "detector.onnx"
sys.path.insert(0, str(ROOT / "tools"))
import eval_logo_detector as ev  # noqa: E402

#: Measured 0.991 on this set when the model was committed (see models/logos/README.md); the bound
#: leaves a small margin for onnxruntime / Pillow version differences.
MIN_MAP50 = 0.95


def test_files_and_metadata():
    assert MODEL.stat().st_size < 10 * 1024 * 1024
    labels = (MODEL.parent / "labels.txt").read_text().split()
    assert (MODEL.parent / "labels.txt").read_text().splitlines() == list(BRAND_NAMES)
    assert labels
    m = onnx.load(str(MODEL))
    meta = {p.key: p.value for p in m.metadata_props}
    assert ast.literal_eval(meta["names"]) == dict(enumerate(BRAND_NAMES))
    assert m.opset_import[0].version == 17
    (inp,) = m.graph.input
    assert inp.name == "images"
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 640, 640]
    out = m.graph.output[0]
    odims = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
    assert isinstance(odims[0], str) and odims[1:] == [4 + len(BRAND_NAMES), (640 // 8) ** 2]


def test_output_layout_and_adapter():
    sess, adapter, hw = ev.load_model(MODEL)
    assert adapter.layout is YoloLayout.YOLOV8  # inferred by "auto"
    x = np.random.default_rng(0).random((2, 3, *hw), dtype=np.float32)
    (y,) = sess.run(None, {"images": x})
    assert y.shape == (2, 4 + len(BRAND_NAMES), 6400) and y.dtype == np.float32
    scores = y[:, 4:]
    assert scores.min() >= 0 and scores.max() <= 1
    assert (y[:, 2:4] > 0).all()


def test_map50_on_heldout_generated_images():
    sess, adapter, hw = ev.load_model(MODEL, conf=0.01)
    data = make_dataset(48, seed=HELDOUT_SEED + 1, size=hw[0])
    dets = ev.detect(sess, adapter, hw, list(data["images"]))
    m, aps = ev.mean_ap(dets, data["boxes"], data["classes"], len(BRAND_NAMES))
    assert m >= MIN_MAP50, (m, aps)


def test_voc_ap_reference():
    # one class, 2 GT; detections: TP (0.9), FP (0.8), TP (0.7) -> AP = 0.5*1 + 0.5*(2/3)
    class D:
        def __init__(self, b, s, c):
            self.xyxy, self.score, self.class_id = np.array(b, float), np.array(s), np.array(c)

    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    d = [D([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [0, 0, 0])]
    m, aps = ev.mean_ap(d, gt, [np.array([0, 0])], 1)
    assert m == pytest.approx(0.5 + 0.5 * 2 / 3)
