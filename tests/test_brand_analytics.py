"""Brand matching and exposure figures on hand-made detections with known answers."""

import json

import numpy as np
import pytest

from vidinfer.analytics import Brand, BrandMatcher, ExposureAnalytics
from vidinfer.analytics.report import write_report
from vidinfer.detections import Detections

BRANDS = ["VOLTA", "ORBIS"]
W, H = 1920, 1080


def volta(box=(864, 486, 1056, 594), track=1, score=0.9):  # 192x108: 1% of the screen, centre cell
    return Detections([box], [score], [0], [track])


NONE = Detections.empty()


def test_full_reads_spell_the_whole_name_with_or_without_spaces_and_ocr_confusions():
    m = BrandMatcher([Brand("VOLTA"), Brand("NORDIC AIR"), Brand("PULSE", aliases=("PULSE ENERGY",)), Brand("ORBIS")])
    ids, scores, full = m.match(["volta", "NORDICAIR", "Pulse Energy drink", "V0LTA", "ORBITAL", "OR", "the orbis cup",
                                 "", "NOR DIC AIR"])
    assert ids.tolist() == [0, 1, 2, 0, -1, -1, 3, -1, 1]
    assert full.tolist() == [True, True, True, True, False, False, True, False, True]
    assert scores[0] == pytest.approx(1.0)


def test_look_alike_words_never_start_a_brand():
    """Words sharing most letters with a name: at most a partial read (which only continues a
    track), or nothing; never a full read, whatever the ratio says."""
    m = BrandMatcher([Brand("VOLTA"), Brand("NORDIC AIR"), Brand("KESTREL"), Brand("ORBIS"), Brand("PULSE")])
    decoys = ["KESTRAL", "PESTREL", "NORDIC AID", "PURSE", "ORBIT", "VOLTAGE", "MOLTA", "PULSAR", "REVOLTA"]
    ids, _, full = m.match(decoys)
    assert not full.any(), dict(zip(decoys, full))
    assert ids.tolist()[:3] == [2, 2, 1]  # close enough to continue a confirmed track of the name
    assert ids.tolist()[3:] == [-1] * 6


def test_long_names_allow_one_edit_past_their_first_letters():
    m = BrandMatcher([Brand("CONTINENTAL"), Brand("KESTREL")])
    ids, _, full = m.match(["CONTINENTEL", "CONTINENTAL", "KONTINENTAL", "CONTINENTAI", "CONTINENTA", "KESTREI"])
    assert list(zip(ids.tolist(), full.tolist())) == [(0, True), (0, True), (0, False), (0, False), (0, False),
                                                       (1, False)]


def test_logo_classes_map_by_name_or_listed_class():
    m = BrandMatcher([Brand("VOLTA", logo_classes=("volta_mark",)), Brand("ORBIS")])
    assert m.logo_map(["volta_mark", "orbis", "unknown"]).tolist() == [0, 1, -1]


def test_visible_seconds_do_not_depend_on_the_sampling_rate():
    full, sampled = ExposureAnalytics(BRANDS), ExposureAnalytics(BRANDS)
    for i in range(100):  # 4 s at 25 fps; VOLTA visible in the first 2 s
        det = volta() if i < 50 else NONE
        full.add("s", i * 40_000_000, W, H, det)
        if i % 5 == 0:
            sampled.add("s", i * 40_000_000, W, H, det)
    for a in (full, sampled):
        body = a.finish("s")
        assert body["brands"][0]["visible_s"] == pytest.approx(2.0)
        assert body["brands"][1]["visible_s"] == 0
        assert body["duration_s"] == pytest.approx(4.0)


def test_share_position_confidence_and_score():
    a = ExposureAnalytics(BRANDS, reference_share=0.02)
    for i in range(25):
        a.add("s", i * 40_000_000, W, H, volta(score=0.8))
    b = a.finish("s")["brands"][0]
    assert b["mean_share"] == pytest.approx(0.01, rel=1e-3) and b["peak_share"] == pytest.approx(0.01, rel=1e-3)
    assert b["main_position"] == "centre" and b["grid_s"][4] == pytest.approx(1.0)
    assert b["mean_confidence"] == pytest.approx(0.8)
    assert b["exposure_score"] == pytest.approx(1.0 * 0.5)  # 1 s at half the reference share, centre weight 1


