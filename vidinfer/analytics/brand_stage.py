"""`BrandExposure`: logos and text become brands, tracked and measured; live figures and a report.

It reads the layer of a logo detector (``"logo"``: its classes map to brands by name or a brand's
``logo_classes``) and the layer of a text reader (``"text"``: each line is fuzzy-matched against the
brands' names and aliases, `vidinfer.analytics.brands`), and makes the ``"brand"`` layer: one row per
logo or line that shows a brand, ``class_id`` = brand index, tracked (ByteTrack by default, one
tracker per stream, reset at cuts), with the attribute ``source`` saying where a row came from
(label 0 ``logo``, 1 ``text`` read in this frame, 2 ``text-held``: read in an earlier frame of the
shot, moved with the camera). Logo classes that map to no brand and text that matches none are
left out. A line is a full read of a brand (the whole name) or a partial one (a fragment, a
look-alike; `vidinfer.analytics.brands`): a partial read counts only for a tracked mark that a full
read or a logo confirms, so it never starts a brand. A logo is full at ``logo_confirm_score`` or
above and partial below it, as ByteTrack starts tracks only from detections 0.1 above its
association threshold: a mark that the detector only half believes in never starts a brand. The
figures of a frame are measured ``confirm_within_s`` late, so that a confirmation just after a
partial read still counts it.

Every confirmed row is measured (`vidinfer.analytics.exposure`): visible seconds,
appearances, share of screen, position, exposure score, per stream and brand; the stage emits a
``brand_exposure`` message per stream every ``publish_interval_s`` of stream time and a final one
when the stream ends, and at the end of the run adds the ``brand_impact`` section to the run
report (and writes report.json, appearances.csv and exposure.png to ``report_dir``).
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple, Optional, Sequence

import numpy as np
from pydantic import Field, field_validator, model_validator

from vidinfer.analytics.brands import Brand, BrandMatcher
from vidinfer.analytics.clarity import box_sharpness
from vidinfer.analytics.evidence import EvidenceKeeper
from vidinfer.analytics.exposure import ExposureAnalytics, Segment
from vidinfer.batch import Batch, Pixels
from vidinfer.component import Component, Options
from vidinfer.detections import Attribute, Detections
from vidinfer.errors import ConfigError
from vidinfer.limits import HOUR_S, why
from vidinfer.stages.base import StageContext
from vidinfer.stages.detect import LAYER_NAME
from vidinfer.stages.read_text import READ
from vidinfer.stages.track import StreamTrackers, TrackOptions

__all__ = ["BrandExposure", "BrandSpec", "RateCard", "SegmentSpec", "SOURCE_LABELS"]

SOURCE_LABELS = ["logo", "text", "text-held"]
EVIDENCE_DIR = "evidence"  # the pictures' folder in report_dir
LOGO, TEXT, TEXT_HELD = range(3)


class _Waiting(NamedTuple):
    """An analysed frame waiting to be measured: what the figures need of it, not its pixels."""

    pts_ns: int
    width: int
    height: int
    discontinuity: bool
    cut: bool
    rows: Detections
    full: np.ndarray
    clarity: np.ndarray  # per row, 0-1


class BrandSpec(Options):
    """A sponsor to measure."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    logo_classes: list[str] = Field(default_factory=list, description="logo classes that show this brand")


class RateCard(Options):
    """What exposure costs to buy: media_value = quality-weighted seconds x per_30s / 30."""

    currency: str = Field(min_length=1, description="ISO 4217 code or symbol, as reports show it")
    per_30s: float = Field(ge=0, description="the price of 30 s of full exposure")


class SegmentSpec(Options):
    """A named span of stream time with figures of its own (a half, the replays of a match)."""

    name: str = Field(min_length=1)
    start_s: float = Field(ge=0, description="seconds from the stream's first analysed frame")
    end_s: float = Field(gt=0)
    per_30s: Optional[float] = Field(default=None, ge=0, description="the rate card's price here (a daypart)")

    @model_validator(mode="after")
    def _ordered(self) -> SegmentSpec:
        if self.end_s <= self.start_s:
            raise ValueError(f"segment {self.name!r} ends (end_s = {self.end_s:g}) before it starts "
                             f"(start_s = {self.start_s:g}); give an end_s after start_s")
        return self


