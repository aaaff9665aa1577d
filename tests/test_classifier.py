"""The secondary classifier: softmax/top-1 on known outputs, box selection, crops batched across frames."""

import numpy as np
import pytest

from vidinfer.detections import Detections
from vidinfer.errors import ModelError
from vidinfer.engines.base import ImageInput
from vidinfer.frame import Frame
from vidinfer.models.classifier import ClassifierAdapter, SecondaryClassifier
from vidinfer.preprocess.crops import crop_resize_rgb, crop_resize_yuv420, yuv_to_rgb_matrix
from vidinfer.preprocess.letterbox import Letterbox


def test_adapter_applies_softmax_to_logits_and_takes_top1():
    adapter = ClassifierAdapter(["a", "b", "c"])
    logits = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 5.0]], np.float32)
    label, score = adapter.decode({"logits": logits})
    assert label.tolist() == [1, 2]
    e = np.exp([1.0, 3.0, 0.0])
    assert score[0] == pytest.approx(e[1] / e.sum(), rel=1e-5)


def test_adapter_reads_probabilities_as_they_are():
    label, score = ClassifierAdapter(["a", "b"]).decode({"p": np.array([[0.3, 0.7]], np.float32)})
    assert label.tolist() == [1] and score[0] == pytest.approx(0.7)


def test_adapter_refuses_wrong_label_count():
    with pytest.raises(ModelError, match=r"has shape \[None, 5\] but 3 labels were given"):
        ClassifierAdapter(["a", "b", "c"]).bind({"probs": (None, 5)})


class MeanRedEngine:
    """A stand-in engine that 'classifies' a crop as red-dominant (label 0) or not (label 1).

    It records every batch so the test can check crops were batched across frames.
    """

    backend, device = "test", "cpu"
    output_names = ["probs"]
    output_shapes = {"probs": (None, 2)}

    def __init__(self):
        self.input = ImageInput("images", None, 3, 8, 8, np.dtype(np.float32))
        self.batches = []

    def run(self, batch):
        self.batches.append(batch.shape[0])
        red = batch[:, 0].mean(axis=(1, 2)) > batch[:, 1:].mean(axis=(1, 2, 3))
        return {"probs": np.stack([red, ~red], 1).astype(np.float32)}

    def close(self):
        pass


def _frame(image):
    h, w = image.shape[:2]
    return Frame("s", 0, 0, 0, image, Letterbox.fit(w, h, w, h), source=image)


def test_secondary_classifier_batches_all_selected_boxes_of_all_frames():
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:40, 10:60] = (250, 0, 0)  # red patch
    img[50:90, 100:190] = (0, 0, 250)  # blue patch
    frames = [_frame(img), _frame(img)]
    det = Detections([[10, 10, 60, 40], [100, 50, 190, 90], [0, 0, 5, 5]], [0.9, 0.9, 0.9], [0, 0, 0])
    small_other = Detections([[10, 10, 60, 40], [100, 50, 190, 90]], [0.9, 0.9], [0, 1])
    engine = MeanRedEngine()
    stage = SecondaryClassifier("colour", engine, ClassifierAdapter(["red", "other"]), operate_on=[0],
                                min_size=10, max_batch_size=64)
    a, b = stage(frames, [det, small_other])
    assert engine.batches == [3]  # 2 boxes of frame 1 (the 5x5 one is too small) + 1 of frame 2 (class 0)
    assert a.attributes["colour"].label_id.tolist() == [0, 1, -1]
    assert b.attributes["colour"].label_id.tolist() == [0, -1]  # class 1 is not operated on


def test_crop_resize_rgb_of_a_uniform_patch_is_that_colour():
    img = np.zeros((50, 80, 3), np.uint8)
    img[10:30, 20:60] = (200, 100, 50)
    crops = crop_resize_rgb(img, np.array([[20, 10, 60, 30], [0, 0, 10, 5]], np.float32), 4, 6)
    assert crops.shape == (2, 4, 6, 3)
    np.testing.assert_allclose(crops[0], np.broadcast_to([200 / 255, 100 / 255, 50 / 255], (4, 6, 3)), atol=1e-6)
    np.testing.assert_allclose(crops[1], 0)


def test_crop_resize_yuv420_matches_rgb_of_known_colours():
    # Studio-range BT.601 codes of pure colours (Y, Cb, Cr), from the standard's equations.
    colours = {(255, 0, 0): (81, 90, 240), (0, 255, 0): (145, 54, 34), (0, 0, 255): (41, 240, 110),
               (255, 255, 255): (235, 128, 128)}
    for rgb, (yy, cb, cr) in colours.items():
        y = np.full((16, 16), yy, np.uint8)
        u = np.full((8, 8), cb, np.uint8)
        v = np.full((8, 8), cr, np.uint8)
        crop = crop_resize_yuv420(y, u, v, np.array([[2, 2, 12, 12]], np.float32), 3, 3)
        np.testing.assert_allclose(crop[0, 1, 1] * 255, rgb, atol=3)


def test_yuv_matrix_full_range_white_and_black():
    m, off = yuv_to_rgb_matrix("bt709", full_range=True)
    np.testing.assert_allclose(m @ (np.array([255, 128, 128]) - off), [255, 255, 255], atol=1e-3)
    m, off = yuv_to_rgb_matrix("bt601", full_range=False)
    np.testing.assert_allclose(m @ (np.array([16, 128, 128]) - off), [0, 0, 0], atol=1e-3)
