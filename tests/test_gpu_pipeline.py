"""The GPU backend wired into `Pipeline`, run without a GPU.

The real Pipeline runs with device = "gpu" over the real sample clips; only the GPU modules are
fakes (tests/gpu_fakes.py, and every test name says "fake"): CuPy over NumPy with the kernels
executed from their .cu sources on the CPU, a PyNvVideoCodec (or VPF PyNvCodec) decoding with
PyAV's software decoder, and a TensorRT whose runtime is ONNX Runtime. Nothing here has run on a
GPU; tools/gpu_check.sh runs the same pipeline on one.
"""

from __future__ import annotations

import importlib.util
import re
import threading

import av
import numpy as np
import pytest
from gpu_fakes import FakeVpf, install_fake_gpu, kernel_emulator
from ground_truth import CLIPS, assert_matches_gt, load_gt

import vidinfer as vi
from vidinfer.config import GpuSpec, StreamSpec
from vidinfer.devices import Capability, plan_device
from vidinfer.errors import ConfigError
from vidinfer.sources.nvdec import VpfDecoder, annexb_filter, annexb_packets
from vidinfer.testing.shape_models import SHADE_LABELS, SHAPE_CLASSES

GPU_PACKAGES = ("cupy", "PyNvVideoCodec", "PyNvCodec", "tensorrt")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return kernel_emulator(tmp_path_factory.mktemp("kernels"))


def _pipeline(models, tmp_path, streams, classifiers=True, track=False, extra=(), device_id=0):
    """A device = "gpu" pipeline over sample clips (or files: a value with a suffix); results per
    stream collected by a callback sink."""
    results: dict[str, list] = {}
    stages = [vi.Detect(model=models / "detector.onnx", classes=SHAPE_CLASSES, conf_threshold=0.5, iou_threshold=0.5)]
    if classifiers:
        stages.append(vi.Classify(name="shade", model=models / "shade.onnx", labels=SHADE_LABELS))
    if track:
        stages.append(vi.Track())
    sink = vi.CallbackSink(on_frame=lambda f, layers: results.setdefault(f.stream_id, []).append((f, layers["objects"])))
    urls = {sid: str(clip if str(clip).endswith((".mp4", ".webm")) else CLIPS / f"{clip}.mp4")
            for sid, clip in streams.items()}
    pipeline = vi.Pipeline([StreamSpec(id=sid, url=url) for sid, url in urls.items()],
                           [*stages, *extra], [sink], name="gpu", device="gpu", max_batch_size=4, max_delay_ms=5,
                           gpu=GpuSpec(engine_cache_dir=tmp_path / "engines", device_id=device_id))
    return pipeline, results


def _run(*args, **kw):
    pipeline, results = _pipeline(*args, **kw)
    return pipeline.run(), results


def test_gpu_pipeline_with_fake_cuda_modules_finds_every_box_of_the_sample_clips(models, tmp_path, monkeypatch,
                                                                               emulator):
    fakes = install_fake_gpu(monkeypatch, emulator)
    streams = {"cam-a": "shapes_a", "pitch": "shapes_1080p"}
    report, results = _run(models, tmp_path, streams, track=True)
    assert report.exit_code == 0 and report.device == "gpu"
    assert report.backends["decoder"].startswith("nvdec (PyNvVideoCodec") and report.backends["detector"].startswith("tensorrt")
    for sid, clip in streams.items():
        gt = load_gt(clip)
        got = results[sid]
        assert [f.frame_no for f, _ in got] == sorted(gt), f"{sid}: frames missing or repeated"
        assert report.streams[sid].state == "ended" and report.streams[sid].frames_analysed == len(gt)
        for f, det in got:
            assert type(f.image).__name__ == "DeviceNV12"  # the frame stayed "on the device"
            assert_matches_gt(det.xyxy, det.class_id, gt[f.frame_no], tol_px=2.0,
                              shade=(det.attributes["shade"].label_id, SHADE_LABELS), where=f"{sid} {f.frame_no}")
        # The tracker's cut detection read host copies: no false cut, one id per object all along.
        ids = {int(t) for _, det in got for t in det.track_id}
        assert len(ids) == len(gt[0]), f"{sid}: track ids {sorted(ids)}"
    frames = sum(len(load_gt(c)) for c in streams.values())
    assert fakes.cupy.launches["letterbox_nv12_f32"] == frames  # one fused kernel per frame
    assert fakes.cupy.launches["crop_resize_nv12_f32"] > 0
    assert fakes.tensorrt.executed >= report.batches
    assert len(list((tmp_path / "engines").glob("detector-*.plan"))) == 1  # built once, cached on disk
    assert [c[0] for c in fakes.tensorrt.calls].count("build") == 2  # detector and classifier