class BrandExposure(Component):
    """Brand matching from logo classes and text, tracking, exposure figures, live messages, report.

    Args:
        brands: the sponsors, in the order of their brand index.
        logos: the layer of logo detections (default: the layer ``"logo"`` if a stage makes one).
        text: the layer of text lines (default: ``"text"`` if a stage makes one).
        layer: the name of the brand layer it makes.
        match_threshold: rapidfuzz ratio (0-100) a line needs to count as a brand.
        publish_interval_s: stream seconds between live ``brand_exposure`` messages (0: only the final one).
        min_track_frames: analysed frames a track needs to count as an appearance.
        reference_share: share of the screen at which the exposure score counts fully.
        logo_confirm_score: a logo at this score or above confirms its brand's tracked mark; below,
            it only continues a mark confirmed (as a partial read does).
        confirm_within_s: a partial read counts when a full read (or a logo) of the same tracked mark
            comes within this much stream time after it (the figures are measured this late).
        report_dir: where report.json, report.html, appearances.csv, exposure.png and the evidence go
            (None: no files; the report section stays).
        evidence_width: the width of each appearance's evidence picture (`vidinfer.analytics.evidence`),
            saved under ``report_dir``/evidence; 0: no pictures.
        segment_s: fixed windows of this many stream seconds with figures of their own (0: none).
        rate_card: the price of exposure, for media_value (`RateCard`; None: no media value).
        measure_clarity: measure each box's sharpness on the frame (host pixels); False: clarity 1.
        segments: named spans of stream time with figures of their own (`SegmentSpec`).
        tracker: the brand rows' tracker (`TrackOptions`).
    """

    type: ClassVar[str] = "brand_exposure"

    brands: list[BrandSpec] = Field(min_length=1)
    logos: Optional[str] = Field(default=None, pattern=LAYER_NAME)
    text: Optional[str] = Field(default=None, pattern=LAYER_NAME)
    layer: str = Field(default="brand", pattern=LAYER_NAME)
    match_threshold: float = Field(default=85.0, ge=0, le=100, description="rapidfuzz ratio a text needs")
    publish_interval_s: Annotated[float, why(
        "an hour; 0 publishes only the final figures")] = Field(default=5.0, ge=0, le=HOUR_S,
                                                                 description="stream time between live updates")
    min_track_frames: Annotated[int, why("an hour of frames at 25 fps is 90000")] = Field(default=2, ge=1,
                                                                                           le=100_000)
    reference_share: float = Field(default=0.02, gt=0, le=1)
    logo_confirm_score: float = Field(default=0.6, ge=0, le=1, description="a logo's score that confirms its mark")
    confirm_within_s: Annotated[float, why("a minute; the figures wait this long for a mark's full read")] = Field(
        default=2.0, ge=0, le=60, description="a partial read (a fragment, a look-alike) counts when a full read "
        "of the same tracked mark comes within this time after it; 0: it only continues a mark already read in full")
    report_dir: Optional[Path] = Field(default=Path("vidinfer-report"),
                                     description="report.json, report.html, appearances.csv, exposure.png, evidence/")
    evidence_width: Annotated[int, why("8K UHD is 7680 pixels wide")] = Field(
        default=1280, ge=0, le=7680, description="width of each appearance's evidence picture (0: none)")
    segment_s: Annotated[float, why("a day; longer windows are the whole stream")] = Field(
        default=0.0, ge=0, le=24 * HOUR_S, description="fixed windows with figures of their own (0: none)")
    segments: list[SegmentSpec] = Field(default_factory=list)
    rate_card: Optional[RateCard] = None
    measure_clarity: bool = True
    tracker: TrackOptions = Field(default_factory=TrackOptions)

    @field_validator("report_dir", mode="before")
    @classmethod
    def _no_files(cls, value: Any) -> Any:
        return None if value == "" else value  # TOML has no null: "" means no report files

    @model_validator(mode="after")
    def _priced_segments(self) -> BrandExposure:
        priced = [g.name for g in self.segments if g.per_30s is not None]
        if priced and self.rate_card is None:
            raise ValueError(f"segment {priced[0]!r} has a price (per_30s) but there is no rate_card to name its "
                             "currency; add rate_card = { currency = \"EUR\", per_30s = ... }")
        return self

    @field_validator("segments")
    @classmethod
    def _unique_segments(cls, segments: list[SegmentSpec]) -> list[SegmentSpec]:
        names = [seg.name for seg in segments]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"segment {name!r} is listed twice; give every segment its own name")
        return segments

    @field_validator("brands")
    @classmethod
    def _unique_brands(cls, brands: list[BrandSpec]) -> list[BrandSpec]:
        seen: set[str] = set()
        for b in brands:
            if b.name in seen:
                raise ValueError(f"brand {b.name!r} is listed twice; list every brand once (use aliases)")
            seen.add(b.name)
        return brands

    @property
    def pixels(self) -> Pixels:
        # The tracker's cut detection compares thumbnails and clarity reads the boxes' pixels (host
        # pixels); matching reads rows only.
        return Pixels.HOST if self.tracker.detect_cuts or self.measure_clarity or self._pictures else Pixels.NONE

    @property
    def _pictures(self) -> bool:
        return self.report_dir is not None and self.evidence_width > 0

    # -- the stage --
    def open(self, ctx: StageContext) -> None:
        self._ctx = ctx
        self._logos = self._input_layer(ctx, self.logos, "logo", "logos")
        self._text = self._input_layer(ctx, self.text, "text", "text")
        if self._logos is None and self._text is None:
            have = ", ".join(repr(n) for n in ctx.layer_names) or "none"
            raise ConfigError(f"stage {ctx.name!r} finds no layer 'logo' or 'text' to read brands from (layers made "
                              f"before it: {have}); name them with logos = \"...\" and/or text = \"...\"")
        self._matcher = BrandMatcher([Brand(b.name, tuple(b.aliases), tuple(b.logo_classes)) for b in self.brands],
                                     self.match_threshold)
        logo_classes = ctx.layer(self._logos).classes if self._logos is not None else ()
        self._logo_brand = self._matcher.logo_map(logo_classes)
        self._cuts = ctx.cuts if self.tracker.detect_cuts else None
        self._trackers = StreamTrackers(self.tracker.factory(f"stage {ctx.name!r}"), self._cuts)
        self._confirmed_ids: dict[str, set[int]] = {}
        self._confirm_ns = int(self.confirm_within_s * 1e9)
        # Per stream, the analysed frames not measured yet, oldest first (their rows, not their pixels).
        self._waiting: dict[str, deque[_Waiting]] = {}
        self._analytics = ExposureAnalytics(self._matcher.names, self.publish_interval_s, self.min_track_frames,
                                            self.reference_share, self.tracker.max_lost_s, self.segment_s,
                                            [Segment(g.name, g.start_s, g.end_s, g.per_30s) for g in self.segments],
                                            (card.currency, card.per_30s) if (card := self.rate_card) else None)
        for sid in ctx.stream_ids:  # the report lists streams in the pipeline's order
            self._analytics.stream(sid)
        if self.report_dir is not None:
            _check_writable(self.report_dir, ctx.name)
        self._evidence = EvidenceKeeper(self._matcher.names, self.report_dir / EVIDENCE_DIR, self.evidence_width,
                                        self.tracker.max_lost_s) if self._pictures and self.report_dir else None
        if self._evidence is not None:
            self._evidence.clear()
        ctx.add_layer(self.layer, self._matcher.names, {"source": SOURCE_LABELS}, tracked=True)

    @staticmethod
    def _input_layer(ctx: StageContext, given: str | None, default: str, key: str) -> str | None:
        if given is not None:
            ctx.layer(given)  # ConfigError naming both when no earlier stage makes it
            return given
        return default if ctx.has_layer(default) else None

    @property
    def analytics(self) -> ExposureAnalytics:
        """The running figures (once open)."""
        return self._analytics

    def __call__(self, batch: Batch) -> None:
        n = len(batch.frames)
        logos = batch[self._logos] if self._logos is not None and self._logos in batch else [None] * n
        texts = batch[self._text] if self._text is not None and self._text in batch else [None] * n
        combined = [self._combine(lg, tx) for lg, tx in zip(logos, texts)]
        tracked = self._trackers(batch.frames, [det for det, _ in combined])
        layer = []
        for frame, (det, full), with_ids in zip(batch.frames, combined, tracked):
            rows = det.with_track_ids(with_ids.track_id)
            confirmed = self._confirm(frame.stream_id, rows.track_id, full)
            shown = rows if confirmed.all() else rows[confirmed]
            layer.append(shown)
            cut = self._cuts is not None and self._cuts.is_cut(frame)
            clarity = self._clarity(frame, rows)
            if self._evidence is not None:
                self._evidence.offer(frame, shown, clarity if confirmed.all() else clarity[confirmed],
                                     cut or frame.discontinuity)
            self._waiting.setdefault(frame.stream_id, deque()).append(
                _Waiting(frame.pts_ns, frame.width, frame.height, frame.discontinuity, cut, rows, full, clarity))
            self._measure(frame.stream_id, frame.pts_ns - self._confirm_ns)
        batch[self.layer] = layer

    def _confirm(self, stream_id: str, track_id: np.ndarray, full: np.ndarray) -> np.ndarray:
        """Remember the tracks full rows (logos, full reads) were given; per row, whether it is full
        or continues such a track."""
        confirmed = self._confirmed_ids.setdefault(stream_id, set())
        confirmed.update(track_id[full & (track_id >= 0)].tolist())
        if len(confirmed) > 4096:  # ids only grow: forget the oldest tracks, long ended
            self._confirmed_ids[stream_id] = confirmed = set(sorted(confirmed)[-2048:])
        if full.all():
            return full
        return full | np.isin(track_id, np.fromiter(confirmed, np.int64, len(confirmed)))

    def _measure(self, stream_id: str, until_ns: int | None) -> None:
        """Measure the stream's frames older than ``until_ns`` (None: all): by now a partial read in
        them counts if its track was confirmed, up to ``confirm_within_s`` after it."""
        waiting = self._waiting.get(stream_id)
        while waiting and (until_ns is None or waiting[0].pts_ns <= until_ns):
            w = waiting.popleft()
            keep = self._confirm(stream_id, w.rows.track_id, w.full)
            det, clarity = (w.rows, w.clarity) if keep.all() else (w.rows[keep], w.clarity[keep])
            update = self._analytics.add(stream_id, w.pts_ns, w.width, w.height, det, w.discontinuity, w.cut,
                                         clarity)
            if self._evidence is not None:
                exp = self._analytics.stream(stream_id)
                self._evidence.assign(stream_id, w.pts_ns, exp.last_visible, exp.run_start_ns, exp.run_counted,
                                      exp.t0_ns or 0)
            if update is not None:
                self._ctx.emit("brand_exposure", stream_id, update, retain=True)

    def on_stream_end(self, stream_id: str) -> None:
        self._measure(stream_id, None)
        self._waiting.pop(stream_id, None)
        self._ctx.emit("brand_exposure", stream_id, self._analytics.finish(stream_id), retain=True)
        if self._evidence is not None:
            self._evidence.finish(stream_id, self._analytics.stream(stream_id).t0_ns)
        self._trackers.end(stream_id)
        self._confirmed_ids.pop(stream_id, None)

    def close(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            return
        from vidinfer.analytics.report import build_report, exposure_table, write_report

        files: list[Path] = []
        if self._evidence is not None:
            self._evidence.finish_all({sid: exp.t0_ns for sid, exp in self._analytics.streams.items()})
        if self.report_dir is not None:
            try:
                report, files = write_report(self._analytics, ctx.pipeline_name, self.report_dir, self._evidence)
            except OSError as exc:
                import logging

                logging.getLogger(__name__).error(
                    "stage %r: the brand report could not be written to '%s' (%s); its figures are in the run "
                    "report", ctx.name, self.report_dir, exc.strerror or exc)
                report = build_report(self._analytics, ctx.pipeline_name, self._evidence)
        else:
            report = build_report(self._analytics, ctx.pipeline_name)
        ctx.report("brand_impact", report, files, summary=exposure_table(report))

    def _clarity(self, frame: Any, rows: Detections) -> np.ndarray:
        """Per row, its sharpness on the frame times the visible fraction of the mark (a text read's
        match score; 1 for a logo)."""
        if not len(rows):
            return np.zeros(0, np.float32)
        visible = rows.attributes["source"].score
        if not self.measure_clarity:
            return np.ones(len(rows), np.float32)
        return box_sharpness(frame, rows.xyxy) * visible

    # -- rows --
    def _combine(self, logos: Detections | None, text: Detections | None) -> tuple[Detections, np.ndarray]:
        """Logo rows mapped to brands, then the text rows that name a brand, with ``source``; and
        per row whether it may confirm a mark (logos at ``logo_confirm_score``, full reads) or only
        continue one."""
        if logos is not None and len(logos):
            brand = self._logo_brand[logos.class_id]
            keep = brand >= 0
            logo_xyxy, logo_score, logo_brand = logos.xyxy[keep], logos.score[keep], brand[keep]
        else:
            logo_xyxy, logo_score, logo_brand = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), \
                np.zeros(0, np.int32)
        t_xyxy, t_score, t_brand, t_match, t_full, t_src = self._text_rows(text)
        n_logo = len(logo_brand)
        source = Attribute(np.concatenate([np.full(n_logo, LOGO, np.int32), t_src]),
                           np.concatenate([np.ones(n_logo, np.float32), t_match]))
        det = Detections(np.concatenate([logo_xyxy, t_xyxy]), np.concatenate([logo_score, t_score]),
                         np.concatenate([logo_brand, t_brand]), attributes={"source": source})
        return det, np.concatenate([logo_score >= self.logo_confirm_score, t_full])

    def _text_rows(self, text: Detections | None) -> tuple[np.ndarray, ...]:
        """(xyxy, score, brand, match score, full, source label) of the lines that name a brand."""
        if text is None or len(text) == 0:
            e = np.zeros(0, np.float32)
            return np.zeros((0, 4), np.float32), e, np.zeros(0, np.int32), e, np.zeros(0, bool), np.zeros(0, np.int32)
        strings = [str(t) for t in text.data["text"]]
        ids, match, full = self._matcher.match(strings)
        read = text.attributes["read"].label_id if "read" in text.attributes else np.full(len(text), READ, np.int32)
        src = np.where(read == READ, TEXT, TEXT_HELD).astype(np.int32)
        xyxy, score, ids, match, full, src = self._join_split_names(strings, text.xyxy, text.score, ids, match,
                                                                    full, src)
        keep = ids >= 0
        return (xyxy[keep], score[keep], ids[keep].astype(np.int32), match[keep].astype(np.float32), full[keep],
                src[keep])

    def _join_split_names(self, texts: Sequence[str], xyxy: np.ndarray, score: np.ndarray, ids: np.ndarray,
                          match: np.ndarray, full: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, ...]:
        """Unmatched neighbours on one line may be one name split by an occluder: join them. The
        name's two ends with a gap as wide as the letters between them is a full read; any other
        pair of pieces a partial one.

        Neighbours overlap vertically by at least half a line and sit at most three line heights
        apart. A joined pair becomes one row (the union box) in place of its left piece; the
        right piece's row is dropped.
        """
        loose = np.flatnonzero(ids < 0)
        if len(loose) < 2:
            return xyxy, score, ids, match, full, src
        loose = loose[np.argsort(xyxy[loose, 0])]
        drop = np.zeros(len(ids), bool)
        ids, match, xyxy, score, full = ids.copy(), match.copy(), xyxy.copy(), score.copy(), full.copy()
        for i, j in zip(loose[:-1], loose[1:]):
            if drop[i] or ids[i] >= 0:
                continue
            h = min(xyxy[i, 3] - xyxy[i, 1], xyxy[j, 3] - xyxy[j, 1])
            overlap = min(xyxy[i, 3], xyxy[j, 3]) - max(xyxy[i, 1], xyxy[j, 1])
            gap = xyxy[j, 0] - xyxy[i, 2]
            if overlap < 0.5 * h or not (-0.5 * h <= gap <= 3 * h):
                continue
            brand, s, hidden = self._matcher.match_split(texts[i], texts[j])
            if brand >= 0:
                ids[i], match[i] = brand, s
                full[i] = hidden > 0 and _gap_fits(texts[i], texts[j], xyxy[i], xyxy[j], hidden)
                xyxy[i] = [xyxy[i, 0], min(xyxy[i, 1], xyxy[j, 1]), xyxy[j, 2], max(xyxy[i, 3], xyxy[j, 3])]
                score[i] = min(score[i], score[j])
                drop[j] = True
        keep = ~drop
        return xyxy[keep], score[keep], ids[keep], match[keep], full[keep], src[keep]


def _gap_fits(left: str, right: str, a: np.ndarray, b: np.ndarray, hidden: int) -> bool:
    """Whether the gap between two pieces of a name is as wide as its ``hidden`` letters would be
    (between half and twice the pieces' mean letter width each: an occluder covers letters, and
    may cover some of the space around them)."""
    letters = len(left.replace(" ", "")) + len(right.replace(" ", ""))
    letter_w = float((a[2] - a[0]) + (b[2] - b[0])) / max(letters, 1)
    gap = float(b[0] - a[2])
    return 0.5 * hidden * letter_w <= gap <= 2.0 * hidden * letter_w + letter_w


def _check_writable(folder: Path, stage: str) -> None:
    """The report folder must be writable before the run starts, not discovered after all the work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vidinfer-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"stage {stage!r}: key 'report_dir': cannot write to '{folder}' ({exc.strerror or exc}); "
                          "give a writable folder, or report_dir = \"\" for no report files") from None

