"""The stage seam: what every stage of a pipeline implements, and what the pipeline gives it.

A stage is opened once (``open(ctx)``: load models through the pipeline's backend, declare the
layers it makes or the columns it adds), then called on every batch in order (``stage(batch)``:
read layers, set layers), told when a stream ends (``on_stream_end``) and closed (``close``).
It declares what it reads of the pixels (`Pixels`), so the GPU backend copies frames to the host
only for stages that ask. A stage may also have ``prepare(batch)``: work that depends only on
the frames (starting a detector on the GPU), which the pipeline may start before it finishes the
previous batch.

A plain function is a stage too, through `stage`:

    @vi.stage(pixels="none")
    def count_people(batch: vi.Batch, ctx: vi.StageContext) -> None:
        for frame, people in zip(batch.frames, batch["person"]):
            ctx.emit("people", frame.stream_id, {"frame_no": frame.frame_no, "count": len(people)})
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from vidinfer.batch import Batch, LayerSchema, Pixels
from vidinfer.errors import ConfigError
from vidinfer.frame import Frame

if TYPE_CHECKING:
    from vidinfer.backends import Backend
    from vidinfer.engines.base import Engine
    from vidinfer.tracking.cuts import ShotCuts

__all__ = ["Stage", "StageContext", "FunctionStage", "Layers", "ReportSection", "stage", "strict"]

log = logging.getLogger(__name__)


# (stage name, kind, stream id, body, retain): how a context hands a stage's message to the pipeline.
Emit = Callable[[str, str, str, dict[str, Any], bool], None]


@runtime_checkable
class Stage(Protocol):
    """One step of a pipeline.

    Attributes:
        name: names the stage in errors, logs and the run report (unique in a pipeline).
        pixels: what it reads of the frames' pixels (`Pixels`).
    """

    name: str | None
    pixels: Pixels

    def open(self, ctx: StageContext) -> None:
        """Load what it needs and declare its layers, before any stream starts."""
        ...

    def __call__(self, batch: Batch) -> None:
        """Read and set layers of one batch."""
        ...

    def on_stream_end(self, stream_id: str) -> None:
        """A stream ended: publish what is final for it, free what is kept for it."""
        ...

    def close(self) -> None:
        """The run ended: stop threads, free engines, write reports."""
        ...


@dataclass
class ReportSection:
    """A stage's part of the run report: figures (JSON-ready), files written, and an optional
    summary a terminal can print (e.g. a rich Table)."""

    data: Any
    files: list[str] = field(default_factory=list)
    summary: Any = None


class Layers:
    """The pipeline's layer declarations, filled as stages open, read by later stages and sinks."""

    def __init__(self) -> None:
        self._schemas: dict[str, LayerSchema] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._schemas

    def __getitem__(self, name: str) -> LayerSchema:
        return self._schemas[name]

    def get(self, name: str) -> LayerSchema | None:
        return self._schemas.get(name)

    @property
    def schemas(self) -> Mapping[str, LayerSchema]:
        """Every layer declared, in order (the final schema once all stages are open)."""
        return self._schemas

    @property
    def names(self) -> list[str]:
        return list(self._schemas)

    def add(self, schema: LayerSchema) -> None:
        self._schemas[schema.name] = schema

    def update(self, name: str, **changes: Any) -> None:
        self._schemas[name] = replace(self._schemas[name], **changes)


