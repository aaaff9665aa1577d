"""report.html: the brand report as a page a sponsor reads, in one self-contained file.

Tables per brand (totals over all streams, then each stream), the size buckets, the segments, a
timeline per stream (inline SVG), every appearance with its evidence (the best frame and the crop
of the mark, embedded as small JPEGs and linked to the full pictures beside the report), and the
definitions of the figures. No script, no font or style from elsewhere: the file opens offline, in
a mail client's preview, or printed. Built from report.json's dictionary, so the page and the JSON
never disagree.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

from vidinfer.analytics.exposure import FULL_DURATION_S, QUALITY_WEIGHTS, SIZE_NAMES

__all__ = ["write_html", "render_html", "DEFINITIONS"]

#: The figures as the page defines them (docs/brand-impact.md is the reference).
DEFINITIONS: list[tuple[str, str]] = [
    ("Visible time", "Stream time in which at least one mark or read name of the brand was on screen, in "
                     "appearances that count (a blip shorter than the minimum frames counts no time)."),
    ("Appearances", "Continuous sightings of the brand: gaps shorter than the tracker's max_lost_s merge, a camera "
                    "cut merges only when the brand is on screen on both sides of it."),
    ("Share of voice", "The brand's visible time over all brands' visible time in the same span."),
    ("Solus time", "Time in which the brand was the only brand on screen."),
    ("Clutter", "The other brands on screen beside it, averaged over its visible time."),
    ("Share of screen", "The summed area of the brand's boxes over the frame area; mean over visible time, and peak."),
    ("Size buckets", "Visible time split by share of screen: " + ", ".join(SIZE_NAMES) + "; they add up to the "
                     "visible time."),
    ("Position", "Visible time over a 3x3 grid of the screen by box centre; the main position is the cell with "
                 "the most."),
    ("Clarity", "Sharpness of the mark (2 px over its edge width, at most 1) times its visible fraction, "
                "area-weighted over the brand's boxes and averaged over visible time."),
    ("Quality index", "Per frame, " + " + ".join(f"{w:g} x {k}" for k, w in QUALITY_WEIGHTS.items())
     + f"; size = min(1, share / reference share), solus = 1 / (1 + other brands), duration = min(1, seconds "
       f"into the appearance / {FULL_DURATION_S:g}). Quality seconds are the sum of quality x time."),
    ("Media value", "Quality seconds x the rate card's price of 30 s of full exposure / 30 (a segment's own "
                    "price where it has one)."),
    ("Exposure score", "Prominence-weighted seconds: time x min(1, share / reference share) x position weight "
                       "(1.0 centre, 0.8 edges, 0.6 corners)."),
    ("Evidence", "For each appearance, the frame where its mark was largest and sharpest (share x clarity), with "
                 "every brand box drawn (the appearance's brand in yellow), and a crop of the mark."),
]

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;margin:0;background:#f5f6f8}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px}h3{font-size:16px;margin:20px 0 6px}
.meta{color:#5b6570;margin:0 0 16px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
th,td{padding:5px 7px;border-bottom:1px solid #e3e6ea;text-align:right;white-space:nowrap}
th{font-weight:600;color:#3c4650;background:#f0f2f5}
th:first-child,td:first-child,.l{text-align:left}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:0}
.ev img{display:block;border-radius:3px}
.ev td{vertical-align:middle}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 16px;margin:0}
dt{font-weight:600}dd{margin:0;color:#3c4650}
svg text{font:12px system-ui,sans-serif;fill:#3c4650}
.none{color:#8a949e}
"""

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]
_THUMB_W, _CROP_H = 320, 72


def write_html(report: dict[str, Any], folder: Path, path: Path) -> None:
    """Write the page of ``report`` (report.json's dictionary) to ``path``; the evidence pictures are
    read from ``folder``, the report's folder."""
    path.write_text(render_html(report, folder), encoding="utf-8")


