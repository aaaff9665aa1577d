"""Brand exposure per stream: how long, how often, how large and where each brand was on screen.

Definitions (docs/brand-impact.md is the reference):

* Each analysed frame stands for the stream time until the next analysed frame of its stream
  (capped at twice the usual step, so a gap such as a reconnect is not counted as visibility; the
  last frame gets the usual step). This makes every figure independent of ``sample_fps``.
* visible_s: the time in which at least one box of the brand was on screen, in occurrences that
  count as appearances: a blip (fewer than ``min_track_frames`` analysed frames) counts no time,
  no interval, in no figure of its brand.
* appearances: continuous on-screen occurrences of the brand, as sponsors count them: the brand on
  screen in at least ``min_track_frames`` analysed frames, with gaps shorter than ``max_gap_s``
  (occlusions, missed reads) merged, and a camera cut merged only when the brand is on screen on
  both sides of it (the same frames before and after). A cut or a discontinuity with the brand on
  one side only ends the occurrence.
* tracks: tracks of the brand seen in at least ``min_track_frames`` analysed frames (one physical
  mark each: two boards of a brand on screen at once are two tracks and one appearance).
* share of screen: the summed area of the brand's boxes over the frame area (capped at 1);
  mean_share is time-weighted over visible time, peak_share the largest value.
* grid: visible time split over a 3x3 grid of the screen by box centre, weighted by box area.
* exposure_score: prominence-weighted seconds, sum over frames of
  ``step * min(1, share / reference_share) * position_weight``, position_weight 1.0 in the
  centre cell, 0.8 in edge-centre cells, 0.6 in corners. A brand filling at least
  ``reference_share`` of the screen in the centre for 10 s scores 10.
* solus_s: the time in which the brand was the only brand on screen (another brand's blip on
  screen with it is on screen: it takes the time from solus_s and adds to mean_clutter).
* mean_clutter: the other brands on screen beside it, time-weighted over its visible time
  (0: always alone; 1.5: one or two others as often).
* size_s: visible time split by the brand's share of screen in that frame into SIZE_NAMES
  buckets (< 1%, 1-2.5%, 2.5-5%, 5-10%, >= 10%); the buckets add up to visible_s.
* share_of_voice: the brand's visible_s over all brands' visible_s in the same span (0 when no
  brand was seen).
* mean_clarity: time-weighted mean over visible time of the clarity of the brand's boxes
  (area-weighted): sharpness (`vidinfer.analytics.clarity`) times the visible fraction of the mark
  (the share of the name a text read spells, its match score; 1 for a logo, whose detector does not
  say).
* quality_s: quality-weighted seconds, Σ ``step × quality``, where quality (0-1) weighs
  QUALITY_WEIGHTS: size ``min(1, share / reference_share)``, position (POSITION_WEIGHTS), clarity,
  solus ``1 / (1 + other brands on screen)`` and duration ``min(1, time into the appearance /
  FULL_DURATION_S)``; mean_quality = quality_s / visible_s.
* media_value: with a rate card, ``quality_s × price per 30 s / 30`` (the price of the named
  segment the frame starts in when it has one: a daypart).
* segments: the same figures for spans of stream time (fixed windows, named ranges); a frame's
  time is split at a segment's edges, and an appearance belongs to the segment it starts in, so
  windows that tile the stream add up to the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from vidinfer.detections import Detections

__all__ = ["StreamExposure", "ExposureAnalytics", "Figures", "Segment", "POSITION_WEIGHTS", "GRID_NAMES",
           "SIZE_EDGES", "SIZE_NAMES"]

POSITION_WEIGHTS = np.array([0.6, 0.8, 0.6, 0.8, 1.0, 0.8, 0.6, 0.8, 0.6])
GRID_NAMES = ["top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right"]
#: Upper edges of the size buckets, as shares of the screen; SIZE_NAMES names the buckets.
SIZE_EDGES = np.array([0.01, 0.025, 0.05, 0.10])
SIZE_NAMES = ["<1%", "1-2.5%", "2.5-5%", "5-10%", ">=10%"]
#: The quality index's weights (they add up to 1): size, position, clarity, solus, duration.
QUALITY_WEIGHTS = {"size": 0.3, "position": 0.2, "clarity": 0.2, "solus": 0.15, "duration": 0.15}
#: An appearance reaches its full duration weight after this many seconds on screen.
FULL_DURATION_S = 2.0


class Segment(NamedTuple):
    """A named span of stream time, seconds from the stream's first analysed frame."""

    name: str
    start_s: float
    end_s: float
    per_30s: float | None = None  # the rate card's price in this segment (a daypart), if its own


