"""YOLO-family detector outputs in the four layouts people export.

* ``yolov5``: [N, anchors, 5 + classes]: cx, cy, w, h, objectness, class probabilities (also
  YOLOv7, YOLOv6 and YOLOX exported with ``--decode_in_inference``).
* ``yolov8``: [N, 4 + classes, anchors]: cx, cy, w, h, class scores (YOLOv8, YOLO11).
* ``end2end``: [N, K, 6]: x1, y1, x2, y2, score, class, NMS already done inside the model
  (YOLOv10, exports with EfficientNMS/``nms=True``); rows with score 0 are padding.
* ``yolox``: [N, anchors, 5 + classes] as YOLOX's ``export_onnx.py`` writes it by default: x, y
  in grid cells from the anchor's cell, log w, log h in strides, objectness, class probabilities;
  anchors are the stride 8, 16 and 32 grids of the input, row-major, one after the other. Its
  shape is that of yolov5, so "auto" never picks it; a yolov5 decode of it gives no plausible box.

Box coordinates are in model-input pixels; the adapter undoes the letterbox to source pixels.

A layout that fits the output's shape may still be the wrong one (yolov5 on a YOLOX export): the
adapter looks at the candidate boxes of the first batches, and when none is plausible it logs
one warning naming the layout that does decode plausible boxes.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np

from vidinfer._xp import array_module, to_numpy
from vidinfer.detections import Detections
from vidinfer.errors import ModelError
from vidinfer.models.nms import batched_nms
from vidinfer.models.outputs import select_output
from vidinfer.preprocess.letterbox import Letterbox

__all__ = ["YoloAdapter", "YoloLayout", "plausible_boxes", "yolox_grid"]

log = logging.getLogger(__name__)

MAX_CANDIDATES = 8192  # per batch, before NMS: bounds the work of a frame full of low scores
YOLOX_STRIDES = (8, 16, 32)
# Batches with candidates looked at before the layout is called wrong: a right one shows a
# plausible box in the first; a model that sees nothing yet has no candidates and is not judged.
CHECK_BATCHES = 3


class YoloLayout(str, Enum):
    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    END2END = "end2end"
    YOLOX = "yolox"


class YoloAdapter:
    """Decodes a YOLO detector's output into per-frame `Detections` in source pixels.

    Args:
        classes: class names, in the model's class order.
        layout: one of `YoloLayout`, or "auto" to infer it from the output shape and class count.
        conf_threshold: minimum score (objectness x class probability for yolov5 and yolox).
        class_thresholds: a minimum score of its own for some classes, by name (the others keep
            ``conf_threshold``): a class that look-alikes trip needs more evidence than the rest.
        iou_threshold: NMS overlap above which the lower-scored box of a class is dropped.
        max_detections: most boxes kept per frame.
        output: name of the output to read; the model's first output when None.
    """

    def __init__(self, classes: Sequence[str], layout: str = "auto", conf_threshold: float = 0.25,
                 iou_threshold: float = 0.45, max_detections: int = 300, output: str | None = None, *,
                 class_thresholds: Mapping[str, float] | None = None):
        self.classes = list(classes)
        self.forced = layout != "auto"
        self.layout = YoloLayout(layout) if self.forced else None
        self.conf_threshold = conf_threshold
        unknown = sorted(set(class_thresholds or ()) - set(self.classes))
        if unknown:
            raise ValueError(f"class_thresholds names {', '.join(map(repr, unknown))}, not a class of the model "
                             f"({', '.join(self.classes)}); use the class names as the labels give them")
        # Per class, the score a box must exceed (None: conf_threshold for all, the usual case).
        self.class_conf: np.ndarray | None = None
        if class_thresholds:
            self.class_conf = np.full(len(self.classes), conf_threshold, np.float32)
            for name, t in class_thresholds.items():
                self.class_conf[self.classes.index(name)] = t
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.output = output
        self._grid: np.ndarray | None = None
        self._watch: _LayoutWatch | None = None

    def bind(self, output_shapes: dict[str, tuple[Any, ...]], model_name: str = "detector",
             input_size: tuple[int, int] | None = None) -> None:
        """Check the model's output fits, and settle the layout when it is "auto".

        ``input_size`` (width, height) places yolox's anchors, and lets the first batches' boxes be
        checked against the layout (one warning when none is plausible)."""
        self.output = select_output(output_shapes, self.output, model_name)
        shape = output_shapes[self.output]
        num_classes = len(self.classes)
        layout = self.layout or _infer_layout(shape, num_classes, model_name)
        self._grid = yolox_grid(*input_size) if input_size is not None else None
        _check_layout(layout, shape, num_classes, model_name, self._grid)
        self.layout = layout
        if input_size is not None:
            self._watch = _LayoutWatch(self, model_name, shape)

    def decode(self, outputs: dict[str, Any], letterboxes: Sequence[Letterbox]) -> list[Detections]:
        """One `Detections` per image of the batch, in source-frame pixels."""
        raw = outputs[self.output or next(iter(outputs))]
        layout = self.layout or _infer_layout(raw.shape, len(self.classes), "detector")
        floor = self.conf_threshold if self.class_conf is None else float(self.class_conf.min())
        img, xyxy, score, cls = _candidates(raw, layout, floor, self._grid)
        if self.class_conf is not None and len(score):
            keep = score > self.class_conf[np.clip(cls, 0, len(self.class_conf) - 1)]
            img, xyxy, score, cls = img[keep], xyxy[keep], score[keep], cls[keep]
        if self._watch is not None and len(score):
            self._watch.see(raw, img, xyxy, score, letterboxes)
        if layout is not YoloLayout.END2END and len(score):
            keep = batched_nms(xyxy, score, img * max(len(self.classes), 1) + cls, self.iou_threshold)
            img, xyxy, score, cls = img[keep], xyxy[keep], score[keep], cls[keep]
        results = []
        for i, box in enumerate(letterboxes):
            rows = np.flatnonzero(img == i)[: self.max_detections]
            results.append(Detections(box.to_source(xyxy[rows]), score[rows], cls[rows]))
        return results


def yolox_grid(width: int, height: int) -> np.ndarray:
    """(anchors, 3) float32 rows of gx, gy, stride: YOLOX's anchor order for a width x height input."""
    parts = []
    for s in YOLOX_STRIDES:
        gy, gx = np.mgrid[0:height // s, 0:width // s]
        parts.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], axis=1))
    return np.concatenate(parts).astype(np.float32)


