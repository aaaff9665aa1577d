"""Synthetic "coloured rectangles" scenes with exact ground truth.

A scene is a smooth dark-grey background with a few axis-aligned filled
rectangles moving at constant sub-pixel velocities and bouncing inside their
own private region of the frame.  Every rectangle has a class given by its hue
(0 "red", 1 "green", 2 "blue") and a shade ("bright" or "dim").

Rendering is anti-aliased by exact area coverage: pixel ``i`` covers the
continuous interval ``[i, i + 1)``, so a rectangle ``[x1, x2) x [y1, y2)`` covers
``overlap_x * overlap_y`` of a pixel and its edges are sub-pixel accurate.  The
ground-truth boxes are the very floats used for rendering, in continuous
source-pixel coordinates.

The scenes obey a contract that the hand-built detector in
:mod:`vidinfer.testing.shape_models` relies on.  It is stated in the detector's
input space (a 640x640 letterboxed image) by the ``DETECTOR_*`` / ``MIN_*`` /
``MAX_*`` constants below and converted to source pixels with the letterbox
scale by :func:`scene_limits` so that every source size (640x360, 1920x1080,
...) satisfies it:

* object width and height in ``[MIN_OBJECT_SIZE, MAX_OBJECT_SIZE]`` = [12, 40]
  model pixels.  The detector averages shape moments over a
  ``DETECTOR_WINDOW`` = 64 px window on a ``DETECTOR_STRIDE`` = 8 px anchor
  grid; an object must fit in the window of the anchor whose cell holds its
  centre with a margin for blur: 40 <= 64 - 8 - 2 * 8;
* objects never overlap and keep ``MIN_GAP`` = 8 model px between each other
  (so the chroma of different objects, smeared by 4:2:0 subsampling, never
  mixes) and ``EDGE_MARGIN`` = 4 model px from the frame border;
* two objects of the same class keep ``MIN_SAME_CLASS_GAP`` = 64 model px
  (= the window) apart along x or along y, so no detector window ever sees
  parts of two objects of one class.

Motion keeps the contract by construction: the frame is split into a grid of
cells, each object bounces inside its own cell (shrunk by half the gap), and
same-class objects only get cells that are far enough apart.
:func:`check_ground_truth` verifies all of it on the actual boxes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

# --- palette -----------------------------------------------------------------

CLASS_NAMES: tuple[str, ...] = ("red", "green", "blue")
SHADE_NAMES: tuple[str, ...] = ("bright", "dim")

#: Bright RGB colour per class.  Saturated, so "own channel minus the largest
#: other channel" is large for the class and <= 0 for grey and other classes.
BRIGHT_COLORS: tuple[tuple[int, int, int], ...] = (
    (235, 20, 20),
    (20, 235, 20),
    (20, 20, 235),
)
#: "dim" objects are the bright colour scaled by this factor (clearly darker;
#: the shade classifier separates max-channel ~0.92 from ~0.53).
DIM_FACTOR = 0.58


def object_color(class_id: int, shade: str) -> tuple[int, int, int]:
    """RGB colour (uint8 values) of an object of ``class_id`` and ``shade``."""
    base = BRIGHT_COLORS[class_id]
    if shade == "bright":
        return base
    if shade == "dim":
        return tuple(int(round(c * DIM_FACTOR)) for c in base)  # type: ignore[return-value]
    raise ValueError(f"unknown shade {shade!r}")


#: Background: neutral grey (R = G = B, so it carries no chroma and compresses
#: well) with a smooth diagonal gradient between these levels.
BG_LEVELS = (25.0, 60.0)
#: Gentle global brightness drift of the background over time (grey levels,
#: period in seconds).  Slow enough to cost almost nothing in the bitstream.
BG_DRIFT_AMPLITUDE = 2.0
BG_DRIFT_PERIOD_S = 8.0

# --- the contract with the hand-built detector (model-input pixels) ---------

#: Model input (height, width) the contract is expressed for; sources are
#: letterboxed into it (see :func:`letterbox_params`).
DETECTOR_INPUT_SIZE = (640, 640)
#: Anchor grid stride of the detector.
DETECTOR_STRIDE = 8
#: Side of the square window over which the detector integrates per anchor.
DETECTOR_WINDOW = 64
MIN_OBJECT_SIZE = 12.0
MAX_OBJECT_SIZE = 40.0
MIN_GAP = 8.0
EDGE_MARGIN = 4.0
MIN_SAME_CLASS_GAP = float(DETECTOR_WINDOW)
#: Object speed range, model pixels per frame (sub-pixel on purpose).
SPEED_RANGE = (0.35, 1.6)


def letterbox_params(
    src_width: int, src_height: int, input_size: tuple[int, int] = DETECTOR_INPUT_SIZE
) -> tuple[float, int, int, int, int]:
    """The pipeline's letterbox convention.

    ``input_size`` is ``(height, width)``.  Returns ``(scale, new_w, new_h,
    pad_x, pad_y)``: the source is resized to ``new_w x new_h`` and pasted at
    ``(pad_x, pad_y)`` into a canvas filled with grey 114.
    """
    in_h, in_w = input_size
    scale = min(in_w / src_width, in_h / src_height)
    new_w = int(round(src_width * scale))
    new_h = int(round(src_height * scale))
    return scale, new_w, new_h, (in_w - new_w) // 2, (in_h - new_h) // 2


@dataclass(frozen=True)
class SceneLimits:
    """The scene contract converted to source pixels for one source size."""

    scale: float  # model pixels per source pixel
    min_size: float
    max_size: float
    min_gap: float
    edge_margin: float
    min_same_class_gap: float


def scene_limits(
    width: int, height: int, input_size: tuple[int, int] = DETECTOR_INPUT_SIZE
) -> SceneLimits:
    """Contract limits in source pixels for a ``width x height`` source."""
    scale = letterbox_params(width, height, input_size)[0]
    return SceneLimits(
        scale=scale,
        min_size=MIN_OBJECT_SIZE / scale,
        max_size=MAX_OBJECT_SIZE / scale,
        min_gap=MIN_GAP / scale,
        edge_margin=EDGE_MARGIN / scale,
        min_same_class_gap=MIN_SAME_CLASS_GAP / scale,
    )


# --- rendering ----------------------------------------------------------------


def coverage_1d(lo: float, hi: float, start: int, stop: int) -> np.ndarray:
    """Coverage of the interval ``[lo, hi)`` in pixels ``start .. stop-1``.

    Pixel ``i`` is the interval ``[i, i + 1)``; the result is the overlap length.
    """
    i = np.arange(start, stop, dtype=np.float64)
    return np.clip(np.minimum(i + 1.0, hi) - np.maximum(i, lo), 0.0, 1.0)


def paint_rect(canvas: np.ndarray, box: Sequence[float], color: Sequence[float]) -> None:
    """Alpha-blend a filled rectangle into a float ``HxWx3`` canvas in place.

    ``box`` is ``[x1, y1, x2, y2]`` in continuous pixel coordinates; the alpha of
    a pixel is its exact area coverage (outer product of the per-row and
    per-column coverage), so the total painted mass equals the box area.
    """
    h, w = canvas.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, c1 = max(0, math.floor(x1)), min(w, math.ceil(x2))
    r0, r1 = max(0, math.floor(y1)), min(h, math.ceil(y2))
    if c1 <= c0 or r1 <= r0:
        return
    alpha = np.outer(coverage_1d(y1, y2, r0, r1), coverage_1d(x1, x2, c0, c1))[..., None]
    patch = canvas[r0:r1, c0:c1]
    patch *= 1.0 - alpha
    patch += alpha * np.asarray(color, dtype=canvas.dtype)


def _triangle(x: np.ndarray | float, length: float) -> np.ndarray:
    """Bounce position in ``[0, length]`` for an unbounded coordinate ``x``."""
    if length <= 0:
        return np.zeros_like(np.asarray(x, dtype=np.float64))
    return length - np.abs(np.mod(x, 2.0 * length) - length)


# --- scenes ------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One rectangle moving with constant velocity inside ``region``."""

    id: int
    class_id: int
    shade: str
    width: float
    height: float
    region: tuple[float, float, float, float]  # x1, y1, x2, y2 it stays inside
    start: tuple[float, float]  # unfolded top-left offset inside the region at t=0
    velocity: tuple[float, float]  # source pixels per frame

    def box(self, frame_no: int) -> list[float]:
        """Box ``[x1, y1, x2, y2]`` at ``frame_no``, rounded to 1/1000 px.

        The rounded floats are what gets rendered, so ground truth is exact.
        """
        rx1, ry1, rx2, ry2 = self.region
        ox = _triangle(self.start[0] + self.velocity[0] * frame_no, rx2 - rx1 - self.width)
        oy = _triangle(self.start[1] + self.velocity[1] * frame_no, ry2 - ry1 - self.height)
        x1 = round(rx1 + float(ox), 3)
        y1 = round(ry1 + float(oy), 3)
        return [x1, y1, round(x1 + self.width, 3), round(y1 + self.height, 3)]

    @property
    def color(self) -> tuple[int, int, int]:
        return object_color(self.class_id, self.shade)


