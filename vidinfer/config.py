"""Pipeline specifications: the same objects from TOML and from Python code.

    spec = load_pipeline("pipelines/brand_impact.toml")   # TOML
    spec = PipelineSpec(streams=[StreamSpec(id="cam-1", url="a.mp4")], detector=...)  # code

Relative paths in a TOML file (stream files, models, label files) are resolved against the
file's own folder, so a pipeline runs the same from any working directory. Every invalid
document ends in one `ConfigError` line naming the file, the key and what is expected.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from vidinfer.errors import ConfigError, ModelError
from vidinfer.models.registry import is_model_name, resolve_model
from vidinfer.publish.wire import STREAM_ID_PATTERN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["StreamSpec", "DetectorSpec", "ClassifierSpec", "PublishSpec", "PipelineSpec", "TrackerSpec",
           "TextSpec", "BrandSpec", "BrandImpactSpec", "ShardSpec", "MetricsSpec",
           "load_pipeline", "parse_pipeline", "is_live_url"]

_LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"}


def is_live_url(url: str) -> bool:
    """Whether a URL names a live source by its scheme (camera protocols); http(s) is not."""
    return urlsplit(url).scheme.lower() in _LIVE_SCHEMES


class _Spec(BaseModel):
    # Numbers must be finite: TOML allows inf and nan, and e.g. max_delay_ms = inf overflows a wait.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


class StreamSpec(_Spec):
    """One video stream: a file, or a network URL (rtsp://, rtmp://, http(s):// incl. HLS)."""

    id: str = Field(pattern=STREAM_ID_PATTERN, description="letters, digits, '_', '-', ':'")
    url: str = Field(min_length=1)
    sample_fps: Optional[float] = Field(default=None, gt=0, description="analyse this many frames per second")
    keyframes_only: bool = False
    reference_frames_only: Optional[bool] = Field(
        default=None, description="decode only frames other frames refer to (skips most B-frames; the "
        "decoded ones are exact). None: when sample_fps is at most half the frame rate; false: never")
    loop: Union[bool, int] = Field(default=False, description="true: play a file forever; N: play it N times")
    realtime: bool = False
    live: Optional[bool] = None  # None: decided by the URL scheme
    options: dict[str, str] = Field(default_factory=dict, description="FFmpeg demuxer/protocol options")
    open_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    queue_size: int = Field(default=8, ge=1)
    decode_threads: int = Field(default=0, ge=0, description="0: vidinfer picks from the stream count")
    reconnect: bool = True
    reconnect_max_s: float = Field(default=30.0, gt=0)
    max_reconnects: int = Field(default=-1, ge=-1, description="-1: retry forever")
    # Larger frames fail the stream with a reason: default 8K UHD (7680x4320), about 50 MB per decoded frame.
    max_pixels: int = Field(default=7680 * 4320, ge=1, description="width x height above which the stream fails")

    @field_validator("loop")
    @classmethod
    def _loop_count(cls, loop: bool | int) -> bool | int:
        if not isinstance(loop, bool) and loop < 1:
            raise ValueError(f"loop must be true, false or a number of plays of 1 or more, got {loop}")
        return loop

    @property
    def is_live(self) -> bool:
        return is_live_url(self.url) if self.live is None else self.live


class DetectorSpec(_Spec):
    """The primary detector: a YOLO-family ONNX model."""

    model: Path
    classes: Optional[list[str]] = None
    labels_file: Optional[Path] = None
    layout: Literal["auto", "yolov5", "yolov8", "end2end"] = "auto"
    input_size: Optional[tuple[PositiveInt, PositiveInt]] = None
    conf_threshold: float = Field(default=0.25, ge=0, le=1)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=300, ge=1)
    output: Optional[str] = None
    intra_op_threads: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _labels(self) -> DetectorSpec:
        _check_labels(self.classes, self.labels_file, "classes")
        return self

    def class_names(self) -> list[str]:
        return _read_labels(self.classes, self.labels_file)


