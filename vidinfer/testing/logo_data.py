"""Generated training / evaluation images for the brand logo detector.

Every image is a square RGB uint8 picture (default 320 x 320) with 1-6 logo
marks of the brands in :mod:`vidinfer.testing.brands`, each placed with

* scale: side 12-110 px (log-uniform), i.e. 4-35 % of the image;
* perspective: the mark's corners jittered by up to 18 % of its side, plus a
  small rotation (+-12 degrees);
* blur (Gaussian, sigma 0-1.4 px) and a resample through a smaller size;
* partial occlusion (about a third of the marks): a rectangle, ellipse or
  player-like shape covering up to ~40 % of the mark;
* lighting: brightness 0.55-1.35, contrast, a colour tint, sensor noise;

on varied backgrounds: mowed-pitch green with stripes, crowd-like coloured
noise, flat board colours with brand *name plates* (lettering, unlabelled:
the detector must not fire on text), gradients, and mixtures split by a
horizontal line (stands / boards / pitch), with unlabelled distractor shapes
(discs, bars, triangles in random colours).

Real photographs (``backgrounds="train"`` or ``"heldout"``, the lead's split of
files that ship with scikit-image, matplotlib and Debian's kivy examples: see
:func:`real_images`) give random crops / zooms / flips / colour jitter as
backgrounds, and photo patches pasted as "signs".  Hard negatives (never
labelled) teach the detector what is *not* a mark: signs and boards with
non-brand lettering, look-alike words and the brands' *names* (lettering is not
a logo mark), safety-sign-like pictogram boards, shirts and boards carrying
non-brand marks (random combinations of discs, rings, chevrons, bars and
triangles in random colours), the brands' own colours in shapes that are not
their round marks (a green board with white bands is not the ORBIS globe), and
building facades: grids and bands of lit windows, by day and by night, whole
backgrounds or single buildings (the first real-footage check found the
detector reading green-lit office windows as ORBIS).  About a fifth of the
images have no mark at all.

Labels are the tight box of the mark's *visible* pixels (alpha >= 0.5 after
warping and occlusion) in continuous pixel coordinates ``[x1, y1, x2, y2]``
and the brand's class id (index in :data:`BRAND_NAMES`).  Everything is drawn
from a ``numpy.random.Generator``: a dataset is a pure function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vidinfer.testing.brands import (
    BOARD_COLORS,
    BRAND_COLORS,
    BRAND_NAMES,
    render_logo,
    render_name_plate,
    text_font,
)

__all__ = ["make_sample", "make_dataset", "real_images", "LOGO_SIZE_RANGE", "TRAIN_SEED", "HELDOUT_SEED",
           "NEGATIVE_WORDS"]

LOGO_SIZE_RANGE = (12.0, 110.0)
TRAIN_SEED = 1234
HELDOUT_SEED = 98765
_MASTER = 160  # size of the master logo render that gets warped

#: Lettering of the hard-negative signs: ordinary sign words and look-alikes of the brand names.
NEGATIVE_WORDS: tuple[str, ...] = (
    "EXIT", "SALE", "OPEN", "STOP", "CAFE", "HOTEL", "PARKING", "TICKETS", "GATE 4", "SAFETY FIRST",
    "NO ENTRY", "FIRE EXIT", "WELCOME", "BAR", "TAXI", "BUS", "PHARMACY", "POLICE", "INFO", "HOME",
    "AWAY", "GOAL", "SCORE 2-1", "LIVE", "REPLAY", "CITY FC", "UNITED", "MARKET", "BANK", "METRO",
    "VOLT", "VOLTAGE", "NORDIC", "NORD AIR", "AIR", "KESTRAL", "KESTON", "ORBIT", "ORBS", "PULSAR",
    "IMPULSE", "PULSE FM", "ORBIS TOURS", "VOLTA 24", "2024", "12:45", "www.example.org", "A4", "B",
)



def real_images(split: str) -> tuple[np.ndarray, ...]:
    """The real photographs of ``split`` as RGB uint8 arrays: "train" (:func:`train_backgrounds`, the only ones
    training sees) or "heldout" (:func:`eval_backgrounds`, never trained on: they measure false appearances)."""
    from vidinfer.testing.backgrounds import eval_backgrounds, train_backgrounds

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    return tuple((train_backgrounds() if split == "train" else eval_backgrounds()).values())


def _real_crop(rng: np.random.Generator, photos: Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """A random crop (zoom 15-100 % of the short side), flip and colour jitter of a photo, ``h`` x ``w``."""
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    side = min(sh, sw) * rng.uniform(0.15, 1.0)
    ch = side * min(1.0, h / w) if rng.random() < 0.5 else side
    cw = min(float(sw), ch * w / h)
    ch = min(float(sh), cw * h / w)
    y0, x0 = rng.uniform(0, sh - ch), rng.uniform(0, sw - cw)
    crop = Image.fromarray(src).resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    img = np.asarray(crop, np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.2:
        img = img[::-1]
    gray = img.mean(axis=2, keepdims=True)
    img = gray + (img - gray) * rng.uniform(0.3, 1.5)  # saturation
    img = img * rng.uniform(0.8, 1.2, 3).astype(np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    return np.ascontiguousarray(img, dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.random((gh, gw)).astype(np.float32)
    img = Image.fromarray(g, "F").resize((w, h), Image.BILINEAR)
    return np.asarray(img)


def _background(rng: np.random.Generator, h: int, w: int, photos: Sequence[np.ndarray] = ()) -> np.ndarray:
    if photos and rng.random() < 0.5:
        if rng.random() < 0.75:
            return _real_crop(rng, photos, h, w)
        kind = "split"
    else:
        kind = str(rng.choice(["pitch", "crowd", "board", "gradient", "split", "split"]
                              + ["facade"] * (3 if photos else 0)))
    if kind == "facade":
        return _facade(rng, h, w)
    if kind == "split":
        out = np.empty((h, w, 3), np.float32)
        y = int(rng.integers(h // 5, 4 * h // 5))
        top, bottom = rng.choice(["crowd", "board", "gradient", "pitch"] + ["real", "real", "facade"] * bool(photos), 2)
        out[:y] = _plain_bg(rng, y, w, str(top), photos)
        out[y:] = _plain_bg(rng, h - y, w, str(bottom), photos)
        return out
    return _plain_bg(rng, h, w, kind)


def _plain_bg(rng: np.random.Generator, h: int, w: int, kind: str,
              photos: Sequence[np.ndarray] = ()) -> np.ndarray:
    if kind == "real":
        return _real_crop(rng, photos, h, w)
    if kind == "facade":
        return _facade(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "pitch":
        base = np.array([40, 120, 45], np.float32) * rng.uniform(0.7, 1.25)
        ang = rng.uniform(-0.6, 0.6)
        period = rng.uniform(20, 120)
        u = xx * math.cos(ang) + yy * math.sin(ang)
        stripe = (np.floor(u / period) % 2)[..., None] * rng.uniform(0.06, 0.16)
        img = base * (1 + stripe) * (0.92 + 0.16 * _smooth_noise(rng, h, w, 40))[..., None]
    elif kind == "crowd":
        cell = int(rng.integers(2, 7))
        cols = rng.uniform(20, 220, size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        img = np.asarray(Image.fromarray(cols.astype(np.uint8)).resize((w, h), Image.NEAREST), np.float32)
        img = img * rng.uniform(0.4, 0.9) + rng.uniform(0, 60)
        if rng.random() < 0.5:
            img = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))), np.float32)
    elif kind == "board":
        col = np.array(BOARD_COLORS[BRAND_NAMES[rng.integers(len(BRAND_NAMES))]], np.float32)
        if rng.random() < 0.4:
            col = rng.uniform(0, 255, 3).astype(np.float32)
        img = np.broadcast_to(col, (h, w, 3)).copy()
    else:  # gradient
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        ang = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(ang) + yy * math.sin(ang))
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        img = c0 + (c1 - c0) * t[..., None]
    return img.astype(np.float32)


def _paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """Alpha-blend an RGBA float patch at integer (x, y); returns the alpha placed (canvas-sized window)."""
    h, w = canvas.shape[:2]
    ph, pw = rgba.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32)
    p = rgba[y0 - y: y1 - y, x0 - x: x1 - x]
    a = p[..., 3:4] / 255.0
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + p[..., :3] * a
    return a[..., 0]


def _distractor(rng: np.random.Generator, size: int) -> Image.Image:
    s = max(8, size)
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    col = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
    k = rng.integers(5)
    if k == 0:
        d.ellipse([0, 0, s - 1, s - 1], fill=col)
    elif k == 1:
        d.rectangle([0, s // 3, s - 1, 2 * s // 3], fill=col)
    elif k == 2:
        d.polygon([(0, s - 1), (s // 2, 0), (s - 1, s - 1)], fill=col)
    elif k == 3:
        d.ellipse([0, 0, s - 1, s - 1], fill=col)
        d.ellipse([s // 4, s // 4, 3 * s // 4, 3 * s // 4], fill=(0, 0, 0, 0))
    else:
        for i in range(0, s, max(2, s // 5)):
            d.rectangle([i, 0, i + max(1, s // 10), s - 1], fill=col)
    return img


def _rand_col(rng: np.random.Generator) -> tuple[int, int, int, int]:
    return (int(rng.integers(256)), int(rng.integers(256)), int(rng.integers(256)), 255)


def _fake_mark(rng: np.random.Generator, s: int) -> Image.Image:
    """A non-brand mark: 1-3 of the brands' primitives (disc, ring, chevron, bars, triangle, square) in
    random colours, so the detector learns the brands' combinations and colours, not the shapes."""
    s = max(8, s)
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    u = s / 100.0
    for layer in range(int(rng.integers(1, 4))):
        col = _rand_col(rng)
        k = int(rng.integers(7)) if layer == 0 else int(rng.integers(2, 7))
        m = 0 if layer == 0 else int(rng.integers(10, 25))
        box = [m * u, m * u, (100 - m) * u - 1, (100 - m) * u - 1]
        if k == 0:
            d.ellipse(box, fill=col)
        elif k == 1:
            d.rounded_rectangle(box, radius=int(rng.integers(0, 25) * u), fill=col)
        elif k == 2:  # ring
            d.ellipse(box, outline=col, width=max(1, int(rng.uniform(6, 16) * u)))
        elif k == 3:  # chevron(s)
            for y in (25.0, 52.0)[: int(rng.integers(1, 3))]:
                pts = [(18, y), (50, y + 22), (82, y), (82, y + 14), (50, y + 36), (18, y + 14)]
                if rng.random() < 0.5:
                    pts = [(x, 100 - yy) for x, yy in pts]
                d.polygon([(x * u, yy * u) for x, yy in pts], fill=col)
        elif k == 4:  # bars, vertical or horizontal
            n, vert = int(rng.integers(2, 6)), rng.random() < 0.5
            for i in range(n):
                a, b = 15 + i * 70 / n, 15 + i * 70 / n + 35 / n
                d.rectangle([a * u, 20 * u, b * u, 80 * u] if vert else [20 * u, a * u, 80 * u, b * u], fill=col)
        elif k == 5:
            d.polygon([(10 * u, 80 * u), (50 * u, 12 * u), (90 * u, 80 * u)], fill=col)
        else:  # a letter or digit as a mark
            ch = str(rng.choice(list("ABCDEFHKMNPRSTXZ0123456789")))
            d.text((s * 0.5, s * 0.5), ch, font=text_font(max(4, int(s * 0.55))), fill=col, anchor="mm")
    return img