@dataclass
class Scene:
    """A deterministic synthetic scene; frames are rendered on demand."""

    width: int
    height: int
    fps: int
    seed: int
    objects: list[SceneObject]
    bg_drift: bool = True
    _bg: np.ndarray | None = field(default=None, repr=False)

    def background(self, frame_no: int) -> np.ndarray:
        """Float32 ``HxWx3`` background of ``frame_no`` (neutral grey gradient)."""
        if self._bg is None:
            # Diagonal gradient, slightly seed-dependent in direction.
            rng = np.random.default_rng(self.seed + 7919)
            ax, ay = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
            gx = (np.arange(self.width, dtype=np.float32) + 0.5) / self.width
            gy = (np.arange(self.height, dtype=np.float32) + 0.5) / self.height
            t = (ax * gx[None, :] + ay * gy[:, None]) / (ax + ay)
            lo, hi = BG_LEVELS
            self._bg = (lo + 2 + (hi - lo - 4) * t).astype(np.float32)
        level = self._bg
        if self.bg_drift:
            phase = 2 * math.pi * frame_no / (BG_DRIFT_PERIOD_S * self.fps)
            level = level + np.float32(BG_DRIFT_AMPLITUDE * math.sin(phase))
        return np.repeat(level[:, :, None], 3, axis=2)

    def boxes(self, frame_no: int) -> list[list[float]]:
        return [o.box(frame_no) for o in self.objects]

    def render(self, frame_no: int) -> np.ndarray:
        """``HxWx3`` uint8 RGB image of ``frame_no``."""
        canvas = self.background(frame_no)
        for obj in self.objects:
            paint_rect(canvas, obj.box(frame_no), obj.color)
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    def objects_gt(self, frame_no: int) -> list[dict[str, Any]]:
        """Ground-truth objects of ``frame_no`` (see module doc / README)."""
        return [
            {
                "id": o.id,
                "class_id": o.class_id,
                "class_name": CLASS_NAMES[o.class_id],
                "shade": o.shade,
                "box": o.box(frame_no),
            }
            for o in self.objects
        ]


