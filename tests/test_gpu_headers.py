"""Where the GPU kernels' compile finds the CUDA headers (`vidinfer.preprocess.gpu.cuda_include_dir`).

With a fake CuPy (tests/gpu_fakes.py): its RawModule records each compile's options and, with
``cuda_headers`` off, fails as CuPy 14 fails without CUDA headers. Every test starts from a machine
with no CUDA headers anywhere (no NVIDIA wheels on the path, no conda, no CUDA_HOME / CUDA_PATH, no
/usr/local/cuda, no cuda-pathfinder) and puts a ``cuda_fp16.h`` in one place.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from gpu_fakes import install_fake_gpu

from vidinfer.preprocess import gpu
from vidinfer.preprocess.crops import yuv_to_rgb_matrix
from vidinfer.preprocess.letterbox import Letterbox

ENV = ("CUDA_HOME", "CUDA_PATH", "CONDA_PREFIX")
CUPY_NO_HEADERS = ("Failed to find CUDA headers. Please install CUDA toolkit headers (e.g., pip install "
                   "cupy-cuda12x[ctk]) or specify CUDA_PATH environment variable.")  # the fake's, as CuPy 14.2


@pytest.fixture
def fake_cupy_without_headers(monkeypatch, tmp_path):
    """A fake CuPy, on a machine with no CUDA headers where vidinfer or CuPy 14 would look."""
    cp = install_fake_gpu(monkeypatch, lambda *args: None).cupy  # also empties gpu._modules
    monkeypatch.setitem(sys.modules, "cuda.pathfinder", None)  # `from cuda.pathfinder import ...` fails
    # A new list: the tests may insert into it, and the real sys.path comes back untouched.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith(("site-packages", "dist-packages"))])
    monkeypatch.setattr(site, "getsitepackages", lambda: [])
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(tmp_path / "user-site-packages"))
    for var in ENV:
        monkeypatch.setenv(var, "")  # recorded first, so a value vidinfer sets is undone too
        monkeypatch.delenv(var)
    monkeypatch.setattr(gpu, "SYSTEM_CUDA", str(tmp_path / "no-cuda"))
    return cp


def _header_in(include: Path) -> str:
    include.mkdir(parents=True)
    (include / "cuda_fp16.h").write_text("// stand-in for the CUDA runtime's header\n")
    return str(include)


def _launch_letterbox(cp) -> list[tuple]:
    """One letterbox launch through the public launcher; returns the options of every compile."""
    batch = cp.zeros((1, 3, 8, 8), np.float32)
    gpu.letterbox_nv12_into(batch, 0, cp.zeros((8, 8), np.uint8), cp.full((4, 8), 128, np.uint8),
                            Letterbox.fit(8, 8, 8, 8), *yuv_to_rgb_matrix())
    return cp.compiled


def _wheel(sub: str, user: bool = False):
    def put(tmp_path: Path, monkeypatch) -> str:
        site_dir = tmp_path / ("user-site-packages" if user else "venv/lib/python3/site-packages")
        if not user:
            sys.path.insert(0, str(site_dir))  # the fixture's copy of sys.path
        return _header_in(site_dir / sub)
    return put


def _env(var: str, sub: str):
    def put(tmp_path: Path, monkeypatch) -> str:
        monkeypatch.setenv(var, str(tmp_path / "x"))
        return _header_in(tmp_path / "x" / sub)
    return put


def _pathfinder(tmp_path: Path, monkeypatch) -> str:
    include = _header_in(tmp_path / "found-by-pathfinder" / "include")
    cuda, pathfinder = ModuleType("cuda"), ModuleType("cuda.pathfinder")
    pathfinder.find_nvidia_header_directory = lambda lib: include if lib == "cudart" else None
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.pathfinder", pathfinder)
    return include


PLACES = {
    "cuda-pathfinder": _pathfinder,
    "nvidia-cuda-runtime 13 wheel": _wheel("nvidia/cu13/include"),
    "nvidia-cuda-runtime-cu12 wheel": _wheel("nvidia/cuda_runtime/include"),
    "user site-packages wheel": _wheel("nvidia/cu13/include", user=True),
    "conda targets": _env("CONDA_PREFIX", "targets/x86_64-linux/include"),
    "conda include": _env("CONDA_PREFIX", "include"),
    "CUDA_HOME": _env("CUDA_HOME", "include"),
    "CUDA_PATH": _env("CUDA_PATH", "include"),
}


@pytest.mark.parametrize("place", PLACES)
def test_kernels_compile_with_the_cuda_headers_found_in(fake_cupy_without_headers, tmp_path, monkeypatch, place):
    include = PLACES[place](tmp_path, monkeypatch)
    assert gpu.cuda_include_dir() == include
    compiled = _launch_letterbox(fake_cupy_without_headers)
    assert compiled and set(compiled) == {(*gpu.COMPILE_OPTIONS, f"-I{include}")}  # with <cuda_fp16.h>


def test_cuda_headers_are_searched_in_cupys_order_wheels_then_conda_then_cuda_home_then_cuda_path(
        fake_cupy_without_headers, tmp_path, monkeypatch):
    found = []
    for place in ("CUDA_PATH", "CUDA_HOME", "conda include", "nvidia-cuda-runtime 13 wheel"):
        found.append(PLACES[place](tmp_path / place, monkeypatch))
        assert gpu.cuda_include_dir() == found[-1], place


def test_cuda_headers_of_the_system_toolkit_are_found_and_cuda_path_is_set_for_cupy(fake_cupy_without_headers,
                                                                                     tmp_path, monkeypatch):
    """Only /usr/local/cuda has them: the compile gets -I there, and CUDA_PATH points CuPy's own
    compiles there too (CuPy 14 may not look in /usr/local/cuda)."""
    system = tmp_path / "cuda"
    include = _header_in(system / "include")
    monkeypatch.setattr(gpu, "SYSTEM_CUDA", str(system))
    assert _launch_letterbox(fake_cupy_without_headers)[0] == (*gpu.COMPILE_OPTIONS, f"-I{include}")
    assert os.environ["CUDA_PATH"] == str(system)


@pytest.mark.parametrize("runtime, wheel", [(13000, "pip install 'nvidia-cuda-runtime==13.*'"),
                                            (12080, "pip install 'nvidia-cuda-runtime-cu12'")])
def test_with_no_cuda_headers_anywhere_the_error_names_the_pip_package_that_brings_them(
        fake_cupy_without_headers, tmp_path, runtime, wheel):
    cp = fake_cupy_without_headers
    cp.cuda_headers = False
    cp.cuda.runtime.runtimeGetVersion = lambda: runtime
    assert gpu.cuda_include_dir() is None
    with pytest.raises(RuntimeError) as err:
        _launch_letterbox(cp)
    assert str(err.value).startswith(
        "compiling letterbox_nv12.cu failed: the CUDA headers the GPU preprocessing kernels compile against "
        "(cuda_fp16.h) are not in NVIDIA's wheels, a conda environment, CUDA_HOME, CUDA_PATH or /usr/local/cuda; "
        f"{wheel}, or set CUDA_PATH to a CUDA toolkit that has its include folder (")
    assert CUPY_NO_HEADERS in str(err.value)  # CuPy's own reason follows
    assert cp.compiled == [gpu.COMPILE_OPTIONS, (*gpu.COMPILE_OPTIONS, gpu.NO_FP16_HEADER)]  # no -I, then without fp16
    # Nothing failed is cached: installing the wheel fixes the next launch in the same process.
    include = _wheel("nvidia/cu13/include")(tmp_path, None)
    cp.cuda_headers = True
    assert _launch_letterbox(cp)[-1] == (*gpu.COMPILE_OPTIONS, f"-I{include}")


def test_the_no_headers_error_gives_cupys_reason_as_plain_text(fake_cupy_without_headers):
    cp = fake_cupy_without_headers
    cp.cuda_headers = False
    with pytest.raises(RuntimeError) as err:
        _launch_letterbox(cp)
    assert str(err.value).endswith(f"has its include folder ({CUPY_NO_HEADERS})"), str(err.value)
