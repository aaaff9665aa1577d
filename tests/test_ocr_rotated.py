"""OCR of rotated text and of a sign seen at an angle: quads from the DBNet map, rectified crops.

Brand names are lettered on their boards (`vidinfer.testing.brands.render_name_plate`), warped by
a known homography onto a photograph (scikit-image's astronaut; a plain gradient when
scikit-image is not installed) and read; the ground truth is the exact name and the four
corners of its lettering's ink box carried through the same homography.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ocr import HAVE_PPOCR

from vidinfer.models.ocr import TextReader, db_quads

W, H = 960, 540
CAP = 36  # capital height, px: brand names on a broadcast board


@pytest.fixture(scope="module")
def reader():
    if not HAVE_PPOCR:
        pytest.skip("rapidocr-onnxruntime (the PP-OCR models) is not installed")
    return TextReader(threads=2)


@pytest.fixture(scope="module")
def background():
    from PIL import Image

    try:
        from skimage import data
    except ImportError:  # not a dependency: a plain gradient, so the text is still on a non-flat background
        ramp = np.linspace(40, 200, W, dtype=np.float32)
        return Image.fromarray(np.repeat(np.stack([ramp, ramp[::-1], ramp * 0.5], -1)[None], H, 0).astype(np.uint8))
    return Image.fromarray(data.astronaut()).resize((W, H))


def _homography(src, dst):
    """3x3 H mapping the 4 points src onto dst (x, y)."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a += [[x, y, 1, 0, 0, 0, -x * u, -y * u], [0, 0, 0, x, y, 1, -x * v, -y * v]]
        b += [u, v]
    return np.append(np.linalg.solve(np.array(a, float), np.array(b, float)), 1).reshape(3, 3)


def _apply(h, pts):
    q = np.c_[pts, np.ones(len(pts))] @ h.T
    return q[:, :2] / q[:, 2:]


def _rotated(deg, centre):
    """Plate corners -> corners turned ``deg`` degrees anticlockwise (as seen) about ``centre``."""
    t = np.radians(deg)
    m = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return lambda c: (c - c.mean(0)) @ m.T + centre


def _seen_at_angle(centre, far=0.75, deg=4.0):
    """A board turned away from the camera: its right side ``far`` times the left's height, and
    the whole slightly rolled."""
    def warp(c):
        c = c - c.mean(0)
        c[[1, 2], 1] *= far
        return _rotated(deg, centre)(c + c.mean(0))
    return warp


def _place(img, brand, warp, pad=None):
    """Paste ``brand``'s plate warped by ``warp`` (corners -> corners) on img; its ink's 4 corners
    TL, TR, BR, BL in img."""
    from PIL import Image

    from vidinfer.testing.brands import render_name_plate

    plate, (x1, y1, x2, y2) = render_name_plate(brand, CAP, pad=pad)
    pw, ph = plate.size
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float)
    h = _homography(corners, warp(corners))
    inv = np.linalg.inv(h)
    layer = plate.transform(img.size, Image.Transform.PERSPECTIVE, tuple((inv / inv[2, 2]).ravel()[:8]),
                            Image.Resampling.BICUBIC)
    img.paste(layer, (0, 0), layer)
    return _apply(h, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float))


def _corner_error(quad, ink):
    return float(np.linalg.norm(quad - ink, axis=1).max())


def _nearest(res, ink):
    return int(np.argmin([np.abs(q.mean(0) - ink.mean(0)).sum() for q in res.quad]))


# Corners: DBNet's box is the ink plus a margin (its unclip), measured 4-11 px at 36 px capitals,
# upright or not; an axis-aligned box of a line 5 degrees off level misses its corners by ~20 px.
CORNER_TOL = CAP / 3
ANGLE_TOL = 2.0  # degrees, between the quad's top side and the lettering's


def _angle_error(quad, ink):
    a = [np.degrees(np.arctan2(*(p[1] - p[0])[::-1])) for p in (quad, ink)]
    return abs(a[0] - a[1])

CASES = [*((f"rotated {d:+d}", lambda c, d=d: _rotated(d, c)) for d in (-15, -10, -5, 5, 10, 15)),
         ("seen at an angle", lambda c: _seen_at_angle(c))]


