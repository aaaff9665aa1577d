"""How sharp a brand's box is: the width of its edges, measured on the frame's luma.

For the luma Y of a box, ``R = Σ|ΔY| / Σ|∇Y|`` (the 4-neighbour Laplacian over the forward
differences, both summed over the box). An edge spread over ``w`` pixels has ``Σ|∇Y|`` equal to its
contrast and ``Σ|ΔY|`` twice the contrast over ``w``, so ``2 / R`` is the mean edge width in pixels,
whatever the contrast: sharpness = ``min(1, SHARP_EDGE_PX / (2 / R))``, 1 for edges 2 px wide or
less, 0.5 at 4 px, 0.25 at 8 px (a mark out of focus or in motion blur). It is measured in the
frame's own pixels: on the decoder's luma plane when the frame has one, else on the full-resolution
RGB frame, else on the detector's resized image with the widths scaled back to source pixels.
A box wider or taller than ``WINDOW`` px is measured on its central ``WINDOW`` x ``WINDOW`` window
(cropping keeps edge widths; resampling would not). Noise reads as sharp edges: grain adds to
``Σ|ΔY|`` more than to ``Σ|∇Y|``.

:func:`sharpness` is the NumPy reference; it runs on the host pixels the stage is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vidinfer._xp import to_numpy

__all__ = ["sharpness", "edge_width", "box_sharpness", "SHARP_EDGE_PX", "WINDOW"]

#: Edges this wide or narrower (source pixels) count as fully sharp.
SHARP_EDGE_PX = 2.0
#: The largest window measured per box, a side in pixels.
WINDOW = 256
#: Boxes smaller than this a side (source pixels) are too small to say: sharpness 0.
MIN_SIDE = 4
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_YUV_FORMATS = frozenset({"yuv420p", "yuvj420p", "nv12", "yuv422p", "yuv444p"})


def edge_width(luma: np.ndarray) -> float:
    """Mean edge width in pixels of a 2-D luma patch (inf when it is flat)."""
    y = np.asarray(luma, np.float32)
    if y.shape[0] < 3 or y.shape[1] < 3:
        return float("inf")
    # Both sums over the interior rows / columns the Laplacian sees, so a patch's border adds no bias.
    grad = np.abs(np.diff(y[:, 1:-1], axis=0)).sum() + np.abs(np.diff(y[1:-1], axis=1)).sum()
    lap = np.abs(y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]).sum()
    if grad <= 1e-6 or lap <= 1e-6:
        return float("inf")
    return float(2.0 * grad / lap)


def sharpness(luma: np.ndarray, pixel_size: float = 1.0) -> float:
    """Sharpness in [0, 1] of a luma patch whose pixels are ``pixel_size`` source pixels wide."""
    width = edge_width(luma) * pixel_size
    return float(min(1.0, SHARP_EDGE_PX / width)) if np.isfinite(width) else 0.0


def _window(x0: float, y0: float, x1: float, y1: float, w: int, h: int, limit: int) -> tuple[int, int, int, int]:
    """The box clipped to the picture, then its central ``limit`` x ``limit`` window, as ints."""
    ax0, ay0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ax1, ay1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    if ax1 - ax0 > limit:
        ax0 = (ax0 + ax1 - limit) // 2
        ax1 = ax0 + limit
    if ay1 - ay0 > limit:
        ay0 = (ay0 + ay1 - limit) // 2
        ay1 = ay0 + limit
    return ax0, ay0, ax1, ay1


def box_sharpness(frame: Any, xyxy: np.ndarray) -> np.ndarray:
    """Per box (source-pixel xyxy), its sharpness in ``frame`` (a `vidinfer.frame.Frame`); the
    frame's full-resolution pixels are read where they are, and only the boxes' windows converted."""
    out = np.zeros(len(xyxy), np.float32)
    if not len(xyxy):
        return out
    src, scale = frame.source, 1.0
    plane: Any = None
    rgb: Any = None
    if src is not None and getattr(getattr(src, "format", None), "name", None) in _YUV_FORMATS:
        p = src.planes[0]  # the decoder's luma plane: a view, no conversion
        plane = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]
    elif src is not None and hasattr(src, "to_ndarray"):
        rgb = src.to_ndarray(format="rgb24")  # another pixel format: converted once
    elif src is not None:
        rgb = src  # an RGB array (NumPy or CuPy)
    else:  # only the detector's image: measure there, widths back in source pixels
        rgb = frame.image
        lb = frame.letterbox
        scale = lb.src_w / lb.new_w
    pic = plane if plane is not None else rgb
    h, w = int(pic.shape[0]), int(pic.shape[1])
    boxes = np.asarray(xyxy, np.float64) / scale
    limit = max(3, int(WINDOW / scale))
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if (x1 - x0) * scale < MIN_SIDE or (y1 - y0) * scale < MIN_SIDE:
            continue
        ax0, ay0, ax1, ay1 = _window(x0, y0, x1, y1, w, h, limit)
        if ax1 - ax0 < 3 or ay1 - ay0 < 3:
            continue
        if plane is not None:
            patch = plane[ay0:ay1, ax0:ax1]
        else:
            patch = to_numpy(rgb[ay0:ay1, ax0:ax1]).astype(np.float32) @ _LUMA
        out[i] = sharpness(patch, scale)
    return out