@dataclass
class _Frame:
    """What one analysed frame showed of each brand, waiting for its duration to be known."""

    pts_ns: int
    visible: np.ndarray  # (B,) bool
    share: np.ndarray  # (B,) float
    grid: np.ndarray  # (B, 9) area weights summing to 1 for visible brands
    confidence: np.ndarray  # (B,) max score
    prominence: np.ndarray  # (B,)
    others: np.ndarray  # (B,) other brands on screen beside a visible one (0 where not visible)
    size: np.ndarray  # (B, 5) one-hot size bucket of a visible brand
    clarity: np.ndarray  # (B,) area-weighted clarity of the brand's boxes
    quality: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,), set once its appearance is known
    rate: float = 0.0  # the price per 30 s where the frame starts


class Figures:
    """The figures of every brand over one span of stream time (a stream, a window, a segment):
    sums of each analysed frame's values times the time it stands for in the span."""

    def __init__(self, brands: int):
        b = brands
        self.duration_s = 0.0
        self.visible_s, self.share_s, self.peak_share = np.zeros(b), np.zeros(b), np.zeros(b)
        self.grid_s, self.confidence_s, self.score = np.zeros((b, 9)), np.zeros(b), np.zeros(b)
        self.solus_s, self.clutter_s, self.size_s = np.zeros(b), np.zeros(b), np.zeros((b, len(SIZE_NAMES)))
        self.clarity_s, self.quality_s, self.value = np.zeros(b), np.zeros(b), np.zeros(b)
        self.appearances = np.zeros(b, np.int64)

    def add(self, p: _Frame, dt: float, brands: np.ndarray, duration: bool = True) -> None:
        """Add ``dt`` seconds of frame ``p`` to the figures of ``brands`` (a (B,) mask), and to the
        span's duration unless ``duration`` is False (a held frame's brand, counted late)."""
        if duration:
            self.duration_s += dt
        vis = p.visible & brands
        self.visible_s += dt * vis
        self.share_s += dt * np.where(brands, p.share, 0.0)
        self.peak_share = np.where(vis, np.maximum(self.peak_share, p.share), self.peak_share)
        self.grid_s += dt * np.where(brands[:, None], p.grid, 0.0)
        self.confidence_s += dt * np.where(brands, p.confidence, 0.0)
        self.score += dt * np.where(brands, p.prominence, 0.0)
        self.solus_s += dt * (vis & (p.others == 0))
        self.clutter_s += dt * np.where(vis, p.others, 0)
        self.size_s += dt * np.where(vis[:, None], p.size, 0.0)
        self.clarity_s += dt * np.where(vis, p.clarity, 0.0)
        quality = dt * np.where(vis, p.quality, 0.0)
        self.quality_s += quality
        self.value += quality * (p.rate / 30.0)

    @classmethod
    def merged(cls, parts: Sequence[Figures], brands: int) -> Figures:
        """The figures of several spans together (streams side by side): sums, and the largest peak."""
        out = cls(brands)
        for f in parts:
            for name in ("visible_s", "share_s", "grid_s", "confidence_s", "score", "solus_s", "clutter_s", "size_s",
                         "clarity_s", "quality_s", "value", "appearances"):
                getattr(out, name).__iadd__(getattr(f, name))
            out.duration_s += f.duration_s
            out.peak_share = np.maximum(out.peak_share, f.peak_share)
        return out

    def summary(self, names: Sequence[str], tracks: np.ndarray | None = None,
                valued: bool = False) -> list[dict[str, Any]]:
        """Per brand, the figures published and reported (``valued``: with media_value, a rate card's)."""
        everyone = float(self.visible_s.sum())
        out = []
        for i, name in enumerate(names):
            vis = self.visible_s[i]
            row: dict[str, Any] = {
                "brand": name,
                "visible_s": round(float(vis), 3),
                "appearances": int(self.appearances[i]),
            }
            if tracks is not None:
                row["tracks"] = int(tracks[i])
            row.update({
                "mean_share": round(float(self.share_s[i] / vis), 5) if vis else 0.0,
                "peak_share": round(float(self.peak_share[i]), 5),
                "grid_s": [round(float(g), 3) for g in self.grid_s[i]],
                "main_position": GRID_NAMES[int(np.argmax(self.grid_s[i]))] if vis else None,
                "mean_confidence": round(float(self.confidence_s[i] / vis), 4) if vis else 0.0,
                "exposure_score": round(float(self.score[i]), 3),
                "solus_s": round(float(self.solus_s[i]), 3),
                "mean_clutter": round(float(self.clutter_s[i] / vis), 4) if vis else 0.0,
                "size_s": {k: round(float(v), 3) for k, v in zip(SIZE_NAMES, self.size_s[i])},
                "share_of_voice": round(float(vis) / everyone, 5) if everyone else 0.0,
                "mean_clarity": round(float(self.clarity_s[i] / vis), 4) if vis else 0.0,
                "quality_s": round(float(self.quality_s[i]), 3),
                "mean_quality": round(float(self.quality_s[i] / vis), 4) if vis else 0.0,
            })
            if valued:
                row["media_value"] = round(float(self.value[i]), 2)
            out.append(row)
        return out