class ClassifierSpec(_Spec):
    """A secondary classifier run on crops of the detector's boxes."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    model: Path
    labels: Optional[list[str]] = None
    labels_file: Optional[Path] = None
    operate_on_classes: Optional[list[str]] = None
    min_size: float = Field(default=0.0, ge=0)
    input_size: Optional[tuple[PositiveInt, PositiveInt]] = None
    softmax: Optional[bool] = None
    max_batch_size: int = Field(default=32, ge=1)
    output: Optional[str] = None
    intra_op_threads: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _labels(self) -> ClassifierSpec:
        _check_labels(self.labels, self.labels_file, "labels")
        return self

    def label_names(self) -> list[str]:
        return _read_labels(self.labels, self.labels_file)


class PublishSpec(_Spec):
    """Where results go. ``endpoint = ""`` publishes nothing (results still reach callbacks)."""

    endpoint: str = "tcp://127.0.0.1:5555"
    publisher_id: Optional[str] = None
    connect: bool = False
    sndhwm: int = Field(default=10000, ge=1)
    linger_ms: int = Field(default=1000, ge=0)
    wait_for_subscribers: int = Field(default=0, ge=0)
    wait_timeout_s: float = Field(default=10.0, ge=0)
    # CurveZMQ to a `vidinfer proxy` started with --curve-secret-key: both or neither (connect = true).
    curve_server_key: Optional[Path] = Field(default=None, description="the proxy's public certificate (.key)")
    curve_secret_key: Optional[Path] = Field(default=None, description="this client's certificate (.key_secret)")
    # CurveZMQ on this publisher itself (it binds): its certificate and the folder of allowed subscribers' keys.
    curve_server_secret_key: Optional[Path] = Field(default=None, description="own certificate (.key_secret)")
    curve_clients: Optional[Path] = Field(default=None, description="folder of allowed clients' .key files")
    # Lossless sinks next to PUB (vidinfer/publish/sinks.py): PUSH blocks the pipeline when its consumer lags.
    reliable_endpoint: Optional[str] = Field(default=None, min_length=1, description="bound PUSH endpoint")
    reliable_hwm: int = Field(default=1000, ge=1, description="messages queued for the PUSH consumer before blocking")
    file: Optional[Path] = Field(default=None, description="append every message here (msgpack records)")

    @model_validator(mode="after")
    def _curve_pair(self) -> PublishSpec:
        if (self.curve_server_key is None) != (self.curve_secret_key is None):
            raise ValueError("give both curve_server_key (the proxy's .key) and curve_secret_key "
                             "(this publisher's .key_secret) for CurveZMQ, or neither")
        if (self.curve_server_secret_key is None) != (self.curve_clients is None):
            raise ValueError("give both curve_server_secret_key (this publisher's .key_secret) and curve_clients "
                             "(the folder of allowed subscribers' .key files) for CurveZMQ, or neither")
        if self.curve_server_secret_key is not None and self.curve_server_key is not None:
            raise ValueError("curve_server_secret_key (a bound, secured publisher) and curve_server_key (connecting "
                             "to a secured proxy) exclude each other; keep the one that matches connect")
        return self


class ShardSpec(_Spec):
    """This process's share of the streams: shard ``index`` of ``count`` (see vidinfer/sharding.py)."""

    index: int = Field(ge=0, description="0 .. count-1")
    count: int = Field(ge=1, description="how many processes share the stream list")

    @model_validator(mode="after")
    def _in_range(self) -> ShardSpec:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} is out of range for {self.count} shards; "
                             f"use an index from 0 to {self.count - 1}")
        return self


class MetricsSpec(_Spec):
    """The Prometheus endpoint of `vidinfer run` (/metrics, /healthz, /readyz); port 0 = off."""

    port: int = Field(default=0, ge=0, le=65535, description="0: no endpoint")
    host: str = Field(default="127.0.0.1", min_length=1, description="0.0.0.0 in a container")
    hold_s: float = Field(default=0.0, ge=0, le=86_400,
                          description="keep answering this long after the run ends (last scrape of a file job)")


class TrackerSpec(_Spec):
    """ByteTrack-style association; ids persist per stream."""

    high_score: float = Field(default=0.5, ge=0, le=1)
    low_score: float = Field(default=0.1, ge=0, le=1)
    match_iou: float = Field(default=0.3, gt=0, le=1)
    max_lost_s: float = Field(default=1.0, ge=0)
    max_distance: float = Field(default=1.5, ge=0, description="box sizes; 0 turns distance matching off")
    detect_cuts: bool = Field(default=True, description="reset tracks at hard cuts between camera shots")


