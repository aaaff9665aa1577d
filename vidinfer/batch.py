"""What stages read and write: a batch of frames from several streams, and its named layers.

A *layer* is one kind of result, made by one stage: ``"logo"`` boxes from a logo detector,
``"person"`` boxes from a person detector, ``"text"`` lines read in the frame, ``"brand"`` rows
derived from logos and text. Each layer has its own class list (its `LayerSchema`), so no stage
ever rewrites another layer's class ids; and per frame it is one columnar `Detections`: stages
that add to a layer (a classifier's labels, a tracker's ids) replace its rows with a copy that has
the new column.

    for frame, people in zip(batch.frames, batch["person"]):
        names = batch.schema["person"].classes
        print(frame.stream_id, frame.frame_no, [names[c] for c in people.class_id])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vidinfer.detections import Detections
from vidinfer.frame import Frame

__all__ = ["Batch", "LayerSchema", "Pixels", "StageMessage"]


class Pixels(str, Enum):
    """What a stage reads of the frames' pixels; the GPU backend copies frames to the host only
    for stages that say ``HOST``, and only once per batch however many of them do.

    * ``NONE``: no pixels (boxes, frame numbers, times only);
    * ``HOST``: pixels on the CPU: ``frame.image`` is an RGB NumPy array and ``frame.source`` the
      full-resolution frame (a PyAV frame or an RGB array), whichever backend runs;
    * ``DEVICE``: pixels where the backend keeps them, through the backend's own functions (the
      detector input, classifier crops): GPU memory on the GPU backend, NumPy on the CPU.
    """

    NONE = "none"
    HOST = "host"
    DEVICE = "device"


@dataclass(frozen=True)
class LayerSchema:
    """What a layer's columns mean: its class names, and the label names of each attribute.

    Attributes:
        name: the layer's name (``"logo"``, ``"person"``, ...).
        classes: what ``class_id`` indexes.
        attributes: per attribute column (added by secondary stages), what its ``label_id`` indexes.
        tracked: whether ``track_id`` is filled by a tracker (else -1 everywhere).
        made_by: the name of the stage that makes the layer.
    """

    name: str
    classes: tuple[str, ...]
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tracked: bool = False
    made_by: str = ""


@dataclass(frozen=True)
class StageMessage:
    """A message a stage emitted (`StageContext.emit`): its kind, stream and msgpack-able body."""

    stage: str
    kind: str
    stream_id: str
    body: dict[str, Any]
    retain: bool = False  # state: the latest of its topic is replayed to subscribers that join later


class Batch:
    """Frames of one or more streams analysed together, and the layers stages made of them.

    ``batch[layer]`` is the layer's `Detections`, one per frame, in the order of ``frames``;
    ``batch[layer] = rows`` sets them (a stage may set only the layers it declared in ``open``).
    ``schema`` describes every layer of the pipeline, also those not made yet.
    """

    def __init__(self, frames: Sequence[Frame], schema: Mapping[str, LayerSchema] | None = None,
                 layers: dict[str, list[Detections]] | None = None):
        self.frames: list[Frame] = list(frames)
        self.schema: Mapping[str, LayerSchema] = schema if schema is not None else {}
        self._layers: dict[str, list[Detections]] = layers if layers is not None else {}
        # Per-batch working state of stages, keyed by the stage (e.g. a detector run started in
        # ``prepare`` and finished in ``__call__``); never seen by sinks.
        self.scratch: dict[int | str, Any] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __contains__(self, layer: object) -> bool:
        return layer in self._layers

    def __getitem__(self, layer: str) -> list[Detections]:
        try:
            return self._layers[layer]
        except KeyError:
            have = ", ".join(self._layers) or "none yet"
            raise KeyError(f"this batch has no layer {layer!r} (layers so far: {have})") from None

    def __setitem__(self, layer: str, rows: Sequence[Detections]) -> None:
        rows = list(rows)
        if len(rows) != len(self.frames):
            raise ValueError(f"layer {layer!r} needs one Detections per frame: {len(self.frames)} frames, "
                             f"{len(rows)} given")
        self._layers[layer] = rows

    @property
    def layers(self) -> list[str]:
        """Names of the layers made so far, in the order they were made."""
        return list(self._layers)

    def items(self) -> Iterator[tuple[str, list[Detections]]]:
        return iter(self._layers.items())

    def frame_layers(self, index: int) -> dict[str, Detections]:
        """Every layer's rows of frame ``index``."""
        return {name: rows[index] for name, rows in self._layers.items()}

    def select(self, indices: Sequence[int]) -> Batch:
        """A batch of some of these frames and their rows (shares the schema, not the scratch)."""
        return Batch([self.frames[i] for i in indices], self.schema,
                     {name: [rows[i] for i in indices] for name, rows in self._layers.items()})

    def merge(self, sub: Batch, indices: Sequence[int]) -> None:
        """Take ``sub``'s rows (a `select` of ``indices``) back into this batch."""
        for name, rows in sub.items():
            mine = self._layers.get(name)
            if mine is None:
                mine = self._layers[name] = [Detections.empty() for _ in self.frames]
            for k, i in enumerate(indices):
                mine[i] = rows[k]

    def fill(self, layer: str) -> None:
        """Make ``layer`` exist, with no rows for every frame, if no stage set it."""
        if layer not in self._layers:
            self._layers[layer] = [Detections.empty() for _ in self.frames]

    def restore(self, layers: Mapping[str, list[Detections]]) -> None:
        """Put back the layers as they were (a stage that raised half-way)."""
        self._layers.clear()
        self._layers.update({name: list(rows) for name, rows in layers.items()})

    def with_frames(self, frames: Sequence[Frame]) -> Batch:
        """The same layers (shared, not copied) over other copies of the same frames: the host
        view the GPU backend hands to stages that read pixels on the CPU."""
        view = Batch(frames, self.schema, self._layers)
        view.scratch = self.scratch
        return view

    def __repr__(self) -> str:
        streams = sorted({f.stream_id for f in self.frames})
        return f"Batch({len(self.frames)} frames of {streams}, layers {self.layers})"
