"""Pipeline files: TOML mapped one to one onto `Pipeline(sources=..., stages=..., sinks=...)`.

    config = load_pipeline("pipelines/brand_impact.toml")   # streams, stages, sinks, settings
    report = config.build().run()                           # a Pipeline, run

A file has top-level settings (``name``, ``device``, ``max_batch_size``, ``max_delay_ms``, ``[gpu]``,
``[shard]``, ``[metrics]``), then ``[[streams]]`` (each a `StreamSpec`), ``[[stages]]`` and
``[[sinks]]``. A stage or sink table names its ``type`` (`vidinfer.stages.registry`); its other keys
are validated by that type's own model, exactly as the same object built in Python code. Relative
paths (stream files, models, label files, report folders, keys) are resolved against the file's
own folder, so a pipeline runs the same from any working directory. Every invalid document ends in
one `ConfigError` line naming the file, the key and what is expected.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidinfer.errors import ConfigError, ModelError
from vidinfer.limits import (
    DECODE_THREADS_WHY,
    HOUR_S,
    MAX_BATCH_SIZE,
    MAX_BATCH_WHY,
    MAX_DECODE_THREADS,
    MAX_PIXELS,
    why,
)
from vidinfer.publish.wire import STREAM_ID_PATTERN
from vidinfer.redact import UNPARSABLE, redact_url, url_scheme

if TYPE_CHECKING:
    from vidinfer.pipeline import Pipeline

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["StreamSpec", "GpuSpec", "ShardSpec", "MetricsSpec", "PipelineConfig", "load_pipeline", "parse_pipeline",
           "is_live_url"]

_TIMEOUT_WHY = "an hour; a source silent for longer is down, and a live stream reconnects instead"
_LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"}


def is_live_url(url: str) -> bool:
    """Whether a URL names a live source by its scheme (camera protocols); http(s) is not.

    Reads only the scheme, so a URL the rest of which cannot be parsed gives an answer too."""
    return url_scheme(url) in _LIVE_SCHEMES


class _Spec(BaseModel):
    # Numbers must be finite: TOML allows inf and nan, and e.g. max_delay_ms = inf overflows a wait.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


class StreamSpec(_Spec):
    """One video stream: a file, or a network URL (rtsp://, rtmp://, http(s):// incl. HLS)."""

    id: str = Field(pattern=STREAM_ID_PATTERN, description="letters, digits, '_', '-', ':'")
    url: str = Field(min_length=1)
    sample_fps: Annotated[Optional[float], why(
        "no camera or file delivers more frames a second; above a stream's frame rate every frame is analysed")] = \
        Field(default=None, gt=0, le=1000, description="analyse this many frames per second")
    keyframes_only: bool = False
    reference_frames_only: Optional[bool] = Field(
        default=None, description="decode only frames other frames refer to (skips most B-frames; the "
        "decoded ones are exact). None: when sample_fps is at most half the frame rate; false: never")
    loop: Union[bool, int] = Field(default=False, description="true: play a file forever; N: play it N times "
                                   "(at most 1000000; true plays it forever)")
    realtime: bool = False
    live: Optional[bool] = None  # None: decided by the URL scheme
    options: dict[str, str] = Field(default_factory=dict, description="FFmpeg demuxer/protocol options")
    open_timeout_s: Annotated[float, why(_TIMEOUT_WHY)] = Field(default=10.0, gt=0, le=HOUR_S)
    read_timeout_s: Annotated[float, why(_TIMEOUT_WHY)] = Field(default=10.0, gt=0, le=HOUR_S)
    queue_size: Annotated[int, why(
        "every queued frame holds a decoded image, several MB at 1080p; a deeper queue adds only latency and "
        "memory")] = Field(default=8, ge=1, le=1024)
    decode_threads: Annotated[int, why(DECODE_THREADS_WHY)] = Field(
        default=0, ge=0, le=MAX_DECODE_THREADS, description="0: vidinfer picks from the stream count")
    reconnect: bool = True
    reconnect_max_s: Annotated[float, why(
        "the longest pause between two attempts; a camera back after a longer one would stay unwatched for "
        "an hour")] = Field(default=30.0, gt=0, le=HOUR_S)
    max_reconnects: Annotated[int, why("use -1 to retry forever")] = Field(
        default=-1, ge=-1, le=1_000_000, description="-1: retry forever")
    # Larger frames fail the stream with a reason: default 8K UHD (7680x4320), about 50 MB per decoded frame.
    max_pixels: Annotated[int, why(
        "FFmpeg's av_image_check_size refuses larger images, about 16384x16384, and one such frame is 800 MB "
        "as RGB")] = Field(default=7680 * 4320, ge=1, le=MAX_PIXELS,
                        description="width x height above which the stream fails")

    @field_validator("url")
    @classmethod
    def _parsable(cls, url: str) -> str:
        if "://" in url:
            try:
                urlsplit(url)
            except ValueError as exc:  # e.g. rtsp://[bad: the URL itself is not repeated, it may hold a password
                scheme = url_scheme(url)
                raise ValueError(f"the URL cannot be parsed ({exc}); fix it (it is not shown here, since it may "
                                 f"hold a password: {scheme + '://' if scheme else ''}{UNPARSABLE})") from None
        return url

    @field_validator("loop")
    @classmethod
    def _loop_count(cls, loop: bool | int) -> bool | int:
        if not isinstance(loop, bool) and loop < 1:
            raise ValueError(f"loop must be true, false or a number of plays of 1 or more, got {loop}")
        if not isinstance(loop, bool) and loop > 1_000_000:
            raise ValueError("loop must be at most 1000000 plays (use loop = true to play a file forever)")
        return loop

    @property
    def is_live(self) -> bool:
        return is_live_url(self.url) if self.live is None else self.live


class ShardSpec(_Spec):
    """This process's share of the streams: shard ``index`` of ``count`` (see vidinfer/sharding.py)."""

    index: Annotated[int, why("an index below count, which is at most 10000")] = Field(
        ge=0, le=9_999, description="0 .. count-1")
    count: Annotated[int, why(
        "each shard is a process with its own models; more shards than streams only leave shards idle")] = Field(
        ge=1, le=10_000, description="how many processes share the stream list")

    @model_validator(mode="after")
    def _in_range(self) -> ShardSpec:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} is out of range for {self.count} shards; "
                             f"use an index from 0 to {self.count - 1}")
        return self


