"""Clarity (edge width on the frame's luma), the quality index and media value, on hand-made
pictures and detections whose answers are worked out by hand."""

import av
import numpy as np
import pytest
from PIL import Image, ImageFilter

from vidinfer.analytics import ExposureAnalytics
from vidinfer.analytics.clarity import box_sharpness, edge_width, sharpness
from vidinfer.analytics.exposure import Segment
from vidinfer.detections import Detections
from vidinfer.frame import Frame
from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.testing.brands import render_logo


def _ramp(width, contrast=200.0, size=40):
    """A vertical edge spread linearly over ``width`` pixels."""
    row = np.clip((np.arange(size) - size / 2) / width, 0, 1) * contrast
    return np.tile(row, (size, 1)).astype(np.float32)


def test_edge_width_is_the_ramp_width_whatever_the_contrast():
    step = np.zeros((40, 40), np.float32)
    step[:, 20:] = 255
    assert edge_width(step) == pytest.approx(1.0)
    for w in (2, 4, 8):
        assert edge_width(_ramp(w)) == pytest.approx(w, rel=1e-4)
        assert edge_width(_ramp(w, contrast=20)) == pytest.approx(w, rel=1e-4)
    assert [sharpness(_ramp(w)) for w in (1, 2, 4, 8)] == pytest.approx([1.0, 1.0, 0.5, 0.25], rel=1e-4)
    assert sharpness(np.full((20, 20), 90, np.float32)) == 0.0  # flat: no edge to judge
    assert sharpness(_ramp(2), pixel_size=3.0) == pytest.approx(1 / 3, rel=1e-4)  # 6 source px wide


def test_a_blurred_mark_is_less_sharp_the_more_it_is_blurred():
    mark = render_logo("ORBIS", 80).convert("RGBA")
    card = Image.new("RGBA", mark.size, (40, 120, 45, 255))
    card.alpha_composite(mark)
    grey = card.convert("L")
    values = [sharpness(np.asarray(grey.filter(ImageFilter.GaussianBlur(s)) if s else grey, np.float32))
              for s in (0, 1, 2, 4)]
    assert values[0] == 1.0 and values[0] > values[1] > values[2] > values[3] > 0.2, values


def _frame_with(picture_rgb, source="av"):
    h, w = picture_rgb.shape[:2]
    lb = Letterbox.fit(w, h, 640, 640)
    small = np.asarray(Image.fromarray(picture_rgb).resize((lb.new_w, lb.new_h), Image.BILINEAR))
    src = {"av": av.VideoFrame.from_ndarray(picture_rgb, format="rgb24").reformat(format="yuv420p"),
           "rgb": picture_rgb, "none": None}[source]
    return Frame("s", 0, 0, 0, small, lb, src)


@pytest.mark.parametrize("source", ["av", "rgb", "none"])
def test_box_sharpness_reads_the_frame_where_its_pixels_are(source):
    # A 1280x720 frame: a sharp edge on the left half, an edge blurred over 8 px on the right.
    pic = np.full((720, 1280, 3), 30, np.uint8)
    pic[:, 300:640] = 220
    pic[:, 960:] = np.clip((np.arange(960, 1280) - 960) / 8, 0, 1)[None, :, None] * 190 + 30
    frame = _frame_with(pic, source)
    boxes = np.array([[200, 200, 400, 400], [900, 200, 1100, 400], [10, 10, 12, 12]], np.float32)
    sharp, blurred, tiny = box_sharpness(frame, boxes)
    assert tiny == 0.0  # under 4 px a side: too small to say
    if source == "none":  # the detector's image is half the size: each of its pixels is 2 source px,
        # and resizing spreads a sharp edge over 1-2 of them: coarser, still in order
        assert 0.5 <= sharp <= 0.8 and blurred == pytest.approx(0.25, abs=0.06)
    else:  # 8-bit luma rounds the ramp's steps: within 0.04
        assert sharp == pytest.approx(1.0) and blurred == pytest.approx(0.25, abs=0.04)


