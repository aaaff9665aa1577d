"""`vidinfer info` on GPU machines, with fake capability probes: each missing piece is named with the
exact package to install, for the driver's CUDA major version; PyNvVideoCodec 1.x is refused.

The probes are fakes (`FakeProbe`: the driver, installed distributions and importable modules are
given); what they stand for is written next to each case.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vidinfer import devices
from vidinfer.devices import Driver, Probe, capabilities, gpu_advice, plan_device
from vidinfer.errors import ConfigError

H200 = Driver("580.159.03", (13, 0), ("NVIDIA H200",))
HEADERS_13 = "/opt/venv/lib/python3.12/site-packages/nvidia/cu13/include"


def _cupy(name="NVIDIA H200", version="14.2.0", count=1):
    runtime = SimpleNamespace(getDeviceCount=lambda: count,
                              getDeviceProperties=lambda i: {"name": name.encode()})
    return SimpleNamespace(__version__=version, cuda=SimpleNamespace(runtime=runtime))


def _ort(version="1.30.0", providers=("CPUExecutionProvider",)):
    return SimpleNamespace(__version__=version, get_available_providers=lambda: list(providers))


class FakeProbe(Probe):
    """The machine as given: ``dists`` pip distributions, ``modules`` importable modules (an
    exception instance: the import raises it)."""

    def __init__(self, driver, dists, modules, headers=HEADERS_13, nvrtc="13.0"):
        self._driver, self.dists, self.modules = driver, dists, modules
        self.headers, self._nvrtc = headers, nvrtc

    def driver(self):
        return self._driver

    def dist_version(self, name):
        return self.dists.get(name)

    def has_module(self, name):
        return name in self.modules

    def import_module(self, name):
        mod = self.modules[name]
        if isinstance(mod, Exception):
            raise mod
        return mod

    def cuda_headers(self):
        return self.headers

    def nvrtc(self, cupy, major):
        if isinstance(self._nvrtc, Exception):
            raise self._nvrtc
        return self._nvrtc


def _the_h200_as_it_is(**change):
    """The GPU machine this project can test on: CUDA 13 driver, cupy-cuda13x 14.2, plain ONNX
    Runtime; no PyAV, PyNvVideoCodec, TensorRT or onnxruntime-gpu."""
    dists = {"cupy-cuda13x": "14.2.0", "onnxruntime": "1.30.0", "nvidia-cuda-nvrtc": "13.0.88",
             "nvidia-cuda-runtime": "13.0.96"}
    modules = {"cupy": _cupy(), "onnxruntime": _ort()}
    kw = {"driver": H200, "dists": dists, "modules": modules, **change}
    return FakeProbe(**kw)


def _table(caps):
    return [f"{c.kind:<8} {c.name:<26} {'yes' if c.available else 'no '}  {c.detail}" for c in caps]


def test_info_on_the_h200_as_it_is_with_fake_probes_names_each_missing_package():
    caps = capabilities(_the_h200_as_it_is())
    assert _table(caps) == [
        "decoder  pyav (FFmpeg, CPU)         no   Python package 'av' is not installed",
        "decoder  nvdec (PyNvVideoCodec)     no   Python package 'PyNvVideoCodec' is not installed",
        "decoder  nvdec (VPF PyNvCodec)      no   Python package 'PyNvCodec' is not installed",
        "engine   onnxruntime                yes  1.30.0, providers: CPUExecutionProvider",
        "engine   tensorrt                   no   Python package 'tensorrt' is not installed",
        "engine   onnxruntime-gpu            no   onnxruntime here has no CUDA execution provider "
        "(onnxruntime-gpu is not installed)",
        "device   cpu                        yes  always available",
        "device   nvidia driver              yes  driver 580.159.03, CUDA 13.0; 1 GPU(s): NVIDIA H200",
        "device   cuda                       yes  1 device(s), first: NVIDIA H200; CuPy 14.2.0 (cupy-cuda13x)",
        "compiler nvrtc                      yes  13.0",
        f"compiler cuda headers               yes  {HEADERS_13}",
    ]
    assert gpu_advice(caps) == [
        "This GPU machine (driver 580.159.03, CUDA 13.0; 1 GPU(s): NVIDIA H200) lacks, for the GPU backend:",
        "  NVDEC decoder         pip install 'PyNvVideoCodec>=2.0'",
        "  GPU inference engine  pip install 'tensorrt-cu13>=10.13,<11'   (or ONNX Runtime's CUDA provider "
        "instead: pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu[cuda,cudnn]>=1.27')",
        "All at once: pip install 'PyNvVideoCodec>=2.0' 'tensorrt-cu13>=10.13,<11'",
    ]


def test_pynvvideocodec_1x_with_fake_probes_is_refused_naming_the_version_found():
    probe = _the_h200_as_it_is()
    probe.dists["PyNvVideoCodec"] = "1.0.2"
    probe.modules["PyNvVideoCodec"] = SimpleNamespace()  # 1.x imports fine: the version decides
    probe.modules["tensorrt"] = SimpleNamespace(__version__="10.16.1.11")
    caps = capabilities(probe)
    nvc = next(c for c in caps if c.name == "nvdec (PyNvVideoCodec)")
    assert not nvc.available
    assert nvc.detail == ("PyNvVideoCodec 1.0.2 is installed, but NVDEC decoding needs PyNvVideoCodec 2.0 or newer "
                          "(1.x decodes on GPU 0 only, without timestamps or an output colour type)")
    assert gpu_advice(caps)[1:] == ["  NVDEC decoder  pip install -U 'PyNvVideoCodec>=2.0'"]
    with pytest.raises(ConfigError) as err:
        plan_device("gpu", caps)
    assert str(err.value) == (
        "device = 'gpu' needs an NVDEC decoder (PyNvVideoCodec 1.0.2 is installed, but NVDEC decoding needs "
        "PyNvVideoCodec 2.0 or newer (1.x decodes on GPU 0 only, without timestamps or an output colour type)); "
        "pip install 'vidinfer[gpu]' on a machine with an NVIDIA GPU and driver, or use device = 'cpu' or 'auto'")
    assert plan_device("auto", caps).device == "cpu"
    probe.dists["PyNvVideoCodec"] = "2.0.2"
    plan = plan_device("auto", capabilities(probe))
    assert (plan.device, plan.decoder, plan.engine) == ("gpu", "PyNvVideoCodec", "tensorrt")
    assert plan.stages["decoder"] == "nvdec (PyNvVideoCodec 2.0.2)"


def test_cuda_12_driver_with_fake_probes_gets_the_cuda_12_packages_no_newer_than_the_driver():
    """A CUDA 12.4 driver with nothing GPU installed: every piece for CUDA 12, NVRTC and the headers
    no newer than 12.4."""
    probe = FakeProbe(Driver("550.54.15", (12, 4), ("Tesla T4", "Tesla T4")), {"onnxruntime": "1.30.0"},
                      {"onnxruntime": _ort(), "av": SimpleNamespace(__version__="18.1.0")}, headers=None,
                      nvrtc=OSError("libnvrtc.so.12: cannot open shared object file"))
    caps = capabilities(probe)
    assert _table(caps)[-4:] == [
        "device   nvidia driver              yes  driver 550.54.15, CUDA 12.4; 2 GPU(s): Tesla T4, Tesla T4",
        "device   cuda                       no   Python package 'cupy' is not installed",
        "compiler nvrtc                      no   NVRTC does not load: libnvrtc.so.12: cannot open shared object file",
        "compiler cuda headers               no   cuda_fp16.h is in no NVIDIA wheel here, nor under $CUDA_PATH, "
        "$CUDA_HOME or /usr/local/cuda (CuPy compiles no kernel without the CUDA runtime headers)",
    ]
    assert gpu_advice(caps) == [
        "This GPU machine (driver 550.54.15, CUDA 12.4; 2 GPU(s): Tesla T4, Tesla T4) lacks, for the GPU backend:",
        "  CuPy (CUDA arrays)            pip install 'cupy-cuda12x>=14,<15'",
        "  NVDEC decoder                 pip install 'PyNvVideoCodec>=2.0'",
        "  GPU inference engine          pip install 'tensorrt-cu12>=10,<11'   (or ONNX Runtime's CUDA provider "
        "instead: pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu[cuda,cudnn]>=1.19,<1.27')",
        "  NVRTC (compiles the kernels)  pip install 'nvidia-cuda-nvrtc-cu12>=12.0,<12.5'",
        "  CUDA headers (cuda_fp16.h)    pip install 'nvidia-cuda-runtime-cu12>=12.0,<12.5'",
        "All at once: pip install 'cupy-cuda12x>=14,<15' 'PyNvVideoCodec>=2.0' 'tensorrt-cu12>=10,<11' "
        "'nvidia-cuda-nvrtc-cu12>=12.0,<12.5' 'nvidia-cuda-runtime-cu12>=12.0,<12.5'",
    ]


def test_cupy_built_for_a_newer_cuda_than_the_driver_with_fake_probes_is_replaced():
    probe = FakeProbe(Driver("550.54.15", (12, 4), ("Tesla T4",)), {"cupy-cuda13x": "14.2.0"},
                      {"cupy": _cupy("Tesla T4"), "onnxruntime": _ort()})
    cuda = next(c for c in capabilities(probe) if c.name == "cuda")
    assert not cuda.available
    assert cuda.detail == "cupy-cuda13x is built for CUDA 13 but this driver runs CUDA 12.4 at most"
    assert cuda.fix == "pip uninstall -y cupy-cuda13x && pip install 'cupy-cuda12x>=14,<15'"


def test_onnxruntime_and_onnxruntime_gpu_together_with_fake_probes_are_named_with_the_fix():
    probe = _the_h200_as_it_is()
    probe.dists.update({"onnxruntime-gpu": "1.31.1", "PyNvVideoCodec": "2.2.4"})
    probe.modules["PyNvVideoCodec"] = SimpleNamespace(__version__="2.2.4")
    caps = capabilities(probe)
    ort = next(c for c in caps if c.name == "onnxruntime-gpu")
    assert not ort.available
    assert ort.detail == ("onnxruntime and onnxruntime-gpu are both installed: they install the same 'onnxruntime' "
                          "package over each other, so the CUDA provider may be gone")
    assert gpu_advice(caps) == [
        "This GPU machine (driver 580.159.03, CUDA 13.0; 1 GPU(s): NVIDIA H200) lacks, for the GPU backend:",
        "  GPU inference engine  pip install 'tensorrt-cu13>=10.13,<11'   (or ONNX Runtime's CUDA provider instead: "
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]>=1.27')",
    ]


def test_a_complete_gpu_machine_with_fake_probes_needs_nothing_and_runs_on_the_gpu():
    probe = _the_h200_as_it_is()
    probe.dists.update({"PyNvVideoCodec": "2.2.4", "tensorrt-cu13": "10.16.1.11"})
    probe.modules.update({"PyNvVideoCodec": SimpleNamespace(__version__="2.2.4"),
                          "tensorrt": SimpleNamespace(__version__="10.16.1.11"),
                          "av": SimpleNamespace(__version__="18.1.0")})
    caps = capabilities(probe)
    assert gpu_advice(caps) == ["This GPU machine (driver 580.159.03, CUDA 13.0; 1 GPU(s): NVIDIA H200) has every "
                                "piece the GPU backend needs."]
    plan = plan_device("auto", caps)
    assert plan.device == "gpu" and plan.reason == (
        "auto: GPU backend on 1 device(s), first: NVIDIA H200; CuPy 14.2.0 (cupy-cuda13x); decoder PyNvVideoCodec, "
        "engine tensorrt")


def test_an_old_driver_with_fake_probes_is_named_and_no_package_is_offered():
    probe = FakeProbe(Driver("470.82.01", (11, 4), ("Tesla T4",)), {}, {"onnxruntime": _ort()})
    assert gpu_advice(capabilities(probe)) == [
        "The GPU backend needs an NVIDIA GPU and driver: driver 470.82.01, CUDA 11.4; 1 GPU(s): Tesla T4; "
        "vidinfer's GPU packages are built for CUDA 12 and 13: update the NVIDIA driver (R525 or newer)."]


def test_info_command_with_fake_probes_prints_the_table_the_plan_and_the_packages(monkeypatch, capsys):
    from vidinfer.cli import main

    monkeypatch.setattr(devices, "Probe", lambda: _the_h200_as_it_is())
    assert main(["info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "decoder  pyav (FFmpeg, CPU)         no   Python package 'av' is not installed"
    assert "device = 'auto' runs on: cpu (auto: CPU backend chosen because this machine lacks an NVDEC decoder " \
           "(neither PyNvVideoCodec nor VPF's PyNvCodec is installed) and a GPU inference engine (neither tensorrt " \
           "nor onnxruntime-gpu is installed))" in out
    assert out[-3:] == gpu_advice(capabilities(_the_h200_as_it_is()))[1:]


def test_info_without_a_driver_says_so_in_one_line():
    probe = FakeProbe(None, {"onnxruntime": "1.32.0"}, {"onnxruntime": _ort()})
    caps = capabilities(probe)
    assert [c.name for c in caps][-2:] == ["nvidia driver", "cuda"]  # no compiler rows without a GPU
    assert gpu_advice(caps) == ["The GPU backend needs an NVIDIA GPU and driver: no NVIDIA driver found "
                                "(libcuda.so.1 does not load, no nvidia-smi)."]