class MetricsSpec(_Spec):
    """The Prometheus endpoint of `vidinfer run` (/metrics, /healthz, /readyz); port 0 = off."""

    port: Annotated[int, why("the largest TCP port number")] = Field(default=0, ge=0, le=65535,
                                                                      description="0: no endpoint")
    host: str = Field(default="127.0.0.1", min_length=1, description="0.0.0.0 in a container")
    hold_s: Annotated[float, why("a day; the last scrape of a file job comes within seconds")] = Field(
        default=0.0, ge=0, le=86_400, description="keep answering this long after the run ends (last scrape of a "
        "file job)")


class GpuSpec(_Spec):
    """The GPU backend's settings (used when the pipeline runs on the GPU)."""

    device_id: Annotated[int, why("a CUDA device ordinal: 0 up to the number of GPUs less one")] = Field(
        default=0, ge=0, le=255, description="CUDA device ordinal")
    engine_cache_dir: Optional[Path] = Field(default=None, description="TensorRT engine cache folder "
                                             "(default: $VIDINFER_ENGINE_CACHE or ~/.cache/vidinfer/engines)")


class _Settings(_Spec):
    """The top level of a pipeline file, besides its stages and sinks."""

    name: str = "pipeline"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    max_batch_size: Annotated[int, why(MAX_BATCH_WHY)] = Field(default=8, ge=1, le=MAX_BATCH_SIZE)
    max_delay_ms: Annotated[float, why(
        "a minute: a partial batch waits this long for more frames, and results wait with it")] = Field(
        default=20.0, ge=0, le=60_000, description="at most a minute")
    streams: list[StreamSpec] = Field(min_length=1)
    stages: list[dict[str, Any]] = Field(min_length=1, description="[[stages]] tables, each with its type")
    sinks: list[dict[str, Any]] = Field(default_factory=list, description="[[sinks]] tables, each with its type")
    shard: Optional[ShardSpec] = None  # this process's share of the streams
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @field_validator("streams")
    @classmethod
    def _unique_ids(cls, streams: list[StreamSpec]) -> list[StreamSpec]:
        if (sid := _first_repeat(s.id for s in streams)) is not None:
            raise ValueError(f"stream id {sid!r} is used twice; give every stream its own id")
        return streams


