"""The GPU engines (TensorRT, ONNX Runtime's GPU providers) run without a GPU.

Only the GPU modules are fakes, and every test name says so (tests/gpu_fakes.py): a CuPy over NumPy
whose fresh arrays are aligned as CuPy's pool aligns them, a `tensorrt` that refuses what TensorRT
refuses (shapes outside the profile, unaligned addresses, another version's timing cache), and an
onnxruntime-gpu over the CPU wheel with its silent CPU fallback. The models are real ONNX files,
and each engine's outputs are compared with the CPU engine's. Nothing here has run on a GPU.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from gpu_fakes import install_fake_gpu, install_fake_onnxruntime_gpu
from onnx import TensorProto, helper

from vidinfer.engines.onnxruntime import OnnxRuntimeEngine
from vidinfer.errors import ModelError
from vidinfer.testing.shape_models import build_shade_classifier


def _tensorrt(model, tmp_path, max_batch_size=4):
    from vidinfer.engines.tensorrt import TensorRTEngine

    return TensorRTEngine(model, max_batch_size=max_batch_size, cache_dir=tmp_path / "engines")


def _ort_gpu(model, tmp_path, max_batch_size=4):
    from vidinfer.engines.onnxruntime_gpu import OnnxRuntimeGpuEngine

    return OnnxRuntimeGpuEngine(model, max_batch_size=max_batch_size, cache_dir=tmp_path / "ort")


def _fakes(monkeypatch, **ort):
    fakes = install_fake_gpu(monkeypatch, launch=None)
    fakes.onnxruntime = install_fake_onnxruntime_gpu(monkeypatch, **ort)
    return fakes


def _crops(cp, n, side, seed=0):
    """n classifier inputs in fake device memory, bright and dim ones."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, side, side), dtype=np.float32) * rng.choice([0.3, 1.0], (n, 1, 1, 1)).astype(np.float32)
    out = cp.zeros(x.shape, np.float32)
    out[...] = x
    return out


def _cpu(model, x):
    with OnnxRuntimeEngine(model) as cpu:
        return cpu.run(np.ascontiguousarray(np.asarray(x)))


ENGINES = [_tensorrt, _ort_gpu]
ENGINE_IDS = ["tensorrt-with-fake-cuda", "onnxruntime-gpu-with-fake-cuda"]


# ------------------------------------------------------------------- 9: fixed-batch models, padded

@pytest.mark.parametrize("make", ENGINES, ids=ENGINE_IDS)
def test_fixed_batch_classifier_pads_short_chunks_on_the_gpu_engines_with_fake_cuda(make, tmp_path, monkeypatch):
    """A classifier exported with batch 4 gets chunks of 1..4 crops: each runs as 4 rows and comes
    back cut to its own length, with the CPU engine's scores."""
    fakes = _fakes(monkeypatch, tensorrt_ep=True)
    model = build_shade_classifier(tmp_path / "shade4.onnx", batch=4)
    engine = make(model, tmp_path)
    x = _crops(fakes.cupy, 7, 32)
    for rows in (x[:3], x[3:4], x[4:8]):
        out = engine.run(rows)
        assert np.asarray(out["probs"]).shape == (len(rows), 2)
        np.testing.assert_allclose(np.asarray(out["probs"]), _cpu(model, rows)["probs"], rtol=1e-5, atol=1e-6)
    engine.close()


def test_fixed_batch_model_chunks_longer_batches_on_fake_onnxruntime_gpu(tmp_path, monkeypatch):
    fakes = _fakes(monkeypatch, tensorrt_ep=True)
    model = build_shade_classifier(tmp_path / "shade4.onnx", batch=4)
    engine = _ort_gpu(model, tmp_path, max_batch_size=8)
    session = fakes.onnxruntime.sessions[-1]
    # The TensorRT EP's profile is 4..4: the batch is a static dimension.
    trt_ep = dict(p for p in session.requested if isinstance(p, tuple))["TensorrtExecutionProvider"]
    assert (trt_ep["trt_profile_min_shapes"], trt_ep["trt_profile_max_shapes"]) == ("images:4x3x32x32",) * 2
    x = _crops(fakes.cupy, 6, 32)
    out = engine.run(x)
    np.testing.assert_allclose(np.asarray(out["probs"]), _cpu(model, x)["probs"], rtol=1e-5, atol=1e-6)


def test_tensorrt_refused_input_shape_is_one_sentence_with_fake_cuda(tmp_path, monkeypatch):
    fakes = _fakes(monkeypatch)
    engine = _tensorrt(build_shade_classifier(tmp_path / "shade.onnx"), tmp_path, max_batch_size=4)
    with pytest.raises(ModelError) as err:
        engine.run(_crops(fakes.cupy, 6, 32))
    assert str(err.value) == ("TensorRT refused input shape [6, 3, 32, 32] for 'images' of shade.onnx, whose engine "
                              "takes batches of 1 to 4 rows; run at most 4 rows at a time or rebuild the engine with "
                              "a larger max_batch_size")