def _candidates(raw: Any, layout: YoloLayout, conf: float, grid: np.ndarray | None = None,
                ) -> tuple[np.ndarray, ...]:
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
    if layout is YoloLayout.YOLOX:
        if grid is None or len(grid) != raw.shape[1]:
            raise ModelError(f"a yolox output of {raw.shape[1]} anchors needs the model's input size, "
                             "whose stride 8, 16 and 32 grids hold that many; give input_size")
        g = grid[to_numpy(anchor)]
        with np.errstate(over="ignore"):  # a wrong layout's huge log sizes: inf, judged implausible
            b = np.concatenate([(b[:, :2] + g[:, :2]) * g[:, 2:], np.exp(b[:, 2:4]) * g[:, 2:]], axis=1)
    img = to_numpy(img).astype(np.int64)
    if layout is not YoloLayout.END2END:
        half = b[:, 2:4] / 2
        b = np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)
    order = np.argsort(-s, kind="stable")
    return img[order], b[order], s[order], c[order]


def plausible_boxes(img: np.ndarray, xyxy: np.ndarray, score: np.ndarray,
                    letterboxes: Sequence[Letterbox]) -> np.ndarray:
    """Which candidate boxes (input pixels) a detector could mean: finite, a score in [0, 1], at
    least 1 px a side and 4 px² (the finest YOLO stride is 8 px), at most twice the input a side,
    and overlapping the picture (not only the letterbox padding). Boxes of padded batch slots
    (no letterbox) are not plausible."""
    n = len(letterboxes)
    ok = img < n
    if not ok.any():
        return ok
    geo = np.array([(b.pad_x, b.pad_y, b.pad_x + b.new_w, b.pad_y + b.new_h, b.dst_w, b.dst_h)
                    for b in letterboxes], np.float32)[np.minimum(img, n - 1)]
    x1, y1, x2, y2 = xyxy.T
    with np.errstate(invalid="ignore", over="ignore"):
        w, h = x2 - x1, y2 - y1
        ok &= np.isfinite(xyxy).all(axis=1) & np.isfinite(score) & (score >= 0) & (score <= 1.001)
        ok &= (w >= 1) & (h >= 1) & (w * h >= 4) & (w <= 2 * geo[:, 4]) & (h <= 2 * geo[:, 5])
        ok &= (np.minimum(x2, geo[:, 2]) > np.maximum(x1, geo[:, 0]))
        ok &= (np.minimum(y2, geo[:, 3]) > np.maximum(y1, geo[:, 1]))
    return ok