def test_gpu_decoder_fault_with_fake_pynvvideocodec_recreates_only_that_stream_and_is_counted(models, tmp_path,
                                                                                          monkeypatch, emulator):
    from gpu_fakes import DecodingNvc
    from prometheus_client import generate_latest

    from vidinfer.metrics import PipelineMetrics

    # The clips' time base is 1/12800 s: frame 30 has pts 30 * 512. Whichever stream's decoder
    # meets it first fails once on it.
    install_fake_gpu(monkeypatch, emulator, nvc=DecodingNvc(fail_pts={30 * 512}))
    pipeline, _ = _pipeline(models, tmp_path, {"cam-b": "shapes_b", "cam-c": "shapes_c"}, classifiers=False)
    metrics = PipelineMetrics(pipeline)
    report = pipeline.run()
    faulty = [s for s in report.streams.values() if s.decoder_recreations]
    assert len(faulty) == 1 and faulty[0].decode_errors == 1 and faulty[0].state == "ended"
    healthy = next(s for s in report.streams.values() if not s.decoder_recreations)
    assert healthy.frames_analysed == 100 and healthy.decode_errors == 0
    # The faulty stream lost the frames up to the next keyframe (frame 50), no more.
    assert 70 <= faulty[0].frames_analysed < 100, faulty[0]
    text = generate_latest(metrics.registry).decode()
    assert f'vidinfer_decoder_recreations_total{{stream="{faulty[0].stream_id}"}} 1.0' in text
    assert f'vidinfer_nvdec_frames_decoded_total{{stream="{healthy.stream_id}"}} 100.0' in text
    assert 'vidinfer_backend_info{backend="fused NV12 letterbox kernel (CuPy)",stage="preprocessing"} 1.0' in text
    assert 'vidinfer_device_info{device="gpu"} 1.0' in text


def test_gpu_pipeline_on_gpu_1_run_from_another_thread_with_fake_two_gpu_cuda_modules(models, tmp_path, monkeypatch,
                                                                                    emulator):
    """gpu.device_id = 1, the pipeline run from a thread of its own (CUDA's current device is per
    thread: 0 there and on the source threads): every frame is decoded and preprocessed on GPU 1,
    whose streams refuse any other current device, and every box is found. A 4:4:4 stream beside it
    fails alone, with its reason, when it opens."""
    from gpu_fakes import DecodingNvc, encode_clip

    fakes = install_fake_gpu(monkeypatch, emulator, nvc=DecodingNvc(devices=2))
    fakes.cupy.device_count = 2
    bad = encode_clip(tmp_path / "yuv444p.mp4", pix_fmt="yuv444p")
    pipeline, results = _pipeline(models, tmp_path, {"cam-d": "shapes_d", "pro": bad}, classifiers=False,
                                  device_id=1)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("report", pipeline.run()))
    runner.start()
    runner.join(120)
    report = done["report"]
    assert report.streams["cam-d"].state == "ended" and report.streams["pro"].state == "failed"
    assert report.streams["pro"].reason.endswith("its chroma is 4:4:4 (yuv444p) (NVDEC gives YUV444) and the GPU "
                                                 "preprocessing kernels read 4:2:0 only; run it with device = 'cpu'")
    gt = load_gt("shapes_d")
    assert [f.frame_no for f, _ in results["cam-d"]] == sorted(gt)
    for f, det in results["cam-d"]:
        assert_matches_gt(det.xyxy, det.class_id, gt[f.frame_no], where=f"cam-d {f.frame_no}")
    assert {kw["gpuid"] for kw in fakes.nvc.created} == {1}


