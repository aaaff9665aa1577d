"""Inference engines: run a batch tensor, return named outputs.

`OnnxRuntimeEngine` is the CPU engine and works everywhere. GPU engines (TensorRT, ONNX Runtime
with CUDA) implement the same `Engine` protocol and are imported only when asked for.
"""

from vidinfer.engines.base import Engine, ImageInput
from vidinfer.engines.onnxruntime import OnnxRuntimeEngine

__all__ = ["Engine", "ImageInput", "OnnxRuntimeEngine"]
