"""Vectorised non-maximum suppression, class-aware and across a whole batch in one call."""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "batched_nms"]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box with each row of (N, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def batched_nms(xyxy: np.ndarray, score: np.ndarray, group: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS where boxes only suppress boxes of the same group (image x class).

    Groups are separated by shifting each group's boxes to its own region of the plane (the
    torchvision trick), so one pass handles every image and class of a batch. Returns the kept
    indices, highest score first.
    """
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    span = float(np.max(xyxy[:, 2:]) - min(float(np.min(xyxy[:, :2])), 0.0)) + 1.0
    shifted = xyxy.astype(np.float64) + (group.astype(np.float64) * span)[:, None]
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(shifted[i], shifted[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)
