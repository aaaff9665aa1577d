"""TensorRT engine logic that runs without a GPU: the cache key, and the build configuration
exercised against a fake `tensorrt` module (a mock at the GPU boundary, named so below).
The real engine has not run on GPU hardware; tools/gpu_check.sh runs it where a GPU exists."""

from dataclasses import replace
from pathlib import Path

import pytest
from gpu_fakes import FakeTensorRT

from vidinfer.engines.tensorrt import (
    BuildSettings,
    build_serialized_engine,
    engine_cache_key,
)
from vidinfer.errors import ModelError

SETTINGS = BuildSettings(model_sha256="ab" * 32, tensorrt_version="10.16.1", gpu_name="NVIDIA H200",
                         compute_capability="9.0", min_batch=1, max_batch=8, input_name="images",
                         channels=3, height=640, width=640)


def test_cache_key_is_stable_and_changes_with_everything_a_plan_depends_on():
    key = engine_cache_key(SETTINGS)
    assert key == engine_cache_key(replace(SETTINGS))
    for change in [dict(model_sha256="cd" * 32), dict(tensorrt_version="11.4.0"), dict(gpu_name="Tesla T4"),
                   dict(compute_capability="7.5"), dict(max_batch=16), dict(height=320)]:
        assert engine_cache_key(replace(SETTINGS, **change)) != key, change


def test_build_uses_one_batch_profile_and_the_timing_cache_with_fake_tensorrt(tmp_path):
    trt = FakeTensorRT()
    plan, timing = build_serialized_engine(trt, tmp_path / "det.onnx", SETTINGS, b"old")
    assert plan == b"PLAN" and timing == b"old+new"
    assert ("network", 0) in trt.calls  # explicit batch: no deprecated flags (removed in TensorRT 11)
    assert ("profile", "images", (1, 3, 640, 640), (8, 3, 640, 640), (8, 3, 640, 640)) in trt.calls
    assert ("pool", "workspace", 2 << 30) in trt.calls
    assert ("timing_cache", b"old", False) in trt.calls
    assert trt.config.builder_optimization_level == 3


def test_parse_failure_is_one_sentence_with_fake_tensorrt(tmp_path):
    with pytest.raises(ModelError) as err:
        build_serialized_engine(FakeTensorRT(parse_ok=False), tmp_path / "det.onnx", SETTINGS)
    assert str(err.value) == ("TensorRT cannot parse 'det.onnx' (In node 3 (Resize): unsupported mode); check the "
                              "ONNX opset and operators, or run this model with engine = 'onnxruntime'")


def test_failed_build_is_one_sentence_with_fake_tensorrt(tmp_path):
    with pytest.raises(ModelError, match=r"^TensorRT could not build an engine for 'det.onnx'"):
        build_serialized_engine(FakeTensorRT(plan=None), tmp_path / "det.onnx", SETTINGS)


def test_importing_the_tensorrt_module_needs_no_gpu_packages():
    import sys

    import vidinfer.engines.tensorrt  # noqa: F401

    assert "tensorrt" not in sys.modules and "cupy" not in sys.modules


def test_ort_gpu_providers_put_tensorrt_first_with_a_batch_profile_and_cache():
    from vidinfer.engines.onnxruntime_gpu import gpu_providers

    providers = gpu_providers(1, Path("/cache"), "images", (3, 640, 640), 8)
    assert [p if isinstance(p, str) else p[0] for p in providers] == \
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = providers[0][1]
    assert trt["trt_profile_min_shapes"] == "images:1x3x640x640"
    assert trt["trt_profile_max_shapes"] == "images:8x3x640x640"
    assert trt["trt_engine_cache_path"] == "/cache" and trt["device_id"] == "1"
    assert gpu_providers(0, Path("/c"), "x", (3, 8, 8), 2, use_tensorrt=False)[0][0] == "CUDAExecutionProvider"


def test_ort_gpu_engine_refuses_cpu_only_onnxruntime_with_one_sentence():
    import onnxruntime as ort

    from vidinfer.engines.onnxruntime_gpu import OnnxRuntimeGpuEngine

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ModelError) as err:
        OnnxRuntimeGpuEngine("models/shapes/detector.onnx")
    assert str(err.value) == ("ONNX Runtime here has no CUDA execution provider (providers: "
                              f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use "
                              "device = 'cpu'")


def test_build_engine_command_without_gpu_packages_is_one_line_and_exit_2():
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorrt") or importlib.util.find_spec("cupy"):
        pytest.skip("GPU packages are installed here")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "vidinfer", "build-engine", str(root / "pipelines" / "brand_impact.toml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "vidinfer: error: build-engine needs TensorRT and CuPy on a machine with an NVIDIA GPU, and tensorrt and "
        "cupy are not installed here; run it where the pipeline will run, after pip install 'vidinfer[gpu]'"]
