"""`Detect`: a YOLO-family detector over the whole frame; its boxes become a layer.

Several may run in one pipeline (a person detector and a logo detector), each with its own input
size. The first one's input is made by the decoder (one swscale pass from the decoded frame on
the CPU, straight into the model's letterboxed size); a later one with another size resizes from
the full-resolution frame. On the GPU backend every detector's input is cut from the NV12 frame
by the fused kernel, and its run starts in `prepare`, overlapping the previous batch.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from vidinfer.batch import Batch, Pixels
from vidinfer.component import Component
from vidinfer.errors import ConfigError
from vidinfer.limits import MAX_SIDE, MAX_THREADS, THREADS_WHY, why
from vidinfer.models.yolo import YoloAdapter
from vidinfer.preprocess.letterbox import CHANNEL_ORDERS, INPUT_SCALES, InputConvention, Letterbox
from vidinfer.stages.base import StageContext
from vidinfer.stages.options import FileRef, ModelRef, check_labels, model_file, read_labels

__all__ = ["Detect", "LAYER_NAME", "Side"]

LAYER_NAME = r"^[A-Za-z0-9_\-]{1,64}$"
# A model input's width or height.
Side = Annotated[int, Field(gt=0, le=MAX_SIDE), why(
    "a model input's side; a 8192x8192 input already takes 800 MB a frame as float")]


class Detect(Component):
    """A YOLO-family ONNX detector (YOLOv5, YOLOv8/YOLO11 or end-to-end layouts, found from the
    output shape), batched across streams, with class-aware NMS over the whole batch.

    Args:
        model: the ONNX file (or a registered name such as ``logos:detector``).
        layer: the name of the layer its boxes make (``"objects"``; ``"logo"``, ``"person"``).
        classes / labels_file: its class names in model order (one of the two).
        layout: ``"auto"`` or the output layout (``"yolox"``: a YOLOX export without decoding).
        input_scale: the value range the model takes: ``"0-1"`` (pixel / 255) or ``"0-255"``.
        channel_order: ``"rgb"`` or ``"bgr"``, the order of the model's colour planes.
        input_size: [width, height], needed only when the export has dynamic height/width.
        conf_threshold, iou_threshold, max_detections: post-processing.
        class_thresholds: a score threshold of its own for some classes, by name
            (``{ORBIS = 0.7}``); the others keep ``conf_threshold``.
        output: the output's name when the model has several.
        intra_op_threads: ONNX Runtime threads (0: it decides).
    """

    type: ClassVar[str] = "detect"
    pixels: ClassVar[Pixels] = Pixels.DEVICE

    model: ModelRef
    layer: str = Field(default="objects", pattern=LAYER_NAME)
    classes: Optional[list[str]] = None
    labels_file: Optional[FileRef] = None
    layout: Literal["auto", "yolov5", "yolov8", "end2end", "yolox"] = "auto"
    input_scale: Literal["0-1", "0-255"] = "0-1"
    channel_order: Literal["rgb", "bgr"] = "rgb"
    input_size: Optional[tuple[Side, Side]] = None
    conf_threshold: float = Field(default=0.25, ge=0, le=1)
    class_thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: Annotated[int, why(
        "boxes kept per frame after NMS; a 640x640 YOLO model proposes 8400 in all")] = Field(default=300, ge=1,
                                                                                             le=10_000)
    output: Optional[str] = None
    intra_op_threads: Annotated[int, why(THREADS_WHY)] = Field(default=0, ge=0, le=MAX_THREADS)

    @model_validator(mode="after")
    def _labels(self) -> Detect:
        check_labels(self.classes, self.labels_file, "classes")
        return self

    @field_validator("input_scale", mode="before")
    @classmethod
    def _input_scale(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in INPUT_SCALES:
            raise ValueError('must be "0-1" (the model takes pixel / 255) or "0-255" (pixel values as they are)')
        return value

    @field_validator("channel_order", mode="before")
    @classmethod
    def _channel_order(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in CHANNEL_ORDERS:
            raise ValueError('must be "rgb" or "bgr" (the order of the model\'s colour planes)')
        return value

    @property
    def input_convention(self) -> InputConvention:
        """What the model takes: its value range and channel order, for the backend's preprocessing."""
        return InputConvention(self.input_scale, self.channel_order)

    def default_name(self) -> str:
        return f"detect:{self.layer}"

    def class_names(self, what: str = "detector") -> list[str]:
        return read_labels(self.classes, self.labels_file, what)

    def make_adapter(self, classes: list[str], where: str) -> YoloAdapter:
        """The post-processing of this stage's settings (``where`` names it in a user's error)."""
        try:
            return YoloAdapter(classes, self.layout, self.conf_threshold, self.iou_threshold, self.max_detections,
                               self.output, class_thresholds=self.class_thresholds)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None

    # -- the stage --
    def open(self, ctx: StageContext) -> None:
        classes = self.class_names(f"stage {ctx.name!r}")
        path = model_file(self.model, f"stage {ctx.name!r}")
        self._engine = engine = ctx.engine(path, self.input_size, self.intra_op_threads, role="detector model")
        inp = engine.input
        self._size = (inp.width, inp.height)
        self._adapter = self.make_adapter(classes, f"stage {ctx.name!r}")
        self._adapter.bind(engine.output_shapes, f"stage {ctx.name!r}: detector model {path.name!r}", self._size)
        self._backend = ctx.backend
        self._convention = self.input_convention
        # The first detector's input comes letterboxed from the decoder; another size is cut
        # from the full-resolution frame.
        self._decoder_sized = ctx.claim_frame_size(self._size)
        if not self._decoder_sized:
            ctx.need_full_frames()
        self._boxes: dict[tuple[int, int], Letterbox] = {}
        ctx.add_layer(self.layer, classes)
        slots = inp.padded_size(ctx.max_batch_size)
        # Two input tensors when the backend overlaps batch k+1's preparation with batch k.
        try:
            self._tensors = [self._backend.new_batch(inp, slots) for _ in range(2 if self._backend.pipelined else 1)]
        except MemoryError:  # CuPy's OutOfMemoryError is one too
            mb = slots * inp.channels * inp.height * inp.width * np.dtype(inp.dtype).itemsize / 1e6
            raise ConfigError(f"stage {ctx.name!r}: the detector's input for max_batch_size = {ctx.max_batch_size} "
                              f"({mb:.0f} MB) cannot be allocated; lower max_batch_size") from None
        self._launched = 0

    @property
    def engine(self) -> Any:
        """The detector's engine (once open)."""
        return self._engine

    @property
    def adapter(self) -> YoloAdapter:
        return self._adapter

    def letterboxes(self, batch: Batch) -> list[Letterbox]:
        """Where each frame lands in this detector's input."""
        if self._decoder_sized:
            return [f.letterbox for f in batch.frames]
        out = []
        for f in batch.frames:
            box = self._boxes.get((f.width, f.height))
            if box is None:
                box = self._boxes[(f.width, f.height)] = Letterbox.fit(f.width, f.height, *self._size)
            out.append(box)
        return out

    def fill(self, batch: Batch) -> tuple[Any, list[Letterbox]]:
        """Fill the first input tensor with the batch's frames; (the tensor as run, the letterboxes).
        For benchmarks of the detector alone: ``engine.run(tensor)`` then ``adapter.decode``."""
        boxes = self.letterboxes(batch)
        self._backend.launch(self._engine, self._tensors[0], batch.frames, boxes, self._convention).outputs()
        return self._tensors[0][: self._engine.input.padded_size(len(batch.frames))], boxes

    def prepare(self, batch: Batch) -> None:
        """Fill the input and start the run (on the GPU: returns before it finishes)."""
        batch.scratch[id(self)] = self._launch(batch)

    def _launch(self, batch: Batch) -> tuple[Any, list[Letterbox]]:
        tensor = self._tensors[self._launched % len(self._tensors)]
        self._launched += 1
        boxes = self.letterboxes(batch)
        return self._backend.launch(self._engine, tensor, batch.frames, boxes, self._convention), boxes

    def __call__(self, batch: Batch) -> None:
        prepared = batch.scratch.pop(id(self), None)
        run, boxes = prepared if prepared is not None else self._launch(batch)
        batch[self.layer] = self._adapter.decode(run.outputs(), boxes)

    def on_stream_end(self, stream_id: str) -> None:
        pass

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()
