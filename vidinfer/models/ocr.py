"""Text reading with the PP-OCR models: DBNet detection, 0/180 orientation, CTC recognition.

The ONNX files come from the ``rapidocr-onnxruntime`` wheel (see `vidinfer.models.registry`);
pre- and post-processing are ours (NumPy + scipy.ndimage, no OpenCV) and follow PP-OCR's:

* detection: the frame is resized so its longer side is ``limit_side``, both sides rounded to
  multiples of 32, BGR, (x/255 - 0.5) / 0.5 (RapidOCR's det normalisation), one frame per run;
  the probability map is thresholded (0.3), dilated 2x2, split into
  8-connected components, each scored by its mean probability (kept at >= 0.5) and grown by
  DBNet's unclip distance area * 1.6 / perimeter. Boxes are axis-aligned: rotated text gets its
  bounding rectangle (rotation is not handled).
* orientation: crops at 48x192, flipped 180 degrees when the classifier says "180" with > 0.9.
* recognition: crops at height 48 keeping their aspect, padded (grey) to the widest crop of the
  run and at least 320 px, BGR, (x/255 - 0.5) / 0.5; greedy CTC decode against the character
  list stored in the model's metadata (blank at 0, a space appended, as PP-OCR does).

Crops are sampled straight from the decoder's planes (`frame_crops`), every box of every frame
of a batch at once, so recognition costs a few model runs per batch rather than one per line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidinfer._xp import to_numpy
from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
from vidinfer.errors import ModelError
from vidinfer.frame import Frame
from vidinfer.models.classifier import frame_crops
from vidinfer.models.registry import resolve_model
from vidinfer.preprocess.crops import crop_resize_rgb

__all__ = ["TextResult", "TextDetector", "TextClassifier", "TextRecognizer", "TextReader",
           "db_boxes", "ctc_greedy_decode", "load_charset"]

ModelRef = str | os.PathLike[str]


@dataclass(eq=False)
class TextResult:
    """The text lines read in one frame, top to bottom then left to right.

    Attributes:
        xyxy: (N, 4) float32 boxes in source pixels.
        score: (N,) float32 recognition score (mean probability of the decoded characters).
        text: N strings.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    text: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text)


# --------------------------------------------------------------------------------------------
# Images: a Frame (decoder planes, RGB array, or only the detector image) or a plain RGB array.


