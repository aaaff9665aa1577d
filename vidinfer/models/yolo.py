"""YOLO-family detector outputs in the three layouts people export.

* ``yolov5``: [N, anchors, 5 + classes]: cx, cy, w, h, objectness, class probabilities.
* ``yolov8``: [N, 4 + classes, anchors]: cx, cy, w, h, class scores (YOLOv8, YOLO11).
* ``end2end``: [N, K, 6]: x1, y1, x2, y2, score, class, NMS already done inside the model
  (YOLOv10, exports with EfficientNMS/``nms=True``); rows with score 0 are padding.

Box coordinates are in model-input pixels; the adapter undoes the letterbox to source pixels.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Sequence

import numpy as np

from vidinfer._xp import array_module, to_numpy
from vidinfer.detections import Detections
from vidinfer.errors import ModelError
from vidinfer.models.nms import batched_nms
from vidinfer.models.outputs import select_output
from vidinfer.preprocess.letterbox import Letterbox

__all__ = ["YoloAdapter", "YoloLayout"]

MAX_CANDIDATES = 8192  # per batch, before NMS: bounds the work of a frame full of low scores


class YoloLayout(str, Enum):
    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    END2END = "end2end"


class YoloAdapter:
    """Decodes a YOLO detector's output into per-frame `Detections` in source pixels.

    Args:
        classes: class names, in the model's class order.
        layout: one of `YoloLayout`, or "auto" to infer it from the output shape and class count.
        conf_threshold: minimum score (objectness x class probability for yolov5).
        iou_threshold: NMS overlap above which the lower-scored box of a class is dropped.
        max_detections: most boxes kept per frame.
        output: name of the output to read; the model's first output when None.
    """

    def __init__(self, classes: Sequence[str], layout: str = "auto", conf_threshold: float = 0.25,
                 iou_threshold: float = 0.45, max_detections: int = 300, output: str | None = None):
        self.classes = list(classes)
        self.layout = None if layout == "auto" else YoloLayout(layout)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.output = output

    def bind(self, output_shapes: dict[str, tuple[Any, ...]], model_name: str = "detector") -> None:
        """Check the model's output fits, and settle the layout when it is "auto"."""
        self.output = select_output(output_shapes, self.output, model_name)
        shape = output_shapes[self.output]
        layout = self.layout or _infer_layout(shape, len(self.classes), model_name)
        _check_layout(layout, shape, len(self.classes), model_name)
        self.layout = layout

    def decode(self, outputs: dict[str, Any], letterboxes: Sequence[Letterbox]) -> list[Detections]:
        """One `Detections` per image of the batch, in source-frame pixels."""
        raw = outputs[self.output or next(iter(outputs))]
        layout = self.layout or _infer_layout(raw.shape, len(self.classes), "detector")
        img, xyxy, score, cls = _candidates(raw, layout, self.conf_threshold)
        if layout is not YoloLayout.END2END and len(score):
            keep = batched_nms(xyxy, score, img * max(len(self.classes), 1) + cls, self.iou_threshold)
            img, xyxy, score, cls = img[keep], xyxy[keep], score[keep], cls[keep]
        results = []
        for i, box in enumerate(letterboxes):
            rows = np.flatnonzero(img == i)[: self.max_detections]
            results.append(Detections(box.to_source(xyxy[rows]), score[rows], cls[rows]))
        return results


def _candidates(raw: Any, layout: YoloLayout, conf: float) -> tuple[np.ndarray, ...]:
    """Image index, xyxy, score and class of every box above ``conf``, best first per batch.

    The threshold runs where the output lives (NumPy or CuPy); only candidates reach the host.
    """
    xp = array_module(raw)
    if layout is YoloLayout.END2END:
        boxes, scores, classes = raw[..., :4], raw[..., 4], raw[..., 5]
    else:
        if layout is YoloLayout.YOLOV8:
            raw = xp.swapaxes(raw, 1, 2)  # -> [N, anchors, 4 + C], a view
            probs = raw[..., 4:]
        else:
            probs = raw[..., 5:] * raw[..., 4:5]
        classes = xp.argmax(probs, axis=-1)
        scores = xp.take_along_axis(probs, classes[..., None], axis=-1)[..., 0]
        boxes = raw[..., :4]
    img, anchor = xp.nonzero(scores > conf)
    if len(img) > MAX_CANDIDATES:
        top = xp.argsort(-scores[img, anchor])[:MAX_CANDIDATES]
        img, anchor = img[top], anchor[top]
    b = to_numpy(boxes[img, anchor]).astype(np.float32)
    s = to_numpy(scores[img, anchor]).astype(np.float32)
    c = to_numpy(classes[img, anchor]).astype(np.int32)
    img = to_numpy(img).astype(np.int64)
    if layout is not YoloLayout.END2END:
        half = b[:, 2:4] / 2
        b = np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)
    order = np.argsort(-s, kind="stable")
    return img[order], b[order], s[order], c[order]


def _infer_layout(shape: tuple[Any, ...], num_classes: int, model_name: str) -> YoloLayout:
    if len(shape) == 3:
        d1, d2 = shape[1], shape[2]
        if d1 == 4 + num_classes and (not isinstance(d2, int) or d2 != 4 + num_classes):
            return YoloLayout.YOLOV8
        if d2 == 5 + num_classes and num_classes != 1:
            return YoloLayout.YOLOV5
        if d2 == 6 and num_classes != 1:
            return YoloLayout.END2END
    raise ModelError(f"{model_name} output has shape {list(shape)}, which does not identify a YOLO "
                     f"layout for {num_classes} classes; set layout to 'yolov5', 'yolov8' or 'end2end' "
                     "and check the class list")


def _check_layout(layout: YoloLayout, shape: tuple[Any, ...], num_classes: int, model_name: str) -> None:
    expected = {
        YoloLayout.YOLOV5: (f"[N, anchors, {5 + num_classes}]", 2, 5 + num_classes),
        YoloLayout.YOLOV8: (f"[N, {4 + num_classes}, anchors]", 1, 4 + num_classes),
        YoloLayout.END2END: ("[N, K, 6]", 2, 6),
    }[layout]
    text, axis, size = expected
    if len(shape) != 3 or (isinstance(shape[axis], int) and shape[axis] != size):
        raise ModelError(f"{model_name} output has shape {list(shape)} but layout {layout.value!r} with "
                         f"{num_classes} classes expects {text}; check the layout and the class list")