@dataclass
class PipelineConfig:
    """A pipeline file, validated: its settings, streams, stage objects and sink objects.

    Change what you like before `build` (``config.streams``, ``config.stages``, ``config.sinks``
    are plain lists; ``vidinfer run --publish`` replaces the first ZeroMQ sink's endpoint).
    """

    name: str
    device: str
    gpu: GpuSpec
    max_batch_size: int
    max_delay_ms: float
    streams: list[StreamSpec]
    stages: list[Any]
    sinks: list[Any]
    shard: Optional[ShardSpec] = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    source: str = "<pipeline>"

    def build(self) -> Pipeline:
        """A `Pipeline` of fresh copies of these stages and sinks (models loaded, layers checked),
        so one configuration builds any number of pipelines; run it with ``.run()``."""
        from vidinfer.pipeline import Pipeline

        fresh = self.copy()
        return Pipeline(fresh.streams, fresh.stages, fresh.sinks, name=self.name, device=self.device,
                        max_batch_size=self.max_batch_size, max_delay_ms=self.max_delay_ms, gpu=self.gpu,
                        shard=self.shard)

    def copy(self) -> PipelineConfig:
        """A deep copy: change it without changing this one."""
        return copy.deepcopy(self)

    def stage_of(self, cls: type) -> Any:
        """The first stage that is a ``cls`` (None if there is none)."""
        return next((s for s in self.stages if isinstance(s, cls)), None)

    def sink_of(self, cls: type) -> Any:
        return next((s for s in self.sinks if isinstance(s, cls)), None)


def _first_repeat(names: Iterable[str]) -> str | None:
    """The first name that occurs a second time, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


# ---------------------------------------------------------------- TOML loading

# The pipeline file of 0.1 had fixed tables; each now is a stage or a sink.
_MOVED = {
    "detector": 'a [[stages]] table with type = "detect"',
    "classifiers": '[[stages]] tables with type = "classify" (after the detect stage)',
    "tracker": 'a [[stages]] table with type = "track" (brand impact: the tracker table of its brand_exposure stage)',
    "brand_impact": '[[stages]] tables with type = "read_text" and type = "brand_exposure"',
    "publish": 'a [[sinks]] table with type = "zmq" (reliable_endpoint: type = "reliable"; file: type = "file")',
}
# Sink and stage types that were replaced: type -> what to write instead.
_MOVED_TYPES = {
    "push": 'type = "push" (the PUSH socket) is replaced by the acknowledged channel: write type = "reliable" '
            "(keys: endpoint, spool_dir, max_buffer_bytes, credit; docs/configuration.md)",
}


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline TOML file. Raises `ConfigError` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; give the path of a pipeline .toml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc}); check its permissions and encoding") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax there") from None
    return parse_pipeline(data, source=str(path), base_dir=path.parent)


def parse_pipeline(data: dict[str, Any], source: str = "<pipeline>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate a pipeline given as a dict (parsed TOML); relative paths resolve against ``base_dir``."""
    for key, where in _MOVED.items():
        if key in data:
            raise ConfigError(f"{source}: key '{key}': pipeline files now list their stages and sinks; move [{key}] "
                              f"into {where} (docs/configuration.md, 'Pipeline files of vidinfer 0.1')")
    try:
        settings = _Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, _Settings)}") from None
    base = base_dir
    if base is not None:
        for s in settings.streams:
            if "://" not in s.url and not Path(s.url).is_absolute():
                s.url = os.path.normpath(base / s.url)
        _resolve_paths(settings.gpu, base)
    with _importable(base):
        stages = [_component(t, ("stages", i), _stage_types(), base, source, sink=False)
                  for i, t in enumerate(settings.stages)]
        sinks = [_component(t, ("sinks", i), _sink_types(), base, source, sink=True)
                 for i, t in enumerate(settings.sinks)]
    return PipelineConfig(settings.name, settings.device, settings.gpu, settings.max_batch_size,
                          settings.max_delay_ms, settings.streams, stages, sinks, settings.shard, settings.metrics,
                          source)