def test_vpf_decoder_with_fake_pynvcodec_gives_the_frames_pyav_decodes(monkeypatch):
    import sys

    from gpu_fakes import fake_cupy

    cp = fake_cupy(launch=None)
    vpf = FakeVpf()
    monkeypatch.setitem(sys.modules, "PyNvCodec", vpf)
    with av.open(str(CLIPS / "shapes_a.mp4")) as c:
        vs = c.streams.video[0]
        dec = VpfDecoder("h264", 640, 360, gpu=0, cupy=cp)
        bsf = annexb_filter(vs)
        out = []
        for packet in c.demux(vs):
            for p in annexb_packets(bsf, packet):
                out += list(dec.decode(p))
        out += list(dec.flush())
    with av.open(str(CLIPS / "shapes_a.mp4")) as c:
        expected = [(f.to_ndarray(format="nv12"), f.pts) for f in c.decode(video=0)]
    assert vpf.created == [(640, 360, "NV12", "H264", 0)]
    assert len(out) == len(expected) == 100
    for (nv12, pts), (want, want_pts) in zip(out, expected):
        assert pts == want_pts and nv12.shape == (540, 640)  # the pitch padding is gone
        assert np.array_equal(np.asarray(nv12), want)
    assert dec.recreated == 0


def test_gpu_pipeline_with_fake_vpf_pynvcodec_when_pynvvideocodec_is_absent(models, tmp_path, monkeypatch, emulator):
    install_fake_gpu(monkeypatch, emulator, nvc=FakeVpf())
    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed here")
    report, results = _run(models, tmp_path, {"cam-d": "shapes_d"}, classifiers=False)
    assert report.backends["decoder"].startswith("nvdec (PyNvCodec")
    gt = load_gt("shapes_d")
    assert [f.frame_no for f, _ in results["cam-d"]] == sorted(gt)
    for f, det in results["cam-d"]:
        assert_matches_gt(det.xyxy, det.class_id, gt[f.frame_no], where=f"cam-d {f.frame_no}")


def _missing_here():
    present = [m for m in GPU_PACKAGES if importlib.util.find_spec(m) is not None]
    if present:
        pytest.skip(f"GPU packages installed here: {present}")


def test_auto_picks_cpu_here_and_names_what_is_missing():
    _missing_here()
    plan = plan_device("auto")
    assert plan.device == "cpu"
    assert plan.reason.startswith("auto: CPU backend chosen because this machine lacks a usable CUDA device "
                                  "(Python package 'cupy' is not installed), an NVDEC decoder")
    assert "neither tensorrt nor onnxruntime-gpu is installed" in plan.reason
    assert plan.stages["decoder"] == "pyav (FFmpeg software decode)" and plan.stages["detector"] == "onnxruntime (CPU)"


def test_device_gpu_names_exactly_what_is_missing_and_the_fix():
    caps = [Capability("device", "cuda", True, "1 device(s), first: NVIDIA H200"),
            Capability("decoder", "nvdec (PyNvVideoCodec)", False, "Python package 'PyNvVideoCodec' is not installed"),
            Capability("decoder", "nvdec (VPF PyNvCodec)", False, "Python package 'PyNvCodec' is not installed"),
            Capability("engine", "tensorrt", True, "10.16.1"),
            Capability("engine", "onnxruntime-gpu", False, "no CUDA provider")]
    with pytest.raises(ConfigError) as err:
        plan_device("gpu", caps)
    assert str(err.value) == ("device = 'gpu' needs an NVDEC decoder (neither PyNvVideoCodec nor VPF's PyNvCodec is "
                              "installed); pip install 'vidinfer[gpu]' on a machine with an NVIDIA GPU and driver, or "
                              "use device = 'cpu' or 'auto'")
    caps[2] = Capability("decoder", "nvdec (VPF PyNvCodec)", True, "installed")
    plan = plan_device("auto", caps)
    assert (plan.device, plan.decoder, plan.engine) == ("gpu", "PyNvCodec", "tensorrt")