class _LayoutWatch:
    """Looks at the candidates of the first batches; warns once if none is plausible."""

    def __init__(self, adapter: YoloAdapter, model_name: str, shape: tuple[Any, ...]):
        self.adapter, self.model_name, self.shape = adapter, model_name, shape
        self.batches = 0

    def see(self, raw: Any, img: np.ndarray, xyxy: np.ndarray, score: np.ndarray,
            letterboxes: Sequence[Letterbox]) -> None:
        a = self.adapter
        if not (img < len(letterboxes)).any():
            return  # candidates only in padded batch slots (stale data): this batch says nothing
        if plausible_boxes(img, xyxy, score, letterboxes).any():
            a._watch = None  # the layout decodes real boxes: nothing more to check
            return
        self.batches += 1
        if self.batches < CHECK_BATCHES:
            return
        a._watch = None
        assert a.layout is not None
        shown = "[" + ", ".join(str(d) if isinstance(d, int) else "N" for d in self.shape) + "]"
        used = f'"{a.layout.value}"' if a.forced else f'"auto" ({a.layout.value}, from the output shape)'
        likely = _better_layout(a, raw, letterboxes)
        if likely is None:
            hint = "no other layout decodes one either: check the class list, input_scale and channel_order"
        elif not a.forced or _auto_layout(self.shape, len(a.classes)) is not likely:
            hint = f'it looks like {likely.value}: set layout = "{likely.value}"'
        else:
            hint = f'it looks like {likely.value}: set layout = "auto" or "{likely.value}"'
        log.warning("%s gives output %s but layout = %s decodes no plausible box; %s",
                    self.model_name, shown, used, hint)


def _better_layout(a: YoloAdapter, raw: Any, letterboxes: Sequence[Letterbox]) -> YoloLayout | None:
    """The layout, among those the output's shape allows, that decodes the most plausible boxes
    of this batch; failing that, the one "auto" infers from the shape (when another)."""
    best, most = None, 0
    for layout in YoloLayout:
        if layout is a.layout:
            continue
        try:
            _check_layout(layout, raw.shape, len(a.classes), "", a._grid)
        except ModelError:
            continue
        img, xyxy, score, _ = _candidates(raw, layout, a.conf_threshold, a._grid)
        count = int(plausible_boxes(img, xyxy, score, letterboxes).sum())
        if count > most:
            best, most = layout, count
    if best is None:
        auto = _auto_layout(raw.shape, len(a.classes))
        best = auto if auto is not a.layout else None
    return best


def _auto_layout(shape: tuple[Any, ...], num_classes: int) -> YoloLayout | None:
    try:
        return _infer_layout(shape, num_classes, "")
    except ModelError:
        return None


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
                     f"layout for {num_classes} classes; set layout to 'yolov5', 'yolov8', 'end2end' or 'yolox' "
                     "and check the class list")


def _check_layout(layout: YoloLayout, shape: tuple[Any, ...], num_classes: int, model_name: str,
                  grid: np.ndarray | None = None) -> None:
    expected = {
        YoloLayout.YOLOV5: (f"[N, anchors, {5 + num_classes}]", 2, 5 + num_classes),
        YoloLayout.YOLOV8: (f"[N, {4 + num_classes}, anchors]", 1, 4 + num_classes),
        YoloLayout.END2END: ("[N, K, 6]", 2, 6),
        YoloLayout.YOLOX: (f"[N, anchors, {5 + num_classes}]", 2, 5 + num_classes),
    }[layout]
    text, axis, size = expected
    if len(shape) != 3 or (isinstance(shape[axis], int) and shape[axis] != size):
        auto = _auto_layout(shape, num_classes)
        hint = (f'; it looks like {auto.value}: set layout = "auto" or "{auto.value}"' if auto is not None
                else "; check the layout and the class list")
        raise ModelError(f"{model_name} output has shape {list(shape)} but layout {layout.value!r} with "
                         f"{num_classes} classes expects {text}{hint}")
    if layout is YoloLayout.YOLOX and grid is not None and isinstance(shape[1], int) and shape[1] != len(grid):
        raise ModelError(f"{model_name} output has shape {list(shape)} but layout 'yolox' expects {len(grid)} "
                         "anchors for its input (grids of strides 8, 16 and 32); check the layout and input_size")