class _Image:
    """One input image, in whatever form it came, with the two reads OCR needs of it."""

    def __init__(self, item: Frame | np.ndarray):
        self.frame: Frame | None = None
        self.array: np.ndarray | None = None
        self.av_frame: Any = None
        # view pixels * (sx, sy) = reported source pixels; 1 except when only frame.image exists.
        self.sx = self.sy = 1.0
        if isinstance(item, Frame):
            src = item.source
            if src is None:
                # No full-resolution frame: read the detector's resized image, report source px.
                self.array = np.ascontiguousarray(to_numpy(item.image))
                lb = item.letterbox
                self.sx, self.sy = lb.src_w / lb.new_w, lb.src_h / lb.new_h
            elif isinstance(src, np.ndarray) or type(src).__module__.startswith("cupy"):
                self.array = np.ascontiguousarray(to_numpy(src))
            else:
                self.frame, self.av_frame = item, src
        else:
            self.array = np.asarray(item)
        if self.array is not None and (self.array.ndim != 3 or self.array.shape[2] != 3):
            raise ValueError(f"expected an HxWx3 RGB image, got shape {self.array.shape}")
        if self.av_frame is not None:
            self.width, self.height = int(self.av_frame.width), int(self.av_frame.height)
        else:
            self.height, self.width = self.array.shape[:2]  # type: ignore[union-attr]

    def resized_rgb(self, width: int, height: int) -> np.ndarray:
        """The whole image at width x height, HxWx3 uint8 RGB (one swscale pass)."""
        import av

        if self.av_frame is not None:
            return self.av_frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
        arr = self.array
        if (width, height) == (self.width, self.height):
            return arr  # type: ignore[return-value]
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr, dtype=np.uint8), format="rgb24")
        return src.reformat(width=width, height=height, format="rgb24").to_ndarray()

    def crops(self, xyxy: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
        """(N, out_h, out_w, 3) float32 RGB in [0, 1] of boxes given in view pixels."""
        if self.frame is not None:
            return frame_crops(self.frame, xyxy, out_h, out_w)
        return crop_resize_rgb(self.array, xyxy, out_h, out_w)


def _images(items: Sequence[Frame | np.ndarray]) -> list[_Image]:
    return [it if isinstance(it, _Image) else _Image(it) for it in items]


def _engine(ref: ModelRef, size: tuple[int, int], threads: int, role: str,
            shrink_arena: bool = False) -> OnnxRuntimeEngine:
    # The PP-OCR models take any H/W; OnnxRuntimeEngine wants a size for dynamic dims, but run()
    # passes any shape through, so `size` is only the nominal size it reports in engine.input.
    return OnnxRuntimeEngine(resolve_model(ref), input_size=size, intra_op_threads=threads, role=role,
                             shrink_arena=shrink_arena)


def _to_bgr_chw(rgb01: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB in [0, 1] -> (N, 3, H, W) float32 BGR normalised, PP-OCR's input."""
    x = (rgb01[..., ::-1] - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Detection


def db_boxes(prob: np.ndarray, thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
             max_candidates: int = 1000, min_side: float = 3.0, dilate: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    """DBNet post-processing: an (H, W) probability map -> axis-aligned text boxes.

    Returns (xyxy (N, 4) float32 in the map's continuous pixel coordinates, score (N,) float32),
    score being the mean probability over the component. Geometry follows PP-OCR, whose box is
    the min-area rectangle through the contour's pixel centres: a component spanning pixels
    x0..x1 is (x1 - x0) wide; it is dropped below ``min_side``, grown on every side by
    area * unclip_ratio / perimeter and dropped again below ``min_side + 2``.
    """
    from scipy import ndimage

    mask = prob > thresh
    if dilate:
        # cv2.dilate with PP-OCR's 2x2 kernel: a pixel is set if it or its up/left neighbours are.
        m = mask.copy()
        m[1:] |= mask[:-1]
        mask = m.copy()
        mask[:, 1:] |= m[:, :-1]
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected, as contours
    if n == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    n = min(n, max_candidates)
    slices = ndimage.find_objects(labels, max_label=n)
    ext = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in slices], np.float32)
    score = np.asarray(ndimage.mean(prob, labels, index=np.arange(1, n + 1)), np.float32)
    # Pixel-centre extents: the contour of pixels x0..x1 (stop = x1 + 1) spans x1 - x0.
    w = ext[:, 2] - ext[:, 0] - 1
    h = ext[:, 3] - ext[:, 1] - 1
    d = w * h * unclip_ratio / np.maximum(2 * (w + h), 1e-6)
    keep = (np.minimum(w, h) >= min_side) & (score >= box_thresh) & (np.minimum(w, h) + 2 * d >= min_side + 2)
    ext, d, score = ext[keep], d[keep, None], score[keep]
    # Centre of pixel i is i + 0.5 in continuous coordinates.
    xyxy = np.concatenate([ext[:, :2] + 0.5 - d, ext[:, 2:] - 0.5 + d], axis=1)
    return xyxy.astype(np.float32), score


class TextDetector:
    """PP-OCR DBNet text detector on whole frames, batched across frames.

    Args:
        model: model reference (registry name or path).
        limit_side: the longer side of the detector input (pixels, before rounding to 32).
        thresh: probability threshold of the binary text mask.
        box_thresh: minimum mean probability of a box.
        unclip_ratio: DBNet's box growth factor.
        min_text_height: boxes shorter than this in source pixels are dropped.
        max_candidates: components examined per frame.
        mean, std: per-channel normalisation in BGR order, on values in [0, 1].
        threads: ONNX Runtime intra-op threads (0: let it choose).
    """

    def __init__(self, model: ModelRef = "ppocr:det", limit_side: int = 960, thresh: float = 0.3,
                 box_thresh: float = 0.5, unclip_ratio: float = 1.6, min_text_height: float = 4.0,
                 max_candidates: int = 1000, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), threads: int = 0):
        # One frame per run, arena given back after each: per frame it is as fast as a batch of 4
        # (60 vs 65 ms at 960x544 here) and holds ~160 MB instead of ~640 MB (docs/performance.md).
        self.engine = _engine(model, (limit_side, limit_side), threads, "text detector", shrink_arena=True)
        self.limit_side = limit_side
        self.thresh, self.box_thresh, self.unclip_ratio = thresh, box_thresh, unclip_ratio
        self.min_text_height = min_text_height
        self.max_candidates = max_candidates
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the detector input for a frame: longer side ~limit_side, x32."""
        scale = self.limit_side / max(width, height)
        return (max(32, int(round(int(width * scale) / 32)) * 32),
                max(32, int(round(int(height * scale) / 32)) * 32))

    def __call__(self, items: Sequence[Frame | np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(xyxy (N, 4) float32 source pixels, score (N,) float32) per frame or RGB image."""
        images = _images(items)
        if not images:
            return []
        out = []
        for im in images:  # one frame per run (see __init__)
            w, h = self.input_size(im.width, im.height)
            rgb = im.resized_rgb(w, h).astype(np.float32) * np.float32(1 / 255)
            prob = next(iter(self.engine.run(_to_bgr_chw(rgb[None], self.mean, self.std)).values()))
            xyxy, score = db_boxes(prob[0, 0], self.thresh, self.box_thresh, self.unclip_ratio, self.max_candidates)
            # Map to view pixels (per-axis: rounding to 32 changes the aspect), then to source.
            xyxy *= np.array([im.width / w, im.height / h] * 2, np.float32)
            xyxy = np.clip(xyxy, 0, np.array([im.width, im.height] * 2, np.float32))
            xyxy *= np.array([im.sx, im.sy] * 2, np.float32)
            bw_, bh_ = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
            keep = (bw_ > 3) & (bh_ > max(3.0, self.min_text_height - 1e-6))
            out.append((xyxy[keep], score[keep]))
        return out


# --------------------------------------------------------------------------------------------
# Crops of many boxes at once, at a fixed height and a common padded width


def _line_crops(images: list[_Image], frame_idx: np.ndarray, xyxy: np.ndarray, out_h: int, out_w: int,
                content_w: np.ndarray, flip: np.ndarray | None = None) -> np.ndarray:
    """PP-OCR line input (N, 3, out_h, out_w): box k resized to out_h x content_w[k] at the left,
    BGR, (x/255 - 0.5) / 0.5, the columns beyond padded with 0 (mid-grey), as PP-OCR pads.

    Each box is stretched to the right in source pixels so that one fixed-size sample of it puts
    the box in exactly content_w[k] columns; the columns beyond are then overwritten. A flipped
    box is sampled from its far corner backwards, which is the 180-degree rotation.
    """
    n = len(xyxy)
    crops = np.empty((n, out_h, out_w, 3), np.float32)
    x1, y1, x2, y2 = xyxy.T
    span = (x2 - x1) * out_w / content_w
    boxes = np.stack([x1, y1, x1 + span, y2], axis=1)
    if flip is not None and flip.any():
        f = flip
        boxes[f] = np.stack([x2[f], y2[f], x2[f] - span[f], y1[f]], axis=1)
    for i in np.unique(frame_idx):
        sel = np.flatnonzero(frame_idx == i)
        im = images[i]
        view = boxes[sel] / np.array([im.sx, im.sy] * 2, np.float32)  # source -> view pixels
        crops[sel] = im.crops(view, out_h, out_w)
    x = _to_bgr_chw(crops, np.float32(0.5), np.float32(0.5))
    pad = np.arange(out_w)[None, :] >= content_w[:, None]  # (N, W)
    x *= ~pad[:, None, None, :]
    return x


# --------------------------------------------------------------------------------------------
# Orientation


class TextClassifier:
    """PP-OCR text orientation classifier: which crops are upside down.

    Args:
        model: model reference.
        thresh: a crop is flipped when the "180" probability exceeds this.
        batch_size: crops per model run.
        threads: ONNX Runtime intra-op threads.
    """

    height, width = 48, 192

    def __init__(self, model: ModelRef = "ppocr:cls", thresh: float = 0.9, batch_size: int = 32,
                 threads: int = 0):
        self.engine = _engine(model, (self.width, self.height), threads, "text orientation classifier")
        self.thresh = thresh
        self.batch_size = batch_size

    def flipped(self, images: list[_Image], frame_idx: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """(N,) bool: box k reads upside down."""
        n = len(xyxy)
        flip = np.zeros(n, bool)
        if n == 0:
            return flip
        ratio = (xyxy[:, 2] - xyxy[:, 0]) / np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-6)
        content = np.minimum(np.ceil(self.height * ratio), self.width).clip(1).astype(np.int64)
        for s in range(0, n, self.batch_size):
            sl = slice(s, s + self.batch_size)
            crops = _line_crops(images, frame_idx[sl], xyxy[sl], self.height, self.width, content[sl])
            p = next(iter(self.engine.run(crops).values()))
            flip[sl] = (p.argmax(1) == 1) & (p[:, 1] > self.thresh)
        return flip


# --------------------------------------------------------------------------------------------
# Recognition


def load_charset(model_path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> list[str]:
    """PP-OCR's CTC classes: blank, the characters in the model's metadata ("character"), space.

    ``metadata``: the model's metadata when an engine already holds it; else the file is opened.
    """
    if metadata is None:
        metadata = OnnxRuntimeEngine(model_path, (320, 48), role="text recogniser").metadata
    if "character" not in metadata:
        raise ModelError(f"text recogniser {Path(model_path).name!r} has no 'character' metadata; "
                         "pass charset= (a list of characters or a keys file, one per line)")
    return _ctc_classes(metadata["character"].splitlines())


def _ctc_classes(chars: Sequence[str]) -> list[str]:
    # As PP-OCR's CTCLabelDecode: blank first, then the dictionary, then a space (use_space_char).
    return ["blank", *chars, " "]


def ctc_greedy_decode(probs: np.ndarray, charset: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Greedy CTC decode of (N, T, C) per-step class probabilities.

    The best class per step; repeats collapsed, then blanks (class 0) dropped; characters mapped
    through ``charset`` (index 0 is the blank). Score: mean probability of the kept steps, 0 for
    an empty string. Returns (texts, scores float32).
    """
    probs = np.asarray(probs)
    idx = probs.argmax(axis=2)
    p = np.take_along_axis(probs, idx[..., None], axis=2)[..., 0].astype(np.float32)
    keep = idx != 0
    keep[:, 1:] &= idx[:, 1:] != idx[:, :-1]
    count = keep.sum(axis=1)
    score = np.where(count > 0, (p * keep).sum(axis=1) / np.maximum(count, 1), 0).astype(np.float32)
    table = np.asarray(charset, dtype=object)
    texts = ["".join(table[row[k]]) for row, k in zip(idx, keep)]
    return texts, score


class TextRecognizer:
    """PP-OCR CTC text recogniser on crops of many boxes of many frames.

    Args:
        model: model reference.
        charset: the characters (without blank and space), or a keys file with one per line;
            None reads them from the model's metadata.
        batch_size: crops per model run (crops are sorted by aspect so a run pads little; the
            model's cost grows faster than linearly with the padded width, so small runs win).
        min_width: the narrowest padded crop (PP-OCR: 320).
        max_width: the widest; longer lines are squeezed into it.
        threads: ONNX Runtime intra-op threads.
    """

    height = 48

    def __init__(self, model: ModelRef = "ppocr:rec", charset: Sequence[str] | str | os.PathLike[str] | None = None,
                 batch_size: int = 6, min_width: int = 320, max_width: int = 1600, threads: int = 0):
        path = resolve_model(model)
        self.engine = _engine(path, (min_width, self.height), threads, "text recogniser")
        if charset is None:
            self.charset = load_charset(path, self.engine.metadata)
        elif isinstance(charset, (str, os.PathLike)):
            self.charset = _ctc_classes(Path(charset).read_text(encoding="utf-8").split("\n"))
        else:
            self.charset = _ctc_classes(list(charset))
        classes = next(iter(self.engine.output_shapes.values()))[-1]
        if isinstance(classes, int) and classes != len(self.charset):
            raise ModelError(f"text recogniser {path.name!r} outputs {classes} classes but the charset "
                             f"gives {len(self.charset)} (blank + {len(self.charset) - 2} + space); "
                             "pass the model's own character list")
        self.batch_size, self.min_width, self.max_width = batch_size, min_width, max_width

    def recognize(self, images: list[_Image], frame_idx: np.ndarray, xyxy: np.ndarray,
                  flip: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """(texts, scores) of boxes (source pixels) of images[frame_idx[k]]."""
        n = len(xyxy)
        texts: list[str] = [""] * n
        scores = np.zeros(n, np.float32)
        if n == 0:
            return texts, scores
        ratio = (xyxy[:, 2] - xyxy[:, 0]) / np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-6)
        order = np.argsort(ratio, kind="stable")  # similar widths share a run: little padding
        for s in range(0, n, self.batch_size):
            sel = order[s:s + self.batch_size]
            width = int(self.height * max(self.min_width / self.height, float(ratio[sel].max())))
            width = min(width, self.max_width)
            content = np.minimum(np.ceil(self.height * ratio[sel]), width).clip(1).astype(np.int64)
            crops = _line_crops(images, frame_idx[sel], xyxy[sel], self.height, width, content,
                                None if flip is None else flip[sel])
            probs = next(iter(self.engine.run(crops).values()))
            t, sc = ctc_greedy_decode(probs, self.charset)
            for k, txt in zip(sel, t):
                texts[k] = txt
            scores[sel] = sc
        return texts, scores

    def __call__(self, items: Sequence[Frame | np.ndarray], boxes: Sequence[np.ndarray]
                 ) -> list[tuple[list[str], np.ndarray]]:
        """(texts, scores) per frame for its (N, 4) source-pixel boxes."""
        images = _images(items)
        frame_idx, xyxy = _flatten(boxes)
        texts, scores = self.recognize(images, frame_idx, xyxy)
        return _split(boxes, texts, scores)


def _flatten(boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    frame_idx = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(boxes)] or [np.zeros(0, np.int64)])
    xyxy = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes] or [np.zeros((0, 4), np.float32)])
    return frame_idx, xyxy


def _split(boxes: Sequence[np.ndarray], texts: list[str], scores: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
    out, k = [], 0
    for b in boxes:
        out.append((texts[k:k + len(b)], scores[k:k + len(b)]))
        k += len(b)
    return out


# --------------------------------------------------------------------------------------------
# The whole reader


class TextReader:
    """Detect, orient and recognise text in a batch of frames.

    Args:
        det_model, cls_model, rec_model: model references; ``cls_model=None`` skips orientation.
        limit_side: detector input's longer side.
        det_thresh, box_thresh, unclip_ratio: DBNet post-processing (PP-OCR defaults).
        min_text_height: boxes shorter than this (source pixels) are not read.
        min_score: lines whose recognition score is below this are dropped (RapidOCR: 0.5).
        cls_thresh: orientation confidence needed to flip a crop.
        rec_batch_size: crops per recogniser run.
        threads: ONNX Runtime intra-op threads per model (0: let it choose).
    """

    def __init__(self, det_model: ModelRef = "ppocr:det", rec_model: ModelRef = "ppocr:rec",
                 cls_model: ModelRef | None = "ppocr:cls", limit_side: int = 960, det_thresh: float = 0.3,
                 box_thresh: float = 0.5, unclip_ratio: float = 1.6, min_text_height: float = 8.0,
                 min_score: float = 0.5, cls_thresh: float = 0.9, rec_batch_size: int = 6,
                 threads: int = 0):
        self.detector = TextDetector(det_model, limit_side, det_thresh, box_thresh, unclip_ratio,
                                     min_text_height, threads=threads)
        self.classifier = None if cls_model is None else TextClassifier(cls_model, cls_thresh, threads=threads)
        self.recognizer = TextRecognizer(rec_model, batch_size=rec_batch_size, threads=threads)
        self.min_score = min_score

    def __call__(self, frames: Sequence[Frame]) -> list[TextResult]:
        return self._read(_images(frames))

    def read_images(self, images: Sequence[np.ndarray]) -> list[TextResult]:
        """The same on plain HxWx3 uint8 RGB arrays."""
        return self._read(_images(images))

    def _read(self, images: list[_Image]) -> list[TextResult]:
        if not images:
            return []
        dets = self.detector(images)  # type: ignore[arg-type]
        boxes = [xyxy for xyxy, _ in dets]
        frame_idx, xyxy = _flatten(boxes)
        flip = None if self.classifier is None else self.classifier.flipped(images, frame_idx, xyxy)
        texts, scores = self.recognizer.recognize(images, frame_idx, xyxy, flip)
        results = []
        for b, (t, sc) in zip(boxes, _split(boxes, texts, scores)):
            keep = np.flatnonzero(sc >= self.min_score)
            # Reading order: rows top to bottom (by box centre), then left to right.
            if len(keep):
                cy = (b[keep, 1] + b[keep, 3]) / 2
                line = max(1.0, float(np.median(b[keep, 3] - b[keep, 1])))
                keep = keep[np.lexsort((b[keep, 0], np.round(cy / line)))]
            # Strip: the padded crop sometimes yields a leading/trailing space class.
            results.append(TextResult(np.ascontiguousarray(b[keep]), sc[keep].astype(np.float32),
                                      [t[k].strip() for k in keep]))
        return results
