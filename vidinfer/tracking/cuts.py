"""Hard-cut detection, so tracks never jump from one camera shot to the next.

Broadcast video cuts between cameras; a tracker that carries ids across a cut joins unrelated
marks into one appearance. A cut is declared when consecutive analysed frames differ both in
colour distribution (L1 distance of 64-bin RGB histograms) and in content (mean absolute
difference of thumbnails): a pan or zoom changes the second a little and the first hardly at all.
Measured on the sample clips at 5 analysed frames per second: cuts 0.31-0.35 and 34-42, pans and
moving players at most 0.08 and 15.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from vidinfer._xp import to_numpy

__all__ = ["ShotCutDetector", "ShotCuts"]


class ShotCutDetector:
    """Per stream: `is_cut(image)` says whether ``image`` starts a new shot."""

    def __init__(self, hist_threshold: float = 0.2, diff_threshold: float = 25.0, stride: int = 8):
        self.hist_threshold = hist_threshold
        self.diff_threshold = diff_threshold
        self.stride = stride
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self._prev = None

    def is_cut(self, image: Any) -> bool:
        """``image``: HxWx3 uint8 RGB (NumPy or CuPy); only a strided thumbnail is read."""
        thumb = to_numpy(image[:: self.stride, :: self.stride])
        q = (thumb // 64).reshape(-1, 3).astype(np.int32)
        hist = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / max(len(q), 1)
        thumb = thumb.astype(np.float32)
        prev, self._prev = self._prev, (hist, thumb)
        if prev is None or prev[1].shape != thumb.shape:
            return False
        return bool(np.abs(hist - prev[0]).sum() >= self.hist_threshold
                    and np.abs(thumb - prev[1]).mean() >= self.diff_threshold)


class ShotCuts:
    """One `ShotCutDetector` per stream, shared by every stage that asks about cuts (the tracker,
    the text reader): each frame is compared with its stream's previous frame once, however many
    stages ask, and in whatever order they ask about the frames of a batch that were already
    compared. Each frame must first be asked about in stream order (the first stage that asks
    does, frame by frame)."""

    ANSWERS_KEPT = 64  # per stream: more than any batch holds of one stream

    def __init__(self, **detector_args: Any):
        self.detector_args = detector_args
        self._detectors: dict[str, ShotCutDetector] = {}
        # stream -> {(frame_no, pts_ns): answer} of its latest frames, oldest first
        self._answers: dict[str, OrderedDict[tuple[int, int], bool]] = {}
        self.count: dict[str, int] = {}  # cuts seen per stream

    def is_cut(self, frame: Any) -> bool:
        """Whether ``frame`` (a `vidinfer.frame.Frame`) starts a new shot of its stream."""
        sid = frame.stream_id
        key = (frame.frame_no, frame.pts_ns)
        answers = self._answers.get(sid)
        if answers is not None and key in answers:
            return answers[key]
        detector = self._detectors.get(sid)
        if detector is None:
            detector = self._detectors[sid] = ShotCutDetector(**self.detector_args)
            self.count[sid] = 0
            answers = self._answers[sid] = OrderedDict()
        assert answers is not None
        cut = detector.is_cut(frame.image)
        self.count[sid] += cut
        answers[key] = cut
        if len(answers) > self.ANSWERS_KEPT:
            answers.popitem(last=False)
        return cut

    def end(self, stream_id: str) -> None:
        for d in (self._detectors, self._answers, self.count):
            d.pop(stream_id, None)
