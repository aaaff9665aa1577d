"""ByteTrack-style tracker: ids persist, survive short occlusions, never mix classes, reset on cuts."""

import numpy as np

import vidinfer as vi
from helpers import make_frame
from vidinfer.detections import Detections
from vidinfer.tracking import ByteTracker

FRAME_NS = 40_000_000  # 25 fps


def box_at(x, y, w=40, h=30):
    return [x, y, x + w, y + h]


def dets(boxes, scores=None, classes=None):
    n = len(boxes)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), scores or [0.9] * n, classes or [0] * n)


class Given:
    """A stand-in detector: the layer "objects" gets the rows set in ``rows`` before each batch."""

    name = "given"
    pixels = vi.Pixels.NONE

    def __init__(self):
        self.rows = []

    def open(self, ctx):
        ctx.add_layer("objects", ["thing"])

    def __call__(self, batch):
        batch["objects"] = self.rows

    def on_stream_end(self, stream_id):
        pass

    def close(self):
        pass


class TrackStage:
    """`vi.Track` (default settings: ByteTrack, cut detection on) opened in a real pipeline:
    called with frames and their detections, returns the tracked rows."""

    def __init__(self, **options):
        self.given = Given()
        self.pipe = vi.Pipeline([], [self.given, vi.Track(layer="objects", **options)], device="cpu")
        assert self.pipe.layers["objects"].tracked

    def __call__(self, frames, detections):
        self.given.rows = list(detections)
        return self.pipe.analyse(frames)["objects"]


def test_ids_persist_for_moving_objects():
    t = ByteTracker()
    ids = [t.update(dets([box_at(10 + 8 * i, 10), box_at(300 - 8 * i, 200)]), i * FRAME_NS).tolist()
           for i in range(20)]
    assert ids == [[1, 2]] * 20


def test_crossing_objects_keep_their_ids():
    # Two same-class boxes cross paths horizontally at the same height; velocity keeps them apart.
    t = ByteTracker(match_iou=0.2)
    seen = []
    for i in range(30):
        a, b = box_at(20 + 10 * i, 50), box_at(320 - 10 * i, 50)
        seen.append(t.update(dets([a, b]), i * FRAME_NS).tolist())
    assert seen[0] == [1, 2] and seen[-1] == [1, 2]


def test_short_occlusion_keeps_the_id_long_one_starts_a_new_track():
    t = ByteTracker(max_lost_s=1.0)
    assert t.update(dets([box_at(100, 100)]), 0).tolist() == [1]
    assert t.update(dets([]), 10 * FRAME_NS).tolist() == []  # hidden for 0.4 s
    assert t.update(dets([box_at(100, 100)]), 20 * FRAME_NS).tolist() == [1]  # 0.8 s unseen: same track
    assert t.update(dets([box_at(100, 100)]), 60 * FRAME_NS).tolist() == [2]  # 1.6 s unseen: new track


def test_low_score_detection_extends_a_track_but_never_starts_one():
    t = ByteTracker(high_score=0.5, low_score=0.1)
    t.update(dets([box_at(100, 100)]), 0)
    assert t.update(dets([box_at(102, 100)], scores=[0.3]), FRAME_NS).tolist() == [1]
    assert t.update(dets([box_at(400, 100)], scores=[0.3]), 2 * FRAME_NS).tolist() == [-1]


def test_classes_never_share_a_track():
    t = ByteTracker()
    t.update(dets([box_at(100, 100)], classes=[0]), 0)
    assert t.update(dets([box_at(100, 100)], classes=[1]), FRAME_NS).tolist() == [2]


def test_stage_keeps_ids_per_stream_and_resets_on_discontinuity():
    stage = TrackStage()
    a0, b0 = make_frame("a", 0), make_frame("b", 0)
    out = stage([a0, b0], [dets([box_at(10, 10)]), dets([box_at(10, 10)])])
    assert [d.track_id.tolist() for d in out] == [[1], [1]]  # ids are per stream
    a1 = make_frame("a", 1)
    a1.discontinuity = True
    assert stage([a1], [dets([box_at(10, 10)])])[0].track_id.tolist() == [2]


def test_small_fast_mark_keeps_its_track_when_boxes_no_longer_overlap():
    # A 40 px mark moving 50 px per analysed frame: no IoU between steps, nearest centre wins.
    t = ByteTracker(max_distance=1.5)
    ids = [t.update(dets([box_at(100 + 50 * i, 300)]), i * 200_000_000).tolist() for i in range(8)]
    assert ids == [[1]] * 8
    assert ByteTracker(max_distance=0).update(dets([box_at(0, 0)]), 0).tolist() == [1]


def test_far_jump_is_a_new_track():
    t = ByteTracker(max_distance=1.5)
    t.update(dets([box_at(100, 300)]), 0)
    assert t.update(dets([box_at(600, 300)]), 200_000_000).tolist() == [2]


def test_hard_cut_resets_tracks_but_a_pan_does_not():
    from vidinfer.tracking.cuts import ShotCutDetector

    rng = np.random.default_rng(0)
    pitch = np.zeros((360, 640, 3), np.uint8)
    pitch[..., 1] = 120 + (np.arange(640) // 40 % 2 * 30).astype(np.uint8)  # mowing stripes
    panned = np.roll(pitch, 25, axis=1)
    close_up = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    cuts = ShotCutDetector()
    assert [cuts.is_cut(img) for img in (pitch, panned, close_up, close_up)] == [False, False, True, False]

    stage = TrackStage()
    frames = [make_frame("s", i) for i in range(3)]
    for f, img in zip(frames, (pitch, panned, close_up)):
        f.image = img
    ids = [stage([f], [dets([box_at(100, 100)])])[0].track_id.tolist() for f in frames]
    assert ids == [[1], [1], [2]]


def test_stages_sharing_cut_detection_both_see_the_cut_and_each_frame_is_compared_once():
    from vidinfer.tracking.cuts import ShotCuts

    pitch = np.zeros((360, 640, 3), np.uint8)
    pitch[..., 1] = 120 + (np.arange(640) // 40 % 2 * 30).astype(np.uint8)
    close_up = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    frames = [make_frame("s", i) for i in range(4)]
    for f, img in zip(frames, (pitch, np.roll(pitch, 25, axis=1), close_up, close_up)):
        f.image = img
    cuts = ShotCuts()
    # Two stages ask about every frame; the second asker gets the same answer, not a comparison of
    # the frame with itself (which would never be a cut).
    assert [(cuts.is_cut(f), cuts.is_cut(f)) for f in frames] == [(False, False), (False, False), (True, True),
                                                                   (False, False)]
    assert cuts.count == {"s": 1}