def _stage_types() -> dict[str, str]:
    from vidinfer.stages.registry import stage_types

    return stage_types()


def _sink_types() -> dict[str, str]:
    from vidinfer.stages.registry import sink_types

    return sink_types()


@contextlib.contextmanager
def _importable(folder: Path | None) -> Iterator[None]:
    """The pipeline file's folder first on the import path while its Python objects are imported."""
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _component(table: dict[str, Any], loc: tuple[Any, ...], types: dict[str, str], base: Path | None,
               source: str, sink: bool) -> Any:
    """One [[stages]] or [[sinks]] table as the object its type names."""
    from vidinfer.stages.registry import PYTHON, load_type

    where = _loc(loc)
    table = dict(table)
    kind = table.pop("type", None)
    known = sorted([*types, PYTHON])
    if kind is None:
        raise ConfigError(f"{source}: key '{where}.type' is required but missing; add one of: {', '.join(known)}")
    if kind == PYTHON:
        return _python_component(table, loc, base, source, sink)
    if sink and isinstance(kind, str) and kind in _MOVED_TYPES and kind not in types:
        raise ConfigError(f"{source}: key '{where}.type': {_MOVED_TYPES[kind]}")
    if not isinstance(kind, str) or kind not in types:  # a TOML array or table is no type name either
        hint = difflib.get_close_matches(str(kind), known, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{source}: key '{where}.type': unknown {'sink' if sink else 'stage'} type {kind!r}"
                          f"{suggestion}; types: {', '.join(known)}")
    try:
        cls = load_type(types[kind])
    except Exception as exc:
        raise ConfigError(f"{source}: key '{where}.type': type {kind!r} ({types[kind]}) cannot be loaded "
                          f"({type(exc).__name__}: {exc}); reinstall the package that provides it") from None
    return _validated(cls, table, loc, base, source)


def _validated(cls: type[BaseModel], table: dict[str, Any], loc: tuple[Any, ...], base: Path | None,
               source: str) -> Any:
    try:
        obj = cls.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, cls, loc)}") from None
    if base is not None:
        _resolve_paths(obj, base)
    check_files(obj, source, loc)
    return obj


def _python_component(table: dict[str, Any], loc: tuple[Any, ...], base: Path | None, source: str,
                      sink: bool) -> Any:
    """``type = "python"``: ``function`` names a function (made a stage) or a class (built from the
    table's other keys, validated by the class itself when it is a pydantic model)."""
    from vidinfer.stages.base import FunctionStage, strict
    from vidinfer.stages.track import import_object

    where = _loc(loc)
    ref = table.pop("function", None)
    if not isinstance(ref, str):
        raise ConfigError(f"{source}: key '{where}.function' is required: the 'package.module:name' of your "
                          f"{'sink' if sink else 'stage'}")
    obj = import_object(ref, f"{source}: key '{where}.function'")
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return _validated(obj, table, loc, base, source)
    name = table.pop("name", None)
    if isinstance(obj, FunctionStage) or (callable(obj) and not isinstance(obj, type) and not sink):
        fs = obj if isinstance(obj, FunctionStage) else FunctionStage(obj)
        if name is not None:
            fs = fs.renamed(str(name))
        if fs.options_model is not None:
            model = strict(fs.options_model)
            try:
                values = model.model_validate(table)
            except ValidationError as exc:
                raise ConfigError(f"{source}: {_describe(exc, model, loc)}") from None
            return FunctionStage(fs.fn, fs.pixels, fs.name, fs.options_model, fs.per_frame, values, fs.makes)
        if table:
            raise ConfigError(f"{source}: key '{where}.{next(iter(table))}': {ref} takes no options; declare them "
                              "with @vidinfer.stage(options=YourModel) or remove the key")
        return fs
    if isinstance(obj, type):
        try:
            made = obj(**table) if name is None else obj(name=name, **table)
        except TypeError as exc:
            raise ConfigError(f"{source}: key '{where}': {ref} cannot be made from these keys ({exc}); fix the "
                              "keys or the class's arguments") from None
        return made
    raise ConfigError(f"{source}: key '{where}.function': {ref} is neither a function nor a class; name one")


