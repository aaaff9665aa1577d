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


def test_matching_is_fuzzy_but_not_loose():
    m = BrandMatcher([Brand("VOLTA"), Brand("NORDIC AIR"), Brand("PULSE", aliases=("PULSE ENERGY",)), Brand("ORBIS")])
    ids, scores = m.match(["volta", "NORDICAIR", "Pulse Energy drink", "V0LTA", "ORBITAL", "OR", "the orbis cup", ""])
    assert ids.tolist() == [0, 1, 2, 0, -1, -1, 3, -1]
    assert scores[0] == pytest.approx(1.0)


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


def test_appearances_count_tracks_seen_often_enough():
    a = ExposureAnalytics(BRANDS, min_track_frames=2)
    tracks = [1, 1, 1, 2, 3, 3]  # track 2 is a one-frame blip
    for i, t in enumerate(tracks):
        a.add("s", i * 40_000_000, W, H, volta(track=t))
    assert a.finish("s")["brands"][0]["appearances"] == 2


def test_a_gap_in_the_stream_is_not_counted_as_visible():
    a = ExposureAnalytics(BRANDS)
    for i in range(10):
        a.add("s", i * 40_000_000, W, H, volta())
    a.add("s", 60 * 1_000_000_000, W, H, volta())  # a minute later (e.g. after a reconnect)
    # The frame before the gap counts for at most twice the usual step, not the minute.
    assert a.finish("s")["brands"][0]["visible_s"] == pytest.approx(9 * 0.04 + 2 * 0.04 + 0.04)


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
    assert [f.name for f in files] == ["report.json", "exposure.png"]
    assert json.loads(files[0].read_text()) == report
    assert report["totals"][0]["visible_s"] == pytest.approx(2.0) and report["totals"][0]["streams"] == 2
    assert files[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fragments_of_half_a_name_or_more_match_shorter_ones_do_not():
    m = BrandMatcher([Brand("VOLTA"), Brand("NORDIC AIR"), Brand("KESTREL"), Brand("ORBIS")])
    texts = ["STREL", "ORBI!", "NORDIC", "/OLTA", "KES", "NORD", "AIR", "ORBIT", "REL"]
    assert m.match(texts)[0].tolist() == [2, 3, 1, 0, -1, -1, -1, -1, -1]


def test_a_name_split_by_an_occluder_matches_in_order_only():
    m = BrandMatcher([Brand("KESTREL"), Brand("NORDIC AIR")])
    assert m.match_split("KES", "REL")[0] == 0
    assert m.match_split("NORD", "AIR")[0] == 1
    assert m.match_split("REL", "KES")[0] == -1  # wrong order
    assert m.match_split("K", "REL")[0] == -1  # a single letter says nothing


def test_brand_stage_joins_pieces_on_one_line_and_maps_logos():
    from types import SimpleNamespace

    from helpers import make_frame

    import vidinfer as vi

    text = SimpleNamespace(text=["KES", "REL", "VOLTA", "hello"],
                           xyxy=np.array([[100, 50, 160, 90], [200, 52, 260, 92], [400, 50, 500, 90],
                                          [600, 50, 700, 90]], np.float32),
                           score=np.array([0.9, 0.8, 0.99, 0.9], np.float32))

    class Reader:
        def __call__(self, frames):
            return [text for _ in frames]

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
    (out,) = pipe.analyse([make_frame("s", 0)])["brand"]
    assert out.class_id.tolist() == [1, 0, 1]  # the VOLTA logo, the joined KESTREL, the VOLTA text
    assert out.attributes["source"].label_id.tolist() == [0, 1, 1]
    np.testing.assert_allclose(out.xyxy[1], [100, 50, 260, 92])
    assert out.score[1] == pytest.approx(0.8)


def test_report_lists_on_screen_intervals_that_add_up_to_visible_time(tmp_path):
    a = ExposureAnalytics(BRANDS)
    for i in range(100):  # VOLTA on screen 0-1 s and 2-3 s at 25 fps
        a.add("s", i * 40_000_000, W, H, volta() if (i // 25) % 2 == 0 else NONE)
    a.finish("s")
    report, _ = write_report(a, "test", tmp_path)
    spans = report["streams"]["s"]["intervals_s"]["VOLTA"]
    assert spans == [[0.0, 1.0], [2.0, 3.0]]
    assert report["streams"]["s"]["intervals_s"]["ORBIS"] == []
