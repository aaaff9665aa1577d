"""Evidence of every appearance: the frame where its mark was largest and sharpest, as a JPEG with
the boxes drawn, and a crop of the mark, so that a customer can audit each counted appearance.

The brand stage offers each analysed frame's confirmed rows while the frame's pixels exist
(`EvidenceKeeper.offer`). A picture is taken only when a brand's mark beats the best of its current
*stretch* by `GAIN`, or starts a stretch: the brand unseen for half the appearance gap, or a camera
cut. An appearance ends only at a gap of ``max_gap_s`` or at a cut, so stretches never span two
appearances, and every appearance gets the picture of its best stretch. The figures decide later
(``confirm_within_s``) which appearance a frame belongs to (`EvidenceKeeper.assign`); an
appearance's picture is written when the brand's next appearance starts or the stream ends, and
only if it counted: a blip leaves no evidence. Memory holds one picture per stream and brand, plus
the pictures of the frames not measured yet.

The pick: the frame with the largest ``share of screen x clarity`` of one of the brand's boxes
(clarity: `vidinfer.analytics.clarity`, times the visible fraction of the mark).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from vidinfer.atomic import write_atomically
from vidinfer.detections import Detections

__all__ = ["EvidenceKeeper", "Picture", "GAIN"]

log = logging.getLogger(__name__)

#: A picture replaces the stretch's best only when its mark scores this much better (fewer copies).
GAIN = 1.10
#: The crop of the mark keeps this share of its side around it, for context.
CROP_MARGIN = 0.25
_HIGHLIGHT, _OTHER = (255, 214, 0), (0, 200, 255)


class Picture(NamedTuple):
    """One analysed frame's pixels, kept for the evidence of the brands it shows."""

    pts_ns: int
    image: np.ndarray  # RGB uint8, the frame scaled to the evidence width
    scale: float  # evidence pixels per source pixel
    rows: Detections  # the frame's confirmed brand rows, source pixels
    crops: dict[int, np.ndarray]  # per brand offered, its best box's crop (RGB uint8, source resolution)
    scores: dict[int, float]  # per brand offered, share x clarity of its best box
    boxes: dict[int, int]  # per brand offered, the row of its best box


@dataclass
class _Stream:
    brands: int
    last_seen_ns: np.ndarray = field(init=False)  # per brand, when the stage last saw it (-1: not yet)
    stretch_best: np.ndarray = field(init=False)  # per brand, the best score of its current stretch
    pending: deque[Picture] = field(default_factory=deque)  # pictures of frames not measured yet
    open: dict[int, tuple[int, Picture | None, bool]] = field(default_factory=dict)  # brand: (run start, best, counted)
    records: list[list[dict[str, Any]]] = field(init=False)  # per brand, one per counted appearance

    def __post_init__(self) -> None:
        self.last_seen_ns = np.full(self.brands, -1, np.int64)
        self.stretch_best = np.zeros(self.brands)
        self.records = [[] for _ in range(self.brands)]


