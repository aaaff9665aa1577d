#!/usr/bin/env python3
"""Measure the logo detector's mAP@0.5 with ONNX Runtime, vidinfer's letterbox and YoloAdapter.

    python tools/eval_logo_detector.py                       # held-out generated set (HELDOUT_SEED)
    python tools/eval_logo_detector.py --images 300 --seed 5 --model /tmp/logos/detector.onnx
    python tools/eval_logo_detector.py --clip sample_streams/broadcast_a.mp4   # logo instances of a clip

mAP is VOC-style: per class, detections sorted by score are matched greedily to
unmatched ground-truth boxes of that class at IoU >= 0.5, the precision curve is
made monotone and integrated over all recall points ("all-point
interpolation"); mAP is the mean over classes that have ground truth.
For a clip, ground truth is every ``kind == "logo"`` instance with
``visible_fraction >= 0.5``; recall and precision at IoU 0.5 at the adapter's
threshold are printed as well (detections that match a partly visible,
< 0.5, instance are ignored, neither true nor false positives).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidinfer.models.yolo import YoloAdapter  # noqa: E402
from vidinfer.preprocess.letterbox import Letterbox, fill_batch_slot  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "logos" / "detector.onnx"


def load_model(path: str | Path = DEFAULT_MODEL, threads: int = 2, conf: float = 0.01):
    """(session, adapter, (in_h, in_w)) for the detector at ``path``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    labels = (Path(path).parent / "labels.txt").read_text().split("\n")
    labels = [s for s in labels if s.strip()]
    out = sess.get_outputs()[0]
    adapter = YoloAdapter(labels, layout="auto", conf_threshold=conf, iou_threshold=0.5, max_detections=100)
    adapter.bind({out.name: tuple(out.shape)})
    shape = sess.get_inputs()[0].shape
    return sess, adapter, (int(shape[2]), int(shape[3]))


def resize_rgb(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    if img.shape[1] == w and img.shape[0] == h:
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def detect(sess, adapter: YoloAdapter, input_hw: tuple[int, int], images: Sequence[np.ndarray],
           batch: int = 8, resized: Sequence[np.ndarray] | None = None) -> list[Any]:
    """Detections (source pixels) of HxWx3 uint8 RGB ``images``, letterboxed like the pipeline.

    ``resized`` may give images already resized to each letterbox's new size (e.g. by swscale).
    """
    in_h, in_w = input_hw
    name = sess.get_inputs()[0].name
    results = []
    for s in range(0, len(images), batch):
        chunk = images[s:s + batch]
        boxes = [Letterbox.fit(im.shape[1], im.shape[0], in_w, in_h) for im in chunk]
        x = np.empty((len(chunk), 3, in_h, in_w), np.float32)
        for i, (im, lb) in enumerate(zip(chunk, boxes)):
            r = resized[s + i] if resized is not None else resize_rgb(im, lb.new_w, lb.new_h)
            fill_batch_slot(x, i, r, lb)
        out = sess.run(None, {name: x})
        results.extend(adapter.decode({adapter.output: out[0]}, boxes))
    return results


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0]); iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2]); iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa[:, None] + ab[None, :] - inter, 1e-9)


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


def recall_precision(dets, gt_boxes, gt_classes, conf: float, iou_thr: float = 0.5,
                     ignore_boxes=None) -> tuple[float, float, int, int, int]:
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


def evaluate_generated(model: str | Path = DEFAULT_MODEL, n: int = 200, seed: int | None = None,
                       size: int | None = None, threads: int = 2) -> tuple[float, list[float]]:
    """mAP@0.5 on ``n`` held-out generated images (``HELDOUT_SEED`` by default, model-input sized)."""
    from vidinfer.testing.logo_data import HELDOUT_SEED, make_dataset

    sess, adapter, hw = load_model(model, threads)
    data = make_dataset(n, HELDOUT_SEED if seed is None else seed, size=size or hw[0])
    dets = detect(sess, adapter, hw, list(data["images"]))
    return mean_ap(dets, data["boxes"], data["classes"], len(adapter.classes))


def evaluate_clip(clip: str | Path, model: str | Path = DEFAULT_MODEL, conf: float = 0.5,
                  threads: int = 2, every: int = 1) -> dict[str, Any]:
    """mAP@0.5, recall and precision on a broadcast clip's visible logo instances (all frames)."""
    import av
    from av.video.reformatter import Interpolation

    interp = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    sess, adapter, hw = load_model(model, threads)
    gt = json.loads(Path(clip).with_suffix(".json").read_text())
    classes = adapter.classes
    dets, gtb, gtc, ign = [], [], [], []
    with av.open(str(clip)) as c:
        frames, resized = [], []
        for i, fr in enumerate(c.decode(video=0)):
            if i % every:
                continue
            lb = Letterbox.fit(fr.width, fr.height, hw[1], hw[0])
            resized.append(fr.reformat(width=lb.new_w, height=lb.new_h, format="rgb24",
                                       interpolation=interp).to_ndarray())
            frames.append(np.zeros((fr.height, fr.width, 0), np.uint8))  # shape only
            inst = [o for o in gt["frames"][i]["instances"] if o["kind"] == "logo"]
            vis = [o for o in inst if o["visible_fraction"] >= 0.5]
            gtb.append(np.array([o["box"] for o in vis], float).reshape(-1, 4))
            gtc.append(np.array([classes.index(o["brand"]) for o in vis], int))
            ign.append(np.array([o["box"] for o in inst if o["visible_fraction"] < 0.5], float).reshape(-1, 4))
            if len(resized) == 16:
                dets += detect(sess, adapter, hw, frames, resized=resized)
                frames, resized = [], []
        if resized:
            dets += detect(sess, adapter, hw, frames, resized=resized)
    m, aps = mean_ap(dets, gtb, gtc, len(classes), ignore_boxes=ign)
    r, p, tp, fp, n = recall_precision(dets, gtb, gtc, conf, ignore_boxes=ign)
    return {"clip": str(clip), "frames": len(gtb), "mAP50": m, "AP": dict(zip(classes, aps)),
            "conf": conf, "recall": r, "precision": p, "tp": tp, "fp": fp, "gt": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--images", type=int, default=300, help="held-out generated images")
    ap.add_argument("--seed", type=int, help="held-out seed (default HELDOUT_SEED)")
    ap.add_argument("--clip", action="append", help="evaluate on a broadcast clip instead (repeatable)")
    ap.add_argument("--conf", type=float, default=0.5, help="score threshold for recall/precision")
    ap.add_argument("--every", type=int, default=1, help="clip: use every k-th frame")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.clip:
        for clip in args.clip:
            res = evaluate_clip(clip, args.model, args.conf, args.threads, args.every)
            print(json.dumps(res, indent=1))
        return 0
    m, aps = evaluate_generated(args.model, args.images, args.seed, threads=args.threads)
    sess, adapter, _ = load_model(args.model)
    for name, a in zip(adapter.classes, aps):
        print(f"  AP50 {name:12s} {a:.4f}")
    print(f"mAP@0.5 = {m:.4f}  ({args.images} held-out images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
