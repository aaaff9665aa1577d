"""The GPU check's rehearsal: tools/gpu_check.py end to end on the fakes of tests/gpu_fakes.py.

The same command, parts and results file as on the GPU machine; only the hardware is fake (CuPy over
NumPy with the kernels' CUDA sources compiled for the CPU, PyNvVideoCodec decoding with PyAV, no
TensorRT, as on the nvidia-h200 machine). What it cannot show is how the hardware behaves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.skipif(not gpu_check.shutil.which("g++"), reason="the kernel emulator needs g++")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    wheels = tmp_path_factory.mktemp("no-wheels")  # CI has no .whl/: install is skipped and says so
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--fake", "--out", str(out),
                           "--wheels", str(wheels), "--budget-s", "240"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - t0
    results = json.loads((out / "gpu_check.json").read_text())
    return done, took, results, (out / "gpu_check.log").read_text()


def test_rehearsal_passes_every_part_within_two_minutes(rehearsal):
    done, took, results, log = rehearsal
    assert done.returncode == 0, done.stdout[-3000:] + log[-3000:]
    assert took < 120, f"the rehearsal took {took:.0f} s"
    assert results["hardware"] == "fake" and results["ok"] is True
    sections = results["sections"]
    assert [name for name, part in sections.items() if part["ok"] is False] == [] == results["summary"]["failed_parts"]
    assert sections["install"]["error"].startswith("no wheels in ")  # nothing to install is said, not hidden


def test_results_file_has_exactly_the_layout_the_gpu_run_writes(rehearsal):
    _, _, results, _ = rehearsal
    assert results["layout"] == {"missing": [], "extra": []}
    assert gpu_check.layout_diff(results, gpu_check.LAYOUT) == ([], [])
    assert list(results["sections"]) == gpu_check.ORDER


def test_rehearsal_checks_kernels_decoding_and_the_gpu_pipeline_against_their_truth(rehearsal):
    _, _, results, _ = rehearsal
    s, sec = results["summary"], results["sections"]
    assert s["kernels_match_references"] is True
    cases = sec["kernels"]["cases"]
    assert {c["chroma_siting"] for c in cases} == {"center", "left"} and all(c["ok"] for c in cases)
    assert all(c["other_slots_untouched"] for c in cases)
    assert s["nvdec_bit_exact"] is True and sec["nvdec"]["reference"]["pts_match"] is True
    assert s["nvdec_streams_1080p30"] > 0 and s["t4_streams_1080p30"] == 38
    expected = sum(v["expected"] for v in sec["pipeline"]["streams"].values())
    assert expected > 0 and s["pipeline_frames_matched"] == f"{expected}/{expected}"
    assert sec["pipeline"]["device"] == "gpu"
    assert s["ran_where"]["decode"].startswith("GPU (NVDEC") and s["ran_where"]["detector"].startswith("CPU")


def test_everything_the_check_imports_is_on_the_gpu_machine_or_carried_as_a_wheel(rehearsal):
    _, _, results, _ = rehearsal
    assert results["summary"]["not_on_the_machine"] == []
    imported = {d for part in results["sections"].values() for d in (part["distributions_imported"] or [])}
    assert {"numpy", "av", "pyzmq", "pydantic"} <= imported  # the check did record what it imported


def test_the_check_counts_as_carried_exactly_the_wheels_gpu_wheels_sh_fetches():
    # What the check counts as carried (when .whl/MANIFEST.json is absent) is what gpu_wheels.sh fetches.
    carried = {gpu_check._norm(r.split("==")[0].strip('"'))
               for r in (REPO / "tools" / "gpu_wheels.sh").read_text().split("REQUIREMENTS=(")[1].split(")")[0].split()}
    assert carried == gpu_check.CARRIED
