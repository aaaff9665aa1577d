"""NumPy references of the GPU preprocessing kernels (``vidinfer/preprocess/kernels/*.cu``).

Each function here performs the kernel's float32 arithmetic operation by operation, in the same
order, so a kernel's output can be checked against it to within a few float32 ulps (the only
expected differences: fused multiply-adds if the kernel was compiled with them, and the float16
rounding path). The sampling convention is the one of `vidinfer.preprocess.crops`:

* continuous coordinates: pixel ``i`` spans ``[i, i + 1)``;
* output pixel ``j`` of a span ``[x0, x0 + len)`` resized to ``n`` pixels samples the point
  ``x = x0 + ((j + 0.5) / n) * len``; for a whole frame that is index ``(j + 0.5) * src / n - 0.5``;
* luma index ``clamp(x - 0.5, 0, w - 1)``, bilinear between ``floor`` and ``floor + 1`` (clamped);
* chroma (NV12: interleaved U, V at half resolution) at the same point in its own pixels,
  vertically ``clamp(y / 2 - 0.5, 0, ch - 1)`` (between its two luma rows, as in MPEG-2, H.264,
  HEVC), horizontally ``clamp(x / 2 + chroma_dx - 0.5, 0, cw - 1)`` with ``chroma_dx`` from
  `CHROMA_DX`: 0 for centre-sited chroma (MPEG-1, JPEG; VP8, VP9 and AV1 as FFmpeg decodes them),
  0.25 for chroma co-sited with the even luma columns ("left": the H.264, HEVC and MPEG-4 part 2
  default, which swscale honours for decoded frames);
* ``rgb = M @ (yuv - offsets)`` in 0..255 units with ``M, offsets`` from
  `vidinfer.preprocess.crops.yuv_to_rgb_matrix`;
* a model's input convention (`vidinfer.preprocess.letterbox.InputConvention`) is folded into the
  letterbox kernel's parameters: "bgr" swaps the first and last rows of ``M`` (`channel_matrix`),
  "0-255" divides by 1 instead of 255 (`normalisation_constants`); the kernel itself is the same.

NV12 planes are taken as ``y`` (H, W) uint8 and ``uv`` (ceil(H/2), 2*ceil(W/2)) uint8 (U, V
interleaved), or ``uv`` as (ceil(H/2), ceil(W/2), 2); row padding (pitch) is allowed. At an odd
edge the chroma plane may be one sample short (``floor``: an odd-width array holds floor(W/2)
U, V pairs per row, a (1.5H, W) array of odd H one chroma row fewer): the last chroma sample is
then repeated (`nv12_chroma_size`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vidinfer.preprocess.letterbox import PAD_VALUE, RGB_0_1, InputConvention, Letterbox

__all__ = [
    "CHROMA_DX",
    "channel_matrix",
    "crop_resize_nv12_reference",
    "letterbox_nv12_reference",
    "letterbox_region",
    "normalisation_constants",
    "nv12_chroma_size",
    "nv12_from_rgb",
    "nv12_to_yuv420",
]

_F = np.float32
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}

# Horizontal chroma offset, in chroma pixels, of each chroma siting (see the module docstring).
CHROMA_DX = {"center": 0.0, "left": 0.25}


def normalisation_constants(mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                            convention: InputConvention = RGB_0_1,
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (scale, bias, pad) float32 triples of the letterbox kernel.

    An image value is ``clamp(rgb, 0, 255) * scale + bias`` with ``scale = 1 / (D * std)`` and
    ``bias = -mean / std``, ``D`` being 255 for a "0-1" model and 1 for a "0-255" one (mean, std in
    the model's units and channel order); the padding is the normalised ``PAD_VALUE``: exactly
    ``float32(114 / D)`` when no mean/std is given, like `vidinfer.preprocess.letterbox.fill_batch_slot`.
    """
    m = np.zeros(3) if mean is None else np.asarray(mean, np.float64).reshape(3)
    s = np.ones(3) if std is None else np.asarray(std, np.float64).reshape(3)
    if np.any(s == 0):
        raise ValueError("std must be non-zero")
    d = convention.divisor
    scale = (1.0 / (d * s)).astype(_F)
    bias = (-m / s).astype(_F) + _F(0)  # + 0 turns -0.0 into 0.0
    pad = ((PAD_VALUE / d - m) / s).astype(_F)
    return scale, bias, pad


def channel_matrix(matrix: Any, convention: InputConvention = RGB_0_1) -> np.ndarray:
    """The 3x3 YUV -> model-channel matrix: ``matrix`` (YUV -> RGB), its R and B rows swapped for
    a "bgr" model, so the kernel writes B to the first plane without a parameter of its own."""
    m = np.asarray(matrix, _F).reshape(3, 3)
    return m[::-1].copy() if convention.bgr else m