def render_html(report: dict[str, Any], folder: Path | None = None) -> str:
    """The page of ``report``; evidence pictures found under ``folder`` are embedded."""
    totals = [b for b in report["totals"]]
    names = [b["brand"] for b in totals]
    valued = "rate_card" in report
    currency = (report.get("rate_card") or {}).get("currency") or ""
    streams = report["streams"]
    duration = sum(s["duration_s"] for s in streams.values())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Brand exposure: {_e(report['pipeline'])}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>Brand exposure: {_e(report['pipeline'])}</h1>",
        f'<p class="meta">{len(streams)} stream{"s" * (len(streams) != 1)}, {_clock(duration)} of video analysed; '
        f"generated {_e(report['generated_at'])} by vidinfer.</p>",
        '<section id="totals"><h2>All streams</h2>', _brand_table(totals, names, valued, currency, streams=True),
        "<h3>Time by size on screen</h3>", _size_table(totals, names), "</section>",
    ]
    if report.get("segments"):
        parts += ['<section id="segments"><h2>Segments</h2>', _segment_table(report["segments"], names, valued,
                                                                             currency), "</section>"]
    for k, (sid, s) in enumerate(streams.items()):
        parts += [f'<section class="stream" id="stream-{k}"><h2>Stream {_e(sid)}</h2>',
                  f'<p class="meta">{_clock(s["duration_s"])}, {s["frames"]} analysed frames.</p>',
                  _brand_table(s["brands"], names, valued, currency, streams=False),
                  "<h3>Timeline</h3>", _timeline(s, names),
                  "<h3>Appearances</h3>", _appearance_table(s.get("appearances", []), names, folder), "</section>"]
    parts += ['<section id="definitions"><h2>Definitions</h2><dl>']
    parts += [f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in DEFINITIONS]
    parts += ["</dl></section></main></body></html>", ""]
    return "\n".join(parts)


