"""Reading text at an interval: camera motion measured between frames, brands held in between.

The reader here is a scripted stand-in for PP-OCR (the stage's scheduling is under test, not the
models; tests/test_ocr.py runs the real ones); frames are a real textured scene panned by known
amounts, so the measured camera motion is checked against the truth. The stages run in a real
pipeline: `ReadText` (with the scripted reader) then `BrandExposure`, fed hand-made frames with
``pipe.analyse``; the brand rows' ``source`` (logo/text/text-held) is on the "brand" layer, the
text layer's ``read`` attribute says read/held.
"""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

import vidinfer as vi
from vidinfer.analytics.brand_stage import SOURCE_LABELS
from vidinfer.frame import Frame
from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.tracking.motion import MotionEstimator, phase_shift

SRC_W, SRC_H = 1920, 1080  # source frames; the detector input (what the stage sees) is 640x360
IN_W, IN_H = 640, 360
STEP_NS = 500_000_000  # 2 analysed frames per second


def scene(seed=0, width=2400, tint=(1.0, 1.0, 1.0)):
    """A wide textured panorama (8x8 blocks of noise, a bright board), wider than one view."""
    rng = np.random.default_rng(seed)
    base = rng.random((IN_H // 8 + 2, width // 8 + 2, 3))
    img = np.kron(base, np.ones((8, 8, 1)))[:IN_H, :width]
    img[100:160, 300 + 40 * seed:700 + 40 * seed] = 0.9  # a board
    return (img * tint * 255).astype(np.uint8)


def view(panorama, x):
    """The detector input when the camera looks at panorama column x (in detector pixels)."""
    return np.ascontiguousarray(panorama[:, x:x + IN_W])


def frame(image, i, discontinuity=False, stream="cam"):
    return Frame(stream, i, i * STEP_NS, 0, image, Letterbox.fit(SRC_W, SRC_H, IN_W, IN_H),
                 discontinuity=discontinuity)


class ScriptedReader:
    """Reads 'VOLTA' at a fixed source box in the first frame it sees; records each call."""

    def __init__(self, box=(900, 300, 1200, 420)):
        self.calls: list[list[int]] = []
        self.box = np.array([box], np.float32)

    def __call__(self, frames):
        self.calls.append([f.frame_no for f in frames])
        return [SimpleNamespace(text=["VOLTA"], xyxy=self.box.copy(), score=np.array([0.95], np.float32))
                for _ in frames]


READ_LABELS = ["read", "held"]


class TextStages:
    """A pipeline of ReadText (the given reader) and BrandExposure (the brand VOLTA from text):
    called with frames, returns the brand layer's rows per frame; ``text_rows`` holds the last
    call's text layer. ``reads``, ``background_reads`` and ``reads_in_flight`` are ReadText's."""

    def __init__(self, reader, interval_s, background=False):
        self.pipe = vi.Pipeline(
            [], [vi.ReadText(interval_s=interval_s, background=background, reader=reader),
                 vi.BrandExposure(brands=[{"name": "VOLTA"}], text="text", report_dir=None)],
            name="text-hold", device="cpu")
        self.text = self.pipe.stage("read_text")
        assert self.pipe.layers["text"].attributes["read"] == tuple(READ_LABELS)
        assert self.pipe.layers["brand"].attributes["source"] == tuple(SOURCE_LABELS)
        self.text_rows = []

    def __call__(self, frames):
        batch = self.pipe.analyse(frames)
        self.text_rows = batch["text"]
        return batch["brand"]

    @property
    def reads(self):
        return self.text.reads

    @property
    def background_reads(self):
        return self.text.background_reads

    @property
    def reads_in_flight(self):
        return self.text.reads_in_flight

    def close(self):
        self.text.close()


def stage(reader, interval_s, background=False):
    return TextStages(reader, interval_s, background)


def read_labels(det):
    """The text layer's ``read`` labels of one frame's rows."""
    return [READ_LABELS[k] for k in det.attributes["read"].label_id]


def test_phase_correlation_measures_a_known_pan_to_a_fraction_of_a_pixel():
    pano = scene()
    est = MotionEstimator(stride=4)
    a = est.thumbnail(view(pano, 100))
    for dx in (-48, -20, 0, 12, 36):
        b = est.thumbnail(view(pano, 100 + dx))
        shift = phase_shift(a, b)
        assert shift is not None
        # The camera moving right by dx moves content left by dx (in thumbnail pixels: dx / 4).
        assert shift[0] == pytest.approx(-dx / 4, abs=0.5) and shift[1] == pytest.approx(0, abs=0.5)


def test_phase_correlation_refuses_unrelated_images():
    est = MotionEstimator(stride=4)
    assert phase_shift(est.thumbnail(view(scene(1), 0)), est.thumbnail(view(scene(2), 0))) is None


def test_text_is_read_once_per_interval_and_held_boxes_follow_the_pan():
    pano, reader = scene(), ScriptedReader()
    st = stage(reader, interval_s=2.0)
    pan_per_frame = 10  # detector pixels per analysed frame = 30 source pixels
    outs, text_outs = [], []
    for i in range(8):  # 4 s of stream
        f = frame(view(pano, 50 + i * pan_per_frame), i)
        outs += st([f])
        text_outs += st.text_rows
    # Read at frame 0 (forced: nothing held yet), then whenever the hold ran out; never more
    # often than every 2 s (4 frames) and at least once in every 2 s after the first hold.
    read_frames = [c[0] for c in reader.calls]
    assert read_frames[0] == 0 and len(read_frames) in (2, 3)
    assert all(b - a >= 2 for a, b in zip(read_frames, read_frames[1:]))
    assert all(b - a <= 4 for a, b in zip(read_frames, read_frames[1:]))
    assert st.reads == len(read_frames)
    last_read = 0
    for i, out in enumerate(outs):
        assert out.class_id.tolist() == [0]
        src = out.attributes["source"].label_id[0]
        text = text_outs[i]
        assert list(text.data["text"]) == ["VOLTA"]
        np.testing.assert_allclose(text.xyxy[0], out.xyxy[0])  # the brand row is the text line's box
        if i in read_frames:
            last_read = i
            assert SOURCE_LABELS[src] == "text" and read_labels(text) == ["read"]
            np.testing.assert_allclose(out.xyxy[0], reader.box[0])
        else:
            assert SOURCE_LABELS[src] == "text-held" and read_labels(text) == ["held"]
            moved = (i - last_read) * pan_per_frame * 3  # source pixels the content moved left
            np.testing.assert_allclose(out.xyxy[0], reader.box[0] - [moved, 0, moved, 0], atol=4)


def test_a_cut_or_a_discontinuity_forces_a_read_and_nothing_is_held_across_it():
    reader = ScriptedReader()
    st = stage(reader, interval_s=10.0)
    a, b = scene(1), scene(2, tint=(0.3, 0.9, 0.4))  # another camera: another shot, other colours
    images = [view(a, 0), view(a, 4), view(b, 0), view(b, 4), view(b, 8)]
    for i, img in enumerate(images):
        st([frame(img, i, discontinuity=(i == 4))])
    # 0: first frame; 2: a cut to another shot; 4: a discontinuity (loop, reconnect).
    assert [c[0] for c in reader.calls] == [0, 2, 4]


def test_held_text_leaves_when_its_centre_leaves_the_frame():
    pano, reader = scene(), ScriptedReader(box=(60, 300, 200, 420))  # near the left edge
    st = stage(reader, interval_s=10.0)
    outs = [st([frame(view(pano, 100 + i * 20), i)])[0] for i in range(4)]
    # The box's centre is at x = 130; each frame moves it 60 source px left: 70, 10, then -50.
    assert [len(o) for o in outs] == [1, 1, 1, 0]
    assert len(reader.calls) == 1


def test_streams_read_in_one_batch_spread_their_next_reads():
    pano, reader = scene(), ScriptedReader()
    st = stage(reader, interval_s=2.0)
    ids = [f"cam-{k}" for k in range(8)]
    per_frame = []
    for i in range(12):
        frames = [frame(view(pano, 50 + i), i, stream=s) for s in ids]
        before = st.reads
        st(frames)
        per_frame.append(st.reads - before)
    assert per_frame[0] == 8  # every stream's first read is in the first batch
    # After that the 8 streams do not all read in the same batch again.
    assert max(per_frame[1:]) < 8 and sum(per_frame[1:]) >= 8


def test_interval_zero_reads_every_frame():
    pano, reader = scene(), ScriptedReader()
    st = stage(reader, interval_s=0.0)
    for i in range(4):
        (out,) = st([frame(view(pano, i), i)])
        assert SOURCE_LABELS[out.attributes["source"].label_id[0]] == "text"
        assert read_labels(st.text_rows[0]) == ["read"]
    assert len(reader.calls) == 4


class GatedReader:
    """Reads box A on the pipeline's thread at once; on the reader thread waits for ``gate``, then
    reads box B, so a test decides when a background read finishes."""

    A = np.array([[900, 300, 1200, 420]], np.float32)
    B = np.array([[500, 600, 800, 700]], np.float32)

    def __init__(self):
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: dict[str, int] = {"pipeline": 0, "background": 0}

    def __call__(self, frames):
        background = threading.current_thread().name == "text-reader"
        self.calls["background" if background else "pipeline"] += 1
        if background:
            self.started.set()
            assert self.gate.wait(10)
        box = self.B if background else self.A
        return [SimpleNamespace(text=["VOLTA"], xyxy=box.copy(), score=np.array([0.9], np.float32)) for _ in frames]


def run_frames(st, images, start=0):
    """The stage on one frame at a time; returns (output, seconds the call took) per frame."""
    out = []
    for k, img in enumerate(images):
        t0 = time.perf_counter()
        (det,) = st([frame(img, start + k)])
        out.append((det, time.perf_counter() - t0))
    return out


def wait_for_reads(st):
    deadline = time.monotonic() + 10
    while st.reads_in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert st.reads_in_flight == 0


def labels(det):
    return [SOURCE_LABELS[k] for k in det.attributes["source"].label_id]


def open_gate_after(reader, seconds):
    threading.Timer(seconds, reader.gate.set).start()


def test_background_read_runs_while_its_frame_goes_on_and_is_held_from_the_next_frame():
    pano, reader = scene(), GatedReader()
    st = stage(reader, interval_s=1.0, background=True)
    try:
        still = view(pano, 100)  # the camera does not move: held boxes stay put
        # The stream's first read goes ahead on the pipeline's thread: its text counts at once.
        (det, _), = run_frames(st, [still])
        assert labels(det) == ["text"] and reader.calls == {"pipeline": 1, "background": 0}
        # Its hold (0.5-1 interval, by stream id) runs out within 1 s: that frame's read goes to the
        # reader thread and the frame goes on at once with the held text.
        out = run_frames(st, [still] * 2, start=1)
        assert reader.started.wait(10) and reader.calls == {"pipeline": 1, "background": 1}
        for det, seconds in out:
            assert labels(det) == ["text-held"] and seconds < 2  # nobody waited for the gated read
            np.testing.assert_allclose(det.xyxy[0], GatedReader.A[0])
        # The next frame takes the result, waiting for it: never older text than that read's.
        open_gate_after(reader, 0.3)
        (det, seconds), = run_frames(st, [still], start=3)
        np.testing.assert_allclose(det.xyxy[0], GatedReader.B[0])  # the background read, held
        assert labels(det) == ["text-held"] and seconds >= 0.25
        assert (st.reads, st.background_reads) == (2, 1)
    finally:
        reader.gate.set()
        st.close()


def test_a_cut_reads_the_new_shot_at_once_and_drops_the_old_shots_read():
    reader = GatedReader()
    st = stage(reader, interval_s=1.0, background=True)
    try:
        a, b = view(scene(1), 0), view(scene(2, tint=(0.3, 0.9, 0.4)), 0)
        run_frames(st, [a] * 3)  # read at 0 s, then its next read goes to the thread and waits at the gate
        assert reader.started.wait(10) and reader.calls == {"pipeline": 1, "background": 1}
        open_gate_after(reader, 0.2)
        (cut, _), = run_frames(st, [b], start=3)  # a cut: read here, the last shot's read dropped
        assert labels(cut) == ["text"] and reader.calls == {"pipeline": 2, "background": 1}
        np.testing.assert_allclose(cut.xyxy[0], GatedReader.A[0])
        (det, _), = run_frames(st, [b], start=4)
        assert labels(det) == ["text-held"]
        np.testing.assert_allclose(det.xyxy[0], GatedReader.A[0])  # shot b's own read, not shot a's
    finally:
        reader.gate.set()
        st.close()


class JitteryReader:
    """Answers on the reader thread after a random delay; the text depends on the frame only."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, frames):
        if threading.current_thread().name == "text-reader":
            time.sleep(float(self.rng.uniform(0, 0.05)))
        return [SimpleNamespace(text=["VOLTA"], xyxy=np.array([[900 + f.frame_no, 300, 1200, 420]], np.float32),
                                score=np.array([0.9], np.float32)) for f in frames]


def test_background_reads_give_the_same_figures_however_long_the_reads_take():
    pano = scene()
    runs = []
    for seed in (1, 2):
        st = stage(JitteryReader(seed), interval_s=1.0, background=True)
        try:
            out = run_frames(st, [view(pano, 100 + 2 * k) for k in range(16)])
            runs.append([(labels(d), d.xyxy.round(1).tolist()) for d, _ in out])
        finally:
            st.close()
    assert runs[0] == runs[1]
    assert sum(lb == ["text"] for lb, _ in runs[0]) == 1  # one read on the pipeline's thread: the first


# -- held lines followed by their look: a zoom is followed, a line hidden by a player is left out --

def sign_scene(zoom=1.0, cover=None, seed=3, dx=0):
    """A detector-size view of a textured wall with a sign reading VOLTA at its centre, zoomed about
    the view's centre by ``zoom``; ``cover``: (x0, x1) fraction of the sign's length hidden by a
    dark "player" in front of it; ``dx``: the sign moved right by that many detector pixels (a
    moving banner: the wall behind stays)."""
    from PIL import Image, ImageDraw

    from vidinfer.testing.brands import text_font

    rng = np.random.default_rng(seed)
    big = 4  # drawn 4x larger, then zoomed and scaled down (smooth edges, as a camera sees them)
    w, h = IN_W * big, IN_H * big
    wall = np.kron(rng.integers(60, 200, (h // 32 + 1, w // 32 + 1, 3)), np.ones((32, 32, 1)))[:h, :w]
    img = Image.fromarray(wall.astype(np.uint8))
    d = ImageDraw.Draw(img)
    sign = (np.array([420, 140, 510, 175]) + [dx, 0, dx, 0]) * big  # detector px x 4: the lettering fills it
    d.rectangle(list(sign), fill=(10, 22, 70))
    d.text(((sign[0] + sign[2]) / 2, (sign[1] + sign[3]) / 2), "VOLTA", font=text_font(22 * big),
           fill=(255, 206, 0), anchor="mm")
    if cover is not None:
        x0 = sign[0] + cover[0] * (sign[2] - sign[0])
        x1 = sign[0] + cover[1] * (sign[2] - sign[0])
        d.rectangle([x0, sign[1] - 40 * big, x1, sign[3] + 60 * big], fill=(30, 25, 20))
    cw, ch = w / zoom, h / zoom
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return np.asarray(img.resize((IN_W, IN_H), Image.BOX, box=box))


SIGN_SRC = np.array([420, 140, 510, 175], np.float32) * 3  # the sign in source pixels (1920 / 640)


def zoomed(box, zoom):
    """Where a source box is after a zoom about the frame's centre."""
    c = np.array([SRC_W / 2, SRC_H / 2] * 2, np.float32)
    return (box - c) * zoom + c


def test_a_held_line_follows_a_zoom_the_camera_pan_cannot_measure():
    reader = ScriptedReader(box=tuple(SIGN_SRC))
    st = stage(reader, interval_s=10.0)
    zooms = [1.0, 1.0125, 1.025, 1.0375, 1.05]
    texts = []
    for i, z in enumerate(zooms):
        st([frame(sign_scene(zoom=z), i)])
        texts.append(st.text_rows[0])
    assert len(reader.calls) == 1 and all(len(t) == 1 for t in texts)  # held all along, never lost
    # The sign's centre drifts 22 source px right and 3 up by the last zoom; the held line
    # follows it to within a search cell along it (270 / 32 px; it does not grow with the zoom)
    # and half of one across (105 / 8): the global shift alone leaves it near where it was read.
    tol = np.array([270 / 32, 105 / 8]) + 0.5
    for t, z in zip(texts, zooms):
        want, got = zoomed(SIGN_SRC, z), t.xyxy[0]
        err = np.abs((got[:2] + got[2:]) / 2 - (want[:2] + want[2:]) / 2)
        assert (err <= tol).all(), (z, got, want)
    assert np.abs(zoomed(SIGN_SRC, zooms[-1]) - SIGN_SRC)[[0, 2]].mean() > 2 * tol[0]


def test_a_held_line_hidden_by_a_player_is_left_out_until_it_is_seen_again():
    reader = ScriptedReader(box=tuple(SIGN_SRC))
    st = stage(reader, interval_s=10.0)
    covers = [None, (0.0, 0.3), (0.2, 0.8), (0.3, 1.1), None, (0.75, 1.1)]
    brand_rows, text_rows = [], []
    for i, cover in enumerate(covers):
        brand_rows.append(len(st([frame(sign_scene(cover=cover), i)])[0]))
        text_rows.append(len(st.text_rows[0]))
    assert len(reader.calls) == 1  # one read, at frame 0: the rest is held
    # Less than half hidden: still there; 60% and 70% hidden: left out of those frames (no brand
    # second counted); seen again: back, from the same read.
    assert text_rows == [1, 1, 0, 0, 1, 1]
    assert brand_rows == [1, 1, 0, 0, 1, 1]


def test_line_looks_find_a_shifted_line_and_count_its_hidden_strips():
    from vidinfer.models.ocr import line_patches
    from vidinfer.tracking.looks import best_match, search_quads, window_size

    img = sign_scene()
    src = np.asarray(SIGN_SRC / 3, np.float32)  # an ndarray image: its own pixels are the source
    quad = src[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(1, 4, 2)
    look = line_patches(img, quad, rows=4, cols=32)
    assert look.shape == (1, 4, 32, 3)
    cell = np.array([(src[2] - src[0]) / 32, (src[3] - src[1]) / 4])
    for shift in ([0, 0], [6, -3], [-8, 4]):  # where the line is expected vs where it is (px)
        expected = quad - np.asarray(shift, np.float32)
        window = line_patches(img, search_quads(expected), rows=window_size()[0], cols=window_size()[1], supersample=1)
        offset, seen = best_match(look, window)
        assert (np.abs(offset[0] * cell - shift) <= cell / 2 + 1e-3).all(), (shift, offset[0] * cell)
        assert seen[0] >= 0.75  # found to half a cell: a strip or two may differ
    for cover, hidden in (((0.0, 0.3), (1, 3)), ((0.2, 0.8), (4, 6)), ((0.0, 1.0), (8, 8))):
        covered = sign_scene(cover=cover)
        window = line_patches(covered, search_quads(quad), rows=window_size()[0], cols=window_size()[1], supersample=1)
        _, seen = best_match(look, window)
        lo, hi = hidden
        assert 1 - hi / 8 <= seen[0] <= 1 - lo / 8, (cover, seen)


def test_a_held_line_found_at_the_edge_of_its_search_is_read_again_and_one_beyond_it_left_out():
    reader = ScriptedReader(box=tuple(SIGN_SRC))
    st = stage(reader, interval_s=10.0)
    # The banner moves on a still wall. 6 detector px (18 source px, 2 cells of its 32) is
    # followed; 22 more (7.9 cells) is found at the edge of the search (8 cells): it may be moving
    # out of reach, so the frame is read.
    for i, dx in enumerate([0, 6, 28]):
        st([frame(sign_scene(dx=dx), i)])
    assert [c[0] for c in reader.calls] == [0, 2]
    # Moved by a third of its length at once: nowhere in the search, so left out (not counted
    # where it no longer is) until the next read.
    reader = ScriptedReader(box=tuple(SIGN_SRC))
    st = stage(reader, interval_s=10.0)
    rows = []
    for i, dx in enumerate([0, 6, 36]):
        st([frame(sign_scene(dx=dx), i)])
        rows.append(len(st.text_rows[0]))
    assert [c[0] for c in reader.calls] == [0] and rows == [1, 1, 0]