def nv12_chroma_size(w: int, h: int, uv_rows: int, uv_pairs: int) -> tuple[int, int]:
    """(cw, ch): the chroma samples per row and rows the kernels read for a w x h NV12 frame whose
    chroma plane holds ``uv_rows`` rows of ``uv_pairs`` U, V pairs: ceil(w/2) x ceil(h/2), or one
    fewer where the plane stops at floor (then the edge sample is repeated)."""
    cw, ch = min((w + 1) // 2, uv_pairs), min((h + 1) // 2, uv_rows)
    if cw < max(1, w // 2) or ch < max(1, h // 2):
        raise ValueError(f"chroma plane of {uv_rows} rows x {uv_pairs} U, V pairs is too small for a {w}x{h} frame")
    return cw, ch


def _chroma(uv: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    if uv.ndim == 3:
        u, v = uv[..., 0], uv[..., 1]
    else:
        u, v = uv[:, 0::2], uv[:, 1::2][:, :uv.shape[1] // 2]  # an odd-width row ends in a lone U
        u = u[:, :v.shape[1]]
    cw, ch = nv12_chroma_size(w, h, u.shape[0], u.shape[1])
    return u[:ch, :cw], v[:ch, :cw]


def nv12_to_yuv420(y: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split NV12 planes into (Y, U, V) 4:2:0 planes (views), e.g. for `crop_resize_yuv420`."""
    h, w = y.shape[:2]
    u, v = _chroma(np.asarray(uv), w, h)
    return y, u, v


def _taps(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vi_tap: (i0, i1, weight of i1) for continuous float32 coordinates in a plane of size n."""
    f = np.minimum(np.maximum(coord - _F(0.5), _F(0)), _F(n - 1))
    i0 = f.astype(np.int32)  # f >= 0: truncation is floor
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, f - i0.astype(_F)


def _bilinear(plane: np.ndarray, ty: tuple, tx: tuple) -> np.ndarray:
    """vi_bilinear over the outer product of row taps ty (..., h) and column taps tx (..., w).

    Taps are 1-D (one span) or 2-D (M spans, one per row); the result is (h, w) or (M, h, w).
    """
    (r0, r1, wy), (c0, c1, wx) = ty, tx
    if r0.ndim == 1:
        r0, r1, wy = r0[:, None], r1[:, None], wy[:, None]
        c0, c1, wx = c0[None, :], c1[None, :], wx[None, :]
    else:
        r0, r1, wy = r0[:, :, None], r1[:, :, None], wy[:, :, None]
        c0, c1, wx = c0[:, None, :], c1[:, None, :], wx[:, None, :]
    p00 = plane[r0, c0].astype(_F)
    p01 = plane[r0, c1].astype(_F)
    p10 = plane[r1, c0].astype(_F)
    p11 = plane[r1, c1].astype(_F)
    one = _F(1)
    top = p00 * (one - wx) + p01 * wx
    bottom = p10 * (one - wx) + p11 * wx
    return top * (one - wy) + bottom * wy


def _sample_rgb(y: np.ndarray, uv: np.ndarray, w: int, h: int, xs: np.ndarray, ys: np.ndarray,
                matrix: Any, offsets: Any, chroma_siting: str = "center",
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vi_sample_nv12 at continuous coordinates xs (..., out_w) x ys (..., out_h)."""
    u, v = _chroma(np.asarray(uv), w, h)
    ch, cw = u.shape
    dx = _F(CHROMA_DX[chroma_siting])
    y = np.asarray(y)[:h, :w]
    m = np.asarray(matrix, _F).reshape(3, 3)
    o = np.asarray(offsets, _F).reshape(3)
    lt = (_taps(ys, h), _taps(xs, w))
    ct = (_taps(ys * _F(0.5), ch), _taps(xs * _F(0.5) + dx, cw))
    yy = _bilinear(y, *lt) - o[0]
    uu = _bilinear(u, *ct) - o[1]
    vv = _bilinear(v, *ct) - o[2]
    r = m[0, 0] * yy + m[0, 1] * uu + m[0, 2] * vv
    g = m[1, 0] * yy + m[1, 1] * uu + m[1, 2] * vv
    b = m[2, 0] * yy + m[2, 1] * uu + m[2, 2] * vv
    return r, g, b


def letterbox_region(box: Letterbox, src_rect: Sequence[float] | None = None,
                     ) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """(x0, y0, width, height) float32 of the source span the letterbox kernel resizes."""
    x0, y0, x1, y1 = (0.0, 0.0, box.src_w, box.src_h) if src_rect is None else src_rect
    return _F(x0), _F(y0), _F(_F(x1) - _F(x0)), _F(_F(y1) - _F(y0))


def _span(start: Any, length: Any, n: int) -> np.ndarray:
    """Continuous sample points of n output pixels over [start, start + length): float32."""
    j = np.arange(n, dtype=_F)
    return np.asarray(start, _F) + ((j + _F(0.5)) / _F(n)) * np.asarray(length, _F)


def letterbox_nv12_reference(y: np.ndarray, uv: np.ndarray, box: Letterbox, matrix: Any, offsets: Any,
                             dtype: Any = np.float32, mean: Sequence[float] | None = None,
                             std: Sequence[float] | None = None,
                             src_rect: Sequence[float] | None = None,
                             chroma_siting: str = "center", convention: InputConvention = RGB_0_1,
                             ) -> np.ndarray:
    """What ``letterbox_nv12_f32`` / ``_f16`` write into one batch slot: (3, dst_h, dst_w).

    ``src_rect`` (x1, y1, x2, y2 in continuous source pixels) letterboxes a region instead of the
    whole ``box.src_w`` x ``box.src_h`` frame (``box`` then describes the region's size).
    ``chroma_siting``: "center" or "left" (`CHROMA_DX`). ``convention``: the model's range and
    channel order, through the same parameters the kernel gets (`channel_matrix`).
    """
    rx0, ry0, rw, rh = letterbox_region(box, src_rect)
    scale, bias, pad = normalisation_constants(mean, std, convention)
    out = np.empty((3, box.dst_h, box.dst_w), _F)
    out[:] = pad[:, None, None]
    xs = _span(rx0, rw, box.new_w)
    ys = _span(ry0, rh, box.new_h)
    rgb = _sample_rgb(y, uv, box.src_w, box.src_h, xs, ys, channel_matrix(matrix, convention), offsets,
                      chroma_siting)
    win = (slice(box.pad_y, box.pad_y + box.new_h), slice(box.pad_x, box.pad_x + box.new_w))
    for c in range(3):
        out[c][win] = np.minimum(np.maximum(rgb[c], _F(0)), _F(255)) * scale[c] + bias[c]
    return out.astype(dtype, copy=False)


def crop_resize_nv12_reference(y: np.ndarray, uv: np.ndarray, xyxy: Any, out_h: int, out_w: int,
                               matrix: Any, offsets: Any, chroma_siting: str = "center",
                               size: tuple[int, int] | None = None) -> np.ndarray:
    """What ``crop_resize_nv12_f32`` writes: (M, 3, out_h, out_w) float32 RGB in [0, 1].

    Same sampling as `vidinfer.preprocess.crops.crop_resize_yuv420` (which returns HWC and
    computes the weights in float64); boxes are float32 xyxy in source pixels, not clipped.
    ``size``: the frame's (width, height) when the luma plane is wider or taller (default: its shape).
    """
    h, w = np.asarray(y).shape[:2]
    if size is not None:
        w, h = size
    boxes = np.asarray(xyxy, _F).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, 3, out_h, out_w), _F)
    bx1, by1, bx2, by2 = (boxes[:, i:i + 1] for i in range(4))
    jx = (np.arange(out_w, dtype=_F) + _F(0.5)) / _F(out_w)
    jy = (np.arange(out_h, dtype=_F) + _F(0.5)) / _F(out_h)
    xs = bx1 + jx * (bx2 - bx1)
    ys = by1 + jy * (by2 - by1)
    rgb = _sample_rgb(y, uv, w, h, xs, ys, matrix, offsets, chroma_siting)
    k = _F(1.0 / 255.0)
    return np.stack([np.minimum(np.maximum(c * k, _F(0)), _F(1)) for c in rgb], axis=1)


def nv12_from_rgb(rgb: np.ndarray, standard: str = "bt601", full_range: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(y, uv) NV12 planes of an (H, W, 3) uint8 RGB image, for tests.

    Forward BT.601/BT.709 conversion in float64 (limited range: Y in [16, 235], chroma in
    [16, 240]; full range: 0..255, chroma centred on 128), rounded to uint8. Chroma is the mean of
    each 2x2 block (odd sizes repeat the last row/column), interleaved U, V: uv is
    (ceil(H/2), 2 * ceil(W/2)).
    """
    kr, kb = _KR_KB[standard]
    kg = 1.0 - kr - kb
    rgb = np.asarray(rgb, np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = kr * r + kg * g + kb * b
    cb = (b - luma) / (2 * (1 - kb))
    cr = (r - luma) / (2 * (1 - kr))
    if full_range:
        yy, sc, y_off = luma, 1.0, 0.0
    else:
        yy, sc, y_off = luma * (219 / 255), 224 / 255, 16.0
    yy = yy + y_off
    h, w = yy.shape
    ph, pw = h + h % 2, w + w % 2
    chroma = np.stack([cb, cr], axis=-1) * sc
    chroma = np.pad(chroma, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    chroma = chroma.reshape(ph // 2, 2, pw // 2, 2, 2).mean(axis=(1, 3)) + 128.0
    y8 = np.clip(np.rint(yy), 0, 255).astype(np.uint8)
    uv8 = np.clip(np.rint(chroma), 0, 255).astype(np.uint8).reshape(ph // 2, pw)
    return y8, uv8