def _grid_shape(width: int, height: int, scale: float) -> tuple[int, int]:
    """Cells of roughly 160x180 model pixels (4x2 for 16:9 sources)."""
    cols = max(1, int(round(width * scale / 160.0)))
    rows = max(1, int(round(height * scale / 180.0)))
    return cols, rows


def _region_gap(a: Sequence[float], b: Sequence[float]) -> float:
    """Separation of two boxes: the larger of the x gap and the y gap."""
    gx = max(a[0] - b[2], b[0] - a[2])
    gy = max(a[1] - b[3], b[1] - a[3])
    return max(gx, gy)


def make_scene(
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    n_objects: int = 4,
    seed: int = 0,
    bg_drift: bool = True,
    input_size: tuple[int, int] = DETECTOR_INPUT_SIZE,
) -> Scene:
    """Build a random (seeded, deterministic) scene that obeys the contract.

    Classes and shades are drawn at random but a scene of 3 or more objects
    always mixes at least two classes and both shades.  The frame is split into
    cells of about 160x180 model pixels (4x2 for 16:9); with the same-class
    spacing rule and 3 classes, a 16:9 scene holds at most 6 objects.
    """
    lim = scene_limits(width, height, input_size)
    cols, rows = _grid_shape(width, height, lim.scale)
    if n_objects > cols * rows:
        raise ValueError(f"at most {cols * rows} objects fit a {width}x{height} scene")
    m = lim.edge_margin
    cell_w = (width - 2 * m) / cols
    cell_h = (height - 2 * m) / rows
    half_gap = lim.min_gap / 2
    # Every object moves inside its own cell shrunk by half the gap, so objects
    # in neighbouring cells are always >= min_gap apart.
    cells = [
        (
            m + c * cell_w + half_gap,
            m + r * cell_h + half_gap,
            m + (c + 1) * cell_w - half_gap,
            m + (r + 1) * cell_h - half_gap,
        )
        for r in range(rows)
        for c in range(cols)
    ]
    max_size = min(lim.max_size, 0.7 * (cell_w - lim.min_gap), 0.7 * (cell_h - lim.min_gap))
    if max_size < lim.min_size:
        raise ValueError(f"{width}x{height} is too small for the scene contract")

    rng = np.random.default_rng(seed)
    for _ in range(10_000):
        cell_ids = rng.permutation(len(cells))[:n_objects]
        classes = rng.integers(0, len(CLASS_NAMES), size=n_objects)
        shades = rng.integers(0, len(SHADE_NAMES), size=n_objects)
        if n_objects >= 3 and (len(set(classes)) < 2 or len(set(shades)) < 2):
            continue
        if all(
            _region_gap(cells[cell_ids[i]], cells[cell_ids[j]]) >= lim.min_same_class_gap
            for i in range(n_objects)
            for j in range(i + 1, n_objects)
            if classes[i] == classes[j]
        ):
            break
    else:
        raise ValueError(
            f"cannot place {n_objects} objects in a {cols}x{rows} cell grid while keeping "
            "same-class objects a detector window apart; use fewer objects"
        )

    objects = []
    for k in range(n_objects):
        region = cells[cell_ids[k]]
        w = float(round(rng.uniform(lim.min_size, max_size), 3))
        h = float(round(rng.uniform(lim.min_size, max_size), 3))
        speed = rng.uniform(*SPEED_RANGE) / lim.scale
        angle = rng.uniform(0, 2 * math.pi)
        span_x = region[2] - region[0] - w
        span_y = region[3] - region[1] - h
        objects.append(
            SceneObject(
                id=k,
                class_id=int(classes[k]),
                shade=SHADE_NAMES[int(shades[k])],
                width=w,
                height=h,
                region=region,
                start=(rng.uniform(0, 2 * span_x), rng.uniform(0, 2 * span_y)),
                velocity=(speed * math.cos(angle), speed * math.sin(angle)),
            )
        )
    return Scene(width, height, fps, seed, objects, bg_drift=bg_drift)


