"""Broadcast-like synthetic football clips with exact brand-visibility ground truth.

A *world* picture (stands, a strip of perimeter advertising boards, a mowed
pitch) is rendered once; each frame is a camera view of it (pan + slight zoom,
bilinear resampling of the world, so every world box maps to the screen by an
exact affine map).  Players (simple figures: legs, shorts, shirt, head; some
wearing a brand's logo mark on the chest) are drawn on top in screen space,
back to front by their foot position.  Shots are separated by hard cuts (wide
camera -> close-up of a board section -> wide camera).

Brand instances (ground truth per frame)
----------------------------------------
* ``kind == "logo"``: a logo mark on a board or on a player's chest; its
  support is its square box.
* ``kind == "text"``: a name plate's lettering; its support is the tight box
  of the letters' ink.

``visible_fraction`` = area of the support that lies inside the frame and is
not covered by a player drawn in front of it (player alpha >= 0.5), divided by
the support's full area (in screen pixels).  ``box`` is the box of that
visible part in continuous source pixels (pixel ``i`` covers ``[i, i + 1)``).
An instance is listed when ``visible_fraction > 0``; it **counts as visible
when ``visible_fraction >= 0.5``** (:data:`VISIBLE_THRESHOLD`).

``instance_id`` is stable for one physical mark within one shot and new after
every cut (``shot * 1000 + local id``), like the track id a tracker would give.

Per-brand summary: ``visible_frames`` = frames in which *any* instance of the
brand (either kind) is visible, ``visible_seconds = visible_frames / fps``;
an *appearance* is one maximal run of consecutive frames in which one given
instance is visible (so a mark leaving the picture and coming back, or being
hidden by a player for a while, makes two appearances; a cut always ends one);
``appearances`` counts them over all the brand's instances and ``intervals``
lists them (``start_frame``..``end_frame`` inclusive).  ``by_kind`` repeats
the figures for logos and lettering separately.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vidinfer.testing.brands import (
    BOARD_COLORS,
    BRAND_NAMES,
    render_logo,
    render_name_plate,
)
from vidinfer.testing.synthetic import read_back

__all__ = ["VISIBLE_THRESHOLD", "BroadcastScene", "make_broadcast_scene", "write_broadcast_clip",
           "summarize"]

VISIBLE_THRESHOLD = 0.5
W, H = 1920, 1080
# World layout (world px = screen px at zoom 1).
WORLD_W, WORLD_H = 5200, 1700
BOARD_TOP, BOARD_H = 300, 130
LOGO_SIDE = 96  # board logo side at zoom 1
CAP_H = 42  # board lettering cap height at zoom 1
PITCH_TOP = BOARD_TOP + BOARD_H + 14
PLAYER_H = 280  # player height (world px)
CHEST_LOGO = 54  # chest logo side (world px)
KIT_COLORS = [((200, 30, 30), (250, 250, 250)), ((30, 60, 180), (20, 20, 30)),
              ((250, 250, 250), (30, 30, 120)), ((240, 200, 20), (20, 90, 40))]
SKIN = [(235, 195, 160), (190, 140, 100), (120, 80, 55), (225, 180, 140)]


# --- world ---------------------------------------------------------------------


@dataclass
class Mark:
    id: int
    brand: str
    kind: str  # "logo" | "text"
    box: tuple[float, float, float, float]  # world px


def _smooth(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    g = rng.random((h // cell + 3, w // cell + 3)).astype(np.float32)
    return np.asarray(Image.fromarray(g, "F").resize(((w // cell + 3) * cell, (h // cell + 3) * cell),
                                                      Image.BICUBIC))[:h, :w]


def build_world(rng: np.random.Generator) -> tuple[Image.Image, list[Mark]]:
    """The world picture and its board marks (logos + lettering)."""
    img = np.zeros((WORLD_H, WORLD_W, 3), np.float32)
    # Stands: blurred coloured crowd blobs (low-frequency: cheap to encode).
    crowd = np.stack([_smooth(rng, BOARD_TOP, WORLD_W, 22) for _ in range(3)], axis=2)
    shade = _smooth(rng, BOARD_TOP, WORLD_W, 70)[..., None]
    img[:BOARD_TOP] = (60 + 70 * crowd) * (0.6 + 0.5 * shade)
    # Pitch: green with mowing stripes widening towards the camera (soft edges).
    y = np.arange(PITCH_TOP - 14, WORLD_H, dtype=np.float32)[:, None]
    x = np.arange(WORLD_W, dtype=np.float32)[None, :]
    persp = 1.0 + (y - PITCH_TOP) / 900.0
    u = (x - WORLD_W / 2) / persp / 150.0
    tri = np.abs((u % 2.0) - 1.0)  # 0..1 triangle
    stripe = np.clip((tri - 0.5) * 12 + 0.5, 0, 1)  # anti-aliased square wave
    green = np.array([52, 128, 50], np.float32)
    light = 0.88 + 0.14 * stripe + 0.04 * _smooth(rng, len(y), WORLD_W, 80)
    img[PITCH_TOP - 14:] = green * light[..., None]
    # Touchline.
    img[PITCH_TOP + 6:PITCH_TOP + 11] = (235, 240, 235)
    # Board strip base (dark frame).
    img[BOARD_TOP - 6:BOARD_TOP + BOARD_H + 6] = (25, 25, 28)
    world = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    marks: list[Mark] = []
    x = 40
    order = list(rng.permutation(len(BRAND_NAMES)))
    k = 0
    while True:
        brand = BRAND_NAMES[order[k % len(order)]]
        plate, tbox = render_name_plate(brand, CAP_H, pad=22)
        panel_w = LOGO_SIDE + 40 + plate.size[0] + 30
        if x + panel_w > WORLD_W - 40:
            break
        board = Image.new("RGB", (panel_w, BOARD_H), BOARD_COLORS[brand])
        world.paste(board, (x, BOARD_TOP))
        lx, ly = x + 24, BOARD_TOP + (BOARD_H - LOGO_SIDE) // 2
        logo = render_logo(brand, LOGO_SIDE)
        world.paste(logo, (lx, ly), logo)
        marks.append(Mark(len(marks), brand, "logo", (lx, ly, lx + LOGO_SIDE, ly + LOGO_SIDE)))
        px, py = lx + LOGO_SIDE + 16, BOARD_TOP + (BOARD_H - plate.size[1]) // 2
        world.paste(plate, (px, py), plate)
        marks.append(Mark(len(marks), brand, "text",
                          (px + tbox[0], py + tbox[1], px + tbox[2], py + tbox[3])))
        x += panel_w + 12
        k += 1
    return world, marks


# --- players ---------------------------------------------------------------------


@dataclass
class Player:
    id: int
    kit: int
    skin: int
    brand: str | None  # chest logo
    x0: float  # world foot x at t = 0
    y: float  # world foot y
    vx: float  # world px per frame
    x_range: tuple[float, float] | None = None  # bounce inside (lane) when set

    def foot_x(self, t: int) -> float:
        if self.x_range is None:
            return self.x0 + self.vx * t
        lo, hi = self.x_range
        span = hi - lo
        v = (self.x0 - lo) + self.vx * t
        return lo + span - abs((v % (2 * span)) - span)


def player_sprite(p: Player, scale: float, phase: float) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """RGBA sprite (feet at bottom centre) and the chest-logo box inside it (integer px)."""
    ss = 3
    h = max(8, int(round(PLAYER_H * scale)))
    w = max(4, int(round(PLAYER_H * 0.36 * scale)))
    big = Image.new("RGBA", (w * ss, h * ss), (0, 0, 0, 0))
    d = ImageDraw.Draw(big)
    W_, H_ = w * ss, h * ss
    shirt, shorts = KIT_COLORS[p.kit]
    skin = SKIN[p.skin]
    swing = math.sin(phase) * 0.09 * W_
    leg_w = 0.16 * W_
    for sgn in (-1, 1):  # legs
        cx = W_ / 2 + sgn * 0.14 * W_ + sgn * swing
        d.rounded_rectangle([cx - leg_w / 2, 0.58 * H_, cx + leg_w / 2, H_ - 1], radius=leg_w / 3,
                            fill=skin + (255,))
        d.rectangle([cx - leg_w / 2, 0.86 * H_, cx + leg_w / 2, H_ - 1], fill=shorts + (255,))
    d.rounded_rectangle([0.12 * W_, 0.52 * H_, 0.88 * W_, 0.66 * H_], radius=0.05 * W_, fill=shorts + (255,))
    d.rounded_rectangle([0.0, 0.17 * H_, W_ - 1, 0.57 * H_], radius=0.18 * W_, fill=shirt + (255,))
    d.ellipse([0.30 * W_, 0.0, 0.70 * W_, 0.40 * W_ * 1.0 + 0.0], fill=skin + (255,))
    sprite = big.resize((w, h), Image.BOX)
    box = None
    if p.brand is not None:
        side = int(round(CHEST_LOGO * scale))
        if side >= 4:
            lx, ly = (w - side) // 2, int(round(0.22 * h))
            logo = render_logo(p.brand, side)
            sprite.alpha_composite(logo, (lx, ly))
            box = (lx, ly, lx + side, ly + side)
    return sprite, box


# --- camera / shots ----------------------------------------------------------------


@dataclass
class Shot:
    start: int
    end: int  # exclusive
    kind: str  # "wide" | "close"
    x_start: float  # world x of the screen centre at shot start
    x_speed: float  # world px per frame
    zoom0: float
    zoom1: float
    y_board_screen: float  # screen y at which the board top appears


@dataclass
class BroadcastScene:
    seed: int
    fps: int
    n_frames: int
    world: Image.Image
    marks: list[Mark]
    shots: list[Shot]
    players: list[list[Player]]  # per shot
    occlusion: bool
    _world_np: np.ndarray | None = field(default=None, repr=False)

    def shot_of(self, t: int) -> tuple[int, Shot]:
        for i, s in enumerate(self.shots):
            if s.start <= t < s.end:
                return i, s
        return len(self.shots) - 1, self.shots[-1]

    def camera(self, t: int) -> tuple[float, float, float]:
        """(zoom, world x at screen x=0, world y at screen y=0)."""
        _, s = self.shot_of(t)
        f = (t - s.start) / max(1, s.end - s.start - 1)
        ease = 0.5 - 0.5 * math.cos(math.pi * f)
        z = s.zoom0 + (s.zoom1 - s.zoom0) * ease
        cx = s.x_start + s.x_speed * (t - s.start)
        return z, cx - (W / 2) / z, BOARD_TOP - s.y_board_screen / z

    @property
    def cuts(self) -> list[int]:
        return [s.start for s in self.shots[1:]]

    def render(self, t: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """RGB uint8 frame ``t`` and its ground-truth instances."""
        shot_no, shot = self.shot_of(t)
        z, wx0, wy0 = self.camera(t)
        frame = self.world.transform((W, H), Image.AFFINE, (1 / z, 0, wx0, 0, 1 / z, wy0), Image.BILINEAR)
        canvas = np.asarray(frame, np.float32).copy()
        # Players, back to front.
        cover = np.zeros((H, W), bool)  # union of player alpha >= 0.5 drawn so far
        chest: list[tuple[Player, tuple[float, float, float, float], int]] = []
        layers = []
        for p in sorted(self.players[shot_no], key=lambda q: q.y):
            fx, fy = p.foot_x(t), p.y
            sx, sy = (fx - wx0) * z, (fy - wy0) * z
            sprite, cbox = player_sprite(p, z, phase=(t * 0.35 + p.id) if p.vx else 0.0)
            sw, sh = sprite.size
            ox, oy = int(round(sx - sw / 2)), int(round(sy - sh))
            if ox >= W or oy >= H or ox + sw <= 0 or oy + sh <= 0:
                continue
            layers.append((p, sprite, ox, oy, cbox))
        masks = []
        for p, sprite, ox, oy, cbox in layers:
            a = np.asarray(sprite, np.float32)
            x0, y0, x1, y1 = max(0, ox), max(0, oy), min(W, ox + a.shape[1]), min(H, oy + a.shape[0])
            pa = a[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
            al = pa[..., 3:4] / 255.0
            canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - al) + pa[..., :3] * al
            m = np.zeros((H, W), bool)
            m[y0:y1, x0:x1] = al[..., 0] >= 0.5
            masks.append(m)
            if cbox is not None:
                chest.append((p, (ox + cbox[0], oy + cbox[1], ox + cbox[2], oy + cbox[3]), len(masks) - 1))
        for m in masks:
            cover |= m
        instances = []
        for mk in self.marks:
            x1, y1, x2, y2 = mk.box
            sb = ((x1 - wx0) * z, (y1 - wy0) * z, (x2 - wx0) * z, (y2 - wy0) * z)
            inst = _visibility(sb, cover)
            if inst:
                instances.append({"brand": mk.brand, "kind": mk.kind, "instance_id": shot_no * 1000 + mk.id,
                                  **inst})
        for p, sb, layer in chest:
            front = np.zeros((H, W), bool)
            for m in masks[layer + 1:]:
                front |= m
            inst = _visibility(sb, front)
            if inst:
                instances.append({"brand": p.brand, "kind": "logo",
                                  "instance_id": shot_no * 1000 + 500 + p.id, **inst})
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), instances


def _visibility(sb: tuple[float, float, float, float], cover: np.ndarray) -> dict[str, Any] | None:
    """Visible fraction and visible box of a screen-space support box given an occluder mask."""
    x1, y1, x2, y2 = sb
    area = (x2 - x1) * (y2 - y1)
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(H), y2)
    if cx2 <= cx1 or cy2 <= cy1 or area <= 0:
        return None
    c0, c1 = int(math.floor(cx1)), int(math.ceil(cx2))
    r0, r1 = int(math.floor(cy1)), int(math.ceil(cy2))
    colw = np.clip(np.minimum(np.arange(c0, c1) + 1.0, cx2) - np.maximum(np.arange(c0, c1), cx1), 0, 1)
    roww = np.clip(np.minimum(np.arange(r0, r1) + 1.0, cy2) - np.maximum(np.arange(r0, r1), cy1), 0, 1)
    free = ~cover[r0:r1, c0:c1]
    wgt = roww[:, None] * colw[None, :] * free
    vis_area = float(wgt.sum())
    if vis_area <= 1e-6:
        return None
    if free.all():
        box = [cx1, cy1, cx2, cy2]
    else:
        ys, xs = np.nonzero(free)
        box = [max(cx1, c0 + xs.min()), max(cy1, r0 + ys.min()), min(cx2, c0 + xs.max() + 1.0),
               min(cy2, r0 + ys.max() + 1.0)]
    return {"box": [round(float(v), 3) for v in box], "visible_fraction": round(vis_area / area, 4)}


# --- scene construction --------------------------------------------------------------


def make_broadcast_scene(seconds: float = 11.0, fps: int = 25, seed: int = 0, occlusion: bool = True
                         ) -> BroadcastScene:
    """A seeded scene: wide pan -> cut to a board close-up -> cut back to the wide camera.

    With ``occlusion=False`` no player ever covers a brand mark (players stay on
    the pitch below the boards, in their own lanes), so appearances are exact.
    """
    rng = np.random.default_rng(seed)
    world, marks = build_world(rng)
    n = int(round(seconds * fps))
    c1, c2 = int(n * rng.uniform(0.38, 0.45)), int(n * rng.uniform(0.6, 0.66))
    span = WORLD_W - W / 1.0
    x_a = float(rng.uniform(W / 2 + 20, W / 2 + 0.3 * span))
    speed_a = float(rng.uniform(5.0, 8.0))
    x_b0 = x_a + speed_a * c1 + float(rng.uniform(150, 400))
    x_close = float(rng.uniform(1200, WORLD_W - 1200))
    speed_b = -float(rng.uniform(3.0, 6.0))
    shots = [
        Shot(0, c1, "wide", x_a, speed_a, 1.0, 1.08, 240.0),
        Shot(c1, c2, "close", x_close, float(rng.uniform(-2.0, 2.0)), 2.1, 2.2, 250.0),
        Shot(c2, n, "wide", x_b0, speed_b, 1.06, 1.0, 240.0),
    ]
    brands_cycle = list(BRAND_NAMES)
    players: list[list[Player]] = []
    for si, s in enumerate(shots):
        ps: list[Player] = []
        z = max(s.zoom0, s.zoom1)
        view_lo = s.x_start - W / 2 / s.zoom0 - 400
        view_hi = s.x_start + s.x_speed * (s.end - s.start) + W / 2 / s.zoom0 + 400
        if occlusion:
            # Players walking along the boards (feet just below them: they cover the boards).
            for k in range(4 if s.kind == "wide" else 2):
                y = PITCH_TOP + PLAYER_H * (0.4 if s.kind == "wide" else 0.35) + k * 6
                vx = float(rng.choice([-1, 1]) * rng.uniform(2.0, 5.0))
                if s.kind == "wide":
                    x0 = float(rng.uniform(view_lo + 300, view_hi - 300))
                else:  # close-up: start off-centre and walk across the view
                    x0 = s.x_start - math.copysign(float(rng.uniform(100, 420)), vx)
                ps.append(Player(k, int(rng.integers(len(KIT_COLORS))), int(rng.integers(len(SKIN))),
                                 brands_cycle[(si + k) % len(brands_cycle)] if k % 2 == 0 or k == 3 else None,
                                 x0, y, vx))
            # A few more on the pitch (may cross each other).
            for k in range(4, 7 if s.kind == "wide" else 4):
                y = PITCH_TOP + PLAYER_H + float(rng.uniform(120, 380))
                ps.append(Player(k, int(rng.integers(len(KIT_COLORS))), int(rng.integers(len(SKIN))),
                                 brands_cycle[(si + k) % len(brands_cycle)], float(rng.uniform(view_lo, view_hi)),
                                 y, float(rng.choice([-1, 1]) * rng.uniform(1.5, 4.0))))
        elif s.kind == "wide":
            # Own lanes, far enough below the boards never to reach them.
            lane_w = 520.0
            lo = view_lo + 200
            for k in range(5):
                a = lo + k * (lane_w + 160)
                y = PITCH_TOP + PLAYER_H + 140 + float(rng.uniform(0, 250))
                ps.append(Player(k, int(rng.integers(len(KIT_COLORS))), int(rng.integers(len(SKIN))),
                                 brands_cycle[(si + k) % len(brands_cycle)] if k != 2 else None,
                                 float(rng.uniform(a, a + lane_w)), y,
                                 float(rng.choice([-1, 1]) * rng.uniform(1.5, 3.5)), (a, a + lane_w)))
        players.append(ps)
        del z
    return BroadcastScene(seed, fps, n, world, marks, shots, players, occlusion)


# --- encoding ------------------------------------------------------------------------

_BT601 = np.array([[0.256788, 0.504129, 0.097906], [-0.148223, -0.290993, 0.439216],
                   [0.439216, -0.367788, -0.071427]], np.float32)


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """Float32 twin of :func:`vidinfer.testing.synthetic.rgb_to_yuv420p` (left-sited chroma)."""
    h, w = rgb.shape[:2]
    f = rgb.astype(np.float32)
    y = f @ _BT601[0] + 16.0
    cb = f @ _BT601[1] + 128.0
    cr = f @ _BT601[2] + 128.0
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = np.clip(np.rint(y), 0, 255)
    for k, ch in enumerate((cb, cr)):
        p = np.concatenate([ch[:, :1], ch, ch[:, -1:]], axis=1)
        hz = (p[:, 0:-2:2] + 2.0 * p[:, 1:-1:2] + p[:, 2::2]) * 0.25
        sub = (hz[0::2] + hz[1::2]) * 0.5
        q = np.clip(np.rint(sub), 0, 255).astype(np.uint8).reshape(h // 4, w)
        out[h + k * (h // 4): h + (k + 1) * (h // 4)] = q
    return out


def summarize(frames: list[dict[str, Any]], fps: int) -> dict[str, Any]:
    """Per-brand visible_seconds / appearances / intervals (see module docstring)."""
    out: dict[str, Any] = {}
    for brand in BRAND_NAMES:
        res: dict[str, Any] = {}
        for kind in ("any", "logo", "text"):
            vis_frames = set()
            runs: dict[int, list[list[int]]] = {}
            kinds: dict[int, str] = {}
            for fr in frames:
                for o in fr["instances"]:
                    if o["brand"] != brand or o["visible_fraction"] < VISIBLE_THRESHOLD:
                        continue
                    if kind != "any" and o["kind"] != kind:
                        continue
                    t = fr["frame_no"]
                    vis_frames.add(t)
                    iid = o["instance_id"]
                    kinds[iid] = o["kind"]
                    r = runs.setdefault(iid, [])
                    if r and r[-1][1] == t - 1:
                        r[-1][1] = t
                    else:
                        r.append([t, t])
            intervals = sorted(({"instance_id": iid, "kind": kinds[iid], "start_frame": a, "end_frame": b}
                                for iid, rr in runs.items() for a, b in rr),
                               key=lambda d: (d["start_frame"], d["instance_id"]))
            entry = {"visible_frames": len(vis_frames), "visible_seconds": round(len(vis_frames) / fps, 4),
                     "appearances": len(intervals)}
            if kind == "any":
                res.update(entry)
                res["intervals"] = intervals
            else:
                res.setdefault("by_kind", {})[kind] = entry
        out[brand] = res
    return out


def write_broadcast_clip(path: str | Path, scene: BroadcastScene, crf: int = 24, preset: str = "veryfast",
                         keyframe_interval: int = 25) -> dict[str, Any]:
    """Encode ``scene`` as H.264 MP4 (yuv420p, fixed GOP) and write ``<name>.json`` ground truth."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gop = int(keyframe_interval)
    frames_gt = []
    container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream("libx264", rate=scene.fps, options={
            "crf": str(crf), "preset": preset,
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:chromaloc=0"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        cc = stream.codec_context
        cc.time_base = Fraction(1, scene.fps)
        cc.colorspace = cc.color_primaries = cc.color_trc = 6
        cc.color_range = 1
        for t in range(scene.n_frames):
            rgb, inst = scene.render(t)
            frames_gt.append({"frame_no": t, "instances": inst})
            frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = t
            frame.time_base = Fraction(1, scene.fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    tb, _, decoded = read_back(path, scene.n_frames)
    for fr, (pts, key) in zip(frames_gt, decoded):
        fr["pts"], fr["keyframe"] = pts, key
        fr["shot"] = scene.shot_of(fr["frame_no"])[0]
    frames_gt = [{k: fr[k] for k in ("frame_no", "pts", "keyframe", "shot", "instances")} for fr in frames_gt]
    gt = {
        "width": W, "height": H, "fps": scene.fps, "time_base": [tb.numerator, tb.denominator],
        "keyframe_interval": gop, "seed": scene.seed, "occlusion": scene.occlusion,
        "brands": list(BRAND_NAMES), "visible_threshold": VISIBLE_THRESHOLD,
        "cuts": scene.cuts,
        "shots": [{"start_frame": s.start, "end_frame": s.end - 1, "kind": s.kind} for s in scene.shots],
        "summary": summarize(frames_gt, scene.fps),
        "frames": frames_gt,
    }
    path.with_suffix(".json").write_text(json.dumps(gt, separators=(",", ":")) + "\n")
    return gt