def test_tracks_count_the_tracks_seen_often_enough():
    a = ExposureAnalytics(BRANDS, min_track_frames=2)
    tracks = [1, 1, 1, 2, 3, 3]  # track 2 is a one-frame blip
    for i, t in enumerate(tracks):
        a.add("s", i * 40_000_000, W, H, volta(track=t))
    b = a.finish("s")["brands"][0]
    assert b["tracks"] == 2
    assert b["appearances"] == 1  # on screen the whole time: one occurrence, whatever the tracker did


def _appearances(pattern, cuts=(), max_gap_s=1.0, min_frames=2, step_ms=200):
    """Appearances of VOLTA for a pattern of analysed frames ("x": on screen, ".": not)."""
    a = ExposureAnalytics(BRANDS, min_track_frames=min_frames, max_gap_s=max_gap_s)
    for i, c in enumerate(pattern):
        a.add("s", i * step_ms * 1_000_000, W, H, volta() if c == "x" else NONE, cut=i in cuts)
    return a.finish("s")["brands"][0]["appearances"]


def test_appearances_merge_gaps_shorter_than_max_gap_and_cuts_with_the_brand_on_both_sides():
    # At 5 analysed frames a second: 4 frames unseen is 0.8 s (merged), 5 frames is 1.0 s (not).
    assert _appearances("xxx....xxx") == 1
    assert _appearances("xxx.....xxx") == 2
    assert _appearances("xxxxxxxx", cuts={4}) == 1  # on screen on both sides of the cut
    assert _appearances("xxx.xxxx", cuts={4}) == 2  # gone at the cut: the new shot's sight is new
    assert _appearances("xxxx.xxx", cuts={4}) == 2  # not yet there after the cut
    assert _appearances("xxx.x.xx") == 1
    assert _appearances("x.....x.....x") == 0  # lone one-frame sights are blips (min_track_frames = 2)
    assert _appearances("x....x....x") == 1  # but sights 0.8 s apart are one occurrence
    assert _appearances("xx.xx", max_gap_s=0) == 2
    assert _appearances("xxxx", max_gap_s=0) == 1


def test_a_gap_in_the_stream_is_not_counted_as_visible():
    a = ExposureAnalytics(BRANDS)
    for i in range(10):
        a.add("s", i * 40_000_000, W, H, volta())
    for t in (60_000_000_000, 60_040_000_000):  # a minute later (e.g. after a reconnect)
        a.add("s", t, W, H, volta())
    # The frame before the gap counts for at most twice the usual step, not the minute.
    assert a.finish("s")["brands"][0]["visible_s"] == pytest.approx(9 * 0.04 + 2 * 0.04 + 2 * 0.04)


def test_blips_count_no_time_and_an_occurrence_counts_from_its_first_frame(tmp_path):
    # At 5 analysed frames a second, min_track_frames 2: lone sights 1 s apart are blips (no time, no
    # appearance, no interval); sights 0.8 s apart are one occurrence whose time counts from its
    # first frame, held until the second.
    a = ExposureAnalytics(BRANDS, segment_s=1.0)
    orbis = Detections([(0, 0, 96, 54)], [0.9], [1], [9])
    pattern = "x.....x....x" + "." * 8 + "x"
    for i, c in enumerate(pattern):
        rows = [volta(), orbis] if c == "x" else [orbis]
        a.add("s", i * 200_000_000, W, H, Detections(*(np.concatenate([getattr(r, k) for r in rows])
                                                       for k in ("xyxy", "score", "class_id", "track_id"))))
    body = a.finish("s")
    v, o = body["brands"]
    assert v["appearances"] == 1 and v["visible_s"] == pytest.approx(0.4)  # frames 6 and 11, 0.2 s each
    assert v["solus_s"] == 0 and o["visible_s"] == pytest.approx(4.2) and o["appearances"] == 1
    assert o["solus_s"] == pytest.approx(4.2 - 4 * 0.2)  # a blip on screen beside it is still on screen
    assert [g["brands"][0]["visible_s"] for g in body["segments"]] == pytest.approx([0, 0.2, 0.2, 0, 0])
    report, _ = write_report(a, "t", tmp_path)
    assert report["streams"]["s"]["intervals_s"]["VOLTA"] == [[1.2, 1.4], [2.2, 2.4]]
    assert report["streams"]["s"]["appearances_s"] == {"VOLTA": [[1.2, 2.4]], "ORBIS": [[0.0, 4.2]]}


