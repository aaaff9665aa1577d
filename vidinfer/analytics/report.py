"""The end-of-run brand report: JSON, a CSV of appearances with their evidence, a terminal table, a PNG
timeline of each brand per stream, and a page a sponsor reads (`vidinfer.analytics.html_report`)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vidinfer.analytics.evidence import EvidenceKeeper
from vidinfer.analytics.exposure import ExposureAnalytics, Figures
from vidinfer.atomic import write_atomically

__all__ = ["build_report", "write_report", "exposure_table"]


def build_report(analytics: ExposureAnalytics, pipeline: str, evidence: EvidenceKeeper | None = None) -> dict[str, Any]:
    """Per stream and brand figures, totals per brand over all streams, per segment when the stage
    has segments (each stream's, and over all streams), and every appearance with its evidence."""
    names = analytics.brands
    streams: dict[str, dict[str, Any]] = {}
    for sid, exp in analytics.streams.items():
        streams[sid] = {"duration_s": round(exp.duration_s, 3), "frames": exp.frames, "brands": exp.summary(),
                        "intervals_s": {name: [[round(a, 3), round(b, 3)] for a, b in exp.spans[i]]
                                        for i, name in enumerate(names)},
                        "appearances_s": {name: [[round(a, 3), round(b, 3)] for a, b in exp.occurrences[i]]
                                          for i, name in enumerate(names)},
                        "appearances": _appearances(names, exp.occurrences,
                                                    evidence.records(sid) if evidence is not None else None)}
        if analytics.segment_s > 0 or analytics.segments:
            streams[sid]["segments"] = exp.segment_summaries()
    exps = list(analytics.streams.values())
    whole = Figures.merged([e.total for e in exps], len(names))
    tracks = np.sum([e.tracks() for e in exps], axis=0) if exps else np.zeros(len(names), np.int64)
    valued = analytics.valued
    totals = whole.summary(names, tracks, valued)
    for i, row in enumerate(totals):
        row["streams"] = sum(1 for e in exps if e.visible_s[i] > 0)
    report: dict[str, Any] = {"pipeline": pipeline,
                              "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "streams": streams, "totals": totals}
    if valued:
        report["rate_card"] = {"currency": analytics.rate_card[0] if analytics.rate_card else None,
                               "per_30s": analytics.rate_card[1] if analytics.rate_card else None,
                               "segments": {g.name: g.per_30s for g in analytics.segments if g.per_30s is not None}}
    if analytics.segment_s > 0 or analytics.segments:
        by_name: dict[tuple[str, float, float], list[Figures]] = {}
        for e in exps:
            for seg, fig in e.segment_figures():
                by_name.setdefault((seg.name, seg.start_s, seg.end_s), []).append(fig)
        report["segments"] = [{"segment": n, "start_s": a, "end_s": b,
                               "brands": Figures.merged(figs, len(names)).summary(names, valued=valued)}
                              for (n, a, b), figs in sorted(by_name.items(), key=lambda kv: (kv[0][1], kv[0][2]))]
    return report


def _appearances(names: list[str], occurrences: list[list[list[float]]],
                 records: list[list[dict[str, Any]]] | None) -> list[dict[str, Any]]:
    """Every appearance of the stream in time order, with its evidence (the picture of its best frame)
    when the stage kept pictures."""
    out = []
    for i, name in enumerate(names):
        for k, (a, b) in enumerate(occurrences[i]):
            row: dict[str, Any] = {"brand": name, "start_s": round(a, 3), "end_s": round(b, 3),
                                   "duration_s": round(b - a, 3)}
            if records is not None:
                row["evidence"] = records[i][k] if k < len(records[i]) else {"frame_s": None, "image": None,
                                                                              "crop": None}
            out.append(row)
    return sorted(out, key=lambda r: (r["start_s"], r["brand"]))


def exposure_table(report: dict[str, Any]) -> Any:
    """A rich Table of every stream's brands that were seen."""
    from rich.table import Table

    table = Table(title=f"Brand exposure: {report['pipeline']}")
    for col, justify in [("stream", "left"), ("brand", "left"), ("visible s", "right"), ("appearances", "right"),
                         ("solus s", "right"), ("voice", "right"),
                         ("mean share", "right"), ("peak share", "right"), ("position", "left"),
                         ("confidence", "right"), ("score", "right")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for sid, s in report["streams"].items():
        for b in s["brands"]:
            if b["visible_s"] <= 0:
                continue
            table.add_row(sid, b["brand"], f"{b['visible_s']:.1f}", str(b["appearances"]), f"{b['solus_s']:.1f}",
                          f"{100 * b['share_of_voice']:.0f}%",
                          f"{100 * b['mean_share']:.2f}%", f"{100 * b['peak_share']:.2f}%",
                          b["main_position"] or "", f"{b['mean_confidence']:.2f}", f"{b['exposure_score']:.1f}")
    return table


def _chart(analytics: ExposureAnalytics, path: Path) -> None:
    """One panel per stream: a row per brand with bars where it was on screen, total on the right."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    streams = list(analytics.streams.items())
    names = analytics.brands
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(streams), 1, figsize=(10, 0.5 + (0.45 * len(names) + 0.8) * max(1, len(streams))),
                             squeeze=False)
    for ax, (sid, exp) in zip(axes[:, 0], streams):
        for i, spans in enumerate(exp.spans):
            ax.broken_barh([(a, b - a) for a, b in spans], (i - 0.35, 0.7), color=colours(i % 10))
        for i in range(len(names)):
            ax.text(1.005, i, f"{exp.visible_s[i]:.1f} s", transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlim(0, max(exp.duration_s, 1e-3))
        ax.set_title(f"{sid}: brands on screen", loc="left", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("stream time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _appearances_csv(report: dict[str, Any], path: Path) -> None:
    """One row per appearance, per stream in time order: where a figure's count comes from, and its evidence."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["stream", "brand", "start_s", "end_s", "duration_s", "evidence_frame_s", "evidence_image",
                      "evidence_crop"])
        for sid, s in report["streams"].items():
            for row in s["appearances"]:
                ev = row.get("evidence") or {}
                frame_s = ev.get("frame_s")
                out.writerow([sid, row["brand"], f"{row['start_s']:.3f}", f"{row['end_s']:.3f}",
                              f"{row['duration_s']:.3f}", "" if frame_s is None else f"{frame_s:.3f}",
                              ev.get("image") or "", ev.get("crop") or ""])


def write_report(analytics: ExposureAnalytics, pipeline: str, out_dir: Path,
                 evidence: EvidenceKeeper | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Write report.json, appearances.csv, exposure.png and report.html into ``out_dir``, each
    atomically; returns the report and the files."""
    from vidinfer.analytics.html_report import write_html

    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(analytics, pipeline, evidence)
    json_path = out_dir / "report.json"
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    csv_path = out_dir / "appearances.csv"
    write_atomically(csv_path, lambda tmp: _appearances_csv(report, tmp))
    png_path = out_dir / "exposure.png"
    write_atomically(png_path, lambda tmp: _chart(analytics, tmp))
    html_path = out_dir / "report.html"
    write_atomically(html_path, lambda tmp: write_html(report, out_dir, tmp))
    return report, [json_path, csv_path, png_path, html_path]
