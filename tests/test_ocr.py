"""OCR: model registry, CTC decoding, DBNet boxes, and agreement with RapidOCR on rendered text."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from vidinfer.errors import ModelError
from vidinfer.models.ocr import TextReader, ctc_greedy_decode, db_boxes, load_charset
from vidinfer.models.registry import list_models, resolve_model

HAVE_PPOCR = importlib.util.find_spec("rapidocr_onnxruntime") is not None
needs_ppocr = pytest.mark.skipif(not HAVE_PPOCR, reason="rapidocr-onnxruntime (the PP-OCR models) is not installed")

KNOWN = "logos:detector, ppocr:cls, ppocr:det, ppocr:rec, shapes:detector, shapes:shade"


# ----------------------------------------------------------------------------- registry

@needs_ppocr
@pytest.mark.parametrize("name, filename", [("ppocr:det", "ch_PP-OCRv4_det_infer.onnx"),
                                            ("ppocr:cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
                                            ("ppocr:rec", "ch_PP-OCRv4_rec_infer.onnx")])
def test_registry_resolves_ppocr(name, filename):
    path = resolve_model(name)
    assert path.is_file() and path.name == filename
    assert path.parent.parent.name == "rapidocr_onnxruntime"


def test_registry_unknown_name():
    with pytest.raises(ModelError) as err:
        resolve_model("ppocr:nope")
    assert str(err.value) == (f"unknown model name 'ppocr:nope'; known names are {KNOWN}, "
                              "or give a path to an .onnx file")


def test_registry_missing_path(tmp_path):
    missing = tmp_path / "none.onnx"
    with pytest.raises(ModelError) as err:
        resolve_model(missing)
    assert str(err.value) == (f"model file {str(missing)!r} does not exist; check the path or use a "
                              f"registered name ({KNOWN})")
    assert resolve_model(missing, must_exist=False) == missing


def test_registry_plain_path_returned_as_is(tmp_path):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x")
    assert resolve_model(f) == f and resolve_model(str(f)) == f


def test_list_models():
    rows = {name: (path, desc) for name, path, desc in list_models()}
    assert set(rows) == set(KNOWN.split(", "))
    assert rows["shapes:detector"][0] is not None and rows["shapes:detector"][0].is_file()
    if HAVE_PPOCR:
        assert rows["ppocr:rec"][0] == resolve_model("ppocr:rec")
    assert all(desc for _, desc in rows.values())


# ----------------------------------------------------------------------------- CTC decoding

def _probs(steps, n_classes, peak):
    """(1, T, C) probabilities with class steps[t] at probability peak[t], the rest shared."""
    t = len(steps)
    p = np.empty((1, t, n_classes), np.float32)
    for i, (c, q) in enumerate(zip(steps, peak)):
        p[0, i] = (1 - q) / (n_classes - 1)
        p[0, i, c] = q
    return p


def test_ctc_greedy_decode():
    charset = ["blank", "a", "b", "c", " "]
    # a a | blank | a | b b | blank blank | c | space: repeats collapse before blanks are dropped,
    # so a blank between two a's keeps both.
    steps = [1, 1, 0, 1, 2, 2, 0, 0, 3, 4]
    peak = [0.9, 0.5, 0.99, 0.8, 0.7, 0.6, 0.95, 0.95, 0.6, 0.5]
    texts, scores = ctc_greedy_decode(_probs(steps, 5, peak), charset)
    assert texts == ["aabc "]
    # Kept steps: 0 (a), 3 (a), 4 (b), 8 (c), 9 (space): mean of their probabilities.
    assert scores[0] == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.6, 0.5]), abs=1e-6)
    assert scores.dtype == np.float32


def test_ctc_greedy_decode_batch_and_empty():
    charset = ["blank", "x", "y", " "]
    a = _probs([0, 0, 0, 0], 4, [0.9] * 4)
    b = _probs([2, 0, 2, 1], 4, [0.6, 0.9, 0.8, 0.7])
    texts, scores = ctc_greedy_decode(np.concatenate([a, b]), charset)
    assert texts == ["", "yyx"]
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx((0.6 + 0.8 + 0.7) / 3, abs=1e-6)


@needs_ppocr
def test_charset_from_model_metadata():
    cs = load_charset(resolve_model("ppocr:rec"))
    assert len(cs) == 6625 and cs[0] == "blank" and cs[-1] == " "
    assert {"A", "Z", "a", "0", "9"} <= set(cs)


# ----------------------------------------------------------------------------- DBNet boxes

def test_db_boxes_known_rectangles():
    prob = np.zeros((100, 200), np.float32)
    prob[10:20, 20:80] = 0.9   # text: 10 rows x 60 columns
    prob[50:70, 100:180] = 0.4  # above thresh 0.3, below box_thresh 0.5: dropped
    prob[85:87, 10:12] = 0.95  # 2x2: narrower than min_side 3: dropped
    prob[40:46, 150:190] = 0.7  # 6 x 40
    xyxy, score = db_boxes(prob, dilate=False)
    order = np.argsort(xyxy[:, 1])
    xyxy, score = xyxy[order], score[order]
    assert len(xyxy) == 2
    # Pixel-centre extents: 60 columns span 59, 10 rows span 9; unclip d = w*h*1.6 / (2(w+h)).
    d = 59 * 9 * 1.6 / (2 * (59 + 9))
    np.testing.assert_allclose(xyxy[0], [20.5 - d, 10.5 - d, 79.5 + d, 19.5 + d], atol=1e-4)
    assert score[0] == pytest.approx(0.9)
    d2 = 39 * 5 * 1.6 / (2 * (39 + 5))
    np.testing.assert_allclose(xyxy[1], [150.5 - d2, 40.5 - d2, 189.5 + d2, 45.5 + d2], atol=1e-4)
    assert score[1] == pytest.approx(0.7)


def test_db_boxes_dilation_and_score():
    prob = np.zeros((100, 200), np.float32)
    prob[10:20, 20:80] = 0.9
    xyxy, score = db_boxes(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.6)
    # PP-OCR's 2x2 dilation grows the mask one pixel down and right: 11 x 61 pixels, of which
    # 10 x 60 carry 0.9 and the grown edge 0.
    assert score[0] == pytest.approx(600 * 0.9 / (11 * 61), rel=1e-5)
    d = 60 * 10 * 1.6 / (2 * 70)
    np.testing.assert_allclose(xyxy[0], [20.5 - d, 10.5 - d, 80.5 + d, 20.5 + d], atol=1e-4)
    assert db_boxes(prob, box_thresh=0.85)[0].shape == (0, 4)  # diluted below 0.85 by the edge
    assert db_boxes(np.zeros((32, 32), np.float32))[0].shape == (0, 4)


# ----------------------------------------------------------------------------- rendered text

BRANDS = ["VOLTA", "NORDIC AIR", "KESTREL 24", "ORBIS", "PULSE ENERGY", "ATLAS BANK", "Zenith Motors",
          "BLUE HARBOR", "Solaris", "MERIDIAN 7", "Fjord Telecom", "APEX SPORTS"]
WORDS = ["River", "Garden", "Market", "Silver", "Falcon", "Summit", "Harvest", "Velvet", "Copper",
         "Thunder", "Maple", "Comet", "Glacier", "Horizon", "Lumen", "Cobalt", "Matrix", "Vector",
         "Galaxy", "Safari", "Nimbus", "Quartz", "Rocket", "Tundra", "Willow", "Jasper", "Sierra"]


def _line_text(rng):
    r = rng.random()
    if r < 0.4:
        return str(rng.choice(BRANDS))
    if r < 0.7:
        words = [str(rng.choice(WORDS)) for _ in range(rng.integers(1, 3))]
        return " ".join(w.upper() for w in words) if rng.random() < 0.5 else " ".join(words)
    word = str(rng.choice(WORDS)).upper()
    return f"{word} {rng.integers(2, 999)}" if rng.random() < 0.7 else f"{rng.integers(10, 99999)}"


def _contrasting(rng):
    lum = np.array([0.299, 0.587, 0.114])
    while True:
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if abs(lum @ bg - lum @ fg) > 110:
            return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


def render(seed, width=960, height=540, lines=6):
    """An RGB image with text lines of 20-80 px fonts, and [(text, (x1, y1, x2, y2))]."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    bg, fg = _contrasting(rng)
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    truth = []
    y = int(rng.integers(10, 30))
    for _ in range(lines):
        font = ImageFont.load_default(size=int(rng.integers(20, 81)))
        text = _line_text(rng)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left, bottom - top
        if w > width - 40:
            continue
        if y + h + 10 > height:
            break
        x = int(rng.integers(15, width - w - 15))
        colour = fg
        if rng.random() < 0.3:  # a panel of another colour behind the line, as on a board
            panel, colour = _contrasting(rng)
            draw.rectangle([x - 10, y - 8, x + w + 10, y + h + 8], fill=panel)
        draw.text((x - left, y - top), text, font=font, fill=colour)
        truth.append((text, (x, y, x + w, y + h)))
        y += h + int(rng.integers(18, 40))
    return np.asarray(img), truth


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def _match(ref_boxes, boxes, min_iou=0.5):
    """{ref index: index of the best-overlapping box} for pairs with IoU >= min_iou."""
    out = {}
    for i, ref in enumerate(ref_boxes):
        ious = [_iou(ref, b) for b in boxes]
        if ious and max(ious) >= min_iou:
            out[i] = int(np.argmax(ious))
    return out


