#!/usr/bin/env python3
"""Regenerate the committed broadcast-like sample clips, or make custom ones.

    python sample_streams/generate_broadcast.py                 # broadcast_a / broadcast_b
    python sample_streams/generate_broadcast.py --name long --seconds 120 --seed 9 --out /tmp/clips
    python sample_streams/generate_broadcast.py --name clean --no-occlusion --seconds 30

1920x1080, 25 fps H.264 (libx264, yuv420p, keyframe every 25 frames, no
scene-cut keyframes).  Each ``<name>.mp4`` gets ``<name>.json`` with per-frame
brand instances and a per-brand summary; the schema is documented in
``vidinfer/testing/broadcast.py``.  Deterministic for given parameters
(seeded scene, single-threaded x264).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from vidinfer.testing.broadcast import make_broadcast_scene, write_broadcast_clip
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(HERE.parent))
    from vidinfer.testing.broadcast import make_broadcast_scene, write_broadcast_clip

#: The committed clips: name -> (seconds, seed, occlusion).
COMMITTED = {
    "broadcast_a": (11.0, 201, False),  # no player ever covers a brand mark: exact appearance counts
    "broadcast_b": (11.0, 202, True),  # players walk in front of the boards and cross each other
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="make one custom clip <name>.mp4 instead of the committed set")
    ap.add_argument("--seconds", type=float, default=11.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-occlusion", action="store_true", help="players never cover brand marks")
    ap.add_argument("--crf", type=int, default=24, help="x264 CRF (default 24)")
    ap.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = ap.parse_args(argv)
    jobs = {args.name: (args.seconds, args.seed, not args.no_occlusion)} if args.name else COMMITTED
    for name, (seconds, seed, occlusion) in jobs.items():
        t0 = time.time()
        scene = make_broadcast_scene(seconds=seconds, seed=seed, occlusion=occlusion)
        path = args.out / f"{name}.mp4"
        gt = write_broadcast_clip(path, scene, crf=args.crf, preset=args.preset)
        print(f"{path}  1920x1080 25 fps {seconds} s  cuts {gt['cuts']}  "
              f"{path.stat().st_size / 1024:.0f} KiB  ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
