"""YOLO output decoding in the three export layouts, on hand-made outputs with known answers."""

import numpy as np
import pytest

from vidinfer.errors import ModelError
from vidinfer.models.yolo import YoloAdapter
from vidinfer.preprocess.letterbox import Letterbox

CLASSES = ["person", "car", "logo"]
# A 1280x720 source letterboxed into 640x640: scale 0.5, 140 rows of padding above.
BOX = Letterbox.fit(1280, 720, 640, 640)


def _source_to_input_cxcywh(xyxy):
    x = BOX.to_input(np.asarray(xyxy, np.float32))
    return np.stack([(x[:, 0] + x[:, 2]) / 2, (x[:, 1] + x[:, 3]) / 2, x[:, 2] - x[:, 0], x[:, 3] - x[:, 1]], 1)


# Ground truth in source pixels: two cars overlapping (one must be suppressed), a person
# overlapping the first car (a different class: kept), a logo alone.
TRUE_BOXES = np.array([[100, 100, 300, 260], [110, 105, 305, 262], [120, 110, 280, 250], [900, 400, 1000, 460]],
                      np.float32)
TRUE_CLASSES = np.array([1, 1, 0, 2])
TRUE_SCORES = np.array([0.9, 0.6, 0.8, 0.7], np.float32)
EXPECTED = [(0, 1, 0.9), (2, 0, 0.8), (3, 2, 0.7)]  # (row of TRUE_BOXES, class, score) kept


def _v8_output(anchors=50):
    out = np.zeros((1, 4 + len(CLASSES), anchors), np.float32)
    out[0, :4, :4] = _source_to_input_cxcywh(TRUE_BOXES).T
    out[0, 4 + TRUE_CLASSES, np.arange(4)] = TRUE_SCORES
    out[0, 4:, 4:] = 0.01  # background anchors below threshold
    out[0, :4, 4:] = 10
    return out


def _check(dets):
    assert len(dets) == len(EXPECTED)
    for row, (gt, cls, score) in enumerate(EXPECTED):
        np.testing.assert_allclose(dets.xyxy[row], TRUE_BOXES[gt], atol=1e-3)
        assert dets.class_id[row] == cls
        assert dets.score[row] == pytest.approx(score, abs=1e-6)


def test_yolov8_layout_decodes_nms_and_undoes_letterbox():
    adapter = YoloAdapter(CLASSES, conf_threshold=0.25, iou_threshold=0.5)
    adapter.bind({"output0": (None, 7, 50)})
    assert adapter.layout.value == "yolov8"
    (dets,) = adapter.decode({"output0": _v8_output()}, [BOX])
    _check(dets)


def test_class_thresholds_raise_or_lower_one_class_bar():
    # The global bar 0.85 keeps only the 0.9 car; the logo's own 0.65 lets its 0.7 box through, and
    # the person (0.8) still meets the global bar for nothing. A raised bar drops the car alone.
    adapter = YoloAdapter(CLASSES, conf_threshold=0.85, iou_threshold=0.5, class_thresholds={"logo": 0.65})
    (dets,) = adapter.decode({"output0": _v8_output()}, [BOX])
    assert dets.class_id.tolist() == [1, 2] and dets.score.tolist() == pytest.approx([0.9, 0.7])
    adapter = YoloAdapter(CLASSES, conf_threshold=0.25, iou_threshold=0.5, class_thresholds={"car": 0.95})
    (dets,) = adapter.decode({"output0": _v8_output()}, [BOX])
    assert dets.class_id.tolist() == [0, 2] and dets.score.tolist() == pytest.approx([0.8, 0.7])
    with pytest.raises(ValueError, match=r"^class_thresholds names 'Logo', not a class of the model \(person, car, "
                       r"logo\); use the class names as the labels give them$"):
        YoloAdapter(CLASSES, class_thresholds={"Logo": 0.5})


def test_yolov5_layout_multiplies_objectness_and_class_probability():
    v8 = _v8_output()[0].T  # [anchors, 4 + C]
    out = np.zeros((1, v8.shape[0], 5 + len(CLASSES)), np.float32)
    out[0, :, :4] = v8[:, :4]
    # objectness 1.0 with the class score as probability, except the logo: 0.875 x 0.8 = 0.7
    out[0, :, 4] = 1.0
    out[0, :, 5:] = v8[:, 4:]
    out[0, 3, 4], out[0, 3, 5 + 2] = 0.875, 0.8
    adapter = YoloAdapter(CLASSES, conf_threshold=0.25, iou_threshold=0.5)
    adapter.bind({"output": (1, 50, 8)})
    assert adapter.layout.value == "yolov5"
    (dets,) = adapter.decode({"output": out}, [BOX])
    _check(dets)


def test_end2end_layout_keeps_model_nms_and_drops_padding_rows():
    out = np.zeros((1, 10, 6), np.float32)
    keep = [0, 2, 3]
    out[0, :3, :4] = BOX.to_input(TRUE_BOXES[keep])
    out[0, :3, 4] = TRUE_SCORES[keep]
    out[0, :3, 5] = TRUE_CLASSES[keep]
    adapter = YoloAdapter(CLASSES, layout="end2end", conf_threshold=0.25)
    adapter.bind({"dets": (1, 10, 6)})
    (dets,) = adapter.decode({"dets": out}, [BOX])
    _check(dets)


def test_batch_of_images_keeps_boxes_with_their_image():
    out = np.concatenate([_v8_output(), np.zeros_like(_v8_output()), _v8_output()])
    out[2, 4:, :] = 0  # third image: only the logo anchor is set
    out[2, 4 + 2, 3] = 0.7
    adapter = YoloAdapter(CLASSES, conf_threshold=0.25, iou_threshold=0.5)
    a, b, c = adapter.decode({"o": out}, [BOX, BOX, BOX])
    _check(a)
    assert len(b) == 0
    assert len(c) == 1 and c.class_id[0] == 2


def test_same_box_in_two_classes_is_not_suppressed():
    out = np.zeros((1, 7, 2), np.float32)
    out[0, :4, :] = _source_to_input_cxcywh(TRUE_BOXES[[0, 0]]).T
    out[0, 4, 0] = 0.9
    out[0, 5, 1] = 0.8
    (dets,) = YoloAdapter(CLASSES, conf_threshold=0.25).decode({"o": out}, [BOX])
    assert sorted(dets.class_id.tolist()) == [0, 1]


def test_shape_that_fits_no_layout_is_refused_with_what_was_expected():
    adapter = YoloAdapter(CLASSES)
    with pytest.raises(ModelError, match=r"output has shape \[1, 10, 9\].*layout for 3 classes"):
        adapter.bind({"o": (1, 10, 9)}, "detector model 'x.onnx'")
    with pytest.raises(ModelError, match=r"layout 'yolov8' with 3 classes expects \[N, 7, anchors\]"):
        YoloAdapter(CLASSES, layout="yolov8").bind({"o": (1, 85, 8400)})
