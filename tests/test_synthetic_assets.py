"""Tests of the synthetic test assets: scene rendering, the committed sample
clips and their ground truth, and the hand-built ONNX models.

The detector checks decode real frames of the committed clips, letterbox them
exactly like the pipeline does and compare decoded boxes with ground truth.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from av.video.reformatter import Interpolation
from scipy.optimize import linear_sum_assignment

from vidinfer.testing.shape_models import (
    SHADE_LABELS,
    SHAPE_CLASSES,
    build_shade_classifier,
    build_shape_detector,
)
from vidinfer.testing.synthetic import (
    DETECTOR_STRIDE,
    check_ground_truth,
    coverage_1d,
    letterbox_params,
    load_ground_truth,
    make_scene,
    paint_rect,
    scene_limits,
)

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ROOT / "sample_streams"
CLIPS_640 = [STREAMS / f"shapes_{n}.mp4" for n in "abcd"]
CLIP_A = STREAMS / "shapes_a.mp4"
CLIP_1080 = STREAMS / "shapes_1080p.mp4"
INPUT_SIZE = (640, 640)  # (height, width)
# Area averaging for the downscale, plus swscale's exact-chroma path so the
# left-sited 4:2:0 chroma of H.264 is interpolated at the right position.
INTERP = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
MAX_ERR_SRC_PX = 2.0


# --- helpers -------------------------------------------------------------------


def letterbox(frame: av.VideoFrame, input_size=INPUT_SIZE):
    """The pipeline's letterbox: one swscale pass, paste on grey 114, CHW / 255."""
    scale, new_w, new_h, pad_x, pad_y = letterbox_params(frame.width, frame.height, input_size)
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation=INTERP)
    canvas = np.full((input_size[0], input_size[1], 3), 114, np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = rgb.to_ndarray()
    return canvas.transpose(2, 0, 1).astype(np.float32) / 255.0, (new_w, new_h, pad_x, pad_y)


def to_model_space(box, src_w, src_h, lb):
    new_w, new_h, pad_x, pad_y = lb
    x1, y1, x2, y2 = box
    sx, sy = new_w / src_w, new_h / src_h
    return np.array([x1 * sx + pad_x, y1 * sy + pad_y, x2 * sx + pad_x, y2 * sy + pad_y])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float = 0.5) -> list[int]:
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = np.array(order, dtype=int)
        if rest.size == 0:
            break
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        area_r = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
        iou = inter / (area_i + area_r - inter)
        order = [j for j, v in zip(rest, iou) if v < iou_thr]
    return keep


def decode_v8(out: np.ndarray, src_w: int, src_h: int, lb, conf_thr: float = 0.5):
    """YOLOv8 ``[4 + C, A]`` -> (xyxy boxes in source px, class ids, scores)."""
    new_w, new_h, pad_x, pad_y = lb
    scores = out[4:].T
    cls, conf = scores.argmax(1), scores.max(1)
    m = conf > conf_thr
    cx, cy, w, h = out[:4, m]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    cls, conf = cls[m], conf[m]
    keep = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        keep += [idx[k] for k in nms(boxes[idx], conf[idx])]
    boxes, cls, conf = boxes[keep], cls[keep], conf[keep]
    boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - pad_x) * (src_w / new_w), 0, src_w)
    boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - pad_y) * (src_h / new_h), 0, src_h)
    return boxes, cls, conf