def test_device_gpu_here_exits_2_with_one_line(models, tmp_path):
    import subprocess
    import sys

    _missing_here()
    toml = tmp_path / "gpu.toml"
    toml.write_text(f'device = "gpu"\n[[streams]]\nid = "a"\nurl = "{CLIPS / "shapes_a.mp4"}"\n'
                    f'[[stages]]\ntype = "detect"\nmodel = "{models / "detector.onnx"}"\n'
                    'classes = ["red", "green", "blue"]\n')
    done = subprocess.run([sys.executable, "-m", "vidinfer", "run", str(toml)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"vidinfer: error: {re.escape(str(toml))}: device = 'gpu' needs a usable CUDA device \(Python package "
        r"'cupy' is not installed\), .*; pip install 'vidinfer\[gpu\]' on a machine with an NVIDIA GPU and driver, "
        r"or use device = 'cpu' or 'auto'", lines[0]), lines


def test_info_lists_what_auto_would_pick_for_each_stage(capsys):
    from vidinfer.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    plan = plan_device("auto")
    assert f"device = 'auto' runs on: {plan.device} ({plan.reason})" in out
    for stage, backend in plan.stages.items():
        assert re.search(rf"^  {stage}\s+{re.escape(backend)}$", out, re.MULTILINE), out


def test_tensorrt_with_fake_cuda_modules_builds_a_fixed_batch_model_at_its_batch(tmp_path, monkeypatch, emulator):
    from vidinfer.engines.tensorrt import TensorRTEngine
    from vidinfer.errors import ModelError
    from vidinfer.testing.shape_models import build_shape_detector

    fakes = install_fake_gpu(monkeypatch, emulator)
    model = build_shape_detector(tmp_path / "fixed.onnx", batch=4)
    engine = TensorRTEngine(model, max_batch_size=4, cache_dir=tmp_path / "engines")
    profiles = [c for c in fakes.tensorrt.calls if c[0] == "profile"]
    assert [(lo[0], opt[0], hi[0]) for _, _, lo, opt, hi in profiles] == [(4, 4, 4)]
    assert engine.input.batch == 4 and engine.input.padded_size(3) == 4
    with pytest.raises(ModelError) as err:
        TensorRTEngine(model, max_batch_size=8, cache_dir=tmp_path / "engines")
    assert str(err.value) == ("model 'fixed.onnx' has a fixed batch of 4 but the pipeline's max_batch_size is 8; "
                              "set max_batch_size = 4 or export the model with a dynamic batch dimension")


def test_gpu_pipeline_with_fake_cupy_copies_frames_to_the_host_only_for_stages_that_ask_once_per_batch(
        models, tmp_path, monkeypatch, emulator):
    """Host copies of whole NV12 frames, counted on the fake CuPy's device arrays: none for stages
    that read no pixels; one per frame when stages read host pixels, however many of them."""
    fakes = install_fake_gpu(monkeypatch, emulator)
    seen: dict[str, list] = {"none": [], "host": []}

    @vi.stage(pixels="none")
    def count_boxes(batch):
        seen["none"] += [type(f.image).__name__ for f in batch.frames]

    def nv12_copies():
        return sum(1 for shape, dtype in fakes.host_copies if dtype == np.uint8 and shape == (540, 640))

    report, _ = _run(models, tmp_path, {"cam-a": "shapes_a"}, classifiers=False, extra=[count_boxes])
    assert report.exit_code == 0 and report.frames == 100
    assert nv12_copies() == 0  # boxes only: every frame stayed on the "device"
    assert set(seen["none"]) == {"DeviceNV12"}

    @vi.stage(pixels="host", name="reads_pixels")
    def read_pixels(batch):
        seen["host"] += [type(f.image).__name__ for f in batch.frames]

    @vi.stage(pixels="host", name="reads_pixels_too")
    def read_pixels_too(batch):
        assert all(isinstance(f.image, np.ndarray) for f in batch.frames)

    fakes.host_copies.clear()
    report, _ = _run(models, tmp_path, {"cam-a": "shapes_a"}, classifiers=False,
                     extra=[count_boxes, read_pixels, read_pixels_too])
    assert report.exit_code == 0 and report.frames == 100
    assert nv12_copies() == 100  # one per frame for both host stages together
    assert set(seen["host"]) == {"ndarray"} and len(seen["host"]) == 100
    assert report.stages["reads_pixels_too"].failures == 0