class EvidenceKeeper:
    """The best picture of every appearance, per stream and brand, written under ``folder``.

    Args:
        brands: brand names (the rows' class_id index them).
        folder: where the JPEGs go (created when the first is written).
        width: the evidence frame's width in pixels (the frame's own when smaller).
        max_gap_s: the figures' appearance gap (`vidinfer.analytics.exposure.StreamExposure`).
    """

    def __init__(self, brands: Sequence[str], folder: Path, width: int = 1280, max_gap_s: float = 1.0):
        self.brands = list(brands)
        self.folder, self.width = folder, width
        self._stretch_gap_ns = int(max_gap_s * 1e9) // 2
        self._streams: dict[str, _Stream] = {}

    def clear(self) -> None:
        """Remove the pictures of an earlier run from the folder: stale evidence would mislead an audit."""
        for old in self.folder.glob("*.jpg") if self.folder.is_dir() else ():
            old.unlink(missing_ok=True)

    def _stream(self, stream_id: str) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None:
            s = self._streams[stream_id] = _Stream(len(self.brands))
        return s

    def offer(self, frame: Any, rows: Detections, clarity: np.ndarray, cut: bool) -> None:
        """A frame's confirmed rows (brand class ids) with their clarity; its pixels are copied only
        when a brand in it starts a stretch or beats its stretch's best."""
        s = self._stream(frame.stream_id)
        if cut:
            s.last_seen_ns[:] = -1
        if not len(rows):
            return
        score = np.prod(rows.wh, axis=1) / float(frame.width * frame.height) * np.asarray(clarity, np.float64)
        best_row: dict[int, int] = {}
        for i, b in enumerate(rows.class_id.tolist()):
            if b not in best_row or score[i] > score[best_row[b]]:
                best_row[b] = i
        take = {}
        for b, i in best_row.items():
            new_stretch = s.last_seen_ns[b] < 0 or frame.pts_ns - s.last_seen_ns[b] >= self._stretch_gap_ns
            if new_stretch or score[i] > GAIN * s.stretch_best[b]:
                take[b] = i
                s.stretch_best[b] = score[i] if new_stretch else max(s.stretch_best[b], score[i])
            s.last_seen_ns[b] = frame.pts_ns
        if take:
            image, scale, crops = _pictures(frame, self.width, {b: rows.xyxy[i] for b, i in take.items()})
            s.pending.append(Picture(frame.pts_ns, image, scale, rows, crops,
                                     {b: float(score[i]) for b, i in take.items()}, take))

    def assign(self, stream_id: str, pts_ns: int, visible: np.ndarray, run_start_ns: np.ndarray,
               counted: np.ndarray, t0_ns: int) -> None:
        """The figures measured the frame at ``pts_ns``: per brand, whether it was on screen, when
        its appearance started and whether that appearance counts by now."""
        s = self._stream(stream_id)
        picture = None
        while s.pending and s.pending[0].pts_ns <= pts_ns:
            p = s.pending.popleft()
            picture = p if p.pts_ns == pts_ns else None
        for b in np.flatnonzero(visible).tolist():
            key = int(run_start_ns[b])
            start, best, _ = s.open.get(b, (None, None, False))
            if start is not None and start != key:
                self._close(stream_id, s, b, t0_ns)
                best = None
            if picture is not None and b in picture.scores and (best is None or picture.scores[b] > best.scores[b]):
                best = picture
            s.open[b] = (key, best, bool(counted[b]))

    def finish(self, stream_id: str, t0_ns: int | None) -> None:
        """End of the stream: the open appearances' pictures are written (those that counted)."""
        s = self._stream(stream_id)
        s.pending.clear()
        for b in list(s.open):
            self._close(stream_id, s, b, t0_ns or 0)

    def finish_all(self, t0_ns: dict[str, int | None]) -> None:
        """End of the run: every stream's open appearances (a stream stopped before its end)."""
        for sid in list(self._streams):
            self.finish(sid, t0_ns.get(sid))

    def _close(self, stream_id: str, s: _Stream, brand: int, t0_ns: int) -> None:
        start, best, counted = s.open.pop(brand)
        if not counted:
            return
        record: dict[str, Any] = {"frame_s": None, "image": None, "crop": None}
        if best is not None:
            n = len(s.records[brand]) + 1
            stem = f"{_safe(stream_id)}-{_safe(self.brands[brand])}-{n:04d}"
            image, crop = self.folder / f"{stem}.jpg", self.folder / f"{stem}-crop.jpg"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                drawn = _draw(best, brand, self.brands)
                write_atomically(image, lambda tmp: _save_jpeg(drawn, tmp))
                write_atomically(crop, lambda tmp: _save_jpeg(best.crops[brand], tmp))
            except OSError as exc:  # a full disk costs the picture, not the figures
                log.error("evidence of %s on %s could not be written to '%s' (%s); the appearance is listed "
                          "without it", self.brands[brand], stream_id, self.folder, exc.strerror or exc)
                s.records[brand].append(record)
                return
            row = best.boxes[brand]
            record = {"frame_s": round((best.pts_ns - t0_ns) / 1e9, 3), "image": f"{self.folder.name}/{image.name}",
                      "crop": f"{self.folder.name}/{crop.name}",
                      "box": [round(float(v), 1) for v in best.rows.xyxy[row]],
                      "score": round(best.scores[brand], 5)}
        s.records[brand].append(record)

    def records(self, stream_id: str) -> list[list[dict[str, Any]]]:
        """Per brand, one record per counted appearance, in order: ``frame_s`` (stream time of the
        picture), ``image`` and ``crop`` (file names in the folder), ``box`` (source pixels) and
        ``score`` (share x clarity); the paths (relative to the folder's parent, the report's) are None
        for an appearance no frame was pictured of."""
        return self._stream(stream_id).records


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "_"