# --- validation ----------------------------------------------------------------


def check_ground_truth(
    frames: Iterable[dict[str, Any]],
    width: int,
    height: int,
    input_size: tuple[int, int] = DETECTOR_INPUT_SIZE,
) -> None:
    """Raise ``AssertionError`` if any frame's boxes break the scene contract.

    A tiny tolerance absorbs the 1/1000 px rounding of stored boxes.
    """
    lim = scene_limits(width, height, input_size)
    eps = 2e-3
    for fr in frames:
        objs = fr["objects"]
        for o in objs:
            x1, y1, x2, y2 = o["box"]
            for size in (x2 - x1, y2 - y1):
                assert lim.min_size - eps <= size <= lim.max_size + eps, (fr["frame_no"], o)
            assert x1 >= lim.edge_margin - eps and y1 >= lim.edge_margin - eps, (fr["frame_no"], o)
            assert x2 <= width - lim.edge_margin + eps, (fr["frame_no"], o)
            assert y2 <= height - lim.edge_margin + eps, (fr["frame_no"], o)
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i], objs[j]
                gap = _region_gap(a["box"], b["box"])
                need = lim.min_same_class_gap if a["class_id"] == b["class_id"] else lim.min_gap
                assert gap >= need - eps, (fr["frame_no"], a, b, gap, need)


# --- encoding -------------------------------------------------------------------