def test_live_updates_at_the_interval_and_a_final_one():
    a = ExposureAnalytics(BRANDS, publish_interval_s=1.0)
    bodies = [b for i in range(75) if (b := a.add("s", i * 40_000_000, W, H, volta())) is not None]
    assert [b["pts_ns"] for b in bodies] == [1_000_000_000, 2_000_000_000]
    assert not any(b["final"] for b in bodies)
    final = a.finish("s")
    assert final["final"] and final["brands"][0]["visible_s"] == pytest.approx(3.0)


def test_report_files(tmp_path):
    a = ExposureAnalytics(BRANDS)
    for sid in ("cam-1", "cam-2"):
        for i in range(25):
            a.add(sid, i * 40_000_000, W, H, volta())
        a.finish(sid)
    report, files = write_report(a, "test", tmp_path)
    assert [f.name for f in files] == ["report.json", "appearances.csv", "exposure.png", "report.html"]
    assert json.loads(files[0].read_text()) == report
    assert report["totals"][0]["visible_s"] == pytest.approx(2.0) and report["totals"][0]["streams"] == 2
    assert files[1].read_text().splitlines()[1:] == ["cam-1,VOLTA,0.000,1.000,1.000,,,",
                                                   "cam-2,VOLTA,0.000,1.000,1.000,,,"]  # no evidence kept
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fragments_of_half_a_name_or_more_are_partial_reads_shorter_ones_nothing():
    m = BrandMatcher([Brand("VOLTA"), Brand("NORDIC AIR"), Brand("KESTREL"), Brand("ORBIS")])
    texts = ["STREL", "ORBI!", "NORDIC", "/OLTA", "KES", "NORD", "AIR", "ORBIT", "REL"]
    ids, _, full = m.match(texts)
    assert ids.tolist() == [2, 3, 1, 0, -1, -1, -1, -1, -1]
    assert not full.any()


def test_a_name_split_by_an_occluder_matches_in_order_only():
    m = BrandMatcher([Brand("KESTREL"), Brand("NORDIC AIR")])
    assert m.match_split("KES", "REL")[::2] == (0, 1)  # the name's two ends, one letter hidden
    assert m.match_split("NORD", "AIR")[::2] == (1, 2)
    assert m.match_split("EST", "REL")[::2] == (0, -1)  # not the ends: a fragment
    assert m.match_split("REL", "KES")[0] == -1  # wrong order
    assert m.match_split("K", "REL")[0] == -1  # a single letter says nothing


