"""vidinfer: many video streams in, batched detector and classifier results out on ZeroMQ.

A pipeline is composed of sources, stages and sinks, in code or from TOML (the same objects):

    import vidinfer as vi

    pipeline = vi.Pipeline(
        sources=[vi.StreamSpec(id="cam-1", url="sample_streams/shapes_a.mp4")],
        stages=[vi.Detect(model="models/shapes/detector.onnx", labels_file="models/shapes/labels.txt"),
                vi.Track()],
        sinks=[vi.ZmqSink(endpoint="tcp://127.0.0.1:5555")],
    )
    report = pipeline.run()

    report = vi.load_pipeline("pipelines/brand_impact.toml").build().run()
"""

from typing import Any

# First: the `vidinfer` command answers Ctrl-C/SIGTERM while the rest is imported (nothing is done
# when vidinfer is imported as a library).
from vidinfer import _startup  # noqa: F401
from vidinfer.batch import Batch, LayerSchema, Pixels, StageMessage
from vidinfer.config import GpuSpec, PipelineConfig, ShardSpec, StreamSpec, load_pipeline
from vidinfer.detections import Attribute, Detections
from vidinfer.errors import ConfigError, ModelError, PublishError, SourceError, VidinferError
from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.pipeline import Pipeline, RunReport, StageReport, StreamReport
from vidinfer.publish.reliable import ReliableConsumer, ReliableSink
from vidinfer.publish.sinks import CallbackSink, FileSink, Sink, SinkContext, ZmqSink
from vidinfer.publish.subscriber import Message, Subscriber
from vidinfer.sources.array import ArraySource
from vidinfer.sources.base import DecodeHints, Source
from vidinfer.stages import Classify, Detect, FunctionStage, Stage, StageContext, Track, stage

__version__ = "0.2.0"

__all__ = [
    "Pipeline", "PipelineConfig", "load_pipeline", "RunReport", "StreamReport", "StageReport",
    "StreamSpec", "GpuSpec", "ShardSpec", "Source", "ArraySource", "DecodeHints",
    "Stage", "StageContext", "stage", "FunctionStage", "Detect", "Classify", "Track", "ReadText", "BrandExposure",
    "Sink", "SinkContext", "ZmqSink", "ReliableSink", "ReliableConsumer", "FileSink", "CallbackSink",
    "Batch", "LayerSchema", "Pixels", "StageMessage", "Detections", "Attribute", "Frame", "StreamEvent",
    "StreamState", "Subscriber", "Message",
    "VidinferError", "ConfigError", "ModelError", "SourceError", "PublishError", "__version__",
]

# Imported on first use: the text reader pulls in PP-OCR's pre- and post-processing, brand impact
# its matching and report packages.
_LAZY = {"ReadText": "vidinfer.stages.read_text", "BrandExposure": "vidinfer.analytics.brand_stage"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidinfer' has no attribute {name!r}")