@pytest.mark.parametrize("case, warp", CASES, ids=[c for c, _ in CASES])
def test_reads_rotated_and_perspective_names(reader, background, case, warp):
    img = background.copy()
    # Before quads, NORDIC AIR was missed or misread at +-10 and +-15 degrees (axis-aligned crops).
    names = {"NORDIC AIR": (300, 150), "KESTREL": (680, 300), "VOLTA": (260, 420)}
    inks = {n: _place(img, n, warp(np.array(c, float))) for n, c in names.items()}
    res = reader.read_images([np.asarray(img.convert("RGB"))])[0]
    assert sorted(res.text) == sorted(names), (case, res.text)
    assert res.quad.shape == (len(res), 4, 2) and res.quad.dtype == np.float32
    for name, ink in inks.items():
        k = res.text.index(name)
        assert _corner_error(res.quad[k], ink) <= CORNER_TOL, (case, name, res.quad[k].round(1), ink.round(1))
        assert _angle_error(res.quad[k], ink) <= ANGLE_TOL, (case, name, res.quad[k].round(1), ink.round(1))
        # The published box is the quad's bounding box, clipped to the frame.
        np.testing.assert_allclose(res.xyxy[k], [*res.quad[k].min(0), *res.quad[k].max(0)], atol=1e-4)


def test_close_rotated_lines_are_not_merged(reader, background):
    img = background.copy()
    # Two boards 10 degrees off level, one above the other, the lettering CAP / 2 apart: their
    # axis-aligned boxes overlap by most of their height.
    v = np.array([np.sin(np.radians(10)), np.cos(np.radians(10))])  # down, across the lines
    pad = CAP // 4
    centre = np.array([480.0, 270.0])
    step = (CAP + 2 * pad) / 2 + 1
    inks = {"ORBIS": _place(img, "ORBIS", _rotated(10, centre - step * v), pad=pad),
            "PULSE": _place(img, "PULSE", _rotated(10, centre + step * v), pad=pad)}
    res = reader.read_images([np.asarray(img.convert("RGB"))])[0]
    assert sorted(res.text) == ["ORBIS", "PULSE"], res.text
    for name, ink in inks.items():
        assert _corner_error(res.quad[res.text.index(name)], ink) <= CORNER_TOL
        assert _angle_error(res.quad[res.text.index(name)], ink) <= ANGLE_TOL
    (a, b) = (res.xyxy[res.text.index(n)] for n in ("ORBIS", "PULSE"))
    assert min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * CAP  # the axis-aligned boxes do overlap


def test_db_quads_rotated_rectangle():
    """A component that is a rectangle turned by 20 degrees: its quad is that rectangle grown by
    DBNet's unclip distance, corners in reading order."""
    yy, xx = np.mgrid[0:200, 0:300] + 0.5
    t = np.radians(-20)  # 20 degrees anticlockwise as seen (y down)
    u, v = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    c = np.array([150.0, 100.0])
    s, r = (xx - c[0]) * u[0] + (yy - c[1]) * u[1], (xx - c[0]) * v[0] + (yy - c[1]) * v[1]
    prob = ((np.abs(s) <= 80) & (np.abs(r) <= 12)).astype(np.float32)
    quad, score = db_quads(prob, dilate=False)
    assert quad.shape == (1, 4, 2) and score[0] == pytest.approx(1.0)
    w, h = 160.0, 24.0
    d = w * h * 1.6 / (2 * (w + h))
    hw, hh = w / 2 + d, h / 2 + d
    truth = np.array([c - hw * u - hh * v, c + hw * u - hh * v, c + hw * u + hh * v, c - hw * u + hh * v])
    # Pixel centres quantise the edges: within a pixel.
    assert np.abs(quad[0] - truth).max() < 1.0, (quad[0], truth)


def test_vertical_text_is_turned(reader, background):
    """A name running top to bottom (turned 90 degrees clockwise) is read: PP-OCR turns crops at
    least 1.5 times taller than wide; the quad then starts at the text's own top-left."""
    img = background.copy()
    ink = _place(img, "KESTREL", _rotated(-90, np.array([480.0, 270.0])))
    res = reader.read_images([np.asarray(img.convert("RGB"))])[0]
    assert res.text == ["KESTREL"]
    assert _corner_error(res.quad[0], ink) <= CORNER_TOL, (res.quad[0], ink)
    assert _angle_error(res.quad[0], ink) <= ANGLE_TOL