def _nospace(s):
    return "".join(s.split())


N_IMAGES = 8  # 48 lines


@pytest.fixture(scope="module")
def reader():
    if not HAVE_PPOCR:
        pytest.skip("rapidocr-onnxruntime (the PP-OCR models) is not installed")
    return TextReader(threads=2)


@pytest.fixture(scope="module")
def rendered():
    pytest.importorskip("PIL")
    return [render(seed) for seed in range(N_IMAGES)]


@pytest.fixture(scope="module")
def ours(reader, rendered):
    return reader.read_images([img for img, _ in rendered])


def test_reads_rendered_ground_truth(rendered, ours):
    total = exact = loose = 0
    for (_, truth), res in zip(rendered, ours):
        m = _match([b for _, b in truth], list(res.xyxy))
        for i, (text, _) in enumerate(truth):
            total += 1
            got = res.text[m[i]] if i in m else None
            exact += got == text
            loose += got is not None and _nospace(got) == _nospace(text)
        assert res.xyxy.dtype == np.float32 and res.score.dtype == np.float32
        assert len(res.text) == len(res.xyxy) == len(res.score)
    print(f"\nground truth: {loose}/{total} lines equal ignoring spaces, {exact}/{total} exactly")
    assert total >= 40
    # PP-OCRv4's Chinese-first recogniser often drops the space between Latin words, so the
    # threshold is on text without spaces; the exact count is printed.
    assert loose >= 0.9 * total


