"""Crop-and-resize of many boxes at once, for secondary stages.

All boxes of one frame are sampled in one vectorised gather (no loop per box). Sampling is
bilinear at pixel centres: output pixel j of a crop spanning [x1, x2) samples source position
x1 + (j + 0.5) * (x2 - x1) / out_w in continuous coordinates. `crop_resize_yuv420` reads the
decoder's planes directly, so only the crop pixels are ever converted to RGB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vidinfer._xp import array_module

__all__ = ["chroma_siting", "colour_standard", "crop_resize_rgb", "crop_resize_yuv420", "yuv_to_rgb_matrix"]


def _sample_grid(xyxy: Any, out_h: int, out_w: int, xp: Any) -> tuple[Any, Any]:
    """Continuous sample coordinates (N, out_h) for y and (N, out_w) for x, pixel-centre aligned."""
    x1, y1, x2, y2 = (xyxy[:, i:i + 1] for i in range(4))
    jx = (xp.arange(out_w, dtype=xp.float32) + 0.5) / out_w
    jy = (xp.arange(out_h, dtype=xp.float32) + 0.5) / out_h
    return y1 + jy * (y2 - y1), x1 + jx * (x2 - x1)


def _bilinear(plane: Any, ys: Any, xs: Any) -> Any:
    """Sample a 2-D plane at continuous coordinates ys (N, h) x xs (N, w) -> (N, h, w) float32.

    Coordinates are in the plane's own pixels; index space is coordinate - 0.5 (pixel centres).
    """
    xp = array_module(plane)
    h, w = plane.shape
    fy = xp.clip(ys - 0.5, 0, h - 1)
    fx = xp.clip(xs - 0.5, 0, w - 1)
    y0 = xp.floor(fy).astype(xp.int32)
    x0 = xp.floor(fx).astype(xp.int32)
    y1 = xp.minimum(y0 + 1, h - 1)
    x1 = xp.minimum(x0 + 1, w - 1)
    wy = (fy - y0)[:, :, None]
    wx = (fx - x0)[:, None, :]
    r0, r1 = y0[:, :, None], y1[:, :, None]
    c0, c1 = x0[:, None, :], x1[:, None, :]
    p = plane.astype(xp.float32, copy=False)
    top = p[r0, c0] * (1 - wx) + p[r0, c1] * wx
    bottom = p[r1, c0] * (1 - wx) + p[r1, c1] * wx
    return top * (1 - wy) + bottom * wy


def crop_resize_rgb(image: Any, xyxy: Any, out_h: int, out_w: int) -> Any:
    """Crops of an HxWx3 image at (N, 4) boxes, resized to (N, out_h, out_w, 3) float32 in [0, 1]."""
    xp = array_module(image)
    ys, xs = _sample_grid(xp.asarray(xyxy, dtype=xp.float32), out_h, out_w, xp)
    channels = [_bilinear(image[:, :, c], ys, xs) for c in range(3)]
    return xp.stack(channels, axis=-1) * np.float32(1 / 255.0)


# Rows convert (Y, U, V) with U, V centred on 0 to RGB; the studio-range offsets are applied first.
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def colour_standard(colorspace: Any, color_range: Any, pix_fmt: str = "") -> tuple[str, bool]:
    """(standard, full_range) from FFmpeg's colour tags (a frame's or a codec context's).

    BT.709 only when tagged so (AVCOL_SPC_BT709 = 1); everything else, untagged included, is
    BT.601, as swscale assumes. Full range when tagged JPEG (AVCOL_RANGE_JPEG = 2) or yuvj*.
    """
    try:
        standard = "bt709" if int(colorspace) == 1 else "bt601"
    except (TypeError, ValueError):
        standard = "bt601"
    full = pix_fmt.startswith("yuvj") or "JPEG" in str(color_range).upper()
    try:
        full = full or int(color_range) == 2
    except (TypeError, ValueError):
        pass
    return standard, full


# Codecs whose 4:2:0 chroma FFmpeg's decoders tag as co-sited with the even luma columns
# (AVCHROMA_LOC_LEFT, the default of the MPEG-2, MPEG-4 part 2, H.264 and HEVC specifications
# when the stream does not say); swscale then interpolates it there. MPEG-1, VP8, VP9 and AV1
# frames come out centre-sited or untagged, which swscale takes as centre-sited (measured with
# FFmpeg 8 / PyAV 18: the siting that matches swscale to 0.51/255 at an exact 2x downscale).
_LEFT_SITED = frozenset({"h264", "hevc", "mpeg4", "mpeg2video"})


def chroma_siting(codec: str) -> str:
    """"left" or "center": where the CPU path's swscale puts this codec's 4:2:0 chroma, for the
    GPU kernels' ``chroma_siting`` (a siting the stream signals otherwise is not read)."""
    return "left" if codec in _LEFT_SITED else "center"


def yuv_to_rgb_matrix(standard: str = "bt601", full_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 matrix, offsets) such that rgb = M @ (yuv - offsets), all in 0..255 units."""
    kr, kb = _KR_KB[standard]
    kg = 1 - kr - kb
    m = np.array([
        [1.0, 0.0, 2 * (1 - kr)],
        [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
        [1.0, 2 * (1 - kb), 0.0],
    ], dtype=np.float64)
    if full_range:
        return m.astype(np.float32), np.array([0, 128, 128], np.float32)
    # Studio range: Y in [16, 235], chroma in [16, 240].
    m = m * np.array([255 / 219, 255 / 224, 255 / 224])
    return m.astype(np.float32), np.array([16, 128, 128], np.float32)


def crop_resize_yuv420(y: Any, u: Any, v: Any, xyxy: Any, out_h: int, out_w: int,
                       standard: str = "bt601", full_range: bool = False) -> Any:
    """Crops straight from 4:2:0 planes (luma HxW, chroma H/2xW/2) to (N, out_h, out_w, 3) RGB in [0, 1].

    The NumPy reference of the GPU crop kernel: the same sampling as `crop_resize_rgb` applied to
    a frame converted to RGB, without converting the whole frame.
    """
    xp = array_module(y)
    boxes = xp.asarray(xyxy, dtype=xp.float32)
    ys, xs = _sample_grid(boxes, out_h, out_w, xp)
    luma = _bilinear(y, ys, xs)
    # Chroma sits at half resolution: the same continuous point is at half the coordinate.
    cb = _bilinear(u, ys * 0.5, xs * 0.5)
    cr = _bilinear(v, ys * 0.5, xs * 0.5)
    m, off = (xp.asarray(a) for a in yuv_to_rgb_matrix(standard, full_range))
    yuv = xp.stack([luma - off[0], cb - off[1], cr - off[2]], axis=-1)
    rgb = yuv @ m.T
    return xp.clip(rgb * np.float32(1 / 255.0), 0.0, 1.0).astype(xp.float32)
