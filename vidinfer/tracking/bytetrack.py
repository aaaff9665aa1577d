"""ByteTrack-style association (Zhang et al., 2022), kept small and columnar.

Per frame: predict every track's box with a constant-velocity model over the real time step
(frames may be sampled at any rate), match high-score detections to tracks by IoU with an optimal
assignment (scipy's `linear_sum_assignment`), then give the leftover tracks a second chance with
the low-score detections (the "BYTE" step that keeps tracks alive through partial occlusion), and
finally let detections that overlap nothing continue the nearest predicted track within a few box
sizes (marks on moving players, analysed a few times a second, move further than their size).
Unmatched high-score detections start tracks; tracks unseen for `max_lost_s` end. Classes never
mix: a track only matches detections of its own class.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

from vidinfer.detections import Detections

__all__ = ["ByteTracker", "iou_matrix"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) centre distance in units of b's box size (the mean of width and height)."""
    ca = (a[:, :2] + a[:, 2:]) / 2
    cb = (b[:, :2] + b[:, 2:]) / 2
    size = np.maximum((b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2, 1e-6)
    return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2) / size[None, :]


class ByteTracker:
    """Tracks of one stream.

    Args:
        high_score: detections at or above this start tracks and match first.
        low_score: detections between this and ``high_score`` only extend existing tracks.
        match_iou: minimum IoU between a predicted track box and a detection to match.
        max_lost_s: a track unseen for longer than this (stream time) ends; covers short occlusions.
        max_distance: a high-score detection that overlaps no track may still continue the track
            whose predicted centre is nearest, within this many box sizes (0 turns it off).
        ids: where new ids come from (per tracker by default: ids are per stream).
    """

    def __init__(self, high_score: float = 0.5, low_score: float = 0.1, match_iou: float = 0.3,
                 max_lost_s: float = 1.0, max_distance: float = 1.5, ids: itertools.count | None = None):
        if not 0 <= low_score <= high_score <= 1:
            raise ValueError(f"need 0 <= low_score ({low_score}) <= high_score ({high_score}) <= 1")
        self.high_score, self.low_score, self.match_iou, self.max_lost_s = high_score, low_score, match_iou, max_lost_s
        self.max_distance = max_distance
        self._ids = ids or itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget every track (after a cut in the stream: seek, loop, reconnect)."""
        self.box = np.zeros((0, 4), np.float64)
        self.vel = np.zeros((0, 4), np.float64)  # box change per second
        self.cls = np.zeros(0, np.int32)
        self.ids = np.zeros(0, np.int64)
        self.last_ns = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def update(self, det: Detections, pts_ns: int) -> np.ndarray:
        """Assign track ids to ``det``'s rows (-1 for low-score rows that extend no track)."""
        self._expire(pts_ns)
        lost_for = (pts_ns - self.last_ns) / 1e9
        predicted = self.box + self.vel * np.minimum(lost_for, self.max_lost_s)[:, None] if len(self) else self.box
        out = np.full(len(det), -1, np.int64)
        free = np.ones(len(self), bool)
        high = np.flatnonzero(det.score >= self.high_score)
        low = np.flatnonzero((det.score >= self.low_score) & (det.score < self.high_score))
        for rows in (high, low):
            tracks = np.flatnonzero(free)
            if len(rows) == 0 or len(tracks) == 0:
                continue
            iou = iou_matrix(det.xyxy[rows].astype(np.float64), predicted[tracks])
            iou[det.class_id[rows][:, None] != self.cls[tracks][None, :]] = 0.0
            r, c = linear_sum_assignment(-iou)
            ok = iou[r, c] >= self.match_iou
            r, c = rows[r[ok]], tracks[c[ok]]
            self._observe(c, det.xyxy[r], pts_ns)
            out[r] = self.ids[c]
            free[c] = False
        # Third pass, for what moved too far for any overlap (small marks on moving players at a
        # low analysis rate): nearest centres, within `max_distance` box sizes of the prediction.
        rows = high[out[high] < 0]
        tracks = np.flatnonzero(free)
        if self.max_distance > 0 and len(rows) and len(tracks):
            dist = _centre_distance(det.xyxy[rows].astype(np.float64), predicted[tracks])
            dist[det.class_id[rows][:, None] != self.cls[tracks][None, :]] = np.inf
            r, c = linear_sum_assignment(np.where(np.isfinite(dist), dist, 1e9))
            ok = dist[r, c] <= self.max_distance
            r, c = rows[r[ok]], tracks[c[ok]]
            self._observe(c, det.xyxy[r], pts_ns)
            out[r] = self.ids[c]
            free[c] = False
        new = high[out[high] < 0]
        if len(new):
            new_ids = np.fromiter((next(self._ids) for _ in new), np.int64, len(new))
            self.box = np.concatenate([self.box, det.xyxy[new]])
            self.vel = np.concatenate([self.vel, np.zeros((len(new), 4))])
            self.cls = np.concatenate([self.cls, det.class_id[new]])
            self.ids = np.concatenate([self.ids, new_ids])
            self.last_ns = np.concatenate([self.last_ns, np.full(len(new), pts_ns, np.int64)])
            self.hits = np.concatenate([self.hits, np.ones(len(new), np.int64)])
            out[new] = new_ids
        return out

    def _expire(self, pts_ns: int) -> None:
        keep = (pts_ns - self.last_ns) / 1e9 <= self.max_lost_s
        if not keep.all():
            self.box, self.vel, self.cls = self.box[keep], self.vel[keep], self.cls[keep]
            self.ids, self.last_ns, self.hits = self.ids[keep], self.last_ns[keep], self.hits[keep]

    def _observe(self, tracks: np.ndarray, boxes: np.ndarray, pts_ns: int) -> None:
        dt = (pts_ns - self.last_ns[tracks]) / 1e9
        moving = dt > 0
        step = (boxes - self.box[tracks]) / np.where(moving, dt, 1.0)[:, None]
        # Smooth the velocity (detections jitter by a pixel or two, a board pans steadily); the
        # second observation sets it outright, the first had none to compare with.
        first = (self.hits[tracks] == 1)[:, None]
        smoothed = np.where(first, step, 0.5 * self.vel[tracks] + 0.5 * step)
        self.vel[tracks] = np.where(moving[:, None], smoothed, self.vel[tracks])
        self.box[tracks] = boxes
        self.last_ns[tracks] = pts_ns
        self.hits[tracks] += 1
