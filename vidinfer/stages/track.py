"""`Track`: persistent ids for a layer's boxes, one tracker per stream.

The default tracker is the ByteTrack-style `vidinfer.tracking.ByteTracker`; anything with the
`Tracker` protocol works (``Track(layer="person", tracker=MyTracker)``, or in TOML
``tracker = "package.module:MyTracker"``): the factory is called once per stream. A frame flagged
``discontinuity`` (loop, seek, reconnect), or one that starts a new camera shot (``detect_cuts``),
resets its stream's tracker first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Optional, Protocol, Union

import numpy as np
from pydantic import Field

from vidinfer.batch import Batch, Pixels
from vidinfer.component import Component, Options
from vidinfer.detections import Detections
from vidinfer.errors import ConfigError
from vidinfer.limits import HOUR_S, why
from vidinfer.stages.base import StageContext
from vidinfer.stages.detect import LAYER_NAME
from vidinfer.tracking.bytetrack import ByteTracker

__all__ = ["Track", "TrackOptions", "Tracker", "import_object"]


class Tracker(Protocol):
    """One stream's tracker."""

    def update(self, det: Detections, pts_ns: int) -> np.ndarray:
        """Track ids for ``det``'s rows (int64, -1 where a row extends no track)."""
        ...

    def reset(self) -> None:
        """Forget every track (a cut, loop or reconnect)."""
        ...


class TrackOptions(Options):
    """The ByteTrack-style tracker's settings (also the ``tracker`` table of brand exposure)."""

    high_score: float = Field(default=0.5, ge=0, le=1, description="detections at or above start tracks")
    low_score: float = Field(default=0.1, ge=0, le=1, description="detections above only extend tracks")
    match_iou: float = Field(default=0.3, gt=0, le=1)
    max_lost_s: Annotated[float, why("an hour; an object unseen for longer is a new appearance")] = Field(
        default=1.0, ge=0, le=HOUR_S, description="stream seconds a track survives unseen")
    max_distance: Annotated[float, why("box sizes; a frame is rarely more than 100 boxes across")] = Field(
        default=1.5, ge=0, le=100, description="box sizes; 0 turns distance matching off")
    detect_cuts: bool = Field(default=True, description="reset tracks at hard cuts between camera shots")
    tracker: Optional[Union[str, Callable[[], Any]]] = Field(
        default=None, description="a factory of your own tracker (package.module:name in TOML); "
        "None: ByteTrack with the keys above")

    def factory(self, what: str) -> Callable[[], Tracker]:
        """What makes one stream's tracker."""
        if self.tracker is None:
            h, lo, iou, lost, dist = self.high_score, self.low_score, self.match_iou, self.max_lost_s, self.max_distance
            try:
                ByteTracker(h, lo, iou, lost, dist)
            except ValueError as exc:
                raise ConfigError(f"{what}: {exc}") from None
            return lambda: ByteTracker(h, lo, iou, lost, dist)
        made = import_object(self.tracker, f"{what}: key 'tracker'") if isinstance(self.tracker, str) else self.tracker
        if not callable(made):
            raise ConfigError(f"{what}: tracker {self.tracker!r} is not callable; give a class or function that "
                              "returns a tracker (update(detections, pts_ns) -> ids, reset())")
        return made


class StreamTrackers:
    """One tracker per stream, reset at discontinuities and (optionally) hard cuts."""

    def __init__(self, make: Callable[[], Tracker], cuts: Any = None):
        self.make = make
        self.cuts = cuts  # the pipeline's shared ShotCuts, or None for no cut detection
        self.trackers: dict[str, Tracker] = {}

    def __call__(self, frames: Any, rows: list[Detections]) -> list[Detections]:
        out = []
        for frame, det in zip(frames, rows):
            sid = frame.stream_id
            tracker = self.trackers.get(sid)
            if tracker is None:
                tracker = self.trackers[sid] = self.make()
            cut = self.cuts is not None and self.cuts.is_cut(frame)
            if frame.discontinuity or cut:
                tracker.reset()
            out.append(det.with_track_ids(np.asarray(tracker.update(det, frame.pts_ns), np.int64)))
        return out

    def end(self, stream_id: str) -> None:
        self.trackers.pop(stream_id, None)
        if self.cuts is not None:
            self.cuts.end(stream_id)


class Track(Component, TrackOptions):
    """Fills a layer's ``track_id``: persistent ids per stream.

    Args:
        layer: the layer to track.
        (the rest): `TrackOptions`.
    """

    type: ClassVar[str] = "track"

    layer: str = Field(default="objects", pattern=LAYER_NAME)

    @property
    def pixels(self) -> Pixels:
        # Cut detection compares thumbnails of the frames (host pixels); tracking alone reads boxes.
        return Pixels.HOST if self.detect_cuts else Pixels.NONE

    def default_name(self) -> str:
        return f"track:{self.layer}"

    def open(self, ctx: StageContext) -> None:
        ctx.layer(self.layer)
        self._trackers = StreamTrackers(self.factory(f"stage {ctx.name!r}"), ctx.cuts if self.detect_cuts else None)
        ctx.mark_tracked(self.layer)

    def __call__(self, batch: Batch) -> None:
        batch[self.layer] = self._trackers(batch.frames, batch[self.layer])

    def on_stream_end(self, stream_id: str) -> None:
        self._trackers.end(stream_id)

    def close(self) -> None:
        pass


def import_object(ref: str, what: str) -> Any:
    """The object named ``package.module:name``; `ConfigError` naming ``what`` when it is not there."""
    import importlib

    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what}: {ref!r} is not of the form 'package.module:name'; name the module and the "
                          "object in it")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error at import
        raise ConfigError(f"{what}: cannot import {module_name!r} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); make it importable (the pipeline "
                          "file's folder is searched first) or fix the name") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what}: module {module_name!r} has no {attr!r}; fix the name") from None
    return obj
