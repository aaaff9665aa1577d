"""Evidence of every appearance (`vidinfer.analytics.evidence`): the best frame of each counted
appearance, on hand-made frames and detections whose answer is worked out by hand, driven the way
the brand stage drives it (pictures offered while the frame exists, assigned once the figures have
measured it, ``lag`` frames later), and listed in report.json, appearances.csv and report.html."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest
from PIL import Image

from vidinfer.analytics import ExposureAnalytics
from vidinfer.analytics.evidence import CROP_MARGIN, EvidenceKeeper
from vidinfer.analytics.html_report import render_html
from vidinfer.analytics.report import build_report, write_report
from vidinfer.detections import Detections
from vidinfer.frame import Frame
from vidinfer.preprocess.letterbox import Letterbox

W, H = 640, 360
STEP_NS = 200_000_000  # 5 analysed frames a second
BRANDS = ["VOLTA", "ORBIS"]


def frame_at(k: int, boxes: list[tuple[int, list[float]]], source: str = "av") -> tuple[Frame, Detections]:
    """Analysed frame ``k``: grey, each box a white card with a black border; its rows."""
    pic = np.full((H, W, 3), 90, np.uint8)
    for _, (x0, y0, x1, y1) in boxes:
        pic[int(y0):int(y1), int(x0):int(x1)] = 0
        pic[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2] = 255
    lb = Letterbox.fit(W, H, 320, 320)
    small = np.asarray(Image.fromarray(pic).resize((lb.new_w, lb.new_h)))
    src = {"av": av.VideoFrame.from_ndarray(pic, format="rgb24").reformat(format="yuv420p"), "rgb": pic,
           "none": None}[source]
    frame = Frame("cam", k, k * STEP_NS, 0, small, lb, src)
    rows = Detections(np.asarray([b for _, b in boxes], np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32),
                      np.asarray([c for c, _ in boxes], np.int32), np.arange(1, len(boxes) + 1, dtype=np.int64))
    return frame, rows


def drive(tmp_path, frames, clarity=None, lag: int = 0, min_track_frames: int = 2, source: str = "av", cuts=()):
    """Offer each frame, then measure and assign it ``lag`` frames later, as the stage does."""
    analytics = ExposureAnalytics(BRANDS, 0.0, min_track_frames)
    keeper = EvidenceKeeper(BRANDS, tmp_path / "evidence", width=W)
    waiting = []
    for k, boxes in enumerate(frames):
        frame, rows = frame_at(k, boxes, source)
        c = np.ones(len(rows)) if clarity is None else np.asarray(clarity[k], np.float64)
        keeper.offer(frame, rows, c, k in cuts)
        waiting.append((frame, rows, c))
        while len(waiting) > lag:
            f, r, cl = waiting.pop(0)
            analytics.add("cam", f.pts_ns, f.width, f.height, r, cut=f.frame_no in cuts, clarity=cl)
            exp = analytics.stream("cam")
            keeper.assign("cam", f.pts_ns, exp.last_visible, exp.run_start_ns, exp.run_counted, exp.t0_ns or 0)
    for f, r, cl in waiting:
        analytics.add("cam", f.pts_ns, f.width, f.height, r, cut=f.frame_no in cuts, clarity=cl)
        exp = analytics.stream("cam")
        keeper.assign("cam", f.pts_ns, exp.last_visible, exp.run_start_ns, exp.run_counted, exp.t0_ns or 0)
    analytics.finish("cam")
    keeper.finish("cam", analytics.stream("cam").t0_ns)
    return analytics, keeper


def square(cx: float, side: float) -> list[float]:
    return [cx - side / 2, 150 - side / 2, cx + side / 2, 150 + side / 2]


@pytest.mark.parametrize("lag", [0, 3])
@pytest.mark.parametrize("source", ["av", "rgb", "none"])
def test_the_largest_mark_is_the_evidence_with_its_box_drawn_and_its_crop(tmp_path, lag, source):
    sides = [20, 40, 80, 60, 30]  # frame 2 (0.4 s) shows the mark largest
    analytics, keeper = drive(tmp_path, [[(0, square(200, s))] for s in sides], lag=lag, source=source)
    (record,), () = keeper.records("cam")
    assert record["frame_s"] == 0.4 and record["box"] == square(200, 80)
    assert record["image"] == "evidence/cam-VOLTA-0001.jpg" and record["crop"] == "evidence/cam-VOLTA-0001-crop.jpg"
    image = np.asarray(Image.open(tmp_path / record["image"]))
    assert image.shape == (H, W, 3)
    # The box is drawn in yellow on the frame's black border, just outside the white card.
    x0, y0, x1, y1 = (int(v) for v in square(200, 80))
    r, g, b = image[(y0 + y1) // 2, x0].astype(int)
    assert r > 200 and g > 170 and b < 90, (r, g, b)
    assert image[(y0 + y1) // 2, (x0 + x1) // 2].min() > 230  # the mark itself is not painted over
    crop = np.asarray(Image.open(tmp_path / record["crop"]))
    side = round(80 * (1 + 2 * CROP_MARGIN))
    assert abs(crop.shape[0] - side) <= 1 and abs(crop.shape[1] - side) <= 1
    assert crop[side // 2, side // 2].min() > 230 and crop[2, 2].max() < 120  # the card, in grey surroundings


def test_a_blurred_frame_loses_to_a_smaller_sharp_one(tmp_path):
    sides = [20, 40, 80, 40]
    clarity = [[1.0], [1.0], [0.2], [1.0]]  # 80 px at clarity 0.2 scores less than 40 px at 1
    _, keeper = drive(tmp_path, [[(0, square(200, s))] for s in sides], clarity=clarity, lag=2)
    (record,), () = keeper.records("cam")
    assert record["frame_s"] == 0.2  # the first 40 px frame: the second is no better by GAIN


def test_every_appearance_has_its_own_evidence_and_a_blip_has_none(tmp_path):
    volta, orbis = (0, square(150, 40)), (1, square(450, 50))
    big_volta = (0, square(150, 70))
    frames = ([[volta]] * 3 + [[]] * 10  # VOLTA 0-0.6 s, then 2 s unseen: two appearances
              + [[volta, orbis], [big_volta]] + [[volta]] * 2  # ORBIS for one frame: a blip
              + [[]])
    analytics, keeper = drive(tmp_path, frames, lag=2)
    exp = analytics.stream("cam")
    assert np.round(exp.occurrences[0], 3).tolist() == [[0.0, 0.6], [2.6, 3.4]] and exp.occurrences[1] == []
    volta_records, orbis_records = keeper.records("cam")
    assert orbis_records == []
    assert [r["frame_s"] for r in volta_records] == [0.0, 2.8]  # the first of three equal frames; the largest
    assert [r["image"] for r in volta_records] == ["evidence/cam-VOLTA-0001.jpg", "evidence/cam-VOLTA-0002.jpg"]
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == [
        "cam-VOLTA-0001-crop.jpg", "cam-VOLTA-0001.jpg", "cam-VOLTA-0002-crop.jpg", "cam-VOLTA-0002.jpg"]
    # Both brands drawn on the frame where ORBIS blipped: the picture of VOLTA's frame 2.6 s is not it.
    report = build_report(analytics, "p", keeper)
    rows = report["streams"]["cam"]["appearances"]
    assert [(r["brand"], r["start_s"], r["end_s"], r["evidence"]["frame_s"]) for r in rows] == [
        ("VOLTA", 0.0, 0.6, 0.0), ("VOLTA", 2.6, 3.4, 2.8)]


def test_a_cut_starts_a_stretch_so_the_appearance_after_it_gets_its_own_picture(tmp_path):
    # VOLTA large before the cut at frame 3, on screen on one side only of a cut at frame 6.
    frames = [[(0, square(150, 80))]] * 3 + [[(0, square(150, 30))]] * 3 + [[]] + [[(0, square(400, 20))]] * 3
    analytics, keeper = drive(tmp_path, frames, lag=2, cuts={3, 7})
    exp = analytics.stream("cam")
    assert len(exp.occurrences[0]) == 2  # merged across the cut at 3 (on both sides), ended by the one at 7
    assert [r["frame_s"] for r in keeper.records("cam")[0]] == [0.0, 1.4]
    assert [r["box"] for r in keeper.records("cam")[0]] == [square(150, 80), square(400, 20)]


def test_report_csv_and_page_list_every_appearance_with_its_evidence(tmp_path):
    frames = [[(0, square(150, 40)), (1, square(450, 60))]] * 3
    analytics, keeper = drive(tmp_path, frames)
    report, files = write_report(analytics, "derby", tmp_path, keeper)
    assert [f.name for f in files] == ["report.json", "appearances.csv", "exposure.png", "report.html"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["streams"]["cam"]["appearances"] == report["streams"]["cam"]["appearances"]
    assert [(a["brand"], a["evidence"]["image"]) for a in saved["streams"]["cam"]["appearances"]] == [
        ("ORBIS", "evidence/cam-ORBIS-0001.jpg"), ("VOLTA", "evidence/cam-VOLTA-0001.jpg")]
    with (tmp_path / "appearances.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["brand"], r["start_s"], r["end_s"], r["evidence_frame_s"], r["evidence_crop"]) for r in rows] == [
        ("ORBIS", "0.000", "0.600", "0.000", "evidence/cam-ORBIS-0001-crop.jpg"),
        ("VOLTA", "0.000", "0.600", "0.000", "evidence/cam-VOLTA-0001-crop.jpg")]
    page = (tmp_path / "report.html").read_text()
    assert page == render_html(saved, tmp_path)  # the page is the JSON's
    assert page.count('<a href="evidence/cam-') == 4 and page.count("data:image/jpeg;base64,") == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_no_pictures_for_an_appearance_no_frame_was_offered_of_and_old_pictures_go(tmp_path):
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "cam-VOLTA-0009.jpg").write_bytes(b"stale")
    analytics = ExposureAnalytics(BRANDS, 0.0, 2)
    keeper = EvidenceKeeper(BRANDS, tmp_path / "evidence", width=W)
    keeper.clear()
    assert list((tmp_path / "evidence").iterdir()) == []
    for k in range(3):  # measured, never offered (a partial read confirmed late, say)
        _, rows = frame_at(k, [(0, square(150, 40))])
        analytics.add("cam", k * STEP_NS, W, H, rows)
        exp = analytics.stream("cam")
        keeper.assign("cam", k * STEP_NS, exp.last_visible, exp.run_start_ns, exp.run_counted, 0)
    keeper.finish("cam", 0)
    assert keeper.records("cam")[0] == [{"frame_s": None, "image": None, "crop": None}]
    report = build_report(analytics, "p", keeper)
    assert report["streams"]["cam"]["appearances"][0]["evidence"]["image"] is None
    assert '<span class="none">-</span>' in render_html(report, tmp_path)


def test_a_disk_that_fills_costs_the_pictures_not_the_appearances(tmp_path, monkeypatch, caplog):
    import vidinfer.analytics.evidence as evidence

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evidence, "_save_jpeg", full)
    _, keeper = drive(tmp_path, [[(0, square(200, 40))]] * 3)
    assert keeper.records("cam")[0] == [{"frame_s": None, "image": None, "crop": None}]
    assert "evidence of VOLTA on cam could not be written to" in caplog.text
    assert "(No space left on device); the appearance is listed without it" in caplog.text
    assert list((tmp_path / "evidence").iterdir()) == []  # no half-written file
