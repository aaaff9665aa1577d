"""TensorRT engine logic that runs without a GPU: the cache key, and the build configuration
exercised against a fake `tensorrt` module (a mock at the GPU boundary, named so below).
The real engine has not run on GPU hardware; tools/gpu_check.sh runs it where a GPU exists."""

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
from gpu_fakes import FakeTensorRT

from vidinfer.engines.tensorrt import (
    BuildSettings,
    build_serialized_engine,
    engine_cache_key,
    timing_cache_name,
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


def _timing_blob(trt, *entries):
    """A serialised timing cache as ``trt`` makes them (its version and GPU in the header)."""
    cache = trt.Builder(None).create_builder_config().create_timing_cache(b"")
    cache.entries += list(entries)
    return cache.serialize()


def test_build_uses_one_batch_profile_and_the_timing_cache_with_fake_tensorrt(tmp_path):
    trt = FakeTensorRT()
    old = _timing_blob(trt, "tactics of an earlier build")
    grown = _timing_blob(trt, "tactics of an earlier build", "tactics of det.onnx")
    plan, timing = build_serialized_engine(trt, tmp_path / "det.onnx", SETTINGS, old)
    assert plan == b"PLAN" and timing == grown  # the saved cache was used and grew
    assert ("profile", "images", (1, 3, 640, 640), (8, 3, 640, 640), (8, 3, 640, 640)) in trt.calls
    assert ("pool", "workspace", 2 << 30) in trt.calls
    assert ("timing_cache", old, False) in trt.calls
    assert trt.config.builder_optimization_level == 3


@pytest.mark.parametrize("version, flags", [("10.16.1", 1 << 1), ("11.4.0", 0)])
def test_networks_are_strongly_typed_on_tensorrt_10_and_11_with_fake_tensorrt(tmp_path, version, flags):
    """On 10, create_network(0) is weakly typed (an FP16 ONNX may run in FP32): STRONGLY_TYPED (= 1)
    is asked for; 11 types every network strongly and keeps the flag only as an ignored 0."""
    trt = FakeTensorRT(version=version)
    build_serialized_engine(trt, tmp_path / "det.onnx", replace(SETTINGS, tensorrt_version=version))
    assert [(n.flags, n.strongly_typed) for n in trt.networks] == [(flags, True)]


def test_tensorrt_older_than_10_is_refused_with_one_sentence_with_fake_tensorrt(tmp_path):
    with pytest.raises(ModelError) as err:
        build_serialized_engine(FakeTensorRT(version="8.6.1"), tmp_path / "det.onnx", SETTINGS)
    assert str(err.value) == ("TensorRT 8.6.1 is too old for vidinfer, which builds strongly typed networks with "
                              "TensorRT 10 or 11; pip install 'tensorrt>=10'")


def test_a_timing_cache_from_another_tensorrt_is_replaced_by_a_fresh_one_with_a_warning_with_fake_tensorrt(
        tmp_path, caplog):
    trt = FakeTensorRT()
    other = _timing_blob(FakeTensorRT(version="10.8.0-fake"), "tactics timed by 10.8")
    with caplog.at_level(logging.WARNING, logger="vidinfer.engines.tensorrt"):
        plan, timing = build_serialized_engine(trt, tmp_path / "det.onnx", SETTINGS, other)
    assert plan == b"PLAN" and timing == _timing_blob(trt, "tactics of det.onnx")  # this version's, fresh
    assert [r.getMessage() for r in caplog.records] == [
        "TensorRT refused the saved timing cache (another GPU or TensorRT version made it, or it is damaged); "
        "building det.onnx with a fresh one"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vidinfer.engines.tensorrt"):  # a damaged file: the same
        assert build_serialized_engine(trt, tmp_path / "det.onnx", SETTINGS, b"\x00garbage")[1] == timing
    assert len(caplog.records) == 1


def test_a_build_without_a_timing_cache_returns_none_to_save_with_fake_tensorrt(tmp_path, caplog):
    """get_timing_cache() is None when no cache could be attached: nothing to serialise."""
    with caplog.at_level(logging.WARNING, logger="vidinfer.engines.tensorrt"):
        plan, timing = build_serialized_engine(FakeTensorRT(timing_cache=False), tmp_path / "det.onnx", SETTINGS)
    assert plan == b"PLAN" and timing == b""
    assert caplog.records[-1].getMessage() == ("TensorRT would not take a fresh timing cache; building det.onnx "
                                               "without one")


def test_timing_cache_file_is_named_by_gpu_and_tensorrt_version():
    name = timing_cache_name(SETTINGS)
    assert re.fullmatch(r"timing-trt10\.16\.1-sm90-[0-9a-f]{12}\.cache", name), name
    for change in [dict(tensorrt_version="11.4.0"), dict(gpu_name="Tesla T4"), dict(compute_capability="7.5")]:
        assert timing_cache_name(replace(SETTINGS, **change)) != name, change
    for same in [dict(model_sha256="cd" * 32), dict(max_batch=16), dict(height=320)]:  # shared by every model
        assert timing_cache_name(replace(SETTINGS, **same)) == name, same


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
