"""Detection quality: VOC mAP@IoU (all-point interpolation), recall and precision.

Used by `vidinfer quantize` (INT8/FP16 agreement with FP32) and the logo detector's evaluation.
Detections are anything with ``xyxy``, ``score`` and ``class_id`` columns (e.g. `Detections`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from vidinfer.tracking.bytetrack import iou_matrix as _iou

__all__ = ["mean_ap", "voc_ap", "recall_precision", "iou_matrix"]


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes given in any array-like shape (N, 4)."""
    return _iou(np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4))


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def mean_ap(dets: Iterable[Any], gt_boxes: Sequence[np.ndarray], gt_classes: Sequence[np.ndarray],
            num_classes: int, iou_thr: float = 0.5,
            ignore_boxes: Sequence[np.ndarray] | None = None) -> tuple[float, list[float]]:
    """VOC mAP over images. ``dets``: per image objects with ``boxes``/``xyxy``, ``scores``, ``class_ids``."""
    per_class: list[list[tuple[float, int]]] = [[] for _ in range(num_classes)]
    n_gt = np.zeros(num_classes, int)
    for k, d in enumerate(dets):
        db, ds, dc = _unpack(d)
        gb, gc = np.asarray(gt_boxes[k]).reshape(-1, 4), np.asarray(gt_classes[k]).reshape(-1)
        ign = np.asarray(ignore_boxes[k]).reshape(-1, 4) if ignore_boxes is not None else np.zeros((0, 4))
        for c in range(num_classes):
            g = gb[gc == c]
            n_gt[c] += len(g)
            sel = np.flatnonzero(dc == c)
            sel = sel[np.argsort(-ds[sel], kind="stable")]
            used = np.zeros(len(g), bool)
            ious = iou_matrix(db[sel], g)
            ig = iou_matrix(db[sel], ign).max(axis=1) if len(ign) else np.zeros(len(sel))
            for j, di in enumerate(sel):
                ok = False
                if len(g):
                    cand = np.where(used, -1.0, ious[j])
                    best = int(np.argmax(cand))
                    if cand[best] >= iou_thr:
                        used[best] = True
                        ok = True
                if not ok and ig[j] >= iou_thr:
                    continue  # matches a partly visible (ignored) instance
                per_class[c].append((float(ds[di]), int(ok)))
    aps = []
    for c in range(num_classes):
        if n_gt[c] == 0:
            aps.append(float("nan"))
            continue
        rows = sorted(per_class[c], key=lambda r: -r[0])
        tp = np.array([r[1] for r in rows], float)
        ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
        rec = ctp / n_gt[c] if len(tp) else np.zeros(0)
        prec = ctp / np.maximum(ctp + cfp, 1e-9) if len(tp) else np.zeros(0)
        aps.append(voc_ap(rec, prec))
    valid = [a for a in aps if not np.isnan(a)]
    return (float(np.mean(valid)) if valid else 0.0), aps


def recall_precision(dets: Sequence[Any], gt_boxes: Sequence[np.ndarray], gt_classes: Sequence[np.ndarray],
                     conf: float, iou_thr: float = 0.5, ignore_boxes: Sequence[np.ndarray] | None = None
                     ) -> tuple[float, float, int, int, int]:
    """(recall, precision, tp, fp, n_gt) at score >= ``conf``, same-class IoU >= ``iou_thr``."""
    tp = fp = n = 0
    for k, d in enumerate(dets):
        db, ds, dc = _unpack(d)
        keep = ds >= conf
        db, ds, dc = db[keep], ds[keep], dc[keep]
        gb, gc = np.asarray(gt_boxes[k]).reshape(-1, 4), np.asarray(gt_classes[k]).reshape(-1)
        ign = np.asarray(ignore_boxes[k]).reshape(-1, 4) if ignore_boxes is not None else np.zeros((0, 4))
        n += len(gb)
        used = np.zeros(len(gb), bool)
        order = np.argsort(-ds, kind="stable")
        ious = iou_matrix(db, gb)
        ig = iou_matrix(db, ign).max(axis=1) if len(ign) else np.zeros(len(db))
        for j in order:
            cand = np.where(used | (gc != dc[j]), -1.0, ious[j]) if len(gb) else np.zeros(0)
            if len(cand) and cand.max() >= iou_thr:
                used[int(np.argmax(cand))] = True
                tp += 1
            elif ig[j] < iou_thr:
                fp += 1
    return tp / max(n, 1), tp / max(tp + fp, 1), tp, fp, n


def _unpack(d: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, scores, cls = d.xyxy, d.score, d.class_id
    return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1),
            np.asarray(cls).reshape(-1).astype(int))