def _path_fields(model: BaseModel) -> Iterator[tuple[str, Any, Any]]:
    """(field name, its metadata, its value) of every field of ``model``."""
    for name, info in type(model).model_fields.items():
        yield name, info, getattr(model, name)


def _is_path_type(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return any(_is_path_type(a) for a in typing.get_args(annotation))


def _resolve_paths(model: BaseModel, base: Path) -> None:
    """Every relative path of ``model`` (and its nested options) made relative to ``base``."""
    from vidinfer.models.registry import is_model_name

    for name, info, value in _path_fields(model):
        if isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, Path) and _is_path_type(info.annotation):
            if not value.is_absolute() and not is_model_name(str(value)):
                setattr(model, name, Path(os.path.normpath(base / value)))


def check_files(model: BaseModel, source: str = "<pipeline>", loc: tuple[Any, ...] = ()) -> None:
    """Model and label files must exist before anything starts (stream files fail per stream).

    Registered model names (``logos:detector``, ``ppocr:rec``) must be installed.
    """
    from vidinfer.models.registry import is_model_name, resolve_model
    from vidinfer.stages.options import IsFile, IsModel

    for name, info, value in _path_fields(model):
        if isinstance(value, BaseModel):
            check_files(value, source, (*loc, name))
            continue
        marks = [m for m in info.metadata if isinstance(m, IsFile)]
        if not marks or value is None:
            continue
        key = _loc((*loc, name))
        if isinstance(marks[0], IsModel) and is_model_name(str(value)):
            try:
                resolve_model(str(value))
            except ModelError as exc:
                raise ConfigError(f"{source}: key '{key}': {exc}") from None
            continue
        try:
            exists = Path(value).is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"{source}: key '{key}': file '{_printable(str(value))}' cannot be read "
                              f"({exc.strerror or exc}); fix the path") from None
        if not exists:
            raise ConfigError(f"{source}: key '{key}': file '{_printable(str(value))}' does not exist; fix the path "
                              "(relative paths are relative to the pipeline file)")


def _printable(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so a message stays one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _printable(str(part))
    return out


def _describe(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> str:
    """One line for the first error: the key, what is expected, and what was found."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = _loc(prefix + loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent_model = _model_at(model, loc[:-1])
        allowed = sorted(parent_model.model_fields) if parent_model else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"unknown key '{key}'{suggestion}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"key '{key}' is required but missing; add it"
    value = err.get("input")
    found = f", got {value!r}" if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80 else ""
    if found and loc and loc[-1] == "url" and isinstance(value, str):  # it may hold a password: redacted
        found = "" if UNPARSABLE in err["msg"] else f", got {redact_url(value)!r}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = f"key '{key}': " if key else ""
    return f"{where}{_lower_first(msg)}{found}"


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` under ``model`` (for listing allowed keys)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part)
        if field_info is None:
            return None
        ann = field_info.annotation
        inner = _flat_args(ann)
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model


def _flat_args(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    out: list[Any] = []
    for a in args:
        out += _flat_args(a)
    return out
