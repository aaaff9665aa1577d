"""Checking published detections against the sample clips' ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLIPS = REPO / "sample_streams"


def load_gt(name: str) -> dict[int, list[dict]]:
    """Ground-truth objects by frame number for sample clip ``name`` (e.g. "shapes_a")."""
    data = json.loads((CLIPS / f"{name}.json").read_text())
    return {f["frame_no"]: f["objects"] for f in data["frames"]}


def assert_matches_gt(xyxy: np.ndarray, class_id: np.ndarray, objects: list[dict], tol_px: float = 2.0,
                      shade: tuple[np.ndarray, list[str]] | None = None, where: str = "") -> None:
    """One detection per ground-truth object, of its class, every coordinate within ``tol_px``.

    ``shade``: (label ids per detection, label names) to check each object's shade as well.
    """
    assert len(xyxy) == len(objects), f"{where}: {len(xyxy)} detections for {len(objects)} objects"
    used: set[int] = set()
    for obj in objects:
        gt = np.asarray(obj["box"], np.float32)
        same_class = [i for i in range(len(xyxy)) if class_id[i] == obj["class_id"] and i not in used]
        assert same_class, f"{where}: no detection of class {obj['class_name']} for object {obj['id']}"
        i = min(same_class, key=lambda k: float(np.abs(xyxy[k] - gt).max()))
        err = float(np.abs(xyxy[i] - gt).max())
        assert err <= tol_px, f"{where}: object {obj['id']} box {xyxy[i].tolist()} vs truth {gt.tolist()} ({err:.2f} px)"
        if shade is not None:
            labels, names = shade
            assert labels[i] >= 0 and names[labels[i]] == obj["shade"], f"{where}: object {obj['id']} shade"
        used.add(i)


def brand_appearances(clip: str, max_gap_s: float = 1.0) -> dict[str, int]:
    """Appearances per brand in a broadcast clip's ground truth as the report counts them: on-screen
    occurrences merged across gaps shorter than ``max_gap_s`` and across cuts with the brand on both
    sides (`vidinfer.testing.real_footage.count_appearances`)."""
    from vidinfer.testing.broadcast import VISIBLE_THRESHOLD
    from vidinfer.testing.real_footage import count_appearances

    data = json.loads((CLIPS / f"{clip}.json").read_text())
    visible: dict[str, list[int]] = {b: [] for b in data["summary"]}
    for f in data["frames"]:
        for name in {i["brand"] for i in f["instances"] if i["visible_fraction"] >= VISIBLE_THRESHOLD}:
            visible.setdefault(name, []).append(f["frame_no"])
    return count_appearances(visible, data["cuts"], data["fps"], max_gap_s)
