"""Brand impact on real footage nobody on the team filmed: the shipped pipelines run as a user runs
them (`vidinfer run`) on the real-footage clips (`vidinfer.testing.real_footage`: brand names and
marks as signage on Debian's CC0 city video and packaged photographs, rotated, at an angle, small,
partly hidden, across cuts; decoy words; clips with no brand), checked against the clips' exact
ground truth.

Targets (issue: brand impact that holds on real footage): visible seconds within 10% of the truth
for every brand at the file settings (`pipelines/brand_impact.toml`) and within 15% at the live
settings (`pipelines/brand_impact_live.toml`, not paced: its figures do not depend on timing);
appearances exact where no occlusion splits them; no second for a decoy word or on a clip with no
brand.

`python tests/test_brand_real_footage.py` prints the table of figures against the truth.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ground_truth import REPO
from real_clips import real_clips_dir
from test_pipeline_e2e import free_endpoint
from vidinfer.testing.real_footage import CLIPS

FILE_TOLERANCE, LIVE_TOLERANCE = 0.10, 0.15


def pipeline_on(shipped: str, clips_dir: Path, out: Path, clips=CLIPS) -> Path:
    """The shipped pipeline with its streams replaced by the real clips (file inputs, not paced,
    not looped), its report in ``out``."""
    text = (REPO / "pipelines" / shipped).read_text().replace('"../', f'"{REPO}/')
    text = re.sub(r'report_dir = ".*"', f'report_dir = "{out}"', text)
    head, _, rest = text.partition("[[streams]]")
    stream = rest.split("\n\n", 1)[0]  # the first stream's keys, as the pipeline sets them
    keys = [ln for ln in stream.splitlines()[1:]
            if ln.split("=")[0].strip() in ("sample_fps", "reference_frames_only")]
    stages = "[[stages]]" + text.partition("[[stages]]")[2]
    streams = "".join(f'[[streams]]\nid = "{c}"\nurl = "{clips_dir / _file(clips_dir, c)}"\n' + "\n".join(keys) + "\n\n"
                      for c in clips)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.toml"
    path.write_text(head + streams + stages)
    return path


def _file(clips_dir: Path, clip: str) -> str:
    return json.loads((clips_dir / f"{clip}.json").read_text())["file"]


def truth(clips_dir: Path, clip: str) -> dict:
    return json.loads((clips_dir / f"{clip}.json").read_text())


def run(shipped: str, clips_dir: Path, out: Path, clips=CLIPS) -> dict:
    path = pipeline_on(shipped, clips_dir, out, clips)
    done = subprocess.run([sys.executable, "-m", "vidinfer", "-q", "run", str(path), "--publish", free_endpoint()],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "report.json").read_text())


# Run in the suite: the live settings on the clips that cover rotation, perspective, small text,
# occlusion, fonts and decoys, and one clip without a brand; the file settings on the rotated one
# (about a minute on 2 cores, once the clips are made). The whole
# set at both settings (about 10 minutes): `python tests/test_brand_real_footage.py`.
SUITE_CLIPS = ("real_photo_signs", "real_rotated", "real_decoys", "real_nobrand_photos")
FILE_SUITE_CLIPS = ("real_rotated",)  # the file settings read 2.5x more text: one clip

# Where the shipped models miss the targets today, measured (issue 13's note): the logo detector's
# ORBIS class fires on lit facades and other real textures (models/logos/README.md). Asserted as
# misses, so that a fix shows up as a failure here and this list is brought up to date.
KNOWN_MISSES = {  # (settings, clip, brand), measured with the committed logo detector (0.66 false a minute)
    ("live", "real_nobrand_photos", "ORBIS"): "the logo detector sees ORBIS in held-out photographs (1.9 s)",
}


@pytest.fixture(scope="module")
def clips():
    return real_clips_dir()


@pytest.fixture(scope="module")
def live_report(clips, tmp_path_factory):
    return run("brand_impact_live.toml", clips, tmp_path_factory.mktemp("real") / "live", SUITE_CLIPS)


@pytest.fixture(scope="module")
def file_report(clips, tmp_path_factory):
    return run("brand_impact.toml", clips, tmp_path_factory.mktemp("real") / "file", FILE_SUITE_CLIPS)


def _miss(seen: float, true: float, tolerance: float) -> bool:
    return (true == 0 and seen > 0) or abs(seen - true) > tolerance * true


@pytest.mark.parametrize("settings, clip", [("file", c) for c in FILE_SUITE_CLIPS]
                         + [("live", c) for c in SUITE_CLIPS])
def test_visible_seconds_within_10_percent_at_file_and_15_at_live_settings_and_nothing_absent(
        request, clips, settings, clip):
    report = request.getfixturevalue(f"{settings}_report")
    tolerance = FILE_TOLERANCE if settings == "file" else LIVE_TOLERANCE
    gt = truth(clips, clip)["summary"]
    wrong, known = [], []
    for b in report["streams"][clip]["brands"]:
        seen, true = b["visible_s"], gt[b["brand"]]["visible_seconds"]
        (known if (settings, clip, b["brand"]) in KNOWN_MISSES else wrong).append((b["brand"], seen, true))
    assert not [w for w in wrong if _miss(w[1], w[2], tolerance)], (clip, wrong)
    for brand, seen, true in known:
        assert _miss(seen, true, tolerance), f"{clip}: {brand} is now right ({seen} s for {true} s): " \
            "take it off KNOWN_MISSES"


def test_decoy_words_count_for_nothing(live_report, clips):
    """The decoy clip shows each brand's name for 4 s and its look-alikes and fragments for 12 s
    more: every second reported beyond the names' own is a decoy counted (ORBIS's logo aside)."""
    gt = truth(clips, "real_decoys")
    assert {w["decoy_of"] for w in gt["decoys"].values()} == set(gt["summary"])
    for b in live_report["streams"]["real_decoys"]["brands"]:
        if ("live", "real_decoys", b["brand"]) not in KNOWN_MISSES:
            assert b["visible_s"] <= 1.05 * gt["summary"][b["brand"]]["visible_seconds"], b


@pytest.mark.parametrize("settings", ["file", "live"])
def test_appearances_exact_where_no_occlusion_splits_them(request, clips, settings):
    report = request.getfixturevalue(f"{settings}_report")
    for clip in ("real_photo_signs", "real_rotated") if settings == "live" else ("real_rotated",):
        gt = truth(clips, clip)
        assert not gt["occlusion_splits_appearances"]
        got = {b["brand"]: b["appearances"] for b in report["streams"][clip]["brands"]}
        assert got == {name: v["appearances"] for name, v in gt["summary"].items()}, clip


def main() -> None:
    clips_dir = real_clips_dir()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "out" / "real_footage_eval"
    for shipped, tol in (("brand_impact.toml", FILE_TOLERANCE), ("brand_impact_live.toml", LIVE_TOLERANCE)):
        report = run(shipped, clips_dir, out / shipped.removesuffix(".toml"))
        print(f"\n{shipped} (target: within {tol:.0%})")
        for clip in CLIPS:
            gt = truth(clips_dir, clip)["summary"]
            for b in report["streams"][clip]["brands"]:
                true = gt[b["brand"]]["visible_seconds"]
                if true or b["visible_s"]:
                    err = f"{100 * (b['visible_s'] - true) / true:+.1f}%" if true else "absent"
                    print(f"  {clip:20s} {b['brand']:11s} {b['visible_s']:6.2f} s / {true:6.2f} s {err:>8s}  "
                          f"appearances {b['appearances']} / {gt[b['brand']]['appearances']}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