@dataclass
class StreamExposure:
    """Running exposure figures of every brand on one stream.

    ``segment_s`` > 0 adds fixed windows of that many seconds ("0-300 s", ...), ``segments`` named
    spans; each gets the figures of the whole (:meth:`segment_summaries`)."""

    brands: list[str]
    min_track_frames: int = 2
    reference_share: float = 0.02
    max_gap_s: float = 1.0
    segment_s: float = 0.0
    segments: Sequence[Segment] = ()
    per_30s: float | None = None  # the rate card's price of 30 s of full exposure (None: no media value)
    total: Figures = field(init=False)
    frames: int = 0
    # Per brand, the stream-time spans (start_s, end_s) in which it was on screen; touching spans
    # merge, so memory grows with appearances, not with running time.
    spans: list[list[list[float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        b = len(self.brands)
        self.total = Figures(b)
        self._windows: dict[int, Figures] = {}
        self._named = [Figures(b) for _ in self.segments]
        self._track_frames: list[dict[int, int]] = [dict() for _ in range(b)]
        self._pending: _Frame | None = None
        # The brand's current on-screen occurrence: when it started and was last seen, in how many
        # analysed frames, and whether a cut with the brand on one side ended it.
        self._last_seen = np.full(b, -1, np.int64)
        self._run_start = np.zeros(b, np.int64)
        self._run_frames = np.zeros(b, np.int64)
        self._was_visible = np.zeros(b, bool)
        self._steps: list[int] = []  # recent steps between analysed frames, for the usual step
        self._t0: int | None = None
        self.spans = [[] for _ in range(b)]
        # Per brand, the closed frames (frame, seconds, start) of an occurrence not counted yet: its
        # time counts once the occurrence does (min_track_frames), and never for a blip.
        self._held: list[list[tuple[_Frame, float, float]]] = [[] for _ in range(b)]
        # Per brand, each counted occurrence's [start_s, end_s]: from its first frame to the end of its last.
        self.occurrences: list[list[list[float]]] = [[] for _ in range(b)]

    @property
    def duration_s(self) -> float:
        return self.total.duration_s

    @property
    def visible_s(self) -> np.ndarray:
        return self.total.visible_s

    @property
    def valued(self) -> bool:
        """Whether a rate card prices this stream's exposure."""
        return self.per_30s is not None or any(seg.per_30s is not None for seg in self.segments)

    # What the latest frame showed of each brand's occurrence, for the evidence of appearances.
    @property
    def t0_ns(self) -> int | None:
        """The stream's first analysed frame: stream time 0 of every figure."""
        return self._t0

    @property
    def last_visible(self) -> np.ndarray:
        """Per brand, whether it was on screen in the latest frame."""
        return self._was_visible.copy()

    @property
    def run_start_ns(self) -> np.ndarray:
        """Per brand, when its current (or latest) occurrence started: it names the occurrence."""
        return self._run_start.copy()

    @property
    def run_counted(self) -> np.ndarray:
        """Per brand, whether its current occurrence counts as an appearance by now."""
        return self._run_frames >= self.min_track_frames

    def add(self, pts_ns: int, width: int, height: int, det: Detections, cut: bool = False,
            clarity: np.ndarray | None = None) -> None:
        """Account one analysed frame whose rows' class_id are brand indices; ``cut``: it starts a
        new camera shot (or follows a discontinuity); ``clarity``: per row, 0-1 (None: all 1)."""
        if self._t0 is None:
            self._t0 = pts_ns
        if self._pending is not None:
            self._close(max(0, pts_ns - self._pending.pts_ns))
        self.frames += 1
        self._pending = self._measure(pts_ns, width, height, det, clarity)
        self._occurrences(pts_ns, self._pending.visible, cut)
        for b, t in zip(det.class_id.tolist(), det.track_id.tolist()):
            if t >= 0:
                counts = self._track_frames[b]
                counts[t] = counts.get(t, 0) + 1

    def _occurrences(self, pts_ns: int, visible: np.ndarray, cut: bool) -> None:
        """Appearances: a brand seen again within ``max_gap_s`` of its last sight, with no cut in
        between that it was not on screen on both sides of, continues its occurrence."""
        step = self._usual_step()
        gap_ns = pts_ns - self._last_seen - step  # unseen time since the frame it was last seen in
        went_on = (self._last_seen >= 0) & ((gap_ns <= step // 2) | (gap_ns < int(self.max_gap_s * 1e9)))
        if cut:
            went_on &= self._was_visible & visible
            self._last_seen[~(self._was_visible & visible)] = -1  # the occurrence ended at the cut
        new = visible & ~went_on
        for i in np.flatnonzero(new | (cut & ~went_on)):
            self._held[i].clear()  # the occurrence it held frames of ended uncounted: a blip
        self._run_frames[new] = 0
        self._run_start[new] = pts_ns
        self._run_frames[visible] += 1
        counted = visible & (self._run_frames == self.min_track_frames)
        if counted.any():
            for i in np.flatnonzero(counted):
                at = (self._run_start[i] - (self._t0 or 0)) / 1e9
                self.occurrences[i].append([at, at])
                only = np.arange(len(self.brands)) == i
                for frame, dt, start in self._held[i]:
                    self._apply(frame, dt, start, only, duration=False)
                self._held[i].clear()
            self.total.appearances += counted
            for starts in np.unique(self._run_start[counted]):
                at = (starts - (self._t0 or 0)) / 1e9
                for fig, _ in self._spans_of(at, 0.0):
                    fig.appearances += counted & (self._run_start == starts)
        self._last_seen[visible] = pts_ns
        self._was_visible = visible

    def _spans_of(self, start: float, dt: float) -> list[tuple[Figures, float]]:
        """The segments that the stream time [start, start + dt) falls in (the instant ``start`` when
        dt is 0), each with the length of the overlap."""
        out = []
        if self.segment_s > 0:
            first = int(start // self.segment_s)
            last = int((start + dt) // self.segment_s) if dt > 0 else first
            for k in range(first, last + 1):
                a, b = max(start, k * self.segment_s), min(start + dt, (k + 1) * self.segment_s)
                if b > a or (dt == 0 and a == start):
                    fig = self._windows.get(k)
                    if fig is None:
                        fig = self._windows[k] = Figures(len(self.brands))
                    out.append((fig, max(0.0, b - a)))
        for fig, seg in zip(self._named, self.segments):
            a, b = max(start, seg.start_s), min(start + dt, seg.end_s)
            if b > a or (dt == 0 and seg.start_s <= start < seg.end_s):
                out.append((fig, max(0.0, b - a)))
        return out

    def discontinuity(self) -> None:
        """The stream jumped (loop, reconnect): the pending frame gets the usual step, not the jump."""
        if self._pending is not None:
            self._close(None)
            self._pending = None

    def finish(self) -> None:
        """End of stream: the last frame gets the usual step; occurrences not counted by now never are."""
        self.discontinuity()
        for held in self._held:
            held.clear()

    def _usual_step(self) -> int:
        return int(np.median(self._steps)) if self._steps else 0

    def _close(self, step_ns: int | None) -> None:
        usual = self._usual_step()
        if step_ns is not None:
            self._steps = (self._steps + [step_ns])[-50:]
            if usual:
                step_ns = min(step_ns, 2 * usual)
        else:
            step_ns = usual
        p = self._pending
        assert p is not None
        dt = step_ns / 1e9
        start = (p.pts_ns - (self._t0 or 0)) / 1e9
        p.rate = self._rate_at(start)
        p.quality = self._quality(p, dt)
        # A brand whose occurrence is not counted yet is held (the frame's state: _occurrences ran).
        held = p.visible & (self._run_frames < self.min_track_frames)
        for i in np.flatnonzero(held):
            self._held[i].append((p, dt, start))
        self._apply(p, dt, start, ~held)

    def _rate_at(self, start: float) -> float:
        for seg in self.segments:
            if seg.per_30s is not None and seg.start_s <= start < seg.end_s:
                return seg.per_30s
        return self.per_30s or 0.0

    def _quality(self, p: _Frame, dt: float) -> np.ndarray:
        """Per brand, the frame's quality index (0 where not visible; module docstring)."""
        w = QUALITY_WEIGHTS
        into = (p.pts_ns - self._run_start) / 1e9 + dt  # seconds into its appearance at the frame's end
        q = (w["size"] * np.minimum(1.0, p.share / self.reference_share) + w["position"] * (p.grid @ POSITION_WEIGHTS)
             + w["clarity"] * p.clarity + w["solus"] / (1.0 + p.others)
             + w["duration"] * np.clip(into / FULL_DURATION_S, 0.0, 1.0))
        return np.where(p.visible, q, 0.0)

    def _apply(self, p: _Frame, dt: float, start: float, brands: np.ndarray, duration: bool = True) -> None:
        """Count ``dt`` seconds of frame ``p``, starting ``start`` s into the stream, for ``brands``."""
        self.total.add(p, dt, brands, duration)
        if dt > 0:
            for fig, part in self._spans_of(start, dt):
                fig.add(p, part, brands, duration)
        for i in np.flatnonzero(p.visible & brands):
            if self.occurrences[i]:  # frames reach here only in counted occurrences: its latest
                self.occurrences[i][-1][1] = max(self.occurrences[i][-1][1], start + dt)
            spans = self.spans[i]
            if spans and abs(spans[-1][1] - start) < 1e-6:
                spans[-1][1] = start + dt
            else:
                spans.append([start, start + dt])

    def _measure(self, pts_ns: int, width: int, height: int, det: Detections,
                 clarity: np.ndarray | None = None) -> _Frame:
        b = len(self.brands)
        area = np.prod(det.wh, axis=1).astype(np.float64) / float(width * height)
        clear = np.ones(len(det)) if clarity is None else np.asarray(clarity, np.float64)
        weight = np.bincount(det.class_id, weights=np.maximum(area, 1e-12), minlength=b)[:b]
        clear_sum = np.bincount(det.class_id, weights=np.maximum(area, 1e-12) * clear, minlength=b)[:b]
        clarity_b = np.divide(clear_sum, weight, out=np.zeros(b), where=weight > 0)
        share = np.minimum(np.bincount(det.class_id, weights=area, minlength=b)[:b], 1.0)
        visible = np.bincount(det.class_id, minlength=b)[:b] > 0
        centre = (det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2
        col = np.clip((centre[:, 0] * 3 // width).astype(int), 0, 2)
        row = np.clip((centre[:, 1] * 3 // height).astype(int), 0, 2)
        grid = np.zeros((b, 9))
        np.add.at(grid, (det.class_id, row * 3 + col), area)
        sums = grid.sum(axis=1, keepdims=True)
        grid = np.divide(grid, sums, out=np.zeros_like(grid), where=sums > 0)
        confidence = np.zeros(b)
        np.maximum.at(confidence, det.class_id, det.score.astype(np.float64))
        position = grid @ POSITION_WEIGHTS
        prominence = np.minimum(1.0, share / self.reference_share) * position
        others = np.where(visible, visible.sum() - 1, 0)
        size = np.zeros((b, len(SIZE_NAMES)))
        size[np.flatnonzero(visible), np.searchsorted(SIZE_EDGES, share[visible], side="right")] = 1.0
        return _Frame(pts_ns, visible, share, grid, confidence, prominence, others, size, clarity_b)

    def appearances(self) -> np.ndarray:
        """Per brand, its on-screen occurrences (see the module's definitions)."""
        return self.total.appearances.copy()

    def tracks(self) -> np.ndarray:
        """Per brand, the tracks seen in at least ``min_track_frames`` analysed frames."""
        return np.asarray([sum(1 for n in c.values() if n >= self.min_track_frames) for c in self._track_frames])

    def summary(self) -> list[dict[str, Any]]:
        """Per brand, the figures published and reported."""
        return self.total.summary(self.brands, self.tracks(), self.valued)

    def segment_figures(self) -> list[tuple[Segment, Figures]]:
        """Every segment with figures: the fixed windows in time order (the stream's so far), then
        the named segments."""
        out = [(Segment(f"{k * self.segment_s:g}-{(k + 1) * self.segment_s:g} s", k * self.segment_s,
                        (k + 1) * self.segment_s), self._windows[k]) for k in sorted(self._windows)]
        return out + list(zip(self.segments, self._named))

    def segment_summaries(self) -> list[dict[str, Any]]:
        """Per segment, its span and the figures of every brand in it."""
        return [{"segment": seg.name, "start_s": seg.start_s, "end_s": seg.end_s,
                 "duration_s": round(fig.duration_s, 3), "brands": fig.summary(self.brands, valued=self.valued)}
                for seg, fig in self.segment_figures()]


class ExposureAnalytics:
    """Brand exposure for every stream of a pipeline, with periodic snapshots to publish.

    Args:
        brands: brand names; detections' class_id index into them.
        publish_interval_s: stream time between live updates of a stream (0: only at the end).
        rate_card: ``(currency, price per 30 s of full exposure)`` for media_value (None: none).
        segment_s, segments: fixed windows and named spans with figures of their own (the final
            update and the report list them).
    """

    def __init__(self, brands: Sequence[str], publish_interval_s: float = 5.0, min_track_frames: int = 2,
                 reference_share: float = 0.02, max_gap_s: float = 1.0, segment_s: float = 0.0,
                 segments: Sequence[Segment] = (), rate_card: tuple[str, float] | None = None):
        self.brands = list(brands)
        self.max_gap_s = max_gap_s
        self.segment_s, self.segments = segment_s, tuple(segments)
        self.rate_card = rate_card
        self.publish_interval_ns = int(publish_interval_s * 1e9)
        self.min_track_frames = min_track_frames
        self.reference_share = reference_share
        self.streams: dict[str, StreamExposure] = {}
        self._next_publish: dict[str, int] = {}

    @property
    def valued(self) -> bool:
        """Whether a rate card prices the exposure (media_value is reported)."""
        return self.rate_card is not None or any(seg.per_30s is not None for seg in self.segments)

    def stream(self, stream_id: str) -> StreamExposure:
        exp = self.streams.get(stream_id)
        if exp is None:
            exp = self.streams[stream_id] = StreamExposure(self.brands, self.min_track_frames, self.reference_share,
                                                           self.max_gap_s, self.segment_s, self.segments,
                                                           self.rate_card[1] if self.rate_card else None)
        return exp

    def add(self, stream_id: str, pts_ns: int, width: int, height: int, det: Detections,
            discontinuity: bool = False, cut: bool = False, clarity: np.ndarray | None = None) -> dict[str, Any] | None:
        """Account a frame (``cut``: it starts a new camera shot; ``clarity``: per row); returns a live
        update body when one is due."""
        exp = self.stream(stream_id)
        if discontinuity:
            exp.discontinuity()
        exp.add(pts_ns, width, height, det, cut or discontinuity, clarity)
        due = self._next_publish.get(stream_id)
        if due is None:
            self._next_publish[stream_id] = pts_ns + self.publish_interval_ns
        elif self.publish_interval_ns and pts_ns >= due:
            self._next_publish[stream_id] = pts_ns + self.publish_interval_ns
            return self.body(stream_id, pts_ns, final=False)
        return None

    def finish(self, stream_id: str) -> dict[str, Any]:
        """End of a stream: the final body to publish."""
        exp = self.stream(stream_id)
        exp.finish()
        return self.body(stream_id, None, final=True)

    def body(self, stream_id: str, pts_ns: int | None, final: bool) -> dict[str, Any]:
        exp = self.stream(stream_id)
        body = {"stream_id": stream_id, "pts_ns": pts_ns, "final": final,
                "duration_s": round(exp.duration_s, 3), "frames": exp.frames, "brands": exp.summary()}
        if final and (self.segment_s > 0 or self.segments):
            body["segments"] = exp.segment_summaries()
        return body
