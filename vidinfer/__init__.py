"""vidinfer: many video streams in, batched detector and classifier results out on ZeroMQ.

Compose a pipeline in code, or load one from TOML; both give the same `PipelineSpec`:

    import vidinfer as vi

    spec = vi.PipelineSpec(
        streams=[vi.StreamSpec(id="cam-1", url="sample_streams/shapes_a.mp4")],
        detector=vi.DetectorSpec(model="models/shapes/detector.onnx", classes=["red", "green", "blue"]),
        publish=vi.PublishSpec(endpoint="tcp://127.0.0.1:5555"),
    )
    report = vi.Pipeline(spec).run()
"""

from vidinfer.config import (ClassifierSpec, DetectorSpec, PipelineSpec, PublishSpec, StreamSpec,
                             load_pipeline)
from vidinfer.detections import Attribute, Detections
from vidinfer.errors import ConfigError, ModelError, PublishError, SourceError, VidinferError
from vidinfer.frame import Frame, StreamState
from vidinfer.pipeline import Pipeline, RunReport, StreamReport
from vidinfer.publish.subscriber import Message, Subscriber

__version__ = "0.1.0"

__all__ = [
    "Pipeline", "PipelineSpec", "StreamSpec", "DetectorSpec", "ClassifierSpec", "PublishSpec",
    "load_pipeline", "RunReport", "StreamReport", "Detections", "Attribute", "Frame", "StreamState",
    "Subscriber", "Message", "VidinferError", "ConfigError", "ModelError", "SourceError",
    "PublishError", "__version__",
]
