"""Five fictional sponsor brands for the brand-impact test assets.

Each brand has a *logo mark* built from simple shapes (circles, rings,
triangles, chevrons, stripes) in its own colours, and a *name plate*: its name
in capital Latin letters on a board background.  Everything is drawn with
Pillow only (``ImageFont.load_default(size=N)`` is a TrueType font bundled with
Pillow, so no system fonts are needed) and is deterministic.

Marks are drawn at ``SUPERSAMPLE`` times the requested size and box-filtered
down, so edges are anti-aliased.  A mark fills its square canvas edge to edge
(its ground-truth box is the whole canvas); the alpha channel is 0 outside
the shapes.

Class order (the detector's, and ``labels.txt``'s) is :data:`BRAND_NAMES`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "BRAND_NAMES",
    "BRAND_COLORS",
    "BOARD_COLORS",
    "TEXT_COLORS",
    "SUPERSAMPLE",
    "render_logo",
    "render_name_plate",
    "name_plate_size",
    "text_font",
]

#: Brand names in class order (index = class id of the logo detector).
BRAND_NAMES: tuple[str, ...] = ("VOLTA", "NORDIC AIR", "KESTREL", "ORBIS", "PULSE")

#: Main colours of each brand's mark (RGB), primary first.
BRAND_COLORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "VOLTA": ((18, 40, 120), (255, 206, 0)),  # navy disc, yellow chevrons
    "NORDIC AIR": ((240, 244, 250), (40, 140, 230), (215, 30, 45)),  # white badge, blue peak, red stripes
    "KESTREL": ((235, 120, 20), (30, 30, 30)),  # orange ring, black wings
    "ORBIS": ((20, 150, 70), (245, 245, 245)),  # green globe, white bands
    "PULSE": ((200, 20, 110), (255, 255, 255)),  # magenta square, white bars
}

#: Background colour of each brand's advertising board / name plate.
BOARD_COLORS: dict[str, tuple[int, int, int]] = {
    "VOLTA": (10, 22, 70),
    "NORDIC AIR": (225, 232, 242),
    "KESTREL": (35, 35, 38),
    "ORBIS": (245, 245, 240),
    "PULSE": (30, 8, 40),
}

#: Lettering colour of each brand's name plate.
TEXT_COLORS: dict[str, tuple[int, int, int]] = {
    "VOLTA": (255, 206, 0),
    "NORDIC AIR": (20, 60, 140),
    "KESTREL": (240, 130, 30),
    "ORBIS": (15, 120, 55),
    "PULSE": (255, 255, 255),
}

SUPERSAMPLE = 4


def _check(brand: str) -> None:
    if brand not in BRAND_COLORS:
        raise ValueError(f"unknown brand {brand!r}; expected one of {BRAND_NAMES}")


def _draw_mark(brand: str, s: int) -> Image.Image:
    """The mark of ``brand`` on an ``s`` x ``s`` transparent canvas (no anti-aliasing)."""
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c = BRAND_COLORS[brand]
    u = s / 100.0  # drawing unit: the canvas is 100 x 100 units

    def P(*pts: float) -> list[tuple[float, float]]:
        return [(pts[i] * u, pts[i + 1] * u) for i in range(0, len(pts), 2)]

    if brand == "VOLTA":
        # Navy disc with two stacked yellow downward chevrons.
        d.ellipse([0, 0, s - 1, s - 1], fill=c[0] + (255,))
        for y in (22.0, 50.0):
            d.polygon(P(18, y, 50, y + 22, 82, y, 82, y + 14, 50, y + 36, 18, y + 14), fill=c[1] + (255,))
    elif brand == "NORDIC AIR":
        # White rounded badge, blue mountain triangle, two red stripes below.
        d.rounded_rectangle([0, 0, s - 1, s - 1], radius=int(14 * u), fill=c[0] + (255,))
        d.polygon(P(10, 64, 50, 10, 90, 64), fill=c[1] + (255,))
        d.polygon(P(38, 26, 50, 10, 62, 26, 56, 30, 50, 24, 44, 30), fill=(255, 255, 255, 255))
        d.rectangle(P(10, 72, 90, 79), fill=c[2] + (255,))
        d.rectangle(P(10, 84, 90, 91), fill=c[2] + (255,))
    elif brand == "KESTREL":
        # Orange ring around a black wing-shaped chevron (pointing up).
        d.ellipse([0, 0, s - 1, s - 1], fill=c[0] + (255,))
        d.ellipse(P(13, 13, 87, 87), fill=(0, 0, 0, 0))
        d.ellipse(P(17, 17, 83, 83), fill=(250, 236, 210, 255))
        d.polygon(P(20, 64, 50, 30, 80, 64, 66, 64, 50, 46, 34, 64), fill=c[1] + (255,))
    elif brand == "ORBIS":
        # Green globe: filled disc with white horizontal bands, plus an outer ring.
        d.ellipse([0, 0, s - 1, s - 1], fill=c[0] + (255,))
        d.ellipse(P(7, 7, 93, 93), fill=(0, 0, 0, 0))
        d.ellipse(P(14, 14, 86, 86), fill=c[0] + (255,))
        for y0, y1 in ((30, 37), (46, 54), (63, 70)):
            d.rectangle(P(14, y0, 86, y1), fill=c[1] + (255,))
        # keep the bands inside the inner disc
        mask = Image.new("L", (s, s), 0)
        ImageDraw.Draw(mask).ellipse(P(14, 14, 86, 86), fill=255)
        inner = Image.new("RGBA", (s, s), c[0] + (255,))
        ImageDraw.Draw(inner).rectangle([0, 0, s, s], fill=c[0] + (255,))
        for y0, y1 in ((30, 37), (46, 54), (63, 70)):
            ImageDraw.Draw(inner).rectangle(P(0, y0, 100, y1), fill=c[1] + (255,))
        img.paste(inner, (0, 0), mask)
    elif brand == "PULSE":
        # Magenta rounded square with five white vertical bars of varying height.
        d.rounded_rectangle([0, 0, s - 1, s - 1], radius=int(22 * u), fill=c[0] + (255,))
        for i, hgt in enumerate((24, 50, 70, 44, 30)):
            x = 17 + i * 14
            d.rounded_rectangle(P(x, 50 - hgt / 2, x + 9, 50 + hgt / 2), radius=int(4 * u), fill=c[1] + (255,))
    return img


@lru_cache(maxsize=64)
def _logo_cached(brand: str, size: int) -> Image.Image:
    big = _draw_mark(brand, size * SUPERSAMPLE)
    # Premultiply before box-filtering so transparent pixels do not darken edges.
    a = np.asarray(big, dtype=np.float32)
    a[..., :3] *= a[..., 3:4] / 255.0
    pre = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGBA")
    small = np.asarray(pre.resize((size, size), Image.BOX), dtype=np.float32)
    alpha = small[..., 3:4]
    rgb = np.where(alpha > 0, small[..., :3] * 255.0 / np.maximum(alpha, 1e-3), 0)
    out = np.concatenate([np.clip(rgb, 0, 255), alpha], axis=2)
    return Image.fromarray(np.rint(out).astype(np.uint8), "RGBA")


def render_logo(brand: str, size: int) -> Image.Image:
    """The logo mark of ``brand`` as an anti-aliased ``size`` x ``size`` RGBA image.

    The mark touches all four edges of the canvas, so its box is the canvas.
    """
    _check(brand)
    if size < 4:
        raise ValueError("logo size must be at least 4 px")
    return _logo_cached(brand, int(size)).copy()


def text_font(cap_height: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled TrueType font sized so capitals are about ``cap_height`` px tall."""
    # load_default's font has capitals ~0.70 of the nominal size.
    return ImageFont.load_default(size=max(6, int(round(cap_height / 0.70))))