def test_brand_stage_joins_pieces_on_one_line_and_maps_logos():
    from types import SimpleNamespace

    from helpers import make_frame

    import vidinfer as vi

    whole = SimpleNamespace(text=["KESTREL", "VOLTA", "hello"],
                            xyxy=np.array([[100, 50, 260, 92], [400, 50, 500, 90], [600, 50, 700, 90]], np.float32),
                            score=np.array([0.9, 0.99, 0.9], np.float32))
    split = SimpleNamespace(text=["KES", "REL", "VOLTA", "hello"],
                            xyxy=np.array([[100, 50, 160, 90], [200, 52, 260, 92], [400, 50, 500, 90],
                                           [600, 50, 700, 90]], np.float32),
                            score=np.array([0.9, 0.8, 0.99, 0.9], np.float32))

    inner = SimpleNamespace(text=["EST", "REL"], xyxy=split.xyxy[:2], score=split.score[:2])

    class Reader:  # stream "s": the whole name, then hidden in the middle; stream "t": its inner letters
        def __call__(self, frames):
            return [inner if f.stream_id == "t" else whole if f.frame_no == 0 else split for f in frames]

    logos = Detections([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 1])

    class Logos:
        """A stand-in logo detector: the layer "logo" with classes volta_mark and other."""

        name = "logos"
        pixels = vi.Pixels.NONE

        def open(self, ctx):
            ctx.add_layer("logo", ["volta_mark", "other"])

        def __call__(self, batch):
            batch["logo"] = [logos for _ in batch.frames]

        def on_stream_end(self, stream_id):
            pass

        def close(self):
            pass

    pipe = vi.Pipeline([], [Logos(), vi.ReadText(reader=Reader()),
                            vi.BrandExposure(brands=[{"name": "KESTREL"},
                                                     {"name": "VOLTA", "logo_classes": ["volta_mark"]}],
                                             logos="logo", text="text", report_dir=None)], device="cpu")
    pipe.analyse([make_frame("s", 0)])
    (out,) = pipe.analyse([make_frame("s", 1)])["brand"]
    assert out.class_id.tolist() == [1, 0, 1]  # the VOLTA logo, the joined KESTREL, the VOLTA text
    assert out.attributes["source"].label_id.tolist() == [0, 1, 1]
    np.testing.assert_allclose(out.xyxy[1], [100, 50, 260, 92])
    assert out.score[1] == pytest.approx(0.8)
    # Pieces that are not the name's ends, where the whole name was never read: a fragment starts nothing.
    (other,) = pipe.analyse([make_frame("t", 0)])["brand"]
    assert other.class_id.tolist() == [1]  # only the VOLTA logo


def _two_brands(a, sid="s"):
    """4 s at 25 fps: VOLTA (4% of the screen) 0-3 s, ORBIS (0.25%) 2-4 s; both on screen 2-3 s."""
    big = (768, 432, 1152, 648)  # 384 x 216
    small = (912, 513, 1008, 567)  # 96 x 54
    for i in range(100):
        rows = ([(big, 0, 1)] if i < 75 else []) + ([(small, 1, 2)] if i >= 50 else [])
        det = Detections([r[0] for r in rows], [0.9] * len(rows), [r[1] for r in rows], [r[2] for r in rows]) \
            if rows else NONE
        a.add(sid, i * 40_000_000, W, H, det)
    return a.finish(sid)


def test_solus_clutter_size_buckets_and_share_of_voice():
    volta_, orbis = _two_brands(ExposureAnalytics(BRANDS))["brands"]
    # VOLTA: 3 s on screen, alone 0-2 s, with ORBIS 2-3 s -> clutter 1 s x 1 other / 3 s.
    assert volta_["visible_s"] == pytest.approx(3.0) and volta_["solus_s"] == pytest.approx(2.0)
    assert volta_["mean_clutter"] == pytest.approx(1 / 3, abs=1e-4)
    assert volta_["size_s"] == {"<1%": 0, "1-2.5%": 0, "2.5-5%": pytest.approx(3.0), "5-10%": 0, ">=10%": 0}
    assert volta_["share_of_voice"] == pytest.approx(3 / 5)
    # ORBIS: 2 s, alone 3-4 s.
    assert orbis["solus_s"] == pytest.approx(1.0) and orbis["mean_clutter"] == pytest.approx(0.5)
    assert orbis["size_s"]["<1%"] == pytest.approx(2.0) and orbis["share_of_voice"] == pytest.approx(2 / 5)
    # A share exactly on an edge goes to the bucket above; the buckets add up to visible_s.
    a = ExposureAnalytics(BRANDS)
    for i in range(10):
        a.add("s", i * 40_000_000, 1000, 1000, Detections([(0, 0, 100, 100)], [0.9], [0], [1]))
    b = a.finish("s")["brands"][0]
    assert b["size_s"]["1-2.5%"] == pytest.approx(0.4) and sum(b["size_s"].values()) == pytest.approx(b["visible_s"])


