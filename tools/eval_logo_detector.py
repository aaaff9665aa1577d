#!/usr/bin/env python3
"""Measure the logo detector's mAP@0.5 with ONNX Runtime, vidinfer's letterbox and YoloAdapter.

    python tools/eval_logo_detector.py                       # held-out generated set (HELDOUT_SEED)
    python tools/eval_logo_detector.py --images 300 --seed 5 --model /tmp/logos/detector.onnx
    python tools/eval_logo_detector.py --clip sample_streams/broadcast_a.mp4   # logo instances of a clip
    python tools/eval_logo_detector.py --footage --compare /tmp/old/detector.onnx   # false appearances / min

The held-out generated set draws its real backgrounds from the HELD-OUT photographs only
(``make_dataset(..., backgrounds="heldout")``); ``--backgrounds none`` gives the generated-only set.

False appearances: :func:`no_brand_footage` is real footage with no brands (the held-out city
video, and pans / zooms over the held-out photographs), each frame a 1280 x 720 source frame
letterboxed into the model input (rendered straight at the letterbox size, 640 x 360, as an area
downscale would).  The detector runs at the pipeline's settings (per-class score thresholds, NMS
IoU 0.5), vidinfer's ByteTracker with the pipeline's settings follows the boxes, and every track
seen in >= 2 analysed frames (brand_exposure's ``min_track_frames``), counted from 2 s before
its first detection at ``--confirm-score`` (brand_exposure's ``logo_confirm_score``, 0.6) on, is one
false appearance; reported per minute of footage, analysing 5 frames/s and every frame.

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
from typing import Any, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidinfer.detections import Detections  # noqa: E402
from vidinfer.models.yolo import YoloAdapter  # noqa: E402
from vidinfer.tracking.bytetrack import ByteTracker  # noqa: E402
from vidinfer.preprocess.letterbox import Letterbox, fill_batch_slot  # noqa: E402
from vidinfer.evaluation import iou_matrix, mean_ap, recall_precision, voc_ap  # noqa: F401

DEFAULT_MODEL = ROOT / "models" / "logos" / "detector.onnx"
#: Source frame size of the no-brand footage (the pipeline's 720p case; 1080p letterboxes the same).
FOOTAGE_SRC = (1280, 720)
FOOTAGE_FPS = 25
#: The pipeline's analysis rate (pipelines/brand_impact.toml: sample_fps = 5).
ANALYSIS_FPS = 5
#: brand_exposure's default logo_confirm_score: a track counts only once a detection of it reaches this.
PIPELINE_CONFIRM = 0.6


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
                       size: int | None = None, threads: int = 2,
                       backgrounds: str | None = "heldout") -> tuple[float, list[float]]:
    """mAP@0.5 on ``n`` held-out generated images (``HELDOUT_SEED`` by default, model-input sized),
    on held-out real photographs and generated backgrounds (``backgrounds=None``: generated only)."""
    from vidinfer.testing.logo_data import HELDOUT_SEED, make_dataset

    sess, adapter, hw = load_model(model, threads)
    data = make_dataset(n, HELDOUT_SEED if seed is None else seed, size=size or hw[0], backgrounds=backgrounds)
    dets = detect(sess, adapter, hw, list(data["images"]))
    return mean_ap(dets, data["boxes"], data["classes"], len(adapter.classes))


# -- false appearances on real footage with no brands --

def _city_frames(out_w: int, out_h: int, zoom: float, pan: int, start: int, stop: int) -> Iterator[np.ndarray]:
    """Frames ``start:stop`` of the held-out city video, whole (zoom 1) or a window 1/zoom wide panning
    left -> right (pan 1) or right -> left (pan -1), resized to ``out_w`` x ``out_h``."""
    from PIL import Image

    from vidinfer.testing.backgrounds import city_frames

    frames = city_frames()[start:stop]
    n = len(frames)
    for i, fr in enumerate(frames):
        h, w = fr.shape[:2]
        cw, ch = w / zoom, h / zoom
        t = i / max(1, n - 1)
        x0 = (w - cw) * (t if pan > 0 else 1 - t)
        y0 = (h - ch) * 0.3
        yield np.asarray(Image.fromarray(fr).resize((out_w, out_h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))


def _photo_frames(photo: np.ndarray, seconds: float, fps: int, out_w: int, out_h: int,
                  seed: int) -> Iterator[np.ndarray]:
    """A virtual camera over a still photo: two shots, a pan at a fixed zoom then a zoom in / out
    while drifting, at the 16:9 aspect of the footage, resized (area-like) to the letterbox size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(photo)
    ph, pw = photo.shape[:2]
    full_w = min(pw, ph * out_w / out_h)  # the largest 16:9 window
    n = int(round(seconds * fps))
    for shot in range(2):
        m = n // 2 if shot == 0 else n - n // 2
        if shot == 0:
            z0 = z1 = rng.uniform(0.45, 1.0)
        else:
            z0, z1 = (1.0, rng.uniform(0.3, 0.5)) if rng.random() < 0.5 else (rng.uniform(0.3, 0.5), 1.0)
        a, b = rng.random(2), rng.random(2)  # window position (fraction of the free space), start / end
        for i in range(m):
            t = i / max(1, m - 1)
            cw = full_w * (z0 + (z1 - z0) * t)
            ch = cw * out_h / out_w
            fx, fy = a + (b - a) * t
            x0, y0 = (pw - cw) * fx, (ph - ch) * fy
            yield np.asarray(img.resize((out_w, out_h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))


def no_brand_footage(photo_seconds: float = 20.0, city: bool = True, fps: int = FOOTAGE_FPS,
                     photos: Sequence[int] | None = None,
                     city_zooms: Sequence[float] = (1.0, 1.6, 2.2)) -> list[tuple[str, int, Any]]:
    """Real footage with no brands, as ``(name, frame count, frames)`` clips; ``frames()`` yields HxWx3 uint8
    RGB frames already at the letterbox size of a 1280 x 720 source (640 x 360).

    The city video once per ``city_zooms`` (whole, and 1.6x / 2.2x windows panning across it: 7.6 s each; each
    pass is two clips, split at the video's own shot cut, where the pipeline resets its trackers), then
    ``photo_seconds`` over each held-out photograph (``photos``: which, by index; default all).
    """
    from vidinfer.preprocess.letterbox import Letterbox
    from vidinfer.testing.backgrounds import CITY_FRAMES, CITY_SOURCE_CUT
    from vidinfer.testing.logo_data import real_images

    lb = Letterbox.fit(*FOOTAGE_SRC, 640, 640)
    ow, oh = lb.new_w, lb.new_h
    clips: list[tuple[str, int, Any]] = []
    if city:
        for zoom in city_zooms:
            pan = 1 if zoom < 2 else -1  # the wide window pans the other way
            for a, b in ((0, CITY_SOURCE_CUT), (CITY_SOURCE_CUT, CITY_FRAMES)):
                clips.append((f"city x{zoom} {a}-{b}", b - a,
                              lambda z=zoom, p=pan, a=a, b=b: _city_frames(ow, oh, z, p, a, b)))
    held = real_images("heldout")
    for k in photos if photos is not None else range(len(held)):
        n = int(round(photo_seconds * fps))
        clips.append((f"photo {k}", n, lambda k=k: _photo_frames(held[k], photo_seconds, fps, ow, oh, seed=k)))
    return clips


def footage_detections(clips: Sequence[tuple[str, int, Any]], model: str | Path = DEFAULT_MODEL,
                       conf: float = 0.3, threads: int = 2, every: int = 1) -> list[list[Any]]:
    """Per clip, the detections (1280 x 720 source pixels) of every ``every``-th frame at score >= ``conf``."""
    sess, adapter, hw = load_model(model, threads, conf=conf)
    shape = np.zeros((FOOTAGE_SRC[1], FOOTAGE_SRC[0], 0), np.uint8)  # shape only
    out = []
    for _, _, frames in clips:
        dets: list[Any] = []
        buf: list[np.ndarray] = []
        for i, fr in enumerate(frames()):
            if i % every:
                continue
            buf.append(fr)
            if len(buf) == 8:
                dets += detect(sess, adapter, hw, [shape] * len(buf), resized=buf)
                buf = []
        if buf:
            dets += detect(sess, adapter, hw, [shape] * len(buf), resized=buf)
        out.append(dets)
    return out


def false_appearances(dets: Sequence[Sequence[Any]], num_classes: int, thresholds: Sequence[float] | float = 0.5,
                      step: int = 1, fps: float = FOOTAGE_FPS, min_track_frames: int = 2,
                      max_lost_s: float = 1.0, confirm_score: float = 0.0,
                      confirm_within_s: float = 2.0) -> tuple[np.ndarray, float]:
    """(false appearances per class, minutes of footage): detections of every ``step``-th frame kept at their
    class's threshold, tracked per clip by ByteTracker (pipeline defaults, ``max_lost_s`` as in
    brand_impact.toml); a track counts from ``confirm_within_s`` before its first detection at
    ``confirm_score`` (brand_exposure's ``logo_confirm_score``) on, and one seen in >= ``min_track_frames``
    analysed frames of that is one appearance."""
    thr = np.broadcast_to(np.asarray(thresholds, np.float32), (num_classes,))
    counts = np.zeros(num_classes, np.int64)
    frames = 0
    for clip in dets:
        trk = ByteTracker(max_lost_s=max_lost_s)
        seen: dict[int, list[tuple[float, float]]] = {}  # track -> (time, score) of each analysed frame
        cls_of: dict[int, int] = {}
        for i in range(0, len(clip), step):
            d = clip[i]
            keep = d.score >= thr[d.class_id]
            d = Detections(d.xyxy[keep], d.score[keep], d.class_id[keep])
            ids = trk.update(d, int(round(i / fps * 1e9)))
            on = ids >= 0
            for tid, c, sc in zip(ids[on].tolist(), d.class_id[on].tolist(), d.score[on].tolist()):
                seen.setdefault(tid, []).append((i / fps, sc))
                cls_of[tid] = c
        for tid, sights in seen.items():
            firm = [t for t, sc in sights if sc >= confirm_score]
            if firm and sum(t >= firm[0] - confirm_within_s for t, _ in sights) >= min_track_frames:
                counts[cls_of[tid]] += 1
        frames += len(clip)
    return counts, frames / fps / 60.0


def footage_report(dets: Sequence[Sequence[Any]], classes: Sequence[str],
                   thresholds: Sequence[float] | float = 0.5, confirm_score: float = 0.0) -> dict[str, Any]:
    """False appearances per minute, per class and in all, at 5 analysed frames/s and every frame."""
    res: dict[str, Any] = {"confirm_score": confirm_score}
    for key, step in (("5fps", FOOTAGE_FPS // ANALYSIS_FPS), ("every_frame", 1)):
        counts, minutes = false_appearances(dets, len(classes), thresholds, step, confirm_score=confirm_score)
        res[key] = {"per_min": round(float(counts.sum()) / minutes, 3), "count": int(counts.sum()),
                    "per_class_per_min": {c: round(float(n) / minutes, 3) for c, n in zip(classes, counts)}}
        res["minutes"] = round(minutes, 3)
    return res


def max_scores(dets: Sequence[Sequence[Any]], num_classes: int) -> np.ndarray:
    """Per class, the highest score on the footage (every frame)."""
    m = np.zeros(num_classes)
    for clip in dets:
        for d in clip:
            for c in range(num_classes):
                s = d.score[d.class_id == c]
                if len(s):
                    m[c] = max(m[c], float(s.max()))
    return m


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
    ap.add_argument("--backgrounds", default="heldout", choices=["heldout", "none"],
                    help="held-out generated set: with the held-out photographs, or generated only")
    ap.add_argument("--footage", action="store_true", help="false appearances per minute on no-brand footage")
    ap.add_argument("--photo-seconds", type=float, default=20.0, help="footage: seconds over each photo")
    ap.add_argument("--thresholds", help="footage: per-class score thresholds, comma-separated (default --conf)")
    ap.add_argument("--compare", action="append", default=[], help="footage: another model to report too")
    ap.add_argument("--confirm-score", type=float, default=PIPELINE_CONFIRM,
                    help="footage: the score that confirms a mark (brand_exposure's logo_confirm_score)")
    args = ap.parse_args(argv)
    if args.footage:
        clips = no_brand_footage(args.photo_seconds)
        thr = [float(v) for v in args.thresholds.split(",")] if args.thresholds else args.conf
        for model in [args.model, *args.compare]:
            _, adapter, _ = load_model(model)
            dets = footage_detections(clips, model, threads=args.threads)
            rep = footage_report(dets, adapter.classes, thr, args.confirm_score)
            rep["model"] = str(model)
            rep["max_score"] = dict(zip(adapter.classes, np.round(max_scores(dets, len(adapter.classes)), 3).tolist()))
            print(json.dumps(rep, indent=1))
        return 0
    if args.clip:
        for clip in args.clip:
            res = evaluate_clip(clip, args.model, args.conf, args.threads, args.every)
            print(json.dumps(res, indent=1))
        return 0
    m, aps = evaluate_generated(args.model, args.images, args.seed, threads=args.threads,
                                backgrounds=None if args.backgrounds == "none" else args.backgrounds)
    sess, adapter, _ = load_model(args.model)
    for name, a in zip(adapter.classes, aps):
        print(f"  AP50 {name:12s} {a:.4f}")
    print(f"mAP@0.5 = {m:.4f}  ({args.images} held-out images, backgrounds: {args.backgrounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