class StageContext:
    """What the pipeline gives a stage in ``open``.

    It stays valid for the stage's whole life (``emit`` and ``report`` work in ``__call__``,
    ``on_stream_end`` and ``close`` too).
    """

    def __init__(self, stage_name: str, pipeline_name: str, backend: Backend, layers: Layers,
                 stream_ids: Sequence[str], max_batch_size: int, emit: Emit,
                 report: Callable[[str, ReportSection], None], cuts: ShotCuts, frames: FrameNeeds):
        self.name = stage_name
        self.pipeline_name = pipeline_name
        self.backend = backend
        self.stream_ids = tuple(stream_ids)
        self.max_batch_size = max_batch_size
        self.cuts = cuts  # one hard-cut detection per frame, shared by every stage that asks
        self._layers = layers
        self._emit = emit
        self._report = report
        self._frames = frames
        self.options: Any = None  # a function stage's validated options (`stage(options=...)`)
        self.state: dict[str, Any] = {}  # free for the stage's own state (e.g. counts per stream)

    # -- where it runs --
    @property
    def device(self) -> str:
        """``"cpu"`` or ``"gpu"``: the pipeline's backend."""
        return self.backend.name

    def engine(self, model: str | Path, input_size: tuple[int, int] | None = None, threads: int = 0,
               max_batch: int | None = None, role: str = "model") -> Engine:
        """An engine for an ONNX model on the pipeline's backend (ONNX Runtime on the CPU,
        TensorRT or ONNX Runtime's GPU providers on the GPU). ``role`` names the model in errors."""
        return self.backend.make_engine(Path(model), input_size, threads, f"stage {self.name!r}: {role}",
                                        max_batch or self.max_batch_size)

    # -- layers --
    def layer(self, name: str) -> LayerSchema:
        """The schema of a layer an earlier stage makes; `ConfigError` naming both if there is none."""
        schema = self._layers.get(name)
        if schema is None:
            have = ", ".join(repr(n) for n in self._layers.names) or "none"
            raise ConfigError(f"stage {self.name!r} reads layer {name!r}, which no stage before it makes "
                              f"(layers made before it: {have}); fix the name or put the stage that makes it first")
        return schema

    def has_layer(self, name: str) -> bool:
        return name in self._layers

    @property
    def layer_names(self) -> list[str]:
        """The layers made by the stages before this one (and by this one so far), in order."""
        return self._layers.names

    def add_layer(self, name: str, classes: Sequence[str], attributes: Mapping[str, Sequence[str]] | None = None,
                  tracked: bool = False) -> LayerSchema:
        """Declare a layer this stage makes, with its class names (and attribute labels)."""
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ConfigError(f"stage {self.name!r}: layer name {name!r} must be letters, digits, '_' or '-'")
        other = self._layers.get(name)
        if other is not None:
            raise ConfigError(f"stage {self.name!r} makes layer {name!r}, which stage {other.made_by!r} already "
                              "makes; give one of them another layer name")
        schema = LayerSchema(name, tuple(classes), {k: tuple(v) for k, v in (attributes or {}).items()},
                             tracked, self.name)
        self._layers.add(schema)
        return schema

    def add_attribute(self, layer: str, attribute: str, labels: Sequence[str]) -> None:
        """Declare a per-row label column this stage adds to an earlier stage's layer."""
        schema = self.layer(layer)
        if attribute in schema.attributes:
            raise ConfigError(f"stage {self.name!r} adds attribute {attribute!r} to layer {layer!r}, which already "
                              "has one of that name; give the stage another name")
        self._layers.update(layer, attributes={**schema.attributes, attribute: tuple(labels)})

    def mark_tracked(self, layer: str) -> None:
        """Declare that this stage fills the layer's ``track_id``."""
        self.layer(layer)
        self._layers.update(layer, tracked=True)

    # -- frames --
    def claim_frame_size(self, size: tuple[int, int]) -> bool:
        """Ask for ``frame.image`` letterboxed to ``size`` by the decoder. The first stage to ask
        gets it (True); a later one with another size gets False and reads full-resolution frames."""
        return self._frames.claim(size, self.name)

    def need_full_frames(self) -> None:
        """Keep each frame's full-resolution pixels as ``frame.source`` (crops, text, resizes)."""
        self._frames.full = True

    # -- messages and report --
    def emit(self, kind: str, stream_id: str, body: dict[str, Any], retain: bool = False) -> None:
        """Send a message of this stage's own to every sink (on ZeroMQ: topic ``<kind>.<stream>.``).

        Emitted while a batch is processed, it goes out after that batch's results; emitted in
        ``on_stream_end``, before the stream's end-of-stream message. ``retain``: the message is
        state (running figures, not an event): a subscriber that joins later gets the latest one.
        """
        self._emit(self.name, kind, stream_id, body, retain)

    def report(self, section: str, data: Any, files: Sequence[str | Path] = (), summary: Any = None) -> None:
        """Add a section to the run report (``RunReport.sections[section]``)."""
        self._report(section, ReportSection(data, [str(f) for f in files], summary))


