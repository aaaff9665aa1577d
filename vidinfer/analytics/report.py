"""The end-of-run brand report: JSON, a terminal table, and a PNG chart of exposure over time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.analytics.exposure import ExposureAnalytics

__all__ = ["build_report", "write_report", "exposure_table"]


def build_report(analytics: ExposureAnalytics, pipeline: str) -> dict[str, Any]:
    """Per stream and brand figures, plus totals per brand over all streams."""
    streams = {sid: {"duration_s": round(exp.duration_s, 3), "frames": exp.frames, "brands": exp.summary()}
               for sid, exp in analytics.streams.items()}
    totals = []
    for i, name in enumerate(analytics.brands):
        rows = [s["brands"][i] for s in streams.values()]
        vis = sum(r["visible_s"] for r in rows)
        totals.append({
            "brand": name,
            "visible_s": round(vis, 3),
            "appearances": sum(r["appearances"] for r in rows),
            "streams": sum(1 for r in rows if r["visible_s"] > 0),
            "peak_share": max((r["peak_share"] for r in rows), default=0.0),
            "mean_share": round(sum(r["mean_share"] * r["visible_s"] for r in rows) / vis, 5) if vis else 0.0,
            "exposure_score": round(sum(r["exposure_score"] for r in rows), 3),
        })
    return {"pipeline": pipeline, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "streams": streams, "totals": totals}


def exposure_table(report: dict[str, Any]) -> Any:
    """A rich Table of every stream's brands that were seen."""
    from rich.table import Table

    table = Table(title=f"Brand exposure: {report['pipeline']}")
    for col, justify in [("stream", "left"), ("brand", "left"), ("visible s", "right"), ("appearances", "right"),
                         ("mean share", "right"), ("peak share", "right"), ("position", "left"),
                         ("confidence", "right"), ("score", "right")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for sid, s in report["streams"].items():
        for b in s["brands"]:
            if b["visible_s"] <= 0:
                continue
            table.add_row(sid, b["brand"], f"{b['visible_s']:.1f}", str(b["appearances"]),
                          f"{100 * b['mean_share']:.2f}%", f"{100 * b['peak_share']:.2f}%",
                          b["main_position"] or "", f"{b['mean_confidence']:.2f}", f"{b['exposure_score']:.1f}")
    return table


def _chart(analytics: ExposureAnalytics, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    streams = list(analytics.streams.items())
    fig, axes = plt.subplots(len(streams), 1, figsize=(9, 2.6 * max(1, len(streams))), squeeze=False)
    for ax, (sid, exp) in zip(axes[:, 0], streams):
        if exp.timeline:
            t = np.array([p[0] for p in exp.timeline])
            cum = np.stack([p[1] for p in exp.timeline])
            for i, name in enumerate(analytics.brands):
                if cum[-1, i] > 0:
                    ax.step(t, cum[:, i], where="post", label=name)
        ax.set_title(sid, loc="left", fontsize=10)
        ax.set_ylabel("visible s (cumulative)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("stream time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(analytics: ExposureAnalytics, pipeline: str, out_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """Write report.json and exposure.png into ``out_dir``; returns the report and the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(analytics, pipeline)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2))
    png_path = out_dir / "exposure.png"
    _chart(analytics, png_path)
    return report, [json_path, png_path]
