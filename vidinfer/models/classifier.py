"""Secondary classifiers: softmax over crops of the primary detector's boxes.

Crops of every selected box of every frame in a batch go through the model together, so a batch
of 8 frames with 40 boxes costs a few classifier runs, not 40.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from vidinfer._xp import to_numpy
from vidinfer.detections import Attribute, Detections
from vidinfer.engines.base import Engine
from vidinfer.errors import ModelError
from vidinfer.frame import Frame
from vidinfer.models.outputs import select_output
from vidinfer.preprocess.crops import colour_standard, crop_resize_rgb, crop_resize_yuv420

__all__ = ["ClassifierAdapter", "SecondaryClassifier", "frame_crops", "host_crops"]


class ClassifierAdapter:
    """Top-1 label and score from a classifier's [N, classes] output.

    ``softmax``: True applies a softmax (the model outputs logits), False reads the output as
    probabilities, None decides per batch (rows that already sum to 1 in [0, 1] are left alone).
    """

    def __init__(self, labels: Sequence[str], softmax: bool | None = None, output: str | None = None):
        self.labels = list(labels)
        self.softmax = softmax
        self.output = output

    def bind(self, output_shapes: dict[str, tuple[Any, ...]], model_name: str = "classifier") -> None:
        self.output = select_output(output_shapes, self.output, model_name)
        shape = output_shapes[self.output]
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(self.labels)):
            raise ModelError(f"{model_name} output {self.output!r} has shape {list(shape)} but "
                             f"{len(self.labels)} labels were given; expected [N, {len(self.labels)}]")

    def decode(self, outputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(label_id int32, score float32) per row."""
        p = to_numpy(outputs[self.output or next(iter(outputs))]).astype(np.float32)
        if self.softmax or (self.softmax is None and not _is_probability(p)):
            p = np.exp(p - p.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        label = p.argmax(axis=1).astype(np.int32)
        return label, p[np.arange(len(p)), label]


def _is_probability(p: np.ndarray) -> bool:
    return bool(len(p) == 0 or (p.min() >= 0 and p.max() <= 1 and np.allclose(p.sum(axis=1), 1, atol=1e-3)))


class SecondaryClassifier:
    """Classifies crops of selected primary boxes and adds the result as an attribute column.

    Args:
        name: the attribute's name in results (e.g. "shade", "brand").
        engine: the classifier model's engine.
        adapter: decodes its output.
        operate_on: detector class ids whose boxes are classified; None means all.
        min_size: boxes narrower or shorter than this (source pixels) are skipped.
        max_batch_size: crops per engine run.
        crops: makes the model input from the selected boxes of each frame:
            ``crops(frames, boxes per frame, height, width, dtype)`` -> (total, 3, h, w) array of
            the engine's array type; `host_crops` (NumPy) by default, the GPU backend's own on GPU.
    """

    def __init__(self, name: str, engine: Engine, adapter: ClassifierAdapter,
                 operate_on: Sequence[int] | None = None, min_size: float = 0.0, max_batch_size: int = 32,
                 crops: Callable[..., Any] | None = None):
        self.name = name
        self.crops = crops or host_crops
        self.engine = engine
        self.adapter = adapter
        self.operate_on = None if operate_on is None else np.asarray(sorted(operate_on), np.int32)
        self.min_size = min_size
        self.max_batch_size = max_batch_size
        adapter.bind(engine.output_shapes, f"classifier {name!r}")

    def select(self, det: Detections) -> np.ndarray:
        """Row mask of the boxes this stage classifies."""
        mask = det.wh.min(axis=1) >= self.min_size if len(det) else np.zeros(0, bool)
        if self.operate_on is not None:
            mask &= np.isin(det.class_id, self.operate_on)
        return mask

    def __call__(self, frames: Sequence[Frame], detections: list[Detections]) -> list[Detections]:
        inp = self.engine.input
        masks = [self.select(d) for d in detections]
        total = sum(int(m.sum()) for m in masks)
        out = []
        if total == 0:
            for d in detections:
                out.append(d.with_attribute(self.name, _unlabelled(len(d))))
            return out
        tensor = self.crops(frames, [d.xyxy[m] for d, m in zip(detections, masks)], inp.height, inp.width,
                            inp.dtype)
        labels, scores = [], []
        for start in range(0, total, self.max_batch_size):
            lab, sc = self.adapter.decode(self.engine.run(tensor[start:start + self.max_batch_size]))
            labels.append(lab)
            scores.append(sc)
        label_all, score_all = np.concatenate(labels), np.concatenate(scores)
        k = 0
        for det, mask in zip(detections, masks):
            attr = _unlabelled(len(det))
            m = int(mask.sum())
            attr.label_id[mask] = label_all[k:k + m]
            attr.score[mask] = score_all[k:k + m]
            k += m
            out.append(det.with_attribute(self.name, attr))
        return out


def host_crops(frames: Sequence[Frame], boxes: Sequence[np.ndarray], out_h: int, out_w: int,
               dtype: Any = np.float32) -> np.ndarray:
    """(total, 3, out_h, out_w) NumPy crops of every frame's boxes (source pixels), in order."""
    total = sum(len(b) for b in boxes)
    crops = np.empty((total, out_h, out_w, 3), np.float32)
    k = 0
    for frame, xyxy in zip(frames, boxes):
        if len(xyxy):
            crops[k:k + len(xyxy)] = frame_crops(frame, xyxy, out_h, out_w)
            k += len(xyxy)
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=dtype)


def _unlabelled(n: int) -> Attribute:
    return Attribute(np.full(n, -1, np.int32), np.zeros(n, np.float32))


_YUV420 = {"yuv420p": False, "yuvj420p": True}


def frame_crops(frame: Frame, xyxy: np.ndarray, out_h: int, out_w: int) -> Any:
    """Crops of a frame's boxes (source pixels), resized to (N, out_h, out_w, 3) RGB in [0, 1].

    Reads the decoder's full-resolution planes when the frame carries them (only the crop pixels
    are converted to RGB), an RGB array source as is, and otherwise the detector's resized image.
    """
    src = frame.source
    if src is None:
        return crop_resize_rgb(frame.image, frame.letterbox.to_input(xyxy)
                               - [frame.letterbox.pad_x, frame.letterbox.pad_y] * 2, out_h, out_w)
    if isinstance(src, np.ndarray) or type(src).__module__.startswith("cupy"):
        return crop_resize_rgb(src, xyxy, out_h, out_w)
    fmt = src.format.name
    if fmt not in _YUV420:
        return crop_resize_rgb(src.to_ndarray(format="rgb24"), xyxy, out_h, out_w)
    y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in src.planes)
    standard, full = colour_standard(getattr(src, "colorspace", None), getattr(src, "color_range", None), fmt)
    return crop_resize_yuv420(y, u, v, xyxy, out_h, out_w, standard=standard, full_range=full)