# BT.601 limited-range ("TV") RGB -> Y'CbCr matrix (ITU-R BT.601, 8 bit).
_BT601 = np.array(
    [
        [0.256788, 0.504129, 0.097906],
        [-0.148223, -0.290993, 0.439216],
        [0.439216, -0.367788, -0.071427],
    ]
)
_BT601_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """Convert ``HxWx3`` uint8 RGB to an I420 array of shape ``(H * 3 // 2, W)``.

    BT.601 limited range with *left-sited* chroma (the H.264 / MPEG-2 default,
    what decoders assume): horizontally a [1, 2, 1] / 4 filter centred on the
    even luma columns, vertically the mean of each row pair.  Done here rather
    than by swscale because swscale's RGB -> 4:2:0 path ignores the siting and
    produces centred chroma, which a correct decoder then shifts by half a
    pixel.  ``H`` and ``W`` must be even.
    """
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError("yuv420p needs an even width and height")
    ycc = rgb.astype(np.float64) @ _BT601.T + _BT601_OFFSET
    chroma = ycc[..., 1:]
    padded = np.concatenate([chroma[:, :1], chroma, chroma[:, -1:]], axis=1)
    horiz = (padded[:, 0:-2:2] + 2.0 * padded[:, 1:-1:2] + padded[:, 2::2]) / 4.0
    sub = (horiz[0::2] + horiz[1::2]) / 2.0  # (h/2, w/2, 2)
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = np.clip(np.rint(ycc[..., 0]), 0, 255)
    q = np.clip(np.rint(sub), 0, 255).astype(np.uint8)
    out[h : h + h // 4] = q[..., 0].reshape(h // 4, w)
    out[h + h // 4 :] = q[..., 1].reshape(h // 4, w)
    return out


def write_clip(
    path: str | Path,
    scene: Scene,
    n_frames: int,
    crf: int = 18,
    keyframe_interval: int | None = None,
    preset: str = "medium",
) -> dict[str, Any]:
    """Encode ``n_frames`` of ``scene`` as H.264 MP4 and write ``<name>.json``.

    libx264, yuv420p, a keyframe exactly every ``keyframe_interval`` frames
    (default: one per second) and no scene-cut keyframes, so a keyframes-only
    decode is predictable.  The file is decoded back afterwards and the JSON
    records the pts / keyframe flag of every frame exactly as a decoder reads
    them; the number of decoded frames is checked.  Returns the JSON dict.
    """
    import av  # local import: only the writer needs PyAV

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gop = int(keyframe_interval or scene.fps)
    container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream(
            "libx264",
            rate=scene.fps,
            options={
                "crf": str(crf),
                "preset": preset,
                # Fixed GOP, no scene-cut I-frames, single thread: deterministic
                # output and keyframes exactly every `gop` frames.
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:chromaloc=0",
            },
        )
        stream.width = scene.width
        stream.height = scene.height
        stream.pix_fmt = "yuv420p"
        cc = stream.codec_context
        cc.time_base = Fraction(1, scene.fps)
        # Tag the colour description (BT.601 / SMPTE 170M, TV range) so that
        # every player converts back with the matrix used in rgb_to_yuv420p.
        cc.colorspace = cc.color_primaries = cc.color_trc = 6  # AVCOL_*_SMPTE170M
        cc.color_range = 1  # AVCOL_RANGE_MPEG
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(scene.render(i)), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, scene.fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()

    # Read back what a decoder sees (pts in the stream time base, key flags).
    time_base, _, decoded = read_back(path, n_frames)

    gt = {
        "width": scene.width,
        "height": scene.height,
        "fps": scene.fps,
        "time_base": [time_base.numerator, time_base.denominator],
        "keyframe_interval": gop,
        "seed": scene.seed,
        "classes": list(CLASS_NAMES),
        "shades": list(SHADE_NAMES),
        "frames": [
            {"frame_no": i, "pts": pts, "keyframe": key, "objects": scene.objects_gt(i)}
            for i, (pts, key) in enumerate(decoded)
        ],
    }
    check_ground_truth(gt["frames"], scene.width, scene.height)
    gt_path = path.with_suffix(".json")
    gt_path.write_text(json.dumps(gt, separators=(",", ":")) + "\n")
    return gt


def load_ground_truth(clip_path: str | Path) -> dict[str, Any]:
    """Load the ground-truth JSON stored next to ``clip_path``."""
    return json.loads(Path(clip_path).with_suffix(".json").read_text())


def read_back(path: Path | str, n_frames: int) -> tuple[Fraction, str, list[tuple[int, bool]]]:
    """What a decoder sees of a clip just written: (time base, codec name, (pts, key frame) per
    frame); the clip must decode to ``n_frames`` frames."""
    import av

    decoded = []
    with av.open(str(path)) as reader:
        vstream = reader.streams.video[0]
        time_base, codec = vstream.time_base, vstream.codec_context.name
        for frame in reader.decode(vstream):
            decoded.append((frame.pts, bool(frame.key_frame)))
    if len(decoded) != n_frames:
        raise RuntimeError(f"{path}: encoded {n_frames} frames, decoded {len(decoded)}")
    return time_base, codec, decoded
