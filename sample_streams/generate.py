#!/usr/bin/env python3
"""Regenerate the committed synthetic sample clips, or make custom ones.

    python sample_streams/generate.py                    # the committed clips
    python sample_streams/generate.py --name long --seconds 120
    python sample_streams/generate.py --name big --width 1920 --height 1080 \\
        --seconds 30 --objects 6 --seed 7 --out /tmp/clips

Each clip ``<name>.mp4`` (H.264, yuv420p, one keyframe per second by default)
gets its ground truth in ``<name>.json`` next to it; see README.md.  Output is
deterministic for given parameters (seeded scene, single-threaded x264).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from vidinfer.testing.synthetic import make_scene, write_clip
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(HERE.parent))
    from vidinfer.testing.synthetic import make_scene, write_clip

#: The committed clips: name -> (width, height, fps, seconds, objects, seed).
COMMITTED = {
    "shapes_a": (640, 360, 25, 4, 4, 101),
    "shapes_b": (640, 360, 25, 4, 3, 102),
    "shapes_c": (640, 360, 25, 4, 5, 103),
    "shapes_d": (640, 360, 25, 4, 5, 104),
    "shapes_1080p": (1920, 1080, 25, 3, 4, 105),
}


def make_clip(
    out_dir: Path,
    name: str,
    width: int,
    height: int,
    fps: int,
    seconds: float,
    objects: int,
    seed: int,
    crf: int = 18,
    keyint: int | None = None,
) -> Path:
    scene = make_scene(width, height, fps, n_objects=objects, seed=seed)
    path = out_dir / f"{name}.mp4"
    n_frames = int(round(seconds * fps))
    write_clip(path, scene, n_frames=n_frames, crf=crf, keyframe_interval=keyint)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--name", help="make one custom clip <name>.mp4 instead of the committed set")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--objects", type=int, default=4, help="number of rectangles (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crf", type=int, default=18, help="x264 CRF (default 18)")
    ap.add_argument("--keyint", type=int, help="keyframe interval in frames (default: fps)")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = ap.parse_args(argv)

    if args.name:
        jobs = {
            args.name: (args.width, args.height, args.fps, args.seconds, args.objects, args.seed)
        }
    else:
        jobs = COMMITTED
    for name, (w, h, fps, seconds, objects, seed) in jobs.items():
        path = make_clip(args.out, name, w, h, fps, seconds, objects, seed, args.crf, args.keyint)
        print(f"{path}  {w}x{h} {fps} fps {seconds} s  {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