def test_agrees_with_rapidocr(rendered, ours):
    pytest.importorskip("cv2")
    rapid = pytest.importorskip("rapidocr_onnxruntime")
    engine = rapid.RapidOCR()
    total = exact = loose = 0
    for (img, _), res in zip(rendered, ours):
        found = engine(np.ascontiguousarray(img[..., ::-1]))[0] or []  # RapidOCR takes BGR arrays
        boxes = [(min(p[0] for p in q), min(p[1] for p in q), max(p[0] for p in q), max(p[1] for p in q))
                 for q, _, _ in found]
        m = _match(boxes, list(res.xyxy))
        for i, (_, text, _) in enumerate(found):
            total += 1
            got = res.text[m[i]] if i in m else None
            exact += got == text
            loose += got is not None and _nospace(got) == _nospace(text)
    print(f"\nRapidOCR agreement: {loose}/{total} lines ignoring spaces, {exact}/{total} exactly")
    assert total >= 40
    assert loose >= 0.9 * total


def test_reads_av_frames_and_detector_images(reader, rendered):
    """Frames carrying a yuv420p decoder frame, and frames with only the detector's image."""
    av = pytest.importorskip("av")
    from vidinfer.frame import Frame
    from vidinfer.preprocess.letterbox import Letterbox

    img, truth = rendered[1]
    h, w = img.shape[:2]
    yuv = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    lb = Letterbox.fit(w, h, 640, 640)
    small = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(width=lb.new_w, height=lb.new_h).to_ndarray()
    frames = [Frame("a", 0, 0, 0, small, lb, source=yuv), Frame("b", 0, 0, 0, small, lb, source=None)]
    full, small_res = reader(frames)
    for res, need in ((full, len(truth)), (small_res, len(truth) - 1)):
        m = _match([b for _, b in truth], list(res.xyxy))
        ok = sum(i in m and _nospace(res.text[m[i]]) == _nospace(t) for i, (t, _) in enumerate(truth))
        assert ok >= need, (res.text, [t for t, _ in truth])


def test_upside_down_text_is_flipped(reader, rendered):
    img, truth = rendered[2]
    res = reader.read_images([np.ascontiguousarray(img[::-1, ::-1])])[0]
    h, w = img.shape[:2]
    flipped_truth = [(t, (w - b[2], h - b[3], w - b[0], h - b[1])) for t, b in truth]
    m = _match([b for _, b in flipped_truth], list(res.xyxy))
    ok = sum(i in m and _nospace(res.text[m[i]]) == _nospace(t) for i, (t, _) in enumerate(flipped_truth))
    assert ok >= len(truth) - 1, res.text


def test_empty_inputs(reader):
    assert reader.read_images([]) == []
    blank = np.full((240, 320, 3), 128, np.uint8)
    res = reader.read_images([blank])[0]
    assert len(res) == 0 and res.xyxy.shape == (0, 4)


def test_a_frame_reads_the_same_whatever_frames_share_its_batch(reader, rendered, ours):
    """Lines of other streams' frames share recogniser runs; a line's padded width depends on its
    own aspect only, so what a frame reads never depends on what it was batched with (runs of a
    file give the same figures whatever the timing)."""
    alone = [reader.read_images([img])[0] for img, _ in rendered[:3]]
    for a, b in zip(alone, ours[:3]):
        assert list(a.text) == list(b.text)
        np.testing.assert_allclose(a.score, b.score, atol=1e-5)
