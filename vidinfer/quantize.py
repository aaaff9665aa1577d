"""Lower-precision copies of a pipeline's detector, as ONNX files that run everywhere.

* INT8: ONNX Runtime's static quantisation in QDQ format (explicit QuantizeLinear/DequantizeLinear
  nodes), calibrated on frames of the pipeline's own streams. TensorRT 10 and 11 build INT8
  engines from exactly this form, and ONNX Runtime runs it on the CPU.
* FP16: weights and arithmetic in float16 with float32 inputs and outputs, so nothing else in the
  pipeline changes. (TensorRT 11 has no FP16 builder flag: precision must come from the file.)

`compare_precisions` measures what each copy changes on the pipeline's frames: detection agreement
with the FP32 model (mAP@0.5 with FP32's boxes as the reference) and inference speed on this
machine's CPU, all measured in one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.batching import Batcher
from vidinfer.config import PipelineConfig
from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
from vidinfer.evaluation import mean_ap
from vidinfer.frame import Frame
from vidinfer.preprocess.letterbox import RGB_0_1, InputConvention, fill_batch_slot
from vidinfer.sources.base import DecodeHints
from vidinfer.sources.pyav import PyAVSource
from vidinfer.stages.detect import Detect

__all__ = ["pipeline_frames", "quantize_int8", "convert_fp16", "compare_precisions", "PrecisionResult"]


def pipeline_frames(spec: PipelineConfig, input_size: tuple[int, int], per_stream: int = 16,
                    sample_fps: float = 2.0) -> list[Frame]:
    """Frames of the pipeline's streams, prepared exactly as the pipeline prepares them."""
    frames: list[Frame] = []
    for stream in spec.streams:
        s = stream.model_copy(update={"sample_fps": sample_fps, "loop": False, "realtime": False,
                                      "keyframes_only": False})
        batcher = Batcher(per_stream, 0)
        source = PyAVSource(s)
        source.start(batcher.add_stream(s.id, per_stream, False), DecodeHints(size=input_size))
        got: list[Frame] = []
        while len(got) < per_stream and (batch := batcher.next_batch()) is not None:
            got += batch.frames
        source.stop()
        batcher.stop()
        source.join(5)
        frames += got[:per_stream]
    return frames


def _tensor(frames: list[Frame], input_size: tuple[int, int], convention: InputConvention = RGB_0_1,
            dtype: Any = np.float32) -> np.ndarray:
    """The detector's input for ``frames``, in the model's own pixel convention (so INT8 calibrates
    on what the model will see)."""
    w, h = input_size
    batch = np.empty((len(frames), 3, h, w), dtype)
    for i, f in enumerate(frames):
        fill_batch_slot(batch, i, f.image, f.letterbox, convention)
    return batch


def quantize_int8(model: Path, out: Path, calibration: np.ndarray, per_channel: bool = True) -> Path:
    """Write an INT8 QDQ copy of ``model`` calibrated on ``calibration`` (N, 3, H, W) float32."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{name: calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = out.with_suffix(".prep.onnx")
    # Shape inference and graph clean-up first, as ONNX Runtime advises. ONNX shape inference is
    # enough for image models (symbolic inference would need sympy).
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    try:
        # Symmetric signed INT8 for weights and activations: what TensorRT's explicit quantisation expects.
        # Only the compute-heavy operators are quantised. The decode head stays float: YOLO exports
        # concatenate pixel coordinates (0..640) with scores (0..1) in one tensor, and one INT8
        # scale for both would round every score to zero.
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    finally:
        prepared.unlink(missing_ok=True)
    return out


def convert_fp16(model: Path, out: Path) -> Path:
    """Write an FP16 copy of ``model`` whose inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(out))
    return out


@dataclass
class PrecisionResult:
    precision: str
    path: str
    size_bytes: int
    map50_vs_fp32: float
    ms_per_image: float
    speedup_vs_fp32: float


def compare_precisions(models: dict[str, Path], frames: list[Frame], det: Detect, batch_size: int,
                       repeats: int = 3) -> list[PrecisionResult]:
    """Run every model on the same frames with ``det``'s post-processing; FP32 (the first entry) is
    the reference."""
    classes = det.class_names()
    engines = {k: OnnxRuntimeEngine(p, det.input_size, det.intra_op_threads) for k, p in models.items()}
    inp = next(iter(engines.values())).input
    tensor = _tensor(frames, (inp.width, inp.height), det.input_convention)
    boxes = [f.letterbox for f in frames]
    results: dict[str, list[Any]] = {}
    timings: dict[str, float] = {}
    for _ in range(repeats):  # interleaved rounds: machine noise hits every precision alike
        for name, engine in engines.items():
            adapter = det.make_adapter(classes, "detector")
            adapter.bind(engine.output_shapes, input_size=(inp.width, inp.height))
            t0 = time.perf_counter()
            out = []
            for s in range(0, len(tensor), batch_size):
                out += adapter.decode(engine.run(tensor[s:s + batch_size]), boxes[s:s + batch_size])
            elapsed = time.perf_counter() - t0
            timings[name] = min(timings.get(name, float("inf")), elapsed)
            results[name] = out
    reference = next(iter(results.values()))
    ref_boxes = [d.xyxy for d in reference]
    ref_cls = [d.class_id for d in reference]
    base = next(iter(timings.values()))
    return [PrecisionResult(name, str(models[name]), Path(models[name]).stat().st_size,
                            round(mean_ap(results[name], ref_boxes, ref_cls, len(classes))[0], 4),
                            round(1000 * timings[name] / len(frames), 3), round(base / timings[name], 3))
            for name in models]
