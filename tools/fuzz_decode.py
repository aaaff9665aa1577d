"""Fuzz the H.264 decode path with mutated packets of a sample clip: no crash, no hang.

    python tools/fuzz_decode.py --iterations 2000 --seed 1 [--clip sample_streams/shapes_a.mp4]

Each iteration takes the clip's packets, mutates them (bit flips, truncations, duplications,
drops, swaps), and decodes them with a fresh FFmpeg decoder, the way PyAVSource does (errors of
a packet are counted and decoding goes on), then scales each frame as the source does. A
watchdog ends the process with exit code 3 when one iteration takes longer than --timeout; a
crash of FFmpeg ends it with a signal. Exit 0 and one summary line mean: no crash, no hang.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]


def load_packets(clip: Path) -> tuple[bytes, list[bytes]]:
    with av.open(str(clip)) as c:
        vs = c.streams.video[0]
        extradata = bytes(vs.codec_context.extradata or b"")
        packets = [bytes(p) for p in c.demux(vs) if p.size]
    return extradata, packets


def mutate(packets: list[bytes], rnd: random.Random) -> list[bytes]:
    out = [bytearray(p) for p in packets]
    for _ in range(rnd.randint(1, 8)):
        op = rnd.choice(["flip", "flip", "truncate", "duplicate", "drop", "swap", "garbage"])
        i = rnd.randrange(len(out))
        if op == "flip" and out[i]:
            for _ in range(rnd.randint(1, 32)):
                j = rnd.randrange(len(out[i]))
                out[i][j] ^= 1 << rnd.randrange(8)
        elif op == "truncate":
            out[i] = out[i][: rnd.randrange(len(out[i]) + 1)]
        elif op == "duplicate":
            out.insert(i, bytearray(out[i]))
        elif op == "drop" and len(out) > 1:
            del out[i]
        elif op == "swap":
            j = rnd.randrange(len(out))
            out[i], out[j] = out[j], out[i]
        elif op == "garbage":
            out[i] = bytearray(rnd.randbytes(rnd.randint(1, 4096)))
    return [bytes(p) for p in out]


def decode(extradata: bytes, packets: list[bytes]) -> tuple[int, int]:
    """Frames out and packets refused, like PyAVSource: refuse and go on."""
    cc = av.CodecContext.create("h264", "r")
    if extradata:
        cc.extradata = extradata
    frames = errors = 0
    for data in [*packets, None]:
        try:
            out = cc.decode(av.Packet(data) if data is not None else None)
        except (av.FFmpegError, ValueError):
            errors += 1
            continue
        for f in out:
            f.reformat(width=320, height=180, format="rgb24").to_ndarray()
            frames += 1
    return frames, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds one iteration may take")
    ap.add_argument("--clip", type=Path, default=REPO / "sample_streams" / "shapes_a.mp4")
    args = ap.parse_args(argv)
    av.logging.set_level(av.logging.PANIC)  # damaged data makes FFmpeg chatty; errors are counted instead
    extradata, packets = load_packets(args.clip)
    current = {"i": -1, "since": time.monotonic()}

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            if time.monotonic() - current["since"] > args.timeout:
                print(f"HANG: iteration {current['i']} (seed {args.seed}) took over {args.timeout} s", flush=True)
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    rnd = random.Random(args.seed)
    started, frames, errors, slowest = time.monotonic(), 0, 0, 0.0
    for i in range(args.iterations):
        current["i"], current["since"] = i, time.monotonic()
        f, e = decode(extradata, mutate(packets, rnd))
        slowest = max(slowest, time.monotonic() - current["since"])
        frames += f
        errors += e
    print(f"ok: {args.iterations} iterations (seed {args.seed}, {len(packets)} packets of {args.clip.name}), "
          f"{frames} frames decoded, {errors} packets refused, slowest iteration {slowest:.2f} s, "
          f"{time.monotonic() - started:.1f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