class TextSpec(_Spec):
    """Reading text in frames (PP-OCR models: detector, orientation, recogniser)."""

    det_model: str = "ppocr:det"
    cls_model: str = "ppocr:cls"
    orientation: bool = Field(default=True, description="run the 0/180 degree orientation classifier")
    rec_model: str = "ppocr:rec"
    limit_side: int = Field(default=960, ge=32, description="longer side of the frame for text detection")
    min_text_height: float = Field(default=12.0, ge=0, description="source pixels; smaller text is ignored")
    interval_s: float = Field(default=0.0, ge=0, description="read each stream's text at most this often "
                              "(stream seconds; 0: every analysed frame); between reads the brands read are "
                              "held, moving with the camera, until the next read, a cut or a discontinuity")
    background: bool = Field(default=False, description="with interval_s: a read that falls due runs on a "
                             "reader thread while the frame goes on with the held text (live feeds: no frame "
                             "waits for a due read; results then depend on timing)")
    intra_op_threads: int = Field(default=0, ge=0)


class BrandSpec(_Spec):
    """A sponsor to measure."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    logo_classes: list[str] = Field(default_factory=list, description="detector classes that show this brand")


class BrandImpactSpec(_Spec):
    """Brand exposure: logos from the detector and names read in the frame, tracked and measured."""

    brands: list[BrandSpec] = Field(min_length=1)
    read_text: bool = True
    text: TextSpec = Field(default_factory=TextSpec)
    match_threshold: float = Field(default=85.0, ge=0, le=100, description="rapidfuzz ratio a text needs")
    publish_interval_s: float = Field(default=5.0, ge=0, description="stream time between live updates")
    min_track_frames: int = Field(default=2, ge=1)
    reference_share: float = Field(default=0.02, gt=0, le=1)
    report_dir: Optional[Path] = Field(default=Path("vidinfer-report"), description="report.json and exposure.png")

    @field_validator("brands")
    @classmethod
    def _unique_brands(cls, brands: list[BrandSpec]) -> list[BrandSpec]:
        if (name := _first_repeat(b.name for b in brands)) is not None:
            raise ValueError(f"brand {name!r} is listed twice; list every brand once (use aliases)")
        return brands


class GpuSpec(_Spec):
    """The GPU backend's settings (used when the pipeline runs on the GPU)."""

    device_id: int = Field(default=0, ge=0, description="CUDA device ordinal")
    engine_cache_dir: Optional[Path] = Field(default=None, description="TensorRT engine cache folder "
                                             "(default: $VIDINFER_ENGINE_CACHE or ~/.cache/vidinfer/engines)")


class PipelineSpec(_Spec):
    """A whole pipeline: streams, models, batching and publishing."""

    name: str = "pipeline"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    max_batch_size: int = Field(default=8, ge=1)
    max_delay_ms: float = Field(default=20.0, ge=0, le=60_000, description="at most a minute")
    streams: list[StreamSpec] = Field(min_length=1)
    detector: DetectorSpec
    classifiers: list[ClassifierSpec] = Field(default_factory=list)
    publish: PublishSpec = Field(default_factory=PublishSpec)
    tracker: Optional[TrackerSpec] = None
    brand_impact: Optional[BrandImpactSpec] = None
    shard: Optional[ShardSpec] = None  # this process's share of the streams
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @field_validator("streams")
    @classmethod
    def _unique_ids(cls, streams: list[StreamSpec]) -> list[StreamSpec]:
        if (sid := _first_repeat(s.id for s in streams)) is not None:
            raise ValueError(f"stream id {sid!r} is used twice; give every stream its own id")
        return streams

    @field_validator("classifiers")
    @classmethod
    def _unique_names(cls, classifiers: list[ClassifierSpec]) -> list[ClassifierSpec]:
        # Results carry each classifier's attribute under its name: a second one would replace the first.
        if (name := _first_repeat(c.name for c in classifiers)) is not None:
            raise ValueError(f"classifier name {name!r} is used twice; give every classifier its own name")
        return classifiers

    @model_validator(mode="after")
    def _classes_known(self) -> PipelineSpec:
        for c in self.classifiers:
            if c.operate_on_classes and self.detector.classes:
                unknown = [n for n in c.operate_on_classes if n not in self.detector.classes]
                if unknown:
                    raise ValueError(f"classifier {c.name!r} operates on {unknown}, which are not detector "
                                     f"classes {self.detector.classes}")
        return self


