"""Stages: what a pipeline does to each batch, in order.

Built in: `Detect` (a YOLO-family detector: a layer of boxes), `Classify` (a classifier over a
layer's boxes: an attribute column), `Track` (track ids for a layer), `ReadText` (PP-OCR: a layer
of text lines), and `vidinfer.analytics.BrandExposure` (brand impact). A function becomes a stage
with `stage`; anything with the `Stage` protocol is one.
"""

from typing import Any

from vidinfer.stages.base import FunctionStage, Stage, StageContext, stage
from vidinfer.stages.classify import Classify
from vidinfer.stages.detect import Detect
from vidinfer.stages.track import Track, Tracker, TrackOptions

__all__ = ["Stage", "StageContext", "FunctionStage", "stage", "Detect", "Classify", "Track", "TrackOptions",
           "Tracker", "ReadText"]


def __getattr__(name: str) -> Any:
    if name == "ReadText":
        from vidinfer.stages.read_text import ReadText

        return ReadText
    raise AttributeError(f"module 'vidinfer.stages' has no attribute {name!r}")