def test_fixed_windows_split_frames_at_their_edges_and_add_up_to_the_whole():
    body = _two_brands(ExposureAnalytics(BRANDS, segment_s=1.5))
    segs = body["segments"]
    assert [(g["segment"], g["start_s"], g["end_s"]) for g in segs] == [("0-1.5 s", 0, 1.5), ("1.5-3 s", 1.5, 3.0),
                                                                           ("3-4.5 s", 3.0, 4.5)]
    # The frame at 1.48 s stands for 1.48-1.52 s: half of it in each of the first two windows.
    assert [g["duration_s"] for g in segs] == pytest.approx([1.5, 1.5, 1.0])
    volta_ = [g["brands"][0] for g in segs]
    orbis = [g["brands"][1] for g in segs]
    assert [v["visible_s"] for v in volta_] == pytest.approx([1.5, 1.5, 0])
    assert [v["solus_s"] for v in volta_] == pytest.approx([1.5, 0.5, 0])
    assert [o["visible_s"] for o in orbis] == pytest.approx([0, 1.0, 1.0])
    assert [o["solus_s"] for o in orbis] == pytest.approx([0, 0, 1.0])
    # An appearance belongs to the window it starts in.
    assert [v["appearances"] for v in volta_] == [1, 0, 0] and [o["appearances"] for o in orbis] == [0, 1, 0]
    assert [v["share_of_voice"] for v in volta_] == pytest.approx([1.0, 0.6, 0])
    for k, whole in enumerate(body["brands"]):
        for key in ("visible_s", "solus_s", "exposure_score", "appearances"):
            assert sum(g["brands"][k][key] for g in segs) == pytest.approx(whole[key], abs=2e-3), key
        for bucket, secs in whole["size_s"].items():
            assert sum(g["brands"][k]["size_s"][bucket] for g in segs) == pytest.approx(secs, abs=2e-3)


def test_named_segments_and_the_report_over_streams(tmp_path):
    from vidinfer.analytics.exposure import Segment

    a = ExposureAnalytics(BRANDS, segments=[Segment("second half", 2.0, 4.0), Segment("opening", 0.0, 0.5)])
    _two_brands(a, "cam-1")
    _two_brands(a, "cam-2")
    report, _ = write_report(a, "test", tmp_path)
    half, opening = report["streams"]["cam-1"]["segments"]
    assert half["segment"] == "second half" and opening["segment"] == "opening"
    volta_, orbis = half["brands"]
    assert volta_["visible_s"] == pytest.approx(1.0) and volta_["solus_s"] == 0 and volta_["appearances"] == 0
    assert orbis["visible_s"] == pytest.approx(2.0) and orbis["solus_s"] == pytest.approx(1.0)
    assert orbis["appearances"] == 1 and orbis["share_of_voice"] == pytest.approx(2 / 3, abs=1e-5)
    assert opening["brands"][0]["visible_s"] == pytest.approx(0.5) and opening["brands"][0]["appearances"] == 1
    # Over both streams: sums, in time order; share of voice of the sums.
    assert [g["segment"] for g in report["segments"]] == ["opening", "second half"]
    both = report["segments"][1]["brands"]
    assert both[1]["visible_s"] == pytest.approx(4.0) and both[1]["appearances"] == 2
    totals = report["totals"]
    assert totals[0]["visible_s"] == pytest.approx(6.0) and totals[0]["solus_s"] == pytest.approx(4.0)
    assert totals[0]["share_of_voice"] == pytest.approx(0.6) and totals[0]["streams"] == 2
    assert totals[0]["tracks"] == 2 and totals[1]["peak_share"] == pytest.approx(0.0025)


