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
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidinfer.models.yolo import YoloAdapter  # noqa: E402
from vidinfer.preprocess.letterbox import Letterbox, fill_batch_slot  # noqa: E402
from vidinfer.evaluation import iou_matrix, mean_ap, recall_precision, voc_ap  # noqa: F401

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