def _pictures(frame: Any, width: int, boxes: dict[int, np.ndarray]) -> tuple[np.ndarray, float, dict[int, np.ndarray]]:
    """The frame scaled to ``width`` (at most its own) and a crop per box, RGB uint8 on the host."""
    from vidinfer._xp import to_numpy

    w, h = frame.width, frame.height
    scale = min(1.0, width / w)
    tw, th = max(2, round(w * scale)), max(2, round(h * scale))
    src = frame.source
    if src is not None and hasattr(src, "reformat"):  # a PyAV frame: one swscale pass per picture
        from vidinfer.sources.pyav import scaled_rgb

        image = scaled_rgb(src, tw, th)
        full = src.to_ndarray(format="rgb24")
    elif src is not None and getattr(src, "ndim", 0) == 3:  # an RGB array (NumPy or CuPy)
        full = to_numpy(src)
        image = full if scale == 1.0 else _resize(full, tw, th)
    elif hasattr(frame.image, "data") and hasattr(frame.image, "colour"):  # a DeviceNV12 (GPU)
        full = _nv12_rgb(frame.image)
        image = full if scale == 1.0 else _resize(full, tw, th)
    else:  # only the detector's image (the frame resized, no padding): upscaled, no detail added
        det = to_numpy(frame.image)
        full = _resize(det, w, h)
        image = _resize(det, tw, th)
    crops = {}
    for b, (x0, y0, x1, y1) in boxes.items():
        mx, my = CROP_MARGIN * (x1 - x0), CROP_MARGIN * (y1 - y0)
        ax0, ay0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        ax1, ay1 = min(full.shape[1], int(np.ceil(x1 + mx))), min(full.shape[0], int(np.ceil(y1 + my)))
        crops[b] = np.ascontiguousarray(full[ay0:max(ay1, ay0 + 1), ax0:max(ax1, ax0 + 1)])
    return np.ascontiguousarray(image), scale, crops


def _resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.Resampling.BILINEAR))


def _nv12_rgb(nv12: Any) -> np.ndarray:
    """The whole frame in RGB on the host, from NV12 in GPU memory (not run on GPU hardware yet)."""
    from vidinfer._xp import to_numpy
    from vidinfer.preprocess.crops import crop_resize_yuv420

    h, w = nv12.height, nv12.width
    y, uv = nv12.data[:h, :w], nv12.data[h:]
    rgb = crop_resize_yuv420(y, uv[:, 0::2], uv[:, 1::2], [[0, 0, w, h]], h, w, nv12.standard, nv12.full_range)
    return np.rint(to_numpy(rgb[0]) * 255.0).astype(np.uint8)


def _draw(p: Picture, brand: int, names: Sequence[str]) -> np.ndarray:
    """The picture with every brand box drawn and named; the appearance's brand in yellow, thicker."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(p.image)
    draw = ImageDraw.Draw(img)
    size = max(12, img.width // 80)
    font = ImageFont.load_default(size=size)
    line = max(2, img.width // 400)
    order = sorted(range(len(p.rows)), key=lambda i: p.rows.class_id[i] == brand)  # the brand's own drawn last
    for i in order:
        b = int(p.rows.class_id[i])
        x0, y0, x1, y1 = (float(v) * p.scale for v in p.rows.xyxy[i])
        colour = _HIGHLIGHT if b == brand else _OTHER
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line * (2 if b == brand else 1))
        label = names[b] if 0 <= b < len(names) else str(b)
        tx, ty = x0, max(0.0, y0 - size - 2 * line)
        draw.rectangle(draw.textbbox((tx, ty), label, font=font), fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=colour, font=font)
    return np.asarray(img)


def _save_jpeg(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, format="JPEG", quality=88)
