"""TensorRT engine: built from the same ONNX file, cached on disk, run on a CUDA stream.

HAS NOT RUN ON GPU HARDWARE. The TensorRT and CuPy calls follow ../shared/reference/gpu_api.md
(checked against the TensorRT 10.16 / 11.x Python bindings' sources); what runs here, on CPU-only
machines, is the cache-key logic and the build-configuration logic against a fake `tensorrt`
module (tests/test_tensorrt_engine.py says so in its test names).

* One optimisation profile over the batch dimension, 1..max_batch_size (optimum at the maximum:
  the batcher fills batches under load).
* A timing cache shared by every build in the cache folder, so rebuilds after a driver or model
  change take seconds, not minutes.
* The engine cache is keyed by everything that makes a plan invalid: the model's SHA-256, the
  TensorRT version, the GPU's name and compute capability, the batch range, the input size.
  Precision is not a key: since TensorRT 11 networks are strongly typed, so precision comes from
  the ONNX file (an FP16 or INT8 Q/DQ copy made by `vidinfer quantize`), and its hash covers it.
* `run_async` enqueues on this engine's stream and returns at once; results are read after the
  stream's event. Two output buffer sets alternate, so the caller can prepare batch k+1 (decode,
  preprocess on another stream) while batch k infers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidinfer.engines.base import ImageInput
from vidinfer.engines.onnxruntime import describe_model_input
from vidinfer.errors import ModelError

__all__ = ["TensorRTEngine", "engine_cache_key", "file_sha256", "BuildSettings", "build_serialized_engine"]

log = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = Path(os.environ.get("VIDINFER_ENGINE_CACHE", Path.home() / ".cache" / "vidinfer" / "engines"))


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class BuildSettings:
    """Everything a TensorRT plan depends on; its key names the cached file."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # e.g. "9.0"
    min_batch: int
    max_batch: int
    input_name: str
    channels: int
    height: int
    width: int
    workspace_bytes: int = 2 << 30
    optimization_level: int = 3


def engine_cache_key(s: BuildSettings) -> str:
    """A stable hex key of the settings (order-independent JSON, SHA-256)."""
    return hashlib.sha256(json.dumps(s.__dict__, sort_keys=True).encode()).hexdigest()[:24]


