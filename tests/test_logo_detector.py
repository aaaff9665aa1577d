"""The committed brand logo detector (models/logos/): ONNX layout, metadata, size, its mAP@0.5 on
small held-out generated sets (generated backgrounds; held-out real photographs), and its false
appearances on real footage with no brands, run through ONNX Runtime, vidinfer's letterbox, the
generic YoloAdapter (layout "auto") and vidinfer's tracker."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from vidinfer.analytics.brand_stage import BrandExposure
from vidinfer.models.yolo import YoloLayout
from vidinfer.testing.brands import BRAND_NAMES
from vidinfer.testing.logo_data import HELDOUT_SEED, make_dataset

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "logos" / "detector.onnx"
sys.path.insert(0, str(ROOT / "tools"))
import eval_logo_detector as ev  # noqa: E402

#: The first model measured 0.991 on this set; the retrained one passes too (models/logos/README.md); the bound
#: leaves a small margin for onnxruntime / Pillow version differences.
MIN_MAP50 = 0.95
#: The target on held-out real photographs (300 images of seed HELDOUT_SEED: 0.961).
MIN_MAP50_REAL = 0.9
#: The target: false appearances per minute of real footage with no brands (the committed model: 0.66 at 5 frames/s
#: on the 3 min, confirmed at brand_exposure's logo_confirm_score).
MAX_FALSE_PER_MIN = 0.5
#: The pipeline's score threshold (pipelines/brand_impact.toml, conf_threshold).
PIPELINE_CONF = 0.5


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


def test_map50_on_heldout_real_backgrounds():
    # Marks and hard negatives on the held-out photographs (never trained on) and generated scenes.
    sess, adapter, hw = ev.load_model(MODEL, conf=0.01)
    data = make_dataset(48, seed=HELDOUT_SEED + 1, size=hw[0], backgrounds="heldout")
    assert sum(map(len, data["boxes"])) > 100
    dets = ev.detect(sess, adapter, hw, list(data["images"]))
    m, aps = ev.mean_ap(dets, data["boxes"], data["classes"], len(BRAND_NAMES))
    assert m >= MIN_MAP50_REAL, (m, aps)


@pytest.mark.xfail(strict=True, reason="the committed model misses the target: 0.66 false appearances a minute "
                   "(confirmed at 0.6), ORBIS on teal-lit office windows (cityCC0); see models/logos/README.md")
def test_false_appearances_on_real_no_brand_footage():
    # The 3 minutes of held-out real footage without brands of the model card (the city video, pans /
    # zooms over the held-out photos), analysed at the pipeline's 5 frames/s, score threshold, tracker
    # and confirming score: python tools/eval_logo_detector.py --footage prints the same figure.
    clips = ev.no_brand_footage()
    dets = ev.footage_detections(clips, MODEL, conf=PIPELINE_CONF, every=ev.FOOTAGE_FPS // ev.ANALYSIS_FPS)
    counts, minutes = ev.false_appearances(dets, len(BRAND_NAMES), PIPELINE_CONF, fps=ev.ANALYSIS_FPS,
                                           confirm_score=BrandExposure.model_fields["logo_confirm_score"].default)
    assert minutes > 3.0
    assert counts.sum() / minutes <= MAX_FALSE_PER_MIN, dict(zip(BRAND_NAMES, counts.tolist()))


def test_false_appearances_counts_tracks_seen_twice():
    # The counting itself: a box in 3 analysed frames is one appearance, a one-frame flash none, and a
    # class below its own threshold none.
    def D(rows):
        a = np.array(rows, np.float32).reshape(-1, 6)
        return ev.Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))

    box = [100, 100, 160, 160]
    clip = [D([box + [0.9, 0]]), D([box + [0.9, 0], [500, 300, 540, 340, 0.9, 1]]), D([box + [0.9, 0]]),
            D([[800, 100, 850, 150, 0.6, 2]]), D([[800, 100, 850, 150, 0.6, 2]]), D([])]
    counts, minutes = ev.false_appearances([clip], 3, [0.5, 0.5, 0.7], fps=5)
    assert counts.tolist() == [1, 0, 0]
    assert minutes == pytest.approx(6 / 5 / 60)
    counts, _ = ev.false_appearances([clip], 3, 0.5, fps=5)
    assert counts.tolist() == [1, 0, 1]
    # A track never seen at the confirming score is none; one confirmed counts from 2 s before.
    counts, _ = ev.false_appearances([clip], 3, 0.5, fps=5, confirm_score=0.7)
    assert counts.tolist() == [1, 0, 0]
    late = [D([box + [0.55, 0]])] * 12 + [D([box + [0.9, 0]])]  # confirmed at 2.4 s: 0.4-2.4 s counts
    counts, _ = ev.false_appearances([late], 3, 0.5, fps=5, confirm_score=0.7, min_track_frames=12)
    assert counts.tolist() == [0, 0, 0]
    counts, _ = ev.false_appearances([late], 3, 0.5, fps=5, confirm_score=0.7, min_track_frames=11)
    assert counts.tolist() == [1, 0, 0]


def test_voc_ap_reference():
    # one class, 2 GT; detections: TP (0.9), FP (0.8), TP (0.7) -> AP = 0.5*1 + 0.5*(2/3)
    class D:
        def __init__(self, b, s, c):
            self.xyxy, self.score, self.class_id = np.array(b, float), np.array(s), np.array(c)

    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    d = [D([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [0, 0, 0])]
    m, aps = ev.mean_ap(d, gt, [np.array([0, 0])], 1)
    assert m == pytest.approx(0.5 + 0.5 * 2 / 3)