def test_a_large_box_is_measured_on_its_central_window_not_resampled():
    pic = np.full((1080, 1920, 3), 30, np.uint8)
    pic[:, 960:] = 220  # one sharp edge through the middle of a 1600 px box
    frame = _frame_with(pic, "rgb")
    assert box_sharpness(frame, np.array([[160, 100, 1760, 1000]], np.float32))[0] == pytest.approx(1.0)


W, H = 1920, 1080
BIG = (768, 432, 1152, 648)  # 4% of the screen, centre cell


def _volta_for(seconds, a, clarity=0.5, other=False, fps=5):
    for k in range(int(seconds * fps)):
        rows = [(BIG, 0, 1)] + ([((0, 0, 96, 54), 1, 2)] if other else [])
        det = Detections([r[0] for r in rows], [0.9] * len(rows), [r[1] for r in rows], [r[2] for r in rows])
        a.add("s", k * 1_000_000_000 // fps, W, H, det, clarity=np.full(len(rows), clarity))
    return a.finish("s")["brands"]


def test_quality_weighs_size_position_clarity_solus_and_duration():
    # 25 frames of 0.2 s: size 1 (4% >= reference 2%), centre 1.0, clarity 0.5, alone, and the
    # duration weight min(1, (0.2 k + 0.2) / 2): q_k = 0.3 + 0.2 + 0.1 + 0.15 + 0.15 min(1, 0.1 (k + 1)).
    # Sum over k of min(1, 0.1 (k + 1)) = 5.5 + 15 = 20.5, so quality_s = 0.2 (25 x 0.75 + 0.15 x 20.5).
    (volta, _) = _volta_for(5.0, ExposureAnalytics(["VOLTA", "ORBIS"]))
    assert volta["mean_clarity"] == pytest.approx(0.5)
    assert volta["quality_s"] == pytest.approx(4.365, abs=1e-3)
    assert volta["mean_quality"] == pytest.approx(4.365 / 5, abs=1e-4)
    assert "media_value" not in volta  # no rate card
    # With ORBIS on screen too: the solus term halves, 0.15 -> 0.075 a frame.
    (volta, _) = _volta_for(5.0, ExposureAnalytics(["VOLTA", "ORBIS"]), other=True)
    assert volta["quality_s"] == pytest.approx(4.365 - 25 * 0.2 * 0.075, abs=1e-3)


def test_media_value_prices_quality_seconds_at_the_rate_card_and_its_dayparts(tmp_path):
    from vidinfer.analytics.report import build_report

    a = ExposureAnalytics(["VOLTA", "ORBIS"], rate_card=("EUR", 3000.0))
    (volta, orbis) = _volta_for(5.0, a)
    assert volta["media_value"] == pytest.approx(4.365 * 3000 / 30, abs=0.01) and orbis["media_value"] == 0
    # A daypart from 2.5 s at twice the price: frames 13-24 (starting at 2.6 s, q = 0.9 each) at 6000;
    # frames 0-12 (q summing to 13 x 0.75 + 0.15 x 8.5 = 11.025) at 3000.
    a = ExposureAnalytics(["VOLTA", "ORBIS"], rate_card=("EUR", 3000.0),
                          segments=[Segment("prime", 2.5, 5.0, per_30s=6000.0)])
    (volta, _) = _volta_for(5.0, a)
    assert volta["media_value"] == pytest.approx(0.2 * (11.025 * 100 + 10.8 * 200), abs=0.01)
    report = build_report(a, "t")
    assert report["rate_card"] == {"currency": "EUR", "per_30s": 3000.0, "segments": {"prime": 6000.0}}
    assert report["totals"][0]["media_value"] == volta["media_value"]
    (prime,) = report["segments"]
    assert prime["brands"][0]["media_value"] == pytest.approx(0.2 * 10.8 * 200 + 0.1 * 0.9 * 100, abs=0.01)