class FrameNeeds:
    """What the stages ask of the decoded frames (becomes the sources' `DecodeHints`)."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None
        self.owner = ""
        self.full = False
        self._lock = threading.Lock()

    def claim(self, size: tuple[int, int], owner: str) -> bool:
        with self._lock:
            if self.size is None:
                self.size, self.owner = (int(size[0]), int(size[1])), owner
                return True
            return self.size == (int(size[0]), int(size[1]))


# ------------------------------------------------------------------------------- functions


class FunctionStage:
    """A stage made of a function of the batch: ``fn(batch)`` or ``fn(batch, ctx)``; with
    ``per_frame``, ``fn(frame, layers)`` or ``fn(frame, layers, ctx)`` for each frame, where
    ``layers`` maps each layer's name to that frame's `Detections`.

    ``ctx`` is the `StageContext`; ``ctx.options`` holds the validated options (``options`` model)
    and ``ctx.state`` a dict the function may keep state in (e.g. counts per stream).

    A function that raises on a frame (per_frame) fails only that frame: the error names the
    stage, the stream and the frame. A batch function that raises is called again on each
    stream's frames alone, to find the stream (see docs/composition.md, "When a stage fails").
    """

    def __init__(self, fn: Callable[..., Any], pixels: Pixels | str = Pixels.HOST, name: str | None = None,
                 options: type[BaseModel] | None = None, per_frame: bool = False,
                 values: BaseModel | None = None, makes: Mapping[str, Sequence[str]] | None = None):
        self.fn = fn
        self.makes = {k: list(v) for k, v in (makes or {}).items()}
        self.pixels = Pixels(pixels)
        self.name = name or getattr(fn, "__name__", "function")
        self.options_model = options
        self.per_frame = per_frame
        self.values = values
        self._wants_ctx = _arity(fn) >= (3 if per_frame else 2)
        self._ctx: StageContext | None = None
        self.__doc__ = getattr(fn, "__doc__", None)

    def with_options(self, **options: Any) -> FunctionStage:
        """A new stage of the same function with these options (validated by its options model)."""
        if self.options_model is None:
            raise TypeError(f"stage {self.name!r} takes no options; declare them with @vi.stage(options=Model)")
        try:
            values = strict(self.options_model).model_validate(options)
        except ValidationError as exc:
            raise ConfigError(f"stage {self.name!r}: {_first_error(exc)}") from None
        return FunctionStage(self.fn, self.pixels, self.name, self.options_model, self.per_frame, values, self.makes)

    def renamed(self, name: str) -> FunctionStage:
        return FunctionStage(self.fn, self.pixels, name, self.options_model, self.per_frame, self.values, self.makes)

    def open(self, ctx: StageContext) -> None:
        values = self.values
        if values is None and self.options_model is not None:
            try:
                values = self.options_model()
            except ValidationError as exc:
                raise ConfigError(f"stage {self.name!r} needs options: {_first_error(exc)}") from None
        ctx.options = values
        self._ctx = ctx
        for layer, classes in self.makes.items():
            ctx.add_layer(layer, classes)
        setup = getattr(self.fn, "open", None)
        if callable(setup):
            setup(self._ctx)

    def __call__(self, batch: Batch) -> None:
        ctx = self._ctx
        assert ctx is not None, f"stage {self.name!r} was not opened"
        if not self.per_frame:
            if self._wants_ctx:
                self.fn(batch, ctx)
            else:
                self.fn(batch)
            return
        failures: list[tuple[Frame, BaseException]] = []
        for i, frame in enumerate(batch.frames):
            layers = batch.frame_layers(i)
            try:
                if self._wants_ctx:
                    self.fn(frame, layers, ctx)
                else:
                    self.fn(frame, layers)
            except Exception as exc:  # one frame's fault: the other frames and streams go on
                failures.append((frame, exc))
        if failures:
            raise FrameFailures(failures)

    def on_stream_end(self, stream_id: str) -> None:
        hook = getattr(self.fn, "on_stream_end", None)
        if callable(hook) and self._ctx is not None:
            hook(stream_id, self._ctx)

    def close(self) -> None:
        hook = getattr(self.fn, "close", None)
        if callable(hook) and self._ctx is not None:
            hook(self._ctx)

    def __repr__(self) -> str:
        return f"FunctionStage({self.name!r}, pixels={self.pixels.value!r}, per_frame={self.per_frame})"


class FrameFailures(Exception):
    """Frames a per-frame stage failed on; the pipeline reports each and goes on."""

    def __init__(self, failures: list[tuple[Frame, BaseException]]):
        super().__init__(f"{len(failures)} frame(s) failed")
        self.failures = failures


def stage(fn: Callable[..., Any] | None = None, *, pixels: Pixels | str = Pixels.HOST, name: str | None = None,
          options: type[BaseModel] | None = None, per_frame: bool = False,
          makes: Mapping[str, Sequence[str]] | None = None) -> Any:
    """Make a function a stage (see `FunctionStage`).

    Args:
        pixels: what the function reads of the pixels: ``"none"`` (boxes and times only: the GPU
            backend then copies nothing), ``"host"`` (NumPy images; the default, the safe choice)
            or ``"device"``.
        name: the stage's name (default: the function's).
        options: a pydantic model of the function's options: in TOML, the ``[[stages]]`` table's
            other keys; in Python, ``fn.with_options(...)``.
        per_frame: call the function once per frame, ``fn(frame, layers[, ctx])``.
        makes: the layers the function makes, each with its class names (``{"zones": ["left",
            "right"]}``): it sets ``batch[name]`` for them (batch functions only).
    """
    def wrap(f: Callable[..., Any]) -> FunctionStage:
        return FunctionStage(f, pixels, name, options, per_frame, makes=makes)

    return wrap(fn) if fn is not None else wrap


def strict(model: type[BaseModel]) -> type[BaseModel]:
    """``model``, refusing unknown keys: a misspelt option must not pass unnoticed, even when
    the model was declared with pydantic's default (ignore them)."""
    if model.model_config.get("extra") in ("forbid", "allow"):
        return model
    return type(model.__name__, (model,), {"model_config": {**model.model_config, "extra": "forbid"},
                                           "__module__": model.__module__, "__doc__": model.__doc__})


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 99
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"key '{key}': {msg[:1].lower()}{msg[1:]}" if key else msg

