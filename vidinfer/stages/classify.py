"""`Classify`: a secondary classifier over crops of a layer's boxes; its labels become a column.

Crops of every selected box of every frame of a batch go through the model together (DeepStream's
secondary GIE with ``operate-on-class-ids``), read straight from the decoder's planes on the CPU
or cut from the NV12 frame by the crop kernel on the GPU.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Optional

from pydantic import Field, model_validator

from vidinfer.batch import Batch, Pixels
from vidinfer.component import Component
from vidinfer.errors import ConfigError
from vidinfer.limits import MAX_BATCH_SIZE, MAX_CROPS_WHY, MAX_THREADS, THREADS_WHY, why
from vidinfer.models.classifier import ClassifierAdapter, SecondaryClassifier
from vidinfer.stages.base import StageContext
from vidinfer.stages.detect import LAYER_NAME, Side
from vidinfer.stages.options import FileRef, ModelRef, check_labels, model_file, read_labels

__all__ = ["Classify"]


class Classify(Component):
    """Classifies crops of a layer's boxes; the result is the attribute ``name`` of that layer.

    Args:
        name: the stage's name and the attribute's (``"shade"``, ``"colour"``).
        layer: the layer whose boxes are classified.
        model: the classifier's ONNX file ([N, classes] output).
        labels / labels_file: its label names (one of the two).
        operate_on_classes: only boxes of these classes of the layer (default: all).
        min_size: boxes narrower or shorter than this (source pixels) are skipped (label -1).
        input_size: [width, height] when the export is dynamic.
        softmax: true: logits in; false: probabilities in; unset: decided per batch.
        max_batch_size: crops per model run.
    """

    type: ClassVar[str] = "classify"
    pixels: ClassVar[Pixels] = Pixels.DEVICE

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    layer: str = Field(default="objects", pattern=LAYER_NAME)
    model: ModelRef
    labels: Optional[list[str]] = None
    labels_file: Optional[FileRef] = None
    operate_on_classes: Optional[list[str]] = None
    min_size: Annotated[float, why("source pixels; FFmpeg decodes no frame wider than 16384")] = Field(
        default=0.0, ge=0, le=16384)
    input_size: Optional[tuple[Side, Side]] = None
    softmax: Optional[bool] = None
    max_batch_size: Annotated[int, why(MAX_CROPS_WHY)] = Field(default=32, ge=1, le=MAX_BATCH_SIZE)
    output: Optional[str] = None
    intra_op_threads: Annotated[int, why(THREADS_WHY)] = Field(default=0, ge=0, le=MAX_THREADS)

    @model_validator(mode="after")
    def _labels(self) -> Classify:
        check_labels(self.labels, self.labels_file, "labels")
        return self

    def label_names(self) -> list[str]:
        return read_labels(self.labels, self.labels_file, f"stage {self.name!r}")

    def open(self, ctx: StageContext) -> None:
        schema = ctx.layer(self.layer)
        labels = self.label_names()
        operate_on = None
        if self.operate_on_classes is not None:
            unknown = [n for n in self.operate_on_classes if n not in schema.classes]
            if unknown:
                raise ConfigError(f"stage {ctx.name!r}: operate_on_classes names {unknown}, which layer "
                                  f"{self.layer!r} does not have (its classes: {list(schema.classes)})")
            operate_on = [schema.classes.index(n) for n in self.operate_on_classes]
        path = model_file(self.model, f"stage {ctx.name!r}")
        engine = ctx.engine(path, self.input_size, self.intra_op_threads, max_batch=self.max_batch_size,
                            role="classifier model")
        self._classifier = SecondaryClassifier(ctx.name, engine, ClassifierAdapter(labels, self.softmax, self.output),
                                               operate_on, self.min_size, self.max_batch_size, ctx.backend.crops)
        self._attribute = ctx.name
        ctx.add_attribute(self.layer, ctx.name, labels)
        ctx.need_full_frames()  # crops are cut from the full-resolution frame

    def __call__(self, batch: Batch) -> None:
        batch[self.layer] = self._classifier(batch.frames, batch[self.layer])

    def on_stream_end(self, stream_id: str) -> None:
        pass

    def close(self) -> None:
        clf = getattr(self, "_classifier", None)
        if clf is not None:
            clf.engine.close()
