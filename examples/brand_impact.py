"""Brand impact composed in Python: the same pipeline as pipelines/brand_impact.toml, as objects.

    python examples/brand_impact.py [--report-dir out/brand_impact_py] [--endpoint tcp://127.0.0.1:5555]

Three stages: the logo detector (layer "logo"), the PP-OCR text reader (layer "text"), and brand
exposure, which maps logos and text to the sponsors, tracks them, measures their exposure,
publishes live ``brand_exposure`` messages and writes the report (report.json, exposure.png). It
prints the brand-exposure table at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

import vidinfer as vi

REPO = Path(__file__).resolve().parent.parent

BRANDS = [
    {"name": "VOLTA"},
    {"name": "NORDIC AIR", "aliases": ["NORDICAIR"]},
    {"name": "KESTREL"},
    {"name": "ORBIS"},
    {"name": "PULSE"},
]


def brand_impact(report_dir: Path, endpoint: str) -> vi.Pipeline:
    clips = REPO / "sample_streams"
    # Exactly every 5th frame of each 25 fps clip (reference_frames_only would let FFmpeg skip B-frames).
    streams = [vi.StreamSpec(id=sid, url=str(clips / f"{clip}.mp4"), sample_fps=5, reference_frames_only=False)
               for sid, clip in (("match-a", "broadcast_a"), ("match-b", "broadcast_b"))]
    return vi.Pipeline(
        sources=streams,
        stages=[
            vi.Detect(model=REPO / "models/logos/detector.onnx", labels_file=REPO / "models/logos/labels.txt",
                      conf_threshold=0.5, iou_threshold=0.5, layer="logo"),
            vi.ReadText(limit_side=1344, min_text_height=16),
            vi.BrandExposure(brands=BRANDS, publish_interval_s=5, report_dir=report_dir,
                             tracker={"max_lost_s": 1.0}),
        ],
        sinks=[vi.ZmqSink(endpoint=endpoint)],
        name="brand_impact", max_batch_size=4, max_delay_ms=50,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-dir", type=Path, default=REPO / "out" / "brand_impact_py")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    args = parser.parse_args(argv)
    report = brand_impact(args.report_dir, args.endpoint).run()
    section = report.sections["brand_impact"]
    Console(width=120).print(section.summary)
    for path in section.files:
        print(f"report: {path}")
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