def name_plate_size(brand: str, cap_height: int, pad: int | None = None) -> tuple[int, int]:
    """(width, height) of :func:`render_name_plate` for the same arguments."""
    font = text_font(cap_height)
    x0, y0, x1, y1 = font.getbbox(brand)
    pad = int(round(0.5 * cap_height)) if pad is None else pad
    return (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad


def render_name_plate(
    brand: str, cap_height: int, pad: int | None = None, board: bool = True
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``brand``'s name lettered on its board colour.

    Returns ``(image, text_box)``: an RGBA image (opaque when ``board``, else
    transparent around the letters) and the tight box ``[x1, y1, x2, y2]`` of
    the lettering's ink inside it (pixel ``i`` covers ``[i, i + 1)``).
    """
    _check(brand)
    font = text_font(cap_height)
    x0, y0, x1, y1 = font.getbbox(brand)
    pad = int(round(0.5 * cap_height)) if pad is None else pad
    w, h = (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad
    bg = BOARD_COLORS[brand] + ((255,) if board else (0,))
    img = Image.new("RGBA", (w, h), bg)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((pad - x0, pad - y0), brand, font=font, fill=255)
    fg = Image.new("RGBA", (w, h), TEXT_COLORS[brand] + (255,))
    img = Image.composite(fg, img, mask)
    m = np.asarray(mask) > 0
    ys, xs = np.nonzero(m)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return img, box