def _brand_table(rows: Sequence[dict[str, Any]], names: Sequence[str], valued: bool, currency: str,
                 streams: bool) -> str:
    head = ["Brand", "Visible", "Appearances", "Share of voice", "Solus", "Clutter", "Mean share", "Peak share",
            "Main position", "Clarity", "Quality", "Quality s", "Score"]
    if valued:
        head.append(f"Media value ({currency})" if currency else "Media value")
    if streams:
        head.append("Streams")
    out = ['<div class="scroll"><table class="brands">' + _head(head)]
    for b in rows:
        cells = [_brand_cell(b["brand"], names), _seconds(b["visible_s"]), str(b["appearances"]),
                 _pct(b["share_of_voice"], 1), _seconds(b["solus_s"]), f"{b['mean_clutter']:.2f}",
                 _pct(b["mean_share"], 2), _pct(b["peak_share"], 2), _e(b["main_position"] or "-"),
                 f"{b['mean_clarity']:.2f}", f"{b['mean_quality']:.2f}", f"{b['quality_s']:.1f}",
                 f"{b['exposure_score']:.1f}"]
        if valued:
            cells.append(f"{b.get('media_value', 0.0):,.2f}")
        if streams:
            cells.append(str(b.get("streams", "")))
        out.append(f'<tr data-brand="{_e(b["brand"])}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</tbody></table></div>"


def _size_table(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    out = ['<table class="sizes">' + _head(["Brand", *SIZE_NAMES])]
    for b in rows:
        out.append(f"<tr><td>{_brand_cell(b['brand'], names)}</td>"
                   + "".join(f"<td>{_seconds(b['size_s'][n])}</td>" for n in SIZE_NAMES) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _segment_table(segments: Sequence[dict[str, Any]], names: Sequence[str], valued: bool, currency: str) -> str:
    head = ["Segment", "From", "To", "Brand", "Visible", "Appearances", "Share of voice", "Quality s"]
    if valued:
        head.append(f"Media value ({currency})" if currency else "Media value")
    out = ['<div class="scroll"><table class="segments">' + _head(head)]
    for seg in segments:
        for b in seg["brands"]:
            if b["visible_s"] <= 0:
                continue
            cells = [_e(seg["segment"]), _clock(seg["start_s"]), _clock(seg["end_s"]), _brand_cell(b["brand"], names),
                     _seconds(b["visible_s"]), str(b["appearances"]), _pct(b["share_of_voice"], 1),
                     f"{b['quality_s']:.1f}"]
            if valued:
                cells.append(f"{b.get('media_value', 0.0):,.2f}")
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</tbody></table></div>"


def _timeline(stream: dict[str, Any], names: Sequence[str]) -> str:
    """One lane per brand with a bar for each interval on screen, total on the right (inline SVG)."""
    left, right, lane, width = 110, 80, 22, 1000
    span = max(stream["duration_s"], 1e-3)
    plot = width - left - right
    h = lane * len(names) + 24
    out = [f'<svg class="timeline" viewBox="0 0 {width} {h}" width="100%" role="img" '
           f'aria-label="brands on screen over stream time">']
    for i, name in enumerate(names):
        y = i * lane
        out.append(f'<text x="0" y="{y + 15}">{_e(name)}</text>')
        out.append(f'<rect x="{left}" y="{y + 4}" width="{plot}" height="{lane - 8}" fill="#eef0f3"/>')
        for a, b in stream["intervals_s"].get(name, []):
            x = left + plot * a / span
            out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{max(0.8, plot * (b - a) / span):.1f}" '
                       f'height="{lane - 8}" fill="{_colour(i)}">'
                       f"<title>{_e(name)} {_clock(a)}-{_clock(b)}</title></rect>")
        visible = next((r["visible_s"] for r in stream["brands"] if r["brand"] == name), 0.0)
        out.append(f'<text x="{width - right + 8}" y="{y + 15}">{_seconds(visible)}</text>')
    y = lane * len(names) + 16
    for k in range(6):
        t = span * k / 5
        out.append(f'<text x="{left + plot * k / 5:.1f}" y="{y}" text-anchor="middle">{_clock(t)}</text>')
    return "".join(out) + "</svg>"


def _appearance_table(appearances: Sequence[dict[str, Any]], names: Sequence[str], folder: Path | None) -> str:
    if not appearances:
        return '<p class="none">No appearances.</p>'
    with_evidence = any("evidence" in a for a in appearances)
    head = ["#", "Brand", "Start", "End", "Duration"] + (["Best frame", "Mark"] if with_evidence else [])
    out = ['<table class="ev">' + _head(head, left=("Brand", "Best frame", "Mark"))]
    for k, a in enumerate(appearances, 1):
        cells = [str(k), _brand_cell(a["brand"], names), _clock(a["start_s"]), _clock(a["end_s"]),
                 _seconds(a["duration_s"])]
        if with_evidence:
            ev = a.get("evidence") or {}
            at = _clock(ev.get("frame_s"))
            cells += [_picture(folder, ev.get("image"), width=_THUMB_W, alt=f"{a['brand']} at {at}"),
                      _picture(folder, ev.get("crop"), height=_CROP_H, alt=f"{a['brand']} mark")]
        out.append(f'<tr data-brand="{_e(a["brand"])}">' + "".join(
            f'<td class="l">{c}</td>' if j in (1, 5, 6) else f"<td>{c}</td>" for j, c in enumerate(cells)) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _picture(folder: Path | None, name: str | None, width: int = 0, height: int = 0, alt: str = "") -> str:
    """The picture embedded small (a data URI), linked to the full file beside the report."""
    if not name or folder is None or not (folder / name).is_file():
        return '<span class="none">-</span>'
    from PIL import Image

    with Image.open(folder / name) as img:
        img = img.convert("RGB")
        scale = width / img.width if width else height / img.height
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<a href="{_e(name)}"><img src="data:image/jpeg;base64,{data}" width="{img.width}" '
            f'height="{img.height}" alt="{_e(alt)}"></a>')


def _head(columns: Sequence[str], left: Sequence[str] = ()) -> str:
    cells = "".join(f'<th class="l">{_e(c)}</th>' if c in left else f"<th>{_e(c)}</th>" for c in columns)
    return f"<thead><tr>{cells}</tr></thead><tbody>"


def _brand_cell(name: str, names: Sequence[str]) -> str:
    i = names.index(name) if name in names else 0
    return f'<span class="swatch" style="background:{_colour(i)}"></span>{_e(name)}'


def _colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _seconds(s: float) -> str:
    return f"{s:.1f} s"


def _pct(x: float, digits: int) -> str:
    return f"{100 * x:.{digits}f}%"


def _clock(s: float | None) -> str:
    """Stream time as h:mm:ss.s or m:ss.s."""
    if s is None:
        return "-"
    m, sec = divmod(round(max(0.0, float(s)), 1), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:04.1f}" if h else f"{m}:{sec:04.1f}"
