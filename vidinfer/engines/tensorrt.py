"""TensorRT engine: built from the same ONNX file, cached on disk, run on a CUDA stream.

HAS NOT RUN ON GPU HARDWARE. The TensorRT and CuPy calls follow ../shared/reference/gpu_api.md
(checked against the TensorRT 10.16 / 11.x Python bindings' sources); what runs here, on CPU-only
machines, is the cache-key logic and the build-configuration logic against a fake `tensorrt`
module (tests/test_tensorrt_engine.py says so in its test names).

* One optimisation profile over the batch dimension, 1..max_batch_size (optimum at the maximum:
  the batcher fills batches under load).
* A timing cache per GPU model and TensorRT version in the cache folder (`timing_cache_name`), so
  rebuilds after a model change take seconds, not minutes, and a folder shared by machines with
  different GPUs never hands one GPU's timings to another. A cache TensorRT refuses is replaced by
  a fresh one, with a warning.
* Strongly typed networks (`network_flags`): precision comes from the ONNX file, on TensorRT 10 as
  on 11.
* Fixed-batch plans take exactly N rows: shorter batches are padded to N on the GPU; every input
  and output address is 256-byte aligned (an unaligned slice is copied first), and TensorRT's
  refusals (`set_input_shape`, `set_tensor_address`) are errors that say what to change.
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
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidinfer.engines.base import ImageInput
from vidinfer.engines.onnxruntime import describe_model_input
from vidinfer.errors import ModelError

__all__ = ["TensorRTEngine", "engine_cache_key", "file_sha256", "BuildSettings", "build_serialized_engine",
           "network_flags", "timing_cache_name"]

log = logging.getLogger(__name__)
# IExecutionContext::setTensorAddress: "The pointer must have at least 256-byte alignment"
# (include/NvInferRuntime.h, TensorRT 10.16 and 11.1); it returns false otherwise.
TENSOR_ALIGNMENT = 256
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


def timing_cache_name(s: BuildSettings) -> str:
    """The timing cache's file name in the cache folder: one per GPU model, compute capability and
    TensorRT version, the things its timings are only valid for."""
    key = hashlib.sha256(json.dumps([s.gpu_name, s.compute_capability, s.tensorrt_version]).encode()).hexdigest()
    version = re.sub(r"[^A-Za-z0-9.]+", "_", s.tensorrt_version)
    return f"timing-trt{version}-sm{s.compute_capability.replace('.', '')}-{key[:12]}.cache"


def _major(version: str) -> int:
    m = re.match(r"\d+", str(version))
    return int(m.group()) if m else 0


def network_flags(trt: Any) -> int:
    """`create_network` flags for a strongly typed network (precision from the ONNX file's types).

    TensorRT 10: strong typing is opt-in, ``1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED``
    (``kSTRONGLY_TYPED = 1``; ``create_network(0)`` is weakly typed, so an FP16 ONNX may run in FP32).
    TensorRT 11: every network is strongly typed; the flag survives only as a deprecated, ignored
    alias (``kSTRONGLY_TYPED = 0``), so none is passed. (include/NvInfer.h, NVIDIA/TensorRT tags
    v10.16 and v11.1; python/src/infer/pyCore.cpp binds ``NetworkDefinitionCreationFlag``.)
    """
    major = _major(trt.__version__)
    if major >= 11:
        return 0
    if major < 10:
        raise ModelError(f"TensorRT {trt.__version__} is too old for vidinfer, which builds strongly typed "
                         "networks with TensorRT 10 or 11; pip install 'tensorrt>=10'")
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _attach_timing_cache(config: Any, blob: bytes, model: str) -> None:
    """Give the build the saved timing cache, or a fresh one when TensorRT refuses it.

    ``set_timing_cache`` returns False when the cache's header does not match this device (pyCoreDoc.h:
    "A failure will be reported if the CUDA device property in the provided cache is different"); the
    behaviour of ``create_timing_cache`` on a damaged blob is not documented, so None is handled too.
    """
    if blob:
        cache = config.create_timing_cache(blob)
        if cache is not None and config.set_timing_cache(cache, False):
            return
        log.warning("TensorRT refused the saved timing cache (another GPU or TensorRT version made it, or it is "
                    "damaged); building %s with a fresh one", model)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("TensorRT would not take a fresh timing cache; building %s without one", model)


def build_serialized_engine(trt: Any, onnx_path: Path, s: BuildSettings,
                            timing_cache: bytes = b"") -> tuple[bytes, bytes]:
    """Build a plan from ONNX with one batch profile; returns (plan, updated timing cache), the
    cache empty when the build had none."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))  # explicit batch: the only mode in 10 and 11
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
    _attach_timing_cache(config, timing_cache, onnx_path.name)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT could not build an engine for {onnx_path.name!r}; see the TensorRT log "
                         "above, or run this model with engine = 'onnxruntime'")
    # get_timing_cache(): "or `None` if no timing cache is set" (pyCoreDoc.h).
    cache = config.get_timing_cache()
    blob = cache.serialize() if cache is not None else None
    return bytes(plan), bytes(blob) if blob is not None else b""


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
        self.timing_cache_path = self.cache_dir / timing_cache_name(settings)
        self._batch_range = (settings.min_batch, settings.max_batch)
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
        self._staging: list[Any] = [None, None]  # per slot: padded or aligned copies of input batches

    def _load_or_build(self, trt: Any, s: BuildSettings) -> bytes:
        if self.plan_path.is_file():
            log.info("TensorRT engine from cache: %s", self.plan_path)
            return self.plan_path.read_bytes()
        timing_path = self.timing_cache_path
        timing = timing_path.read_bytes() if timing_path.is_file() else b""
        log.warning("building TensorRT engine for %s (batch %d..%d); this takes a while once, then it is cached",
                    self.path.name, s.min_batch, s.max_batch)
        plan, timing = build_serialized_engine(trt, self.path, s, timing)
        _atomic_write(self.plan_path, plan)
        if timing:
            _atomic_write(timing_path, timing)
        return plan

    def _input_tensor(self, batch: Any, slot: int) -> Any:
        """``batch`` itself when TensorRT can read it as is, else a copy in this slot's staging buffer:
        padded with zero rows to a fixed-batch plan's N, and/or moved to an aligned, contiguous
        address. The copy runs on this engine's stream (after the ``after`` event)."""
        n = len(batch)
        rows = self.input.batch or n
        if n > rows:
            raise self._refused(tuple(batch.shape))
        if n == rows and batch.flags.c_contiguous and batch.data.ptr % TENSOR_ALIGNMENT == 0:
            return batch
        cp = self._cp
        with self._stream:  # allocation, copy and padding all ordered on this engine's stream
            buf = self._staging[slot]
            if buf is None or len(buf) < rows or buf.shape[1:] != batch.shape[1:] or buf.dtype != batch.dtype:
                # CuPy's pool hands out 512-byte aligned blocks (cupy/cuda/memory.pyx), so buf[:rows] is aligned
                buf = self._staging[slot] = cp.empty((max(rows, self._batch_range[1]), *batch.shape[1:]),
                                                     batch.dtype)
            buf = buf[:rows]
            buf[:n] = batch
            if n < rows:
                buf[n:] = 0
        return buf

    def _refused(self, shape: tuple[int, ...]) -> ModelError:
        lo, hi = self._batch_range
        rows = f"{lo}" if lo == hi else f"{lo} to {hi}"
        return ModelError(f"TensorRT refused input shape {list(shape)} for {self.input.name!r} of {self.path.name}, "
                          f"whose engine takes batches of {rows} rows; run at most {hi} rows at a time or rebuild "
                          "the engine with a larger max_batch_size")

    def _set_address(self, name: str, ptr: int) -> None:
        if not self._context.set_tensor_address(name, ptr):
            raise ModelError(f"TensorRT refused device address {ptr:#x} for tensor {name!r} of {self.path.name} "
                             f"(it needs {TENSOR_ALIGNMENT}-byte aligned buffers, which CuPy's default memory pool "
                             "allocates); remove any custom CuPy allocator set with cupy.cuda.set_allocator")

    def run_async(self, batch: Any, after: Any = None) -> tuple[dict[str, Any], Any]:
        """Enqueue ``batch`` (a CuPy (n, C, H, W) array); returns (outputs, event). Read outputs after
        ``event.synchronize()``. ``batch`` must stay alive and unchanged until then. ``after``: a CUDA
        event (e.g. recorded after the kernels that wrote ``batch``) this engine's stream waits for."""
        trt, cp = self._trt, self._cp
        if after is not None:
            self._stream.wait_event(after)
        n = len(batch)
        ctx = self._context
        slot = self._slot
        self._slot ^= 1
        tensor = self._input_tensor(batch, slot)
        # set_input_shape returns False outside the profile (a fixed-batch plan's N..N included).
        if not ctx.set_input_shape(self.input.name, tuple(tensor.shape)):
            raise self._refused(tuple(tensor.shape))
        self._set_address(self.input.name, tensor.data.ptr)
        outs = self._outputs[slot]
        for name in self.output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            buf = outs.get(name)
            if buf is None or buf.shape != shape:
                buf = outs[name] = cp.empty(shape, trt.nptype(self._engine.get_tensor_dtype(name)))
            self._set_address(name, buf.data.ptr)
        if not ctx.execute_async_v3(self._stream.ptr):
            raise RuntimeError(f"TensorRT could not enqueue a batch of {n} for {self.path.name}")
        return {k: outs[k][:n] for k in self.output_names}, self._stream.record()

    def run(self, batch: Any) -> dict[str, Any]:
        outputs, event = self.run_async(batch)
        event.synchronize()
        return outputs

    def close(self) -> None:
        self._context = None
        self._engine = None
