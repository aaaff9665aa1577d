import numpy as np
import pytest

from vidinfer.models.nms import batched_nms
from vidinfer.preprocess.letterbox import PAD_VALUE, Letterbox, fill_batch_slot


def test_nms_suppresses_only_within_a_group():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    keep = batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5)
    assert keep.tolist() == [0, 2, 3]


def test_nms_iou_threshold_is_inclusive_of_lower_overlap():
    # IoU of these two boxes is 1/3: kept at threshold 0.4, suppressed at 0.3.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert batched_nms(boxes, scores, np.zeros(2, int), 0.4).tolist() == [0, 1]
    assert batched_nms(boxes, scores, np.zeros(2, int), 0.3).tolist() == [0]


@pytest.mark.parametrize("src, dst, expect", [
    ((1920, 1080), (640, 640), (640, 360, 0, 140)),
    ((640, 360), (640, 640), (640, 360, 0, 140)),
    ((720, 1280), (640, 640), (360, 640, 140, 0)),
    ((1000, 1000), (640, 384), (384, 384, 128, 0)),
])
def test_letterbox_geometry(src, dst, expect):
    box = Letterbox.fit(*src, *dst)
    assert (box.new_w, box.new_h, box.pad_x, box.pad_y) == expect


def test_letterbox_round_trip_is_exact():
    box = Letterbox.fit(1920, 1080, 640, 640)
    xyxy = np.array([[10.5, 20.25, 1900.0, 1070.0]], np.float32)
    np.testing.assert_allclose(box.to_source(box.to_input(xyxy)), xyxy, atol=1e-3)
    # Boxes reaching into the padding are clipped to the frame.
    np.testing.assert_allclose(box.to_source(np.array([[-5, 100, 700, 600]], np.float32)),
                               [[0, 0, 1920, 1080]])


def test_fill_batch_slot_pads_and_scales():
    box = Letterbox.fit(4, 2, 4, 4)  # a 4x2 image in a 4x4 input: one pad row above and below
    batch = np.full((2, 3, 4, 4), -1, np.float32)
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    fill_batch_slot(batch, 1, image, box)
    assert np.all(batch[0] == -1)  # other slots untouched
    np.testing.assert_allclose(batch[1, :, 0], PAD_VALUE / 255)
    np.testing.assert_allclose(batch[1, :, 3], PAD_VALUE / 255)
    np.testing.assert_allclose(batch[1, :, 1:3], image.transpose(2, 0, 1) / 255, rtol=1e-6)
