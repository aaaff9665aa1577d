"""Detections of one frame as columns of arrays, never a Python object per box.

Small outputs live on the host: whatever backend ran the model, post-processing hands NumPy
arrays to this type (see DESIGN.md, "Data model").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Detections", "Attribute"]

_UNTRACKED: np.ndarray = np.zeros(0, np.int64)  # the default of Detections.track_id: no tracker ran


@dataclass(frozen=True)
class Attribute:
    """One secondary stage's result per box: a label index (-1 = not classified) and its score."""

    label_id: np.ndarray  # (N,) int32
    score: np.ndarray  # (N,) float32

    def __getitem__(self, index: Any) -> Attribute:
        return Attribute(self.label_id[index], self.score[index])


@dataclass(frozen=True)
class Detections:
    """Boxes of one frame in source-frame pixels.

    Attributes:
        xyxy: (N, 4) float32, x1, y1, x2, y2 in continuous source pixels (pixel i spans [i, i+1)).
        score: (N,) float32 detector confidence.
        class_id: (N,) int32 index into the detector's class names.
        track_id: (N,) int64 persistent id from a tracker, -1 where untracked.
        attributes: secondary-stage results by stage name, each aligned with the rows.
        data: other per-row columns, each an (N, ...) array aligned with the rows (e.g. the
            ``"text"`` of each line a text reader found, as a NumPy array of strings).
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray = field(default_factory=lambda: _UNTRACKED)  # -1 everywhere when not given
    attributes: dict[str, Attribute] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", _column(self.score, np.float32, n, "score"))
        object.__setattr__(self, "class_id", _column(self.class_id, np.int32, n, "class_id"))
        untracked = self.track_id is None or self.track_id is _UNTRACKED  # None: what a decoded message has
        track = np.full(n, -1, np.int64) if untracked else self.track_id
        object.__setattr__(self, "track_id", _column(track, np.int64, n, "track_id"))
        for name, attr in self.attributes.items():
            if len(attr.label_id) != n or len(attr.score) != n:
                raise ValueError(f"attribute {name!r} has {len(attr.label_id)} rows, expected {n}")
        for name, col in self.data.items():
            if len(col) != n:
                raise ValueError(f"column {name!r} has {len(col)} rows, expected {n}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Row selection with a mask, slice or index array, applied to every column."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        return Detections(
            self.xyxy[index],
            self.score[index],
            self.class_id[index],
            self.track_id[index],
            {k: a[index] for k, a in self.attributes.items()},
            {k: c[index] for k, c in self.data.items()},
        )

    def with_attribute(self, name: str, attribute: Attribute) -> Detections:
        """A copy with one more (or a replaced) attribute column."""
        return Detections(self.xyxy, self.score, self.class_id, self.track_id,
                          {**self.attributes, name: attribute}, self.data)

    def with_track_ids(self, track_id: np.ndarray) -> Detections:
        """A copy whose ``track_id`` column is ``track_id``."""
        return Detections(self.xyxy, self.score, self.class_id, track_id, self.attributes, self.data)

    @property
    def wh(self) -> np.ndarray:
        """(N, 2) widths and heights."""
        return self.xyxy[:, 2:] - self.xyxy[:, :2]


def _column(values: Any, dtype: type, n: int, name: str) -> np.ndarray:
    col: np.ndarray = np.asarray(values, dtype=dtype).reshape(-1)
    if len(col) != n:
        raise ValueError(f"Detections.{name} has {len(col)} rows but xyxy has {n}")
    return col
