"""Text reading with the PP-OCR models: DBNet detection, 0/180 orientation, CTC recognition.

The ONNX files come from the ``rapidocr-onnxruntime`` wheel (see `vidinfer.models.registry`);
pre- and post-processing are ours (NumPy + scipy.ndimage, no OpenCV) and follow PP-OCR's:

* detection: the frame is resized so its longer side is ``limit_side``, both sides rounded to
  multiples of 32, BGR, (x/255 - 0.5) / 0.5 (RapidOCR's det normalisation), one frame per run;
  the probability map is thresholded (0.3), dilated 2x2, split into
  8-connected components, each scored by its mean probability (kept at >= 0.5) and grown by
  DBNet's unclip distance area * 1.6 / perimeter. Each line is a quadrilateral: the component's
  min-area rectangle (PP-OCR's get_mini_boxes: convex hull, rotating calipers); crops at least
  1.5x taller than wide are turned 90 degrees.
* crops are rectified as PP-OCR's get_rotate_crop_image does: the quad is warped (homography,
  bilinear) onto an upright rectangle, so text rotated or seen at an angle is read level.
* orientation: crops at 48x192, flipped 180 degrees when the classifier says "180" with > 0.9.
* recognition: crops at height 48 keeping their aspect, padded (grey) to their own width rounded
  up to 32 px (at least 320 px; a run holds crops of one padded width, so a line reads the same
  whatever shares its batch), BGR, (x/255 - 0.5) / 0.5; greedy CTC decode against the character
  list stored in the model's metadata (blank at 0, a space appended, as PP-OCR does).

Crops are sampled straight from the decoder's planes (`_Image.sample`), every line of every frame
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
from vidinfer.models.registry import resolve_model
from vidinfer.preprocess.crops import colour_standard, yuv_to_rgb_matrix

__all__ = ["TextResult", "TextDetector", "TextClassifier", "TextRecognizer", "TextReader",
           "db_boxes", "db_quads", "quad_size", "as_quads", "ctc_greedy_decode", "load_charset", "line_patches"]

ModelRef = str | os.PathLike[str]


@dataclass(eq=False)
class TextResult:
    """The text lines read in one frame, top to bottom then left to right.

    Attributes:
        xyxy: (N, 4) float32 boxes in source pixels: the bounding boxes of ``quad``, clipped to
            the frame.
        score: (N,) float32 recognition score (mean probability of the decoded characters).
        text: N strings.
        quad: (N, 4, 2) float32 (x, y) corners in source pixels of each line as it was read:
            top-left, top-right, bottom-right, bottom-left of the text (upside-down text starts
            at its bottom-right in the image). Not clipped: DBNet's margin may pass the edge.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    text: list[str] = field(default_factory=list)
    quad: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2), np.float32))

    def __len__(self) -> int:
        return len(self.text)


# --------------------------------------------------------------------------------------------
# Images: a Frame (decoder planes, RGB array, or only the detector image) or a plain RGB array.


class _Image:
    """One input image, in whatever form it came, with the two reads OCR needs of it."""

    def __init__(self, item: Frame | np.ndarray):
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
                self.av_frame = src
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

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear RGB in [0, 1], (..., 3) float32, at continuous view coordinates x, y (any
        shape, pixel i covers [i, i + 1); outside the image the edge pixel repeats, as PP-OCR's
        BORDER_REPLICATE). A 4:2:0 decoder frame is read from its planes: only the sampled
        points are converted to RGB (as `vidinfer.preprocess.crops.crop_resize_yuv420`)."""
        f = self.av_frame
        if f is not None and f.format.name in _YUV420:
            y_, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in f.planes)
            standard, full = colour_standard(getattr(f, "colorspace", None), getattr(f, "color_range", None),
                                             f.format.name)
            m, off = yuv_to_rgb_matrix(standard, full)
            # Chroma sits at half resolution: the same continuous point is at half the coordinate.
            yuv = np.stack([_bilinear(y_, x, y) - off[0], _bilinear(u, x * 0.5, y * 0.5) - off[1],
                            _bilinear(v, x * 0.5, y * 0.5) - off[2]], axis=-1)
            return np.clip(yuv @ (m.T * np.float32(1 / 255)), 0.0, 1.0)
        if self.array is None:  # another pixel format: the whole frame to RGB, once
            self.array = f.to_ndarray(format="rgb24")
        arr = self.array
        return np.stack([_bilinear(arr[..., c], x, y) for c in range(3)], axis=-1) * np.float32(1 / 255)


_YUV420 = frozenset({"yuv420p", "yuvj420p"})


def _bilinear(plane: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A 2-D plane sampled at continuous coordinates (pixel centres at i + 0.5), float32."""
    from scipy import ndimage

    return ndimage.map_coordinates(plane, np.stack([y - 0.5, x - 0.5]), order=1, mode="nearest",
                                   output=np.float32)


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