def test_report_lists_on_screen_intervals_that_add_up_to_visible_time(tmp_path):
    a = ExposureAnalytics(BRANDS)
    for i in range(100):  # VOLTA on screen 0-1 s and 2-3 s at 25 fps
        a.add("s", i * 40_000_000, W, H, volta() if (i // 25) % 2 == 0 else NONE)
    a.finish("s")
    report, _ = write_report(a, "test", tmp_path)
    spans = report["streams"]["s"]["intervals_s"]["VOLTA"]
    assert spans == [[0.0, 1.0], [2.0, 3.0]]
    assert report["streams"]["s"]["intervals_s"]["ORBIS"] == []
    # One appearance per on-screen interval here: the 1 s gap is not shorter than max_gap_s.
    assert report["streams"]["s"]["appearances_s"] == {"VOLTA": [[0.0, 1.0], [2.0, 3.0]], "ORBIS": []}
    assert (tmp_path / "appearances.csv").read_text().splitlines() == [
        "stream,brand,start_s,end_s,duration_s,evidence_frame_s,evidence_image,evidence_crop",
        "s,VOLTA,0.000,1.000,1.000,,,", "s,VOLTA,2.000,3.000,1.000,,,"]  # no evidence kept


def _text_pipeline(lines_by_frame, confirm_within_s=2.0):
    """ReadText with a scripted reader (one line per frame: ``lines_by_frame[frame_no]``, at one
    place) and BrandExposure; returns a function of frame count giving the final figures by brand."""
    from types import SimpleNamespace

    from helpers import make_frame

    import vidinfer as vi

    class Reader:
        def __call__(self, frames):
            out = []
            for f in frames:
                line = lines_by_frame[f.frame_no]
                out.append(SimpleNamespace(text=[line] if line else [],
                                           xyxy=np.array([[800, 500, 1100, 560]] if line else np.zeros((0, 4)),
                                                         np.float32),
                                           score=np.full(1 if line else 0, 0.9, np.float32)))
            return out

    stage = vi.BrandExposure(brands=[{"name": "KESTREL"}, {"name": "NORDIC AIR"}], text="text", report_dir=None,
                             confirm_within_s=confirm_within_s)
    pipe = vi.Pipeline([], [vi.ReadText(reader=Reader()), stage], device="cpu")
    for i in range(len(lines_by_frame)):  # 25 fps
        pipe.analyse([make_frame("s", i)])
    stage.on_stream_end("s")
    return {b["brand"]: b for b in stage.analytics.body("s", None, True)["brands"]}


def test_a_fragment_counts_once_a_full_read_of_the_same_mark_confirms_it():
    # A board half hidden for 1 s, then read in full for 1 s: all 2 s count, one appearance.
    got = _text_pipeline(["STREL"] * 25 + ["KESTREL"] * 25)
    assert got["KESTREL"]["visible_s"] == pytest.approx(2.0) and got["KESTREL"]["appearances"] == 1
    # The confirmation comes 3 s later, past confirm_within_s: only what is within 2 s of it counts.
    got = _text_pipeline(["STREL"] * 75 + ["KESTREL"] * 25)
    assert got["KESTREL"]["visible_s"] == pytest.approx(2.0 + 1.0 + 0.04, abs=0.041)
    # With confirm_within_s = 0 a fragment only continues what a full read started.
    got = _text_pipeline(["STREL"] * 25 + ["KESTREL"] * 25 + ["STREL"] * 25, confirm_within_s=0)
    assert got["KESTREL"]["visible_s"] == pytest.approx(2.0)


def test_fragments_and_look_alikes_alone_count_for_nothing():
    got = _text_pipeline(["NORDIC"] * 50 + ["KESTRAL"] * 50 + ["STREL"] * 50 + ["NORDIC AID"] * 50)
    assert got["KESTREL"]["visible_s"] == 0 and got["NORDIC AIR"]["visible_s"] == 0
    assert got["KESTREL"]["appearances"] == 0 and got["NORDIC AIR"]["appearances"] == 0
