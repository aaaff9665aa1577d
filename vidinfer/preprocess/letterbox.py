"""Letterbox geometry: fit a source frame into a model input, keep its aspect, pad the rest.

Coordinates are continuous: pixel i spans [i, i+1). Scaling uses the exact per-axis ratio of the
resized size to the source size, so mapping boxes back is exact to the resize's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vidinfer._xp import array_module

__all__ = ["CHANNEL_ORDERS", "INPUT_SCALES", "InputConvention", "Letterbox", "PAD_VALUE", "RGB_0_1", "fill_batch_slot"]

PAD_VALUE = 114  # grey padding, as YOLO-family models were trained with

# A model's input range -> the pixel value that becomes 1.0 (pixel values are 0..255).
INPUT_SCALES = {"0-1": 255.0, "0-255": 1.0}
CHANNEL_ORDERS = ("rgb", "bgr")


@dataclass(frozen=True)
class InputConvention:
    """What a model wants of its input pixels: their range and the order of the colour planes.

    ``scale``: "0-1" (pixel / 255, what most exports take) or "0-255" (pixel values as they are);
    ``channel_order``: "rgb" or "bgr" (OpenCV-trained models such as many Caffe and Darknet ports).
    """

    scale: str = "0-1"
    channel_order: str = "rgb"

    def __post_init__(self) -> None:
        if self.scale not in INPUT_SCALES:
            raise ValueError(f"input scale must be one of {', '.join(INPUT_SCALES)}, got {self.scale!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channel_order!r}")

    @property
    def divisor(self) -> float:
        """The pixel value that becomes 1.0: 255 or 1."""
        return INPUT_SCALES[self.scale]

    @property
    def bgr(self) -> bool:
        return self.channel_order == "bgr"


RGB_0_1 = InputConvention()


@dataclass(frozen=True)
class Letterbox:
    """Where a ``src_w`` x ``src_h`` frame lands inside a ``dst_w`` x ``dst_h`` model input."""

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
        scale = min(dst_w / src_w, dst_h / src_h)
        new_w = max(1, min(dst_w, round(src_w * scale)))
        new_h = max(1, min(dst_h, round(src_h * scale)))
        return cls(src_w, src_h, dst_w, dst_h, new_w, new_h,
                   (dst_w - new_w) // 2, (dst_h - new_h) // 2)

    def to_source(self, xyxy: Any) -> Any:
        """Map (N, 4) boxes from model-input pixels back to source pixels, clipped to the frame."""
        xp = array_module(xyxy)
        offset = xp.asarray([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=xp.float32)
        scale = xp.asarray([self.src_w / self.new_w, self.src_h / self.new_h] * 2, dtype=xp.float32)
        out = (xyxy - offset) * scale
        limit = xp.asarray([self.src_w, self.src_h, self.src_w, self.src_h], dtype=xp.float32)
        return xp.clip(out, 0, limit)

    def to_input(self, xyxy: Any) -> Any:
        """Map (N, 4) source-pixel boxes into model-input pixels (the inverse of `to_source`)."""
        xp = array_module(xyxy)
        offset = xp.asarray([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=xp.float32)
        scale = xp.asarray([self.new_w / self.src_w, self.new_h / self.src_h] * 2, dtype=xp.float32)
        return xyxy * scale + offset


def fill_batch_slot(batch: Any, index: int, resized_rgb: Any, box: Letterbox,
                    convention: InputConvention = RGB_0_1) -> None:
    """Write one resized HxWx3 uint8 RGB image into slot ``index`` of an (N, 3, H, W) batch.

    The slot gets the padding colour around the image and values scaled to the model's range
    (``convention``: [0, 1] by default, or 0..255) in its channel order, in the batch's dtype
    (float32 or float16): exactly what the fused GPU kernel produces from NV12.
    """
    xp = array_module(batch)
    slot = batch[index]
    pad = PAD_VALUE / convention.divisor
    y0, x0, h, w = box.pad_y, box.pad_x, box.new_h, box.new_w
    # Only the borders need the padding colour; the image area is overwritten below.
    if y0 or h < box.dst_h:
        slot[:, :y0] = pad
        slot[:, y0 + h:] = pad
    if x0 or w < box.dst_w:
        slot[:, y0:y0 + h, :x0] = pad
        slot[:, y0:y0 + h, x0 + w:] = pad
    chw = xp.moveaxis(xp.asarray(resized_rgb), -1, 0)
    if convention.bgr:
        chw = chw[::-1]  # a view: the planes are reordered by the multiply below, not copied first
    xp.multiply(chw, np.float32(1 / convention.divisor), out=slot[:, y0:y0 + h, x0:x0 + w], casting="unsafe")