def _dilate_2x2(mask: np.ndarray) -> np.ndarray:
    # cv2.dilate with PP-OCR's 2x2 kernel: a pixel is set if it or its up/left neighbours are.
    m = mask.copy()
    m[1:] |= mask[:-1]
    out = m.copy()
    out[:, 1:] |= m[:, :-1]
    return out


def _row_ends(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel centres at both ends of every row of components 1..n, grouped by component:
    (points (M, 2) float64 x, y; starts (n + 1,), component k's points being
    points[starts[k - 1]:starts[k]]). Their convex hull is the component's, from far fewer points."""
    width = labels.shape[1]
    flat = labels.ravel()
    idx = np.flatnonzero((flat > 0) & (flat <= n))
    lab = flat[idx]
    order = np.argsort(lab, kind="stable")  # stable: within a component, pixels stay row-major
    idx, lab = idx[order], lab[order]
    key = lab.astype(np.int64) * labels.shape[0] + idx // width  # one value per (component, row)
    brk = np.flatnonzero(key[1:] != key[:-1]) + 1
    ends = np.stack([np.r_[0, brk], np.r_[brk - 1, len(key) - 1]], axis=1).ravel()
    pts = np.stack([idx[ends] % width, idx[ends] // width], axis=1) + 0.5
    return pts, np.searchsorted(lab[ends], np.arange(1, n + 2))


def _min_area_axes(hull: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axes (u, v) of the min-area rectangle around a convex polygon (rotating calipers: one
    side lies on a hull edge). u is the axis nearest +x, v = u turned 90 degrees (pointing down)."""
    e = np.roll(hull, -1, axis=0) - hull
    e = e[np.any(e != 0, axis=1)]
    u = e / np.hypot(e[:, 0], e[:, 1])[:, None]
    area = np.ptp(hull @ u.T, axis=0) * np.ptp(hull @ np.stack([-u[:, 1], u[:, 0]], axis=1).T, axis=0)
    a = u[np.argmin(area)]
    cand = np.array([a, [-a[1], a[0]], -a, [a[1], -a[0]]])
    u = cand[np.argmax(cand[:, 0])]
    return u, np.array([-u[1], u[0]])


def _component_quad(pts: np.ndarray, unclip_ratio: float, min_side: float) -> np.ndarray | None:
    """One component's text quad (4, 2) TL, TR, BR, BL from its pixel centres, or None (too thin).

    PP-OCR's get_mini_boxes + unclip: the min-area rectangle, dropped when its short side is under
    ``min_side``; every side pushed out by area * unclip_ratio / perimeter; dropped when the short
    side is then under min_side + 2 (pyclipper's rounded offset of a rectangle has this min-area
    rectangle)."""
    from scipy.spatial import ConvexHull

    try:
        hull = pts[ConvexHull(pts).vertices]
    except (RuntimeError, ValueError):  # QhullError: all on one line, no area, thinner than min_side
        return None
    u, v = _min_area_axes(hull)
    s, t = hull @ u, hull @ v
    w, h = float(np.ptp(s)), float(np.ptp(t))
    if min(w, h) < min_side:
        return None
    d = w * h * unclip_ratio / (2 * (w + h))
    if min(w, h) + 2 * d < min_side + 2:
        return None
    s0, s1, t0, t1 = s.min() - d, s.max() + d, t.min() - d, t.max() + d
    st = np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]])
    return st[:, :1] * u + st[:, 1:] * v


def db_quads(prob: np.ndarray, thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
             max_candidates: int = 1000, min_side: float = 3.0, dilate: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    """DBNet post-processing: an (H, W) probability map -> text quadrilaterals.

    Returns (quad (N, 4, 2) float32: each line's corners top-left, top-right, bottom-right,
    bottom-left as (x, y) in the map's continuous pixel coordinates (pixel i covers [i, i + 1)),
    score (N,) float32, the mean probability over the component). As PP-OCR: the map is
    thresholded, dilated 2x2 and split into 8-connected components; each gets the min-area
    rectangle through its pixel centres (upright text mostly gets its axis-aligned box), grown by
    DBNet's unclip distance (`_component_quad`). "Top" is the side of the rectangle's axis
    nearest +x; a line at most 45 degrees from horizontal has its corners where a reader expects.
    """
    from scipy import ndimage

    empty = np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
    mask = prob > thresh
    if dilate:
        mask = _dilate_2x2(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected, as contours
    if n == 0:
        return empty
    n = min(n, max_candidates)
    score = np.asarray(ndimage.mean(prob, labels, index=np.arange(1, n + 1)), np.float32)
    pts, starts = _row_ends(labels, n)
    quads, kept = [], []
    for k in np.flatnonzero(score >= box_thresh):
        q = _component_quad(pts[starts[k]:starts[k + 1]], unclip_ratio, min_side)
        if q is not None:
            quads.append(q)
            kept.append(k)
    if not quads:
        return empty
    return np.asarray(quads, np.float32), score[kept]


def db_boxes(prob: np.ndarray, thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
             max_candidates: int = 1000, min_side: float = 3.0, dilate: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
    """`db_quads` as axis-aligned boxes: (xyxy (N, 4) float32, the quads' bounding boxes, score)."""
    quad, score = db_quads(prob, thresh, box_thresh, unclip_ratio, max_candidates, min_side, dilate)
    return _bounds(quad), score


def _bounds(quad: np.ndarray) -> np.ndarray:
    """(N, 4, 2) quads -> (N, 4) xyxy bounding boxes."""
    return np.concatenate([quad.min(axis=1), quad.max(axis=1)], axis=1).astype(np.float32).reshape(-1, 4)


def quad_size(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) (N,) of quads TL, TR, BR, BL: the longer of each pair of opposite sides,
    the size of PP-OCR's rectified crop."""
    side = np.linalg.norm(np.roll(quad, -1, axis=1) - quad, axis=2)  # TL-TR, TR-BR, BR-BL, BL-TL
    return np.maximum(side[:, 0], side[:, 2]), np.maximum(side[:, 1], side[:, 3])


def _upright(quad: np.ndarray) -> np.ndarray:
    """PP-OCR turns crops at least 1.5 times taller than wide by 90 degrees (np.rot90: vertical
    text): the quad's corners move on one place so its top side is the old right side."""
    w, h = quad_size(quad)
    tall = h >= 1.5 * w
    out = quad.copy()
    out[tall] = quad[tall][:, [1, 2, 3, 0]]
    return out


def as_quads(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes -> (N, 4, 2) quads TL, TR, BR, BL; (N, 4, 2) quads are returned as they are."""
    b = np.asarray(boxes, np.float32)
    if b.ndim == 3:
        return b
    x1, y1, x2, y2 = b.reshape(-1, 4).T
    return np.stack([np.stack(p, axis=1) for p in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], axis=1)


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
        return [(xyxy, score) for xyxy, score, _ in self.detect(items)]

    def detect(self, items: Sequence[Frame | np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(xyxy (N, 4), score (N,), quad (N, 4, 2)) float32 per frame or RGB image, in source
        pixels: quads TL, TR, BR, BL (tall ones already turned 90 degrees, as PP-OCR reads
        them), xyxy their bounding boxes clipped to the frame."""
        out = []
        for im in _images(items):  # one frame per run (see __init__)
            w, h = self.input_size(im.width, im.height)
            rgb = im.resized_rgb(w, h).astype(np.float32) * np.float32(1 / 255)
            prob = next(iter(self.engine.run(_to_bgr_chw(rgb[None], self.mean, self.std)).values()))
            quad, score = db_quads(prob[0, 0], self.thresh, self.box_thresh, self.unclip_ratio, self.max_candidates)
            # Map to view pixels (per-axis: rounding to 32 changes the aspect), then to source.
            quad = _upright(quad * np.array([im.width / w * im.sx, im.height / h * im.sy], np.float32))
            xyxy = np.clip(_bounds(quad), 0, np.array([im.width * im.sx, im.height * im.sy] * 2, np.float32))
            _, qh = quad_size(quad)
            keep = ((xyxy[:, 2] - xyxy[:, 0] > 3) & (xyxy[:, 3] - xyxy[:, 1] > 3)
                    & (qh > max(3.0, self.min_text_height - 1e-6)))
            out.append((xyxy[keep], score[keep], quad[keep]))
        return out


# --------------------------------------------------------------------------------------------
# Rectified crops of many lines at once, at a fixed height and a common padded width


def _homographies(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(N, 3, 3) H with src ~ H @ (dst, 1) for (N, 4, 2) corner pairs (cv2.getPerspectiveTransform)."""
    n = len(src)
    x, y, sx, sy = dst[..., 0], dst[..., 1], src[..., 0], src[..., 1]
    a = np.zeros((n, 8, 8))
    a[:, 0::2, 0], a[:, 0::2, 1], a[:, 0::2, 2] = x, y, 1
    a[:, 1::2, 3], a[:, 1::2, 4], a[:, 1::2, 5] = x, y, 1
    a[:, 0::2, 6], a[:, 0::2, 7] = -x * sx, -y * sx
    a[:, 1::2, 6], a[:, 1::2, 7] = -x * sy, -y * sy
    b = np.stack([sx, sy], axis=2).reshape(n, 8)
    h = np.linalg.solve(a, b[..., None])[..., 0]
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


def _warp_grid(quads: np.ndarray, out_h: int, out_w: int, content_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates x, y (N, out_h, out_w) of the pixel centres of each quad warped onto an
    upright out_h x content_w[k] rectangle (PP-OCR's get_rotate_crop_image, resized to the model's
    height in the same sample). Columns past content_w repeat the last one: they become padding."""
    n = len(quads)
    cw = content_w.astype(np.float64)
    rect = np.zeros((n, 4, 2))
    rect[:, 1, 0] = rect[:, 2, 0] = cw
    rect[:, 2, 1] = rect[:, 3, 1] = out_h
    hom = _homographies(rect, quads.astype(np.float64))
    u = np.minimum(np.arange(out_w) + 0.5, cw[:, None])[:, None, :]  # (N, 1, W)
    v = (np.arange(out_h) + 0.5)[None, :, None]  # (1, H, 1)
    xyw = [hom[:, r, 0, None, None] * u + hom[:, r, 1, None, None] * v + hom[:, r, 2, None, None] for r in range(3)]
    return xyw[0] / xyw[2], xyw[1] / xyw[2]


def _line_crops(images: list[_Image], frame_idx: np.ndarray, quads: np.ndarray, out_h: int, out_w: int,
                content_w: np.ndarray, flip: np.ndarray | None = None) -> np.ndarray:
    """PP-OCR line input (N, 3, out_h, out_w): quad k (source pixels, TL, TR, BR, BL) rectified to
    out_h x content_w[k] at the left, BGR, (x/255 - 0.5) / 0.5, the columns beyond padded with 0
    (mid-grey), as PP-OCR pads. A flipped line starts at its bottom-right corner: the 180-degree
    turn. An axis-aligned quad samples the same points as a plain crop-and-resize of its box.
    """
    q = quads.copy()
    if flip is not None and flip.any():
        q[flip] = np.roll(q[flip], 2, axis=1)
    x, y = _warp_grid(q, out_h, out_w, content_w)
    crops = np.empty((len(q), out_h, out_w, 3), np.float32)
    for i in np.unique(frame_idx):
        sel = np.flatnonzero(frame_idx == i)
        im = images[i]
        crops[sel] = im.sample(x[sel] / im.sx, y[sel] / im.sy)  # source -> view pixels
    out = _to_bgr_chw(crops, np.float32(0.5), np.float32(0.5))
    pad = np.arange(out_w)[None, :] >= content_w[:, None]  # (N, W)
    out *= ~pad[:, None, None, :]
    return out


def line_patches(item: Frame | np.ndarray, quads: np.ndarray, *, rows: int, cols: int,
                 supersample: int = 4) -> np.ndarray:
    """How each line looks: its quad (source pixels, TL, TR, BR, BL) rectified to ``rows`` x ``cols``
    RGB in [0, 1], (N, rows, cols, 3) float32. Each value is the mean of ``supersample``^2 bilinear
    samples: a low-pass, so a line placed a pixel or two off still looks the same, while a hand or
    a player over part of it does not."""
    quads = np.asarray(quads, np.float64).reshape(-1, 4, 2)
    n, ss = len(quads), supersample
    if n == 0:
        return np.zeros((0, rows, cols, 3), np.float32)
    im = item if isinstance(item, _Image) else _Image(item)
    x, y = _warp_grid(quads, rows * ss, cols * ss, np.full(n, cols * ss))
    s = im.sample(x / im.sx, y / im.sy)
    return s.reshape(n, rows, ss, cols, ss, 3).mean(axis=(2, 4))


def _aspect(quads: np.ndarray) -> np.ndarray:
    w, h = quad_size(quads)
    return w / np.maximum(h, 1e-6)


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

    def flipped(self, images: list[_Image], frame_idx: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N,) bool: line k reads upside down; ``boxes``: (N, 4, 2) quads or (N, 4) xyxy, source px."""
        quads = as_quads(boxes)
        n = len(quads)
        flip = np.zeros(n, bool)
        if n == 0:
            return flip
        content = np.minimum(np.ceil(self.height * _aspect(quads)), self.width).clip(1).astype(np.int64)
        for s in range(0, n, self.batch_size):
            sl = slice(s, s + self.batch_size)
            crops = _line_crops(images, frame_idx[sl], quads[sl], self.height, self.width, content[sl])
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


WIDTH_STEP = 32  # recogniser input widths are multiples of this (the model's width stride is 8)


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

    def recognize(self, images: list[_Image], frame_idx: np.ndarray, boxes: np.ndarray,
                  flip: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """(texts, scores) of lines of images[frame_idx[k]]: (N, 4, 2) quads TL, TR, BR, BL or
        (N, 4) xyxy boxes, source pixels."""
        quads = as_quads(boxes)
        n = len(quads)
        texts: list[str] = [""] * n
        scores = np.zeros(n, np.float32)
        if n == 0:
            return texts, scores
        ratio = _aspect(quads)
        # Each line's padded width depends on its own aspect only (rounded up to WIDTH_STEP), and
        # a run holds lines of one width: what a line reads as never depends on which other lines
        # (other streams' frames) share its batch, so a run's figures do not depend on timing.
        width = np.clip(np.ceil(self.height * ratio / WIDTH_STEP) * WIDTH_STEP, self.min_width,
                        self.max_width).astype(np.int64)
        order = np.lexsort((ratio, width))
        starts = np.flatnonzero(np.r_[True, np.diff(width[order]) != 0])
        for group in np.split(order, starts[1:]):
            w = int(width[group[0]])
            for s in range(0, len(group), self.batch_size):
                sel = group[s:s + self.batch_size]
                content = np.minimum(np.ceil(self.height * ratio[sel]), w).clip(1).astype(np.int64)
                crops = _line_crops(images, frame_idx[sel], quads[sel], self.height, w, content,
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
    """(frame index (N,), rows (N, ...)) of per-frame (n, 4) boxes or (n, 4, 2) quads."""
    frame_idx = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(boxes)] or [np.zeros(0, np.int64)])
    rows = [np.asarray(b, np.float32) for b in boxes]
    tail = next((r.shape[1:] for r in rows if r.ndim > 1), (4,))
    return frame_idx, np.concatenate([r.reshape(-1, *tail) for r in rows] or [np.zeros((0, *tail), np.float32)])


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
        dets = self.detector.detect(images)  # type: ignore[arg-type]
        boxes = [xyxy for xyxy, _, _ in dets]
        frame_idx, quads = _flatten([q for _, _, q in dets])
        flip = None if self.classifier is None else self.classifier.flipped(images, frame_idx, quads)
        texts, scores = self.recognizer.recognize(images, frame_idx, quads, flip)
        if flip is not None:
            quads[flip] = np.roll(quads[flip], 2, axis=1)  # corners as the line was read
        results = []
        for i, (b, (t, sc)) in enumerate(zip(boxes, _split(boxes, texts, scores))):
            keep = np.flatnonzero(sc >= self.min_score)
            # Reading order: rows top to bottom (by box centre), then left to right.
            if len(keep):
                cy = (b[keep, 1] + b[keep, 3]) / 2
                line = max(1.0, float(np.median(b[keep, 3] - b[keep, 1])))
                keep = keep[np.lexsort((b[keep, 0], np.round(cy / line)))]
            # Strip: the padded crop sometimes yields a leading/trailing space class.
            results.append(TextResult(np.ascontiguousarray(b[keep]), sc[keep].astype(np.float32),
                                      [t[k].strip() for k in keep],
                                      np.ascontiguousarray(quads[frame_idx == i][keep])))
        return results
