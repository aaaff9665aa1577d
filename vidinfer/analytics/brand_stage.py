"""The brand stage: logo detections and text read in the frame become detections of brands.

Output rows have ``class_id`` = brand index and an attribute ``source`` telling where each row came
from (label 0 ``logo``, 1 ``text``; its score is the match score). Logo classes that map to no
brand, and text that matches no brand, are dropped.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vidinfer.analytics.brands import BrandMatcher
from vidinfer.detections import Attribute, Detections
from vidinfer.frame import Frame

__all__ = ["BrandStage", "SOURCE_LABELS"]

SOURCE_LABELS = ["logo", "text"]


class BrandStage:
    """Maps a batch's detections (and, with a reader, its text) into brand space.

    Args:
        matcher: the brands and how text matches them.
        detector_classes: the logo detector's class names.
        reader: a text reader called with the batch's frames (one result per frame with
            ``xyxy``, ``score`` and ``text``), or None to use logos only.
    """

    def __init__(self, matcher: BrandMatcher, detector_classes: Sequence[str], reader: Any = None):
        self.matcher = matcher
        self.reader = reader
        self.logo_brand = matcher.logo_map(detector_classes)
        self.classes = matcher.names

    def __call__(self, frames: Sequence[Frame], detections: list[Detections]) -> list[Detections]:
        texts = self.reader(frames) if self.reader is not None else [None] * len(frames)
        return [self._merge(det, text) for det, text in zip(detections, texts)]

    def _join_split_names(self, texts: Sequence[str], xyxy: np.ndarray, score: np.ndarray, ids: np.ndarray,
                          match: np.ndarray) -> tuple[np.ndarray, ...]:
        """Unmatched neighbours on one line may be one name split by an occluder: join them.

        Neighbours overlap vertically by at least half a line and sit at most three line heights
        apart. A joined pair becomes one row (the union box) in place of its left piece; the
        right piece's row is dropped.
        """
        loose = np.flatnonzero(ids < 0)
        if len(loose) < 2:
            return xyxy, score, ids, match
        loose = loose[np.argsort(xyxy[loose, 0])]
        drop = np.zeros(len(ids), bool)
        ids, match, xyxy, score = ids.copy(), match.copy(), xyxy.copy(), score.copy()
        for i, j in zip(loose[:-1], loose[1:]):
            if drop[i] or ids[i] >= 0:
                continue
            h = min(xyxy[i, 3] - xyxy[i, 1], xyxy[j, 3] - xyxy[j, 1])
            overlap = min(xyxy[i, 3], xyxy[j, 3]) - max(xyxy[i, 1], xyxy[j, 1])
            gap = xyxy[j, 0] - xyxy[i, 2]
            if overlap < 0.5 * h or not (-0.5 * h <= gap <= 3 * h):
                continue
            brand, s = self.matcher.match_split(texts[i], texts[j])
            if brand >= 0:
                ids[i], match[i] = brand, s
                xyxy[i] = [xyxy[i, 0], min(xyxy[i, 1], xyxy[j, 1]), xyxy[j, 2], max(xyxy[i, 3], xyxy[j, 3])]
                score[i] = min(score[i], score[j])
                drop[j] = True
        keep = ~drop
        return xyxy[keep], score[keep], ids[keep], match[keep]

    def _merge(self, det: Detections, text: Any) -> Detections:
        brand = self.logo_brand[det.class_id] if len(det) else np.zeros(0, np.int32)
        logos = det[brand >= 0]
        logo_brand = brand[brand >= 0]
        if text is None or len(text.text) == 0:
            return Detections(logos.xyxy, logos.score, logo_brand, logos.track_id,
                              {**logos.attributes, "source": Attribute(np.zeros(len(logos), np.int32),
                                                                       np.ones(len(logos), np.float32))})
        xyxy = np.asarray(text.xyxy, np.float32)
        rec_score = np.asarray(text.score, np.float32)
        ids, match = self.matcher.match(text.text)
        xyxy, rec_score, ids, match = self._join_split_names(text.text, xyxy, rec_score, ids, match)
        keep = ids >= 0
        n_text = int(keep.sum())
        attrs = {name: Attribute(np.concatenate([a.label_id, np.full(n_text, -1, np.int32)]),
                                 np.concatenate([a.score, np.zeros(n_text, np.float32)]))
                 for name, a in logos.attributes.items()}
        attrs["source"] = Attribute(np.concatenate([np.zeros(len(logos), np.int32), np.ones(n_text, np.int32)]),
                                    np.concatenate([np.ones(len(logos), np.float32), match[keep]]))
        return Detections(np.concatenate([logos.xyxy, xyxy[keep]]),
                          np.concatenate([logos.score, rec_score[keep]]),
                          np.concatenate([logo_brand, ids[keep]]),
                          np.concatenate([logos.track_id, np.full(n_text, -1, np.int64)]), attrs)