# ------------------------------------------------- 13: TensorRT addresses are 256-byte aligned

def test_misaligned_classifier_slice_is_copied_to_an_aligned_buffer_on_fake_tensorrt(tmp_path, monkeypatch):
    """A 6x6 crop is 432 bytes: the slice the classifier hands over from row 1 starts 176 bytes
    past a 256-byte boundary, which TensorRT refuses."""
    fakes = _fakes(monkeypatch)
    model = build_shade_classifier(tmp_path / "shade6.onnx", input_size=(6, 6))
    engine = _tensorrt(model, tmp_path)
    x = _crops(fakes.cupy, 8, 6)
    rows = x[1:4]
    assert rows.data.ptr % 256 == 176
    out = engine.run(rows)
    np.testing.assert_allclose(np.asarray(out["probs"]), _cpu(model, rows)["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(engine.run(x[:4])["probs"]), _cpu(model, x[:4])["probs"], rtol=1e-5)


def test_tensorrt_refused_address_is_one_sentence_with_fake_cuda(tmp_path, monkeypatch):
    """A custom CuPy allocator that hands out unaligned memory: the output address is refused."""
    fakes = _fakes(monkeypatch)
    engine = _tensorrt(build_shade_classifier(tmp_path / "shade.onnx"), tmp_path)
    aligned_empty = fakes.cupy.empty
    monkeypatch.setattr(fakes.cupy, "empty", lambda shape, dtype: aligned_empty((int(np.prod(shape)) + 1,),
                                                                               dtype)[1:].reshape(shape))
    with pytest.raises(ModelError) as err:
        engine.run(_crops(fakes.cupy, 2, 32))
    assert re.fullmatch(r"TensorRT refused device address 0x[0-9a-f]+ for tensor 'probs' of shade\.onnx \(it needs "
                        r"256-byte aligned buffers, which CuPy's default memory pool allocates\); remove any custom "
                        r"CuPy allocator set with cupy\.cuda\.set_allocator", str(err.value)), str(err.value)


# --------------------------------------------------------- 7: one timing cache per GPU and version

def test_timing_cache_is_kept_per_gpu_and_tensorrt_version_with_fake_tensorrt(tmp_path, monkeypatch, caplog):
    """A cache folder shared by an H200 and a T4 host: each GPU builds with its own timing cache,
    and a later build on the first GPU reuses what the first build timed."""
    fakes = _fakes(monkeypatch)
    cp, trt = fakes.cupy, fakes.tensorrt
    shade = build_shade_classifier(tmp_path / "shade.onnx")
    shade6 = build_shade_classifier(tmp_path / "shade6.onnx", input_size=(6, 6))

    def on_gpu(name, major, minor):
        monkeypatch.setattr(cp.cuda.runtime, "getDeviceProperties",
                            lambda i: {"name": name.encode(), "major": major, "minor": minor})
        trt.gpu = f"{name} {major}.{minor}"

    with caplog.at_level(logging.WARNING, logger="vidinfer.engines.tensorrt"):
        on_gpu("NVIDIA H200", 9, 0)
        _tensorrt(shade, tmp_path)
        on_gpu("Tesla T4", 7, 5)
        _tensorrt(shade, tmp_path)
        on_gpu("NVIDIA H200", 9, 0)
        _tensorrt(shade6, tmp_path)
    assert not [r for r in caplog.records if "timing cache" in r.getMessage()]
    caches = sorted(p.name for p in (tmp_path / "engines").glob("timing*.cache"))
    assert len(caches) == 2 and "-sm75-" in caches[0] and "-sm90-" in caches[1], caches
    # The third build was handed the first one's timings, and TensorRT took them.
    attached = [c for c in trt.calls if c[0] == "timing_cache"]
    assert b"tactics of shade.onnx" in attached[-1][1]
    assert trt.config.get_timing_cache() is not None


def test_no_timing_cache_file_is_written_when_tensorrt_keeps_none_with_fake_tensorrt(tmp_path, monkeypatch):
    fakes = _fakes(monkeypatch)
    fakes.tensorrt.timing_cache_ok = False
    engine = _tensorrt(build_shade_classifier(tmp_path / "shade.onnx"), tmp_path)
    assert engine.plan_path.is_file() and not list((tmp_path / "engines").glob("timing*"))


# ---------------------------------------------- 10: onnxruntime-gpu that fell back to the CPU

def _installed(monkeypatch, *names):
    """Which ONNX Runtime distributions importlib.metadata reports as installed."""
    import importlib.metadata as md

    real = md.distribution

    def distribution(name):
        if name.startswith("onnxruntime"):
            if name in names:
                return real("onnxruntime")
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", distribution)


def test_ort_gpu_session_that_fell_back_to_the_cpu_is_refused_with_fake_onnxruntime(tmp_path, monkeypatch, models):
    """onnxruntime and onnxruntime-gpu installed together: CUDA is listed, but the session gets only
    the CPU provider. No CUDA pointer is ever bound to it: the engine says which packages to remove."""
    _fakes(monkeypatch, cuda_loads=False)
    _installed(monkeypatch, "onnxruntime", "onnxruntime-gpu")
    with pytest.raises(ModelError) as err:
        _ort_gpu(models / "detector.onnx", tmp_path)
    assert str(err.value) == (
        "ONNX Runtime has no usable CUDA provider here (providers: CPUExecutionProvider) because onnxruntime and "
        "onnxruntime-gpu are both installed, and they cannot coexist (they install the same onnxruntime package); "
        "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu, or use device = 'cpu'")


def test_ort_gpu_session_without_cuda_libraries_is_refused_with_fake_onnxruntime(tmp_path, monkeypatch, models):
    fakes = _fakes(monkeypatch, cuda_loads=False)
    _installed(monkeypatch, "onnxruntime-gpu")
    with pytest.raises(ModelError) as err:
        _ort_gpu(models / "detector.onnx", tmp_path)
    assert str(err.value) == (
        f"ONNX Runtime {fakes.onnxruntime.__version__} created the session for 'detector.onnx' without CUDA "
        "(providers: CPUExecutionProvider): its CUDA provider did not load, usually because the CUDA or cuDNN "
        "libraries it was built for are missing (ONNX Runtime's log names the one); install them or use "
        "device = 'cpu'")


def test_ort_gpu_with_both_packages_and_no_cuda_listed_names_the_conflict_with_fake_onnxruntime(
        tmp_path, monkeypatch, models):
    fakes = _fakes(monkeypatch)
    fakes.onnxruntime.available = ["AzureExecutionProvider", "CPUExecutionProvider"]  # the CPU wheel's files won
    _installed(monkeypatch, "onnxruntime", "onnxruntime-gpu")
    with pytest.raises(ModelError, match=r"^ONNX Runtime has no usable CUDA provider here \(providers: "
                                         r"AzureExecutionProvider, CPUExecutionProvider\) because onnxruntime and "
                                         r"onnxruntime-gpu are both installed"):
        _ort_gpu(models / "detector.onnx", tmp_path)


# -------------------------------------------------------- 11: outputs keep their own dtype

def _typed_outputs_model(path):
    """images [N, 3, 8, 8] -> score float32 [N], label int64 [N], count int32 [N], bright bool [N],
    half float16 [N, 3]."""
    n = "N"
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["means"], axes=[2, 3], keepdims=0),  # [N, 3]
        helper.make_node("ReduceMean", ["means"], ["score"], axes=[1], keepdims=0),
        helper.make_node("ArgMax", ["means"], ["label"], axis=1, keepdims=0),
        helper.make_node("Cast", ["label"], ["count"], to=TensorProto.INT32),
        helper.make_node("Greater", ["score", "half_level"], ["bright"]),
        helper.make_node("Cast", ["means"], ["half"], to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes, "typed_outputs",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, 8, 8])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [n]),
         helper.make_tensor_value_info("label", TensorProto.INT64, [n]),
         helper.make_tensor_value_info("count", TensorProto.INT32, [n]),
         helper.make_tensor_value_info("bright", TensorProto.BOOL, [n]),
         helper.make_tensor_value_info("half", TensorProto.FLOAT16, [n, 3])],
        initializer=[helper.make_tensor("half_level", TensorProto.FLOAT, [], [0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("make", ENGINES, ids=ENGINE_IDS)
def test_int64_bool_and_half_outputs_keep_their_dtype_on_the_gpu_engines_with_fake_cuda(make, tmp_path,
                                                                                         monkeypatch):
    fakes = _fakes(monkeypatch)
    model = _typed_outputs_model(tmp_path / "typed.onnx")
    engine = make(model, tmp_path)
    x = _crops(fakes.cupy, 3, 8)
    out, want = engine.run(x), _cpu(model, x)
    for name in ("score", "label", "count", "bright", "half"):
        got = np.asarray(out[name])
        assert got.dtype == want[name].dtype and got.shape == want[name].shape, name
        np.testing.assert_array_equal(got, want[name], err_msg=name)