def match(boxes, cls, objects):
    """One-to-one matching of detections to GT objects; returns per-GT max error."""
    gt = np.array([o["box"] for o in objects])
    cost = np.abs(boxes[:, None, :] - gt[None, :, :]).max(-1)
    rows, cols = linear_sum_assignment(cost)
    assert len(rows) == len(objects)
    for r, c in zip(rows, cols):
        assert cls[r] == objects[c]["class_id"], (objects[c], cls[r])
    return cost[rows, cols]


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def decoded_frames(clip: Path, every: int = 1):
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                yield i, frame


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with pixel-centre alignment (like cv2.INTER_LINEAR)."""
    in_h, in_w = img.shape[:2]

    def axis(n_out, n_in):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), pos - i0

    y0, y1, fy = axis(out_h, in_h)
    x0, x1, fx = axis(out_w, in_w)
    img = img.astype(np.float32)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> ort.InferenceSession:
    return session(build_shape_detector(tmp_path_factory.mktemp("m") / "det.onnx"))


# --- (a) rendering ----------------------------------------------------------------


def test_coverage_1d_is_overlap_length():
    cov = coverage_1d(2.25, 5.5, 0, 8)
    np.testing.assert_allclose(cov, [0, 0, 0.75, 1, 1, 0.5, 0, 0])


@pytest.mark.parametrize(
    "box", [(3.3, 7.6, 17.85, 12.1), (0.5, 0.5, 1.25, 9.0), (10.0, 2.0, 20.0, 4.0)]
)
def test_rendered_mass_equals_area(box):
    canvas = np.zeros((24, 32, 3), np.float64)
    paint_rect(canvas, box, (1.0, 1.0, 1.0))
    x1, y1, x2, y2 = box
    assert canvas[..., 0].sum() == pytest.approx((x2 - x1) * (y2 - y1), abs=1e-9)
    # Row profile = height x column coverage; its centroid sits at the box
    # centre up to the c(1 - c) / 2 terms of the two partial edge pixels.
    cols = canvas[..., 0].sum(0)
    np.testing.assert_allclose(cols[int(x1) + 1 : int(np.ceil(x2)) - 1], y2 - y1)
    centre = (cols * (np.arange(32) + 0.5)).sum() / cols.sum()
    assert centre == pytest.approx((x1 + x2) / 2, abs=0.125 / (x2 - x1) + 1e-12)


def test_scene_render_is_deterministic_and_obeys_contract():
    a = make_scene(640, 360, 25, n_objects=5, seed=3)
    b = make_scene(640, 360, 25, n_objects=5, seed=3)
    assert np.array_equal(a.render(17), b.render(17))
    frames = [{"frame_no": i, "objects": a.objects_gt(i)} for i in range(0, 500, 5)]
    check_ground_truth(frames, 640, 360)
    lim = scene_limits(1920, 1080)
    assert lim.scale == pytest.approx(1 / 3) and lim.min_same_class_gap == pytest.approx(192)


# --- (b) clips and ground truth -------------------------------------------------------


@pytest.mark.parametrize("clip", CLIPS_640 + [CLIP_1080], ids=lambda p: p.stem)
def test_clip_matches_ground_truth(clip):
    gt = load_ground_truth(clip)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        assert size == (gt["width"], gt["height"])
        assert [stream.time_base.numerator, stream.time_base.denominator] == gt["time_base"]
        read = [(f.pts, bool(f.key_frame)) for f in container.decode(stream)]
    assert len(read) == len(gt["frames"]) == gt["fps"] * {"shapes_1080p": 3}.get(clip.stem, 4)
    assert read == [(f["pts"], f["keyframe"]) for f in gt["frames"]]
    keyframes = [i for i, (_, key) in enumerate(read) if key]
    assert keyframes == list(range(0, len(read), gt["keyframe_interval"]))
    assert 3 <= len(gt["frames"][0]["objects"]) <= 5
    check_ground_truth(gt["frames"], gt["width"], gt["height"])


# --- (c) detector on real decoded frames --------------------------------------------------


@pytest.mark.parametrize("clip,every", [(CLIP_A, 1), (CLIP_1080, 8)], ids=["640x360", "1080p"])
def test_detector_matches_ground_truth(detector, clip, every):
    gt = load_ground_truth(clip)
    errors = []
    for i, frame in decoded_frames(clip, every):
        x, lb = letterbox(frame)
        out = detector.run(None, {"images": x[None]})[0][0]
        boxes, cls, _ = decode_v8(out, frame.width, frame.height, lb)
        objects = gt["frames"][i]["objects"]
        assert len(boxes) == len(objects), f"frame {i}: {len(boxes)} detections for {objects}"
        errors.append(match(boxes, cls, objects).max())
    print(f"{clip.name}: max box error {max(errors):.3f} source px over {len(errors)} frames")
    assert max(errors) <= MAX_ERR_SRC_PX


def test_detector_anchor_scores(detector):
    """Every object has an anchor >= 0.9 with a box within 0.5 model px; every
    anchor scoring >= 0.1 sits on the centre of an object of that class."""
    gt = load_ground_truth(CLIP_A)
    s = DETECTOR_STRIDE
    gw = INPUT_SIZE[1] // s
    anchors = (np.stack(np.divmod(np.arange(gw * (INPUT_SIZE[0] // s)), gw), 1)[:, ::-1] + 0.5) * s
    for i, frame in decoded_frames(CLIP_A, every=5):
        x, lb = letterbox(frame)
        out = detector.run(None, {"images": x[None]})[0][0]
        objs = gt["frames"][i]["objects"]
        boxes_in = [to_model_space(o["box"], frame.width, frame.height, lb) for o in objs]
        for o, b in zip(objs, boxes_in):
            sc = out[4 + o["class_id"]]
            best = np.flatnonzero(sc >= 0.9)
            pred = out[:4, best].T
            pred = np.concatenate([pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2], 1)
            assert best.size and np.abs(pred - b).max(1).min() <= 0.5, (i, o)
        for c in range(len(SHAPE_CLASSES)):
            for a in np.flatnonzero(out[4 + c] >= 0.1):
                centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for o, b in zip(objs, boxes_in)
                           if o["class_id"] == c]
                assert any(np.abs(np.subtract(ctr, anchors[a])).max() <= s / 2 + 1.5
                           for ctr in centres), (i, c, anchors[a])


def test_detector_silent_without_objects(detector):
    grey = np.full((1, 3, *INPUT_SIZE), 114 / 255, np.float32)
    bg = make_scene(640, 360, n_objects=0, seed=1).render(0)
    canvas = np.full((*INPUT_SIZE, 3), 114, np.uint8)
    canvas[140:500] = bg
    empty = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255
    out = detector.run(None, {"images": np.concatenate([grey, empty])})[0]
    assert out[:, 4:].max() < 0.1


# --- (d) shade classifier ---------------------------------------------------------------------


def test_shade_classifier_on_gt_crops(tmp_path):
    sess = session(build_shade_classifier(tmp_path / "shade.onnx"))
    crops, labels = [], []
    for clip in CLIPS_640 + [CLIP_1080]:
        gt = load_ground_truth(clip)
        for i, frame in decoded_frames(clip, every=20):
            rgb = frame.reformat(format="rgb24", interpolation=INTERP).to_ndarray()
            for o in gt["frames"][i]["objects"]:
                x1, y1, x2, y2 = (int(round(v)) for v in o["box"])
                crops.append(resize_bilinear(rgb[y1:y2, x1:x2], 32, 32))
                labels.append(SHADE_LABELS.index(o["shade"]))
    batch = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255
    probs = sess.run(None, {"images": batch})[0]
    assert probs.shape == (len(crops), 2)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert set(labels) == {0, 1}
    assert (probs.argmax(1) == np.array(labels)).all()
    assert probs.max(1).min() > 0.99


# --- (e) model variants ------------------------------------------------------------------------


def test_detector_variants_agree(tmp_path, detector):
    fixed = build_shape_detector(tmp_path / "det_b4.onnx", batch=4)
    v5 = build_shape_detector(tmp_path / "det_v5.onnx", layout="yolov5")
    for path in (fixed, v5):
        assert path.stat().st_size < 1_000_000

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    model = onnx.load(str(fixed))
    assert dims(model.graph.input[0]) == [4, 3, 640, 640]
    assert dims(model.graph.output[0]) == [4, 7, 6400]
    assert dims(onnx.load(str(v5)).graph.output[0]) == ["batch", 6400, 8]

    frames = [letterbox(f)[0] for _, f in decoded_frames(CLIP_A, every=25)]
    x = np.stack(frames)
    assert x.shape[0] == 4
    ref = detector.run(None, {"images": x})[0]
    np.testing.assert_allclose(session(fixed).run(None, {"images": x})[0], ref, atol=1e-4)
    out5 = session(v5).run(None, {"images": x})[0]  # [N, A, 8]
    np.testing.assert_allclose(out5[..., :4], ref[:, :4].transpose(0, 2, 1), atol=1e-4)
    score5 = out5[..., 4:5] * out5[..., 5:]  # objectness * class probability
    np.testing.assert_allclose(score5, ref[:, 4:].transpose(0, 2, 1), atol=1e-5)


def test_shipped_models_are_current(tmp_path):
    """models/shapes/ holds exactly what `python -m vidinfer.testing.shape_models` builds."""
    from vidinfer.testing.shape_models import build_all

    build_all(tmp_path)
    shipped = ROOT / "models" / "shapes"
    for name in ("detector.onnx", "shade.onnx", "labels.txt"):
        assert (shipped / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert (shipped / "labels.txt").read_text().split() == SHAPE_CLASSES