def build_serialized_engine(trt: Any, onnx_path: Path, s: BuildSettings,
                            timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """Build a plan from ONNX with one batch profile; returns (plan, updated timing cache)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10 and 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name!r} ({errors[:300]}); check the ONNX opset "
                         "and operators, or run this model with engine = 'onnxruntime'")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_bytes)
    config.builder_optimization_level = s.optimization_level
    profile = builder.create_optimization_profile()
    chw = (s.channels, s.height, s.width)
    profile.set_shape(s.input_name, (s.min_batch, *chw), (s.max_batch, *chw), (s.max_batch, *chw))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT could not build an engine for {onnx_path.name!r}; see the TensorRT log "
                         "above, or run this model with engine = 'onnxruntime'")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # concurrent shards building the same plan never see half a file


class TensorRTEngine:
    """An ONNX model compiled by TensorRT (built once, then loaded from the cache).

    Args:
        path: the .onnx file (FP32, FP16 or INT8 Q/DQ).
        input_size: (width, height) when the model's spatial size is dynamic.
        max_batch_size: top of the batch profile.
        cache_dir: where plans and the timing cache live.
        device: CUDA device ordinal.
    """

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], input_size: tuple[int, int] | None = None,
                 max_batch_size: int = 8, cache_dir: str | os.PathLike[str] | None = None, device: int = 0):
        import cupy as cp
        import onnxruntime as ort
        import tensorrt as trt

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {str(self.path)!r} does not exist; check the model path")
        # The ONNX input is read on the CPU with onnxruntime (no GPU work) to check it fits.
        probe = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        inp = describe_model_input(probe.get_inputs(), input_size, f"model {self.path.name!r}")
        del probe
        # A model exported with a fixed batch N gets the profile N..N (TensorRT refuses a range on a
        # static dimension) and every run is N rows, padded. Larger batches would need chunking.
        if inp.batch is not None and inp.batch < max_batch_size:
            raise ModelError(f"model {self.path.name!r} has a fixed batch of {inp.batch} but the pipeline's "
                             f"max_batch_size is {max_batch_size}; set max_batch_size = {inp.batch} or export "
                             "the model with a dynamic batch dimension")
        self.input = ImageInput(inp.name, inp.batch, inp.channels, inp.height, inp.width, inp.dtype)
        self.device = f"cuda:{device}"
        cp.cuda.Device(device).use()
        props = cp.cuda.runtime.getDeviceProperties(device)
        settings = BuildSettings(
            model_sha256=file_sha256(self.path), tensorrt_version=trt.__version__,
            gpu_name=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
            compute_capability=f"{props['major']}.{props['minor']}", min_batch=inp.batch or 1,
            max_batch=inp.batch or max_batch_size, input_name=inp.name, channels=inp.channels,
            height=inp.height, width=inp.width)
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.plan_path = self.cache_dir / f"{self.path.stem}-{engine_cache_key(settings)}.plan"
        plan = self._load_or_build(trt, settings)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ModelError(f"cached engine {self.plan_path} could not be loaded; delete it to rebuild")
        self._context = self._engine.create_execution_context()
        self._trt, self._cp = trt, cp
        self._stream = cp.cuda.Stream(non_blocking=True)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        # -1 marks a dynamic dimension in TensorRT; the adapters expect None, like ONNX Runtime's names.
        self.output_shapes = {n: tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(n))
                              for n in self.output_names}
        self._slot = 0
        self._outputs: list[dict[str, Any]] = [{}, {}]  # double-buffered output sets

    def _load_or_build(self, trt: Any, s: BuildSettings) -> bytes:
        if self.plan_path.is_file():
            log.info("TensorRT engine from cache: %s", self.plan_path)
            return self.plan_path.read_bytes()
        timing_path = self.cache_dir / "timing.cache"
        timing = timing_path.read_bytes() if timing_path.is_file() else b""
        log.warning("building TensorRT engine for %s (batch %d..%d); this takes a while once, then it is cached",
                    self.path.name, s.min_batch, s.max_batch)
        plan, timing = build_serialized_engine(trt, self.path, s, timing)
        _atomic_write(self.plan_path, plan)
        _atomic_write(timing_path, timing)
        return plan

    def run_async(self, batch: Any, after: Any = None) -> tuple[dict[str, Any], Any]:
        """Enqueue ``batch`` (a CuPy (n, C, H, W) array); returns (outputs, event). Read outputs after
        ``event.synchronize()``. ``batch`` must stay alive and unchanged until then. ``after``: a CUDA
        event (e.g. recorded after the kernels that wrote ``batch``) this engine's stream waits for."""
        trt, cp = self._trt, self._cp
        if after is not None:
            self._stream.wait_event(after)
        n = len(batch)
        ctx = self._context
        ctx.set_input_shape(self.input.name, tuple(batch.shape))
        ctx.set_tensor_address(self.input.name, batch.data.ptr)
        outs = self._outputs[self._slot]
        self._slot ^= 1
        for name in self.output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            buf = outs.get(name)
            if buf is None or buf.shape != shape:
                buf = outs[name] = cp.empty(shape, trt.nptype(self._engine.get_tensor_dtype(name)))
            ctx.set_tensor_address(name, buf.data.ptr)
        if not ctx.execute_async_v3(self._stream.ptr):
            raise RuntimeError(f"TensorRT could not enqueue a batch of {n} for {self.path.name}")
        return {k: v[:n] for k, v in outs.items()}, self._stream.record()

    def run(self, batch: Any) -> dict[str, Any]:
        outputs, event = self.run_async(batch)
        event.synchronize()
        return outputs

    def close(self) -> None:
        self._context = None
        self._engine = None