def _sign(rng: np.random.Generator, h: int) -> Image.Image:
    """A sign / board with non-brand lettering, a look-alike word or a brand's *name*, or a pictogram."""
    r = rng.random()
    if r < 0.2:
        return render_name_plate(BRAND_NAMES[rng.integers(len(BRAND_NAMES))], max(6, h // 2),
                                 board=rng.random() < 0.7)[0]
    bg = _rand_col(rng)
    if rng.random() < 0.3:  # the safety-sign / road-sign palette
        bg = [(0, 140, 70, 255), (0, 120, 60, 255), (200, 30, 30, 255), (20, 60, 160, 255), (250, 200, 0, 255),
              (255, 255, 255, 255), (20, 20, 20, 255)][int(rng.integers(7))]
    fg = (255, 255, 255, 255) if sum(bg[:3]) < 380 else (20, 20, 20, 255)
    if rng.random() < 0.3:
        fg = _rand_col(rng)
    if r < 0.4:  # pictogram sign: a mark-like symbol (arrow, figure, cross, disc) on a board
        w = int(h * rng.uniform(1.0, 2.2))
        img = Image.new("RGBA", (w, h), bg)
        d = ImageDraw.Draw(img)
        k = int(rng.integers(4))
        c, m = h / 2, h * 0.18
        if k == 0:  # arrow
            d.polygon([(m, c - h * .1), (w - h * .5, c - h * .1), (w - h * .5, m), (w - m, c), (w - h * .5, h - m),
                       (w - h * .5, c + h * .1), (m, c + h * .1)], fill=fg)
        elif k == 1:  # running figure
            d.ellipse([c - h * .08, m, c + h * .08, m + h * .16], fill=fg)
            d.line([(c, m + h * .18), (c - h * .05, h * .6), (c - h * .2, h - m)], fill=fg, width=max(1, h // 10))
            d.line([(c - h * .05, h * .6), (c + h * .15, h - m)], fill=fg, width=max(1, h // 10))
            d.line([(c - h * .2, h * .4), (c + h * .2, h * .35)], fill=fg, width=max(1, h // 12))
        elif k == 2:  # cross
            d.rectangle([c - h * .1, m, c + h * .1, h - m], fill=fg)
            d.rectangle([c - (h / 2 - m), c - h * .1, c + (h / 2 - m), c + h * .1], fill=fg)
        else:
            d.ellipse([c - (h / 2 - m), m, c + (h / 2 - m), h - m], fill=fg)
            d.rectangle([c - (h / 2 - m) * .7, c - h * .07, c + (h / 2 - m) * .7, c + h * .07], fill=bg)
        if rng.random() < 0.6 and w > h * 1.4:
            d.text((h * 0.95, c), str(rng.choice(NEGATIVE_WORDS[:10])), font=text_font(max(4, h // 5)), fill=fg,
                   anchor="lm")
        return img
    word = str(rng.choice(NEGATIVE_WORDS))
    font = text_font(max(6, h // 2))
    x0, y0, x1, y1 = font.getbbox(word)
    pad = max(2, int(h * rng.uniform(0.15, 0.4)))
    img = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), bg if rng.random() < 0.8 else (0, 0, 0, 0))
    ImageDraw.Draw(img).text((pad - x0, pad - y0), word, font=font, fill=fg)
    return img


#: Window light colours of the facades: teal and green office light, warm, white, cool blue.
_WINDOW_LIGHT = np.array([(150, 255, 215), (90, 230, 170), (40, 190, 110), (255, 235, 170), (250, 250, 245),
                          (150, 200, 255)], np.float32)


def _facade(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Buildings side by side under a sky: each a wall with a grid of windows (some lit), continuous
    lit floor bands, or slanted balcony stripes; by night (dark walls, bright windows) or by day."""
    night = rng.random() < 0.6
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky0, sky1 = (rng.uniform(10, 70, 3), rng.uniform(40, 110, 3)) if night else \
        (rng.uniform(150, 230, 3), rng.uniform(110, 200, 3))
    img = (sky0 + (sky1 - sky0) * (yy / max(1, h - 1))[..., None]).astype(np.float32)
    x = int(rng.integers(-w // 4, w // 6))
    while x < w:
        bw = int(w * rng.uniform(0.12, 0.6))
        top = int(rng.integers(-h // 4, h // 2))
        x0, x1, y0 = max(0, x), min(w, x + bw), max(0, top)
        if x1 > x0 and y0 < h:
            wall = (rng.uniform(5, 60, 3) * (1.0, 1.6, 1.6) if night else rng.uniform(60, 200, 3)).astype(np.float32)
            light = _WINDOW_LIGHT[int(rng.integers(len(_WINDOW_LIGHT)))] * rng.uniform(0.7, 1.05)
            if not night:  # by day windows are glass: darker or sky-coloured, not lit
                light = rng.uniform(30, 200, 3).astype(np.float32)
            lx, ly = xx[y0:, x0:x1] - x, yy[y0:, x0:x1] - top
            # Log-uniform cell sizes: far-away towers have windows of 2-3 px.
            cw = math.exp(rng.uniform(math.log(2.5), math.log(22)))
            ch = math.exp(rng.uniform(math.log(2.5), math.log(20)))
            style = int(rng.integers(3))
            if style == 0:  # window grid, each cell lit or not
                fx, fy = rng.uniform(0.3, 0.95), rng.uniform(0.3, 0.95)
                win = ((lx % cw) < cw * fx) & ((ly % ch) < ch * fy)
                lit_table = rng.random((int((h - top) / ch) + 2, int(bw / cw) + 2)) < rng.uniform(0.3, 0.95)
                win &= lit_table[(ly // ch).astype(int), (lx // cw).astype(int)]
            elif style == 1:  # continuous lit floor bands
                win = (ly % ch) < ch * rng.uniform(0.3, 0.7)
            else:  # slanted balcony stripes
                slope = rng.uniform(-0.6, 0.6)
                win = ((ly + slope * lx) % ch) < ch * rng.uniform(0.3, 0.6)
            part = np.where(win[..., None], light, wall)
            part *= (0.85 + 0.3 * _smooth_noise(rng, h - y0, x1 - x0, 30))[..., None]
            img[y0:, x0:x1] = part
        x += bw + int(rng.integers(0, max(1, w // 8)))
    return img


#: Brands whose mark is round: a panel in their colours is not their mark. (PULSE's mark is a
#: magenta square with white bars and NORDIC AIR's a white badge with red stripes: panels in their
#: colours would be their marks, taught as "not a mark".)
_ROUND_MARKS = ("VOLTA", "KESTREL", "ORBIS")


def _colour_texture(rng: np.random.Generator, h: int) -> Image.Image:
    """A round mark's colours in a shape that is not its mark: a panel or parallelogram of the primary
    colour with bands, bars or a grid of the others (an ORBIS-green board with white bands, say)."""
    cols = BRAND_COLORS[_ROUND_MARKS[int(rng.integers(len(_ROUND_MARKS)))]]
    w = max(6, int(h * rng.uniform(0.6, 3.0)))
    img = Image.new("RGBA", (w, h), cols[0] + (255,))
    d = ImageDraw.Draw(img)
    fg = cols[1 + int(rng.integers(len(cols) - 1))] + (255,)
    k = int(rng.integers(3))
    step = max(3.0, h / rng.uniform(2.5, 8))
    if k == 0:  # horizontal bands
        for y in np.arange(step / 2, h, step):
            d.rectangle([0, y, w - 1, y + step * rng.uniform(0.25, 0.55)], fill=fg)
    elif k == 1:  # vertical bars
        for x in np.arange(step / 2, w, step):
            d.rectangle([x, 0, x + step * rng.uniform(0.25, 0.55), h - 1], fill=fg)
    else:  # a grid of cells
        for y in np.arange(step / 3, h, step):
            for x in np.arange(step / 3, w, step):
                if rng.random() < 0.8:
                    d.rectangle([x, y, x + step * 0.55, y + step * 0.45], fill=fg)
    if rng.random() < 0.4:  # a slanted panel
        shear = rng.uniform(-0.4, 0.4)
        img = img.transform((w + int(abs(shear) * h) + 1, h), Image.AFFINE,
                            (1, shear, -abs(shear) * h if shear > 0 else 0, 0, 1, 0), Image.BILINEAR)
    return img


def _building(rng: np.random.Generator, size: int) -> Image.Image:
    """One facade as a pasted patch (a building seen through a gap, a window on a screen)."""
    h = int(rng.integers(24, max(25, int(size * 0.9))))
    w = int(h * rng.uniform(0.3, 1.5))
    rgb = np.clip(np.rint(_facade(rng, h, w)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2), "RGBA")


def _photo_patch(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int) -> Image.Image:
    """A real-photo patch as a "sign" (poster, screen), sometimes framed."""
    h = int(rng.integers(12, max(13, size // 2)))
    w = int(h * rng.uniform(0.6, 2.5))
    patch = np.clip(_real_crop(rng, photos, h, w), 0, 255).astype(np.uint8)
    rgba = np.concatenate([patch, np.full((h, w, 1), 255, np.uint8)], axis=2)
    if rng.random() < 0.4:
        b = max(1, h // 12)
        rgba[:b], rgba[-b:], rgba[:, :b], rgba[:, -b:] = [_rand_col(rng)] * 4
    return Image.fromarray(rgba, "RGBA")


def _negative(rng: np.random.Generator, size: int, photos: Sequence[np.ndarray]) -> Image.Image:
    """One unlabelled hard negative."""
    r = rng.random()
    if r < 0.3:
        return _sign(rng, int(rng.integers(10, 60)))
    if r < 0.55:
        return _fake_mark(rng, int(rng.integers(12, 100)))
    if r < 0.75:  # a shirt or a board carrying a non-brand mark or lettering
        s = int(rng.integers(12, 70))
        mark = _fake_mark(rng, s) if rng.random() < 0.6 else _sign(rng, max(10, s // 2))
        mx, my0, my1 = int(s * rng.uniform(0.3, 0.9)), int(s * rng.uniform(0.6, 1.2)), int(s * rng.uniform(0.5, 1.5))
        car = _carrier(rng, mark.width + 2 * mx, mark.height + my0 + my1, my0)
        car.alpha_composite(mark, (mx, my0))
        return car
    if r < 0.83 and photos:
        return _photo_patch(rng, photos, size)
    if r < 0.91:
        return _colour_texture(rng, int(rng.integers(10, 90)))
    if r < 0.96:
        return _building(rng, size)
    return _distractor(rng, int(rng.integers(10, 80)))


def _occluder(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    col = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
    k = rng.integers(3)
    if k == 0:
        d.rectangle([0, 0, w - 1, h - 1], fill=col)
    elif k == 1:
        d.ellipse([0, 0, w - 1, h - 1], fill=col)
    else:  # player-like: body + head
        d.rounded_rectangle([0, h // 4, w - 1, h - 1], radius=max(1, w // 4), fill=col)
        hw = max(2, w // 2)
        d.ellipse([(w - hw) // 2, 0, (w + hw) // 2, h // 4 + hw // 3], fill=(225, 180, 150, 255))
    return img


def _carrier(rng: np.random.Generator, w: int, h: int, top: int) -> Image.Image:
    """What a mark is printed on: a shirt with head and shorts, or a board panel (``w`` x ``h``)."""
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    col = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
    if rng.random() < 0.7:
        d.rounded_rectangle([0, max(0, top // 3), w - 1, h - 1], radius=max(1, w // 6), fill=col)
        if rng.random() < 0.7:
            hw = max(2, w // 3)
            d.ellipse([(w - hw) // 2, 0, (w + hw) // 2, max(2, top // 3 + 2)],
                      fill=(int(rng.integers(90, 240)), int(rng.integers(60, 200)), int(rng.integers(40, 170)), 255))
    else:
        d.rectangle([0, 0, w - 1, h - 1], fill=col)
    return img


def _warp_logo(rng: np.random.Generator, brand: str, side: float) -> np.ndarray:
    """The mark warped with a random perspective + rotation into an RGBA float patch ~``side`` px."""
    master = render_logo(brand, _MASTER)
    aspect = math.exp(rng.uniform(-0.25, 0.25))
    sw, sh = side * math.sqrt(aspect), side / math.sqrt(aspect)
    rot = math.radians(rng.uniform(-12, 12))
    jit = 0.18 * side
    corners = np.array([[-sw / 2, -sh / 2], [sw / 2, -sh / 2], [sw / 2, sh / 2], [-sw / 2, sh / 2]])
    c, s = math.cos(rot), math.sin(rot)
    corners = corners @ np.array([[c, s], [-s, c]]) + rng.uniform(-jit, jit, (4, 2)) * (rng.random() < 0.7)
    corners -= corners.min(axis=0)
    out_w, out_h = int(math.ceil(corners[:, 0].max())) + 2, int(math.ceil(corners[:, 1].max())) + 2
    corners += 1
    # Perspective coefficients mapping output -> master pixel coordinates.
    src = np.array([[0, 0], [_MASTER, 0], [_MASTER, _MASTER], [0, _MASTER]], np.float64)
    A, b = [], []
    for (x, y), (u, v) in zip(corners, src):
        A += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    coeffs = np.linalg.solve(np.array(A), np.array(b))
    # Premultiplied alpha so the warp does not leak black into edges.
    arr = np.asarray(master, np.float32)
    arr[..., :3] *= arr[..., 3:4] / 255.0
    pre = Image.fromarray(np.rint(arr).astype(np.uint8), "RGBA")
    # Warp at 2x then downscale for anti-aliasing.
    ss = 2
    coeffs2 = coeffs.copy()
    coeffs2[[0, 1, 3, 4, 6, 7]] /= ss  # output coords are scaled by ss
    coeffs2[[6, 7]] = coeffs[[6, 7]] / ss
    big = pre.transform((out_w * ss, out_h * ss), Image.PERSPECTIVE, tuple(coeffs2), Image.BILINEAR)
    small = big.resize((out_w, out_h), Image.BOX)
    if rng.random() < 0.6:
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.4)))
    p = np.asarray(small, np.float32)
    a = p[..., 3:4]
    p[..., :3] = np.where(a > 0, p[..., :3] * 255.0 / np.maximum(a, 1e-3), 0)
    return p


def make_sample(rng: np.random.Generator, size: int = 320,
                photos: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image ``(size, size, 3)`` uint8 with its boxes ``(n, 4)`` float32 and classes ``(n,)`` int64.

    ``photos``: real photographs for backgrounds and photo "signs" (none: generated backgrounds only,
    the original recipe, with fewer negatives).
    """
    canvas = _background(rng, size, size, photos)
    # Unlabelled distractors: name plates (text) and plain shapes; with photos, the hard negatives.
    for _ in range(int(rng.integers(0, 7 if photos else 4))):
        if photos:
            neg = _negative(rng, size, photos)
            _paste(canvas, np.asarray(neg, np.float32), int(rng.integers(-neg.width // 3, size - neg.width // 2)),
                   int(rng.integers(-neg.height // 3, size - neg.height // 2)))
        elif rng.random() < 0.5:
            plate, _ = render_name_plate(BRAND_NAMES[rng.integers(len(BRAND_NAMES))],
                                         int(rng.integers(8, 36)), board=rng.random() < 0.6)
            _paste(canvas, np.asarray(plate, np.float32), int(rng.integers(-20, size - 20)),
                   int(rng.integers(-10, size - 10)))
        else:
            d = _distractor(rng, int(rng.integers(10, 80)))
            _paste(canvas, np.asarray(d, np.float32), int(rng.integers(-10, size - 10)),
                   int(rng.integers(-10, size - 10)))
    boxes: list[list[float]] = []
    classes: list[int] = []
    placed: list[tuple[int, int, int, int]] = []
    # A fifth of the images with photos are pure negatives: nothing to find.
    n = 0 if photos and rng.random() < 0.2 else int(rng.integers(1, 7))
    lo, hi = LOGO_SIZE_RANGE
    for _ in range(n * 4):
        if len(boxes) >= n:
            break
        side = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        cls = int(rng.integers(len(BRAND_NAMES)))
        patch = _warp_logo(rng, BRAND_NAMES[cls], side)
        ph, pw = patch.shape[:2]
        if pw >= size - 2 or ph >= size - 2:
            continue
        x, y = int(rng.integers(0, size - pw)), int(rng.integers(0, size - ph))
        carrier = rng.random() < 0.4
        mx0 = int(pw * (rng.uniform(0.3, 0.9) if carrier else 0))
        my0 = int(ph * (rng.uniform(0.6, 1.2) if carrier else 0))
        my1 = int(ph * (rng.uniform(0.5, 1.5) if carrier else 0))
        if any(x - mx0 < bx1 + 2 and bx0 < x + pw + mx0 + 2 and y - my0 < by1 + 2 and by0 < y + ph + my1 + 2
               for bx0, by0, bx1, by1 in placed):
            continue
        if carrier:  # the mark sits on a shirt (player-like figure) or a board panel
            _paste(canvas, np.asarray(_carrier(rng, pw + 2 * mx0, ph + my0 + my1, my0), np.float32),
                   x - mx0, y - my0)
        # Lighting applied to the mark only (the background has its own).
        patch[..., :3] = patch[..., :3] * rng.uniform(0.75, 1.2) + rng.uniform(-20, 20, 3)
        vis = np.zeros((ph, pw), np.float32)
        sub = canvas[y:y + ph, x:x + pw]
        a = patch[..., 3:4] / 255.0
        sub[:] = sub * (1 - a) + patch[..., :3] * a
        vis[:] = a[..., 0]
        if rng.random() < 0.35:  # partial occlusion from one side
            frac = rng.uniform(0.1, 0.4)
            side_k = rng.integers(4)
            if side_k < 2:
                ow, oh = max(2, int(pw * frac)), int(ph * rng.uniform(1.0, 1.5))
                ox = x - ow // 3 if side_k == 0 else x + pw - ow + ow // 3
                oy = y + int(rng.integers(-ph // 4 - 1, ph // 4 + 1))
            else:
                ow, oh = int(pw * rng.uniform(1.0, 1.5)), max(2, int(ph * frac))
                ox = x + int(rng.integers(-pw // 4 - 1, pw // 4 + 1))
                oy = y - oh // 3 if side_k == 2 else y + ph - oh + oh // 3
            occ = np.asarray(_occluder(rng, ow, oh), np.float32)
            full = np.zeros((size, size), np.float32)
            oa = _paste(canvas, occ, ox, oy)
            if oa.size:
                full[max(0, oy):max(0, oy) + oa.shape[0], max(0, ox):max(0, ox) + oa.shape[1]] = oa
            vis *= 1 - full[y:y + ph, x:x + pw]
        m = vis >= 0.5
        if m.sum() < 0.5 * (patch[..., 3] >= 127.5).sum() or not m.any():
            # too occluded to label: leave it unlabelled would be ambiguous; paint it over instead
            canvas[y:y + ph, x:x + pw] = canvas[y:y + ph, x:x + pw] * 0 + np.asarray(
                rng.uniform(0, 255, 3), np.float32)
            placed.append((x, y, x + pw, y + ph))
            continue
        ys, xs = np.nonzero(m)
        boxes.append([x + float(xs.min()), y + float(ys.min()), x + float(xs.max()) + 1, y + float(ys.max()) + 1])
        classes.append(cls)
        placed.append((x - mx0, y - my0, x + pw + mx0, y + ph + my1))
    # Global lighting, blur, noise.
    canvas = canvas * rng.uniform(0.55, 1.35) + rng.uniform(-25, 25)
    mean = canvas.mean()
    canvas = (canvas - mean) * rng.uniform(0.75, 1.2) + mean
    canvas *= rng.uniform(0.88, 1.12, 3).astype(np.float32)
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    r = rng.random()
    if r < 0.25:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    elif r < 0.5:  # resample through a smaller size (like a letterbox downscale)
        f = rng.uniform(0.5, 0.85)
        img = img.resize((int(size * f), int(size * f)), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    out = np.asarray(img, np.float32)
    if rng.random() < 0.6:
        out = out + rng.normal(0, rng.uniform(1, 6), out.shape).astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def make_dataset(n: int, seed: int, size: int = 320, backgrounds: str | None = None) -> dict[str, Any]:
    """``n`` samples from one seed: ``{"images": (n, size, size, 3) uint8, "boxes": [...], "classes": [...]}``.

    ``backgrounds``: "train" or "heldout" mixes in that split's real photographs (:func:`real_images`)
    and the hard negatives; None draws generated backgrounds only.
    """
    rng = np.random.default_rng(seed)
    photos = real_images(backgrounds) if backgrounds is not None else ()
    images = np.empty((n, size, size, 3), np.uint8)
    boxes, classes = [], []
    for i in range(n):
        images[i], b, c = make_sample(rng, size, photos)
        boxes.append(b)
        classes.append(c)
    return {"images": images, "boxes": boxes, "classes": classes}