def _first_repeat(names: Iterable[str]) -> str | None:
    """The first name that occurs a second time, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _check_labels(inline: list[str] | None, path: Path | None, key: str) -> None:
    if inline is None and path is None:
        raise ValueError(f"give either {key} = [...] or labels_file = \"...\"")
    if inline is not None and path is not None:
        raise ValueError(f"give {key} or labels_file, not both")


def _read_labels(inline: list[str] | None, path: Path | None) -> list[str]:
    if inline is not None:
        return list(inline)
    assert path is not None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- TOML loading


def load_pipeline(path: str | Path) -> PipelineSpec:
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


def parse_pipeline(data: dict[str, Any], source: str = "<pipeline>", base_dir: Path | None = None) -> PipelineSpec:
    """Validate a pipeline given as a dict (parsed TOML); relative paths resolve against ``base_dir``."""
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, data)}") from None
    if base_dir is not None:
        _resolve_paths(spec, base_dir)
    check_files(spec, source)
    return spec


def _resolve_paths(spec: PipelineSpec, base: Path) -> None:
    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else Path(os.path.normpath(base / p))

    for s in spec.streams:
        if "://" not in s.url and not Path(s.url).is_absolute():
            s.url = os.path.normpath(base / s.url)
    for key in ("curve_server_key", "curve_secret_key", "curve_server_secret_key", "curve_clients", "file"):
        if getattr(spec.publish, key) is not None:
            setattr(spec.publish, key, rel(getattr(spec.publish, key)) or getattr(spec.publish, key))
    if spec.brand_impact is not None and spec.brand_impact.report_dir is not None:
        spec.brand_impact.report_dir = rel(spec.brand_impact.report_dir) or spec.brand_impact.report_dir
    for m in [spec.detector, *spec.classifiers]:
        if not is_model_name(str(m.model)):  # registry names ("logos:detector") are not paths
            m.model = rel(m.model) or m.model
        if m.labels_file is not None:
            m.labels_file = rel(m.labels_file) or m.labels_file
    if spec.gpu.engine_cache_dir is not None:
        spec.gpu.engine_cache_dir = rel(spec.gpu.engine_cache_dir) or spec.gpu.engine_cache_dir


def check_files(spec: PipelineSpec, source: str = "<pipeline>") -> None:
    """Model and label files must exist before anything starts (stream files fail per stream).

    Registry names (``logos:detector``, ``ppocr:rec``) are resolved to their files here.
    """
    for key, m in [("detector.model", spec.detector),
                   *((f"classifiers[{i}].model", c) for i, c in enumerate(spec.classifiers))]:
        if is_model_name(str(m.model)):
            try:
                m.model = resolve_model(str(m.model))
            except ModelError as exc:
                raise ConfigError(f"{source}: key '{key}': {exc}") from None
    if spec.brand_impact is not None and spec.brand_impact.read_text:
        text = spec.brand_impact.text
        for name in ("det_model", "cls_model", "rec_model"):
            ref = getattr(text, name)
            if name == "cls_model" and not text.orientation:
                continue
            try:
                resolve_model(ref if is_model_name(ref) else Path(ref))
            except ModelError as exc:
                raise ConfigError(f"{source}: key 'brand_impact.text.{name}': {exc}") from None
    items: list[tuple[str, Path | None]] = [("detector.model", spec.detector.model),
                                             ("detector.labels_file", spec.detector.labels_file)]
    for i, c in enumerate(spec.classifiers):
        items += [(f"classifiers[{i}].model", c.model), (f"classifiers[{i}].labels_file", c.labels_file)]
    for key, p in items:
        if p is None:
            continue
        try:
            exists = p.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"{source}: key '{key}': file '{_printable(str(p))}' cannot be read "
                              f"({exc.strerror or exc}); fix the path") from None
        if not exists:
            raise ConfigError(f"{source}: key '{key}': file '{_printable(str(p))}' does not exist; fix the path "
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


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line for the first error: the key, what is expected, and what was found."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = _loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        allowed = sorted(parent_model.model_fields) if parent_model else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"unknown key '{key}'{suggestion}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"key '{key}' is required but missing; add it"
    value = err.get("input")
    found = f", got {value!r}" if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 80 else ""
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = f"key '{key}': " if key else ""
    return f"{where}{_lower_first(msg)}{found}"


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec class that holds the keys at ``loc`` (for listing allowed keys)."""
    model: type[BaseModel] = PipelineSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return None
        model = nested
    return model
