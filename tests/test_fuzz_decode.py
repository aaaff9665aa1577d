"""Mutated H.264 packets (bit flips, truncations, duplications, drops, swaps) of a sample clip
through the decoder: no crash, no hang. The fuzzer runs in its own process, so a crash of FFmpeg
shows as a signal exit instead of taking the test run down; a longer run is in tools/."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_h264_packets_never_crash_or_hang_the_decoder(seed):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "fuzz_decode.py"), "--iterations", "25",
                           "--seed", str(seed), "--timeout", "20"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)  # -11: crash, 3: hang
    assert done.stdout.startswith(f"ok: 25 iterations (seed {seed}, 100 packets of shapes_a.mp4), ")
