"""`ReadText`: the text lines in each frame (PP-OCR: detection, orientation, recognition) as a layer.

The ``"text"`` layer has one row per line: its box (source pixels), its recognition score, class 0
(``"text"``), the recognised string in the column ``data["text"]``, the line's corners in
``data["quad"]`` ((N, 4, 2): top-left, top-right, bottom-right, bottom-left of the text as read, so
rotated text keeps its angle; ``xyxy`` is their bounding box), and the attribute ``read``
saying whether the line was read in this frame (label 0 ``read``) or in an earlier frame of the
same shot and held (label 1 ``held``).

Reading text is the expensive part of brand impact (a PP-OCR pass over a 1080p frame, ~130 ms on
2 cores, costs as much as the logo detector on ~15 frames; docs/performance.md). With
``interval_s`` a stream's text is read at most that often in stream time; in the frames between,
the lines last read are *held*: their boxes follow the camera's pan/tilt (phase correlation of
thumbnails, `vidinfer.tracking.motion`) and leave when their centre leaves the frame. A
discontinuity, a camera cut, or a camera move that cannot be measured forces a new read, so held
text never crosses a shot. Each held line is also looked at in every frame: how it looked when read
(its quad rectified to a small low-passed patch, `vidinfer.models.ocr.line_patches`) is compared
strip by strip along the line with how the frame looks there now, and a line of which less than
half still looks the same (a player in front of the board, the board gone) is left out of that
frame; it comes back when it is seen again, until the next read.

With ``background`` (live feeds), a read that falls due goes to a reader thread and its frame goes
on with the held text; the result replaces the held text at the stream's next analysed frame
(moved from the frame it was read in), waiting for the thread if it is not done. So the figures
depend on the input only, never on timing (two runs give the same figures), and a reader thread
that cannot keep up slows the pipeline instead of serving ever older text. A stream's first read
and the read after a cut or a discontinuity are not left to the thread: they go ahead of other
work, on the pipeline's thread, so a new shot's text counts from its first frame and nothing of
the old shot is held past the cut.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Callable, ClassVar, Optional, Union

import numpy as np
from pydantic import Field

from vidinfer.batch import Batch, Pixels
from vidinfer.component import Component
from vidinfer.detections import Attribute, Detections
from vidinfer.frame import Frame
from vidinfer.limits import HOUR_S, MAX_THREADS, THREADS_WHY, why
from vidinfer.stages.base import StageContext
from vidinfer.stages.detect import LAYER_NAME
from vidinfer.stages.options import model_file
from vidinfer.stages.track import import_object
from vidinfer.tracking.cuts import ShotCuts
from vidinfer.tracking.looks import COLS as LOOK_COLS
from vidinfer.tracking.looks import ROWS as LOOK_ROWS
from vidinfer.tracking.looks import best_match, on_edge, search_quads, window_size
from vidinfer.tracking.motion import MotionEstimator

__all__ = ["ReadText", "READ_LABELS", "READ", "HELD"]

log = logging.getLogger(__name__)

READ_LABELS = ["read", "held"]
READ, HELD = range(2)
_EMPTY_TEXT = np.zeros(0, dtype=object)


@dataclass(eq=False)
class _Lines:
    """Text lines of one frame: boxes (source pixels), recognition scores, strings."""

    xyxy: np.ndarray
    score: np.ndarray
    text: np.ndarray  # object array of str
    quad: np.ndarray  # (N, 4, 2) corners TL, TR, BR, BL of each line as read (rotated text)
    look: np.ndarray | None = None  # (N, rows, cols, 3) how each line looked when read (line_patches)
    kept: np.ndarray | None = None  # after `moved`: the rows of the held lines these are

    def __len__(self) -> int:
        return len(self.text)

    @classmethod
    def empty(cls) -> _Lines:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), _EMPTY_TEXT, np.zeros((0, 4, 2), np.float32))

    @classmethod
    def of(cls, result: Any) -> _Lines:
        """From a reader's result for one frame (``xyxy``, ``score``, ``text``); None: nothing read."""
        if result is None or len(result.text) == 0:
            return cls.empty()
        text = np.empty(len(result.text), dtype=object)
        text[:] = list(result.text)
        xyxy = np.asarray(result.xyxy, np.float32).reshape(-1, 4)
        quad = getattr(result, "quad", None)
        if quad is None:  # a reader of one's own may give boxes only: their corners
            quad = xyxy[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
        return cls(xyxy, np.asarray(result.score, np.float32), text, np.asarray(quad, np.float32).reshape(-1, 4, 2))

    def moved(self, dx: float, dy: float, width: int, height: int) -> _Lines:
        """The lines shifted by the camera's move; lines whose centre left the frame are gone."""
        xyxy = self.xyxy + np.asarray([dx, dy, dx, dy], np.float32)
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
        keep = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        xyxy = np.clip(xyxy[keep], 0, np.asarray([width, height, width, height], np.float32))
        return _Lines(xyxy, self.score[keep], self.text[keep], self.quad[keep] + np.asarray([dx, dy], np.float32),
                      None if self.look is None else self.look[keep], np.flatnonzero(keep))

    def nudged(self, rows: np.ndarray, step: np.ndarray) -> _Lines:
        """A copy with lines ``rows`` moved by ``step`` (len(rows), 2) source pixels."""
        quad, xyxy = self.quad.copy(), self.xyxy.copy()
        quad[rows] += step[:, None, :]
        xyxy[rows] += np.tile(step, 2)
        return _Lines(xyxy, self.score, self.text, quad, self.look, self.kept)

    def subset(self, keep: np.ndarray) -> _Lines:
        return _Lines(self.xyxy[keep], self.score[keep], self.text[keep], self.quad[keep],
                      None if self.look is None else self.look[keep])

    def detections(self, read: int) -> Detections:
        n = len(self)
        return Detections(self.xyxy, self.score, np.zeros(n, np.int32),
                          attributes={"read": Attribute(np.full(n, read, np.int32), np.ones(n, np.float32))},
                          data={"text": self.text, "quad": self.quad})


@dataclass(eq=False)
class _Held:
    """A stream's last read: when, what, and the thumbnail the camera's move is measured from."""

    pts_ns: int
    due_ns: int  # when the next read is due
    lines: _Lines
    thumb: np.ndarray


class _BackgroundReader:
    """One thread that reads text for frames whose read fell due, at most one job per stream.

    A stream's result is taken at its next analysed frame, waiting for it if the thread is not done
    (`result`): results then depend only on the input, never on timing, and a reader thread that
    falls behind slows the pipeline (backpressure) instead of serving ever older text."""

    def __init__(self, read: Callable[[Frame], "_Lines"]):
        self._read = read
        self._jobs: queue.SimpleQueue[tuple[str, int, Frame, np.ndarray] | None] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._busy: set[str] = set()
        self._done: dict[str, tuple[int, int, _Lines | None, np.ndarray]] = {}
        self._thread = threading.Thread(target=self._run, name="text-reader", daemon=True)
        self._thread.start()

    def submit(self, stream_id: str, generation: int, frame: Frame, thumb: np.ndarray) -> None:
        """Queue a read of ``frame``; the stream's previous result must have been taken."""
        with self._changed:
            assert stream_id not in self._busy and stream_id not in self._done, "take the last result first"
            self._busy.add(stream_id)
        self._jobs.put((stream_id, generation, frame, thumb))

    @property
    def in_flight(self) -> int:
        with self._changed:
            return len(self._busy)

    def result(self, stream_id: str) -> tuple[int, int, _Lines | None, np.ndarray] | None:
        """(generation, pts_ns, the lines or None if the read failed, thumbnail) of the stream's last
        submitted read, waiting for it to finish; None when none was submitted since the last call."""
        with self._changed:
            while stream_id in self._busy:
                self._changed.wait()
            return self._done.pop(stream_id, None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            stream_id, generation, frame, thumb = job
            try:
                text: _Lines | None = self._read(frame)
            except Exception:  # a bad frame must not stop reading for every stream
                log.exception("stream %s: reading text failed", stream_id)
                text = None
            with self._changed:
                self._busy.discard(stream_id)
                self._done[stream_id] = (generation, frame.pts_ns, text, thumb)
                self._changed.notify_all()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5.0)


class ReadText(Component):
    """Reads the text in frames with PP-OCR; makes a layer of text lines.

    Args:
        layer: the layer's name.
        det_model, cls_model, rec_model: the PP-OCR models (registered names or ONNX paths).
        orientation: run the 0/180 degree orientation classifier.
        limit_side: the frame's longer side for text detection.
        min_text_height: lines shorter than this (source pixels) are not read.
        interval_s: read each stream's text at most this often (stream seconds; 0: every frame);
            between reads the lines read are held, moving with the camera.
        background: with interval_s, a read that falls due runs on a reader thread.
        reader: a text reader of your own instead of PP-OCR: called with a list of frames, it
            returns per frame an object with ``xyxy`` (N, 4), ``score`` (N,) and ``text`` (N
            strings); in TOML ``package.module:name`` of a factory that makes one.
    """

    type: ClassVar[str] = "read_text"
    pixels: ClassVar[Pixels] = Pixels.HOST

    layer: str = Field(default="text", pattern=LAYER_NAME)
    det_model: str = "ppocr:det"
    cls_model: str = "ppocr:cls"
    orientation: bool = Field(default=True, description="run the 0/180 degree orientation classifier")
    rec_model: str = "ppocr:rec"
    limit_side: Annotated[int, why(
        "the text detector's input side; at 4096 one frame takes 200 MB and seconds on a CPU")] = Field(
        default=960, ge=32, le=4096, description="longer side of the frame for text detection")
    min_text_height: Annotated[float, why("source pixels; FFmpeg decodes no frame taller than 16384")] = Field(
        default=12.0, ge=0, le=16384, description="source pixels; smaller text is ignored")
    interval_s: Annotated[float, why("an hour; text held longer than that is stale")] = Field(
        default=0.0, ge=0, le=HOUR_S, description="read each stream's text at most this often "
                              "(stream seconds; 0: every analysed frame); between reads the lines read are "
                              "held, moving with the camera, until the next read, a cut or a discontinuity")
    background: bool = Field(default=False, description="with interval_s: a read that falls due runs on a "
                             "reader thread while the frame goes on with the held text (live feeds: no frame "
                             "waits for a due read; results then depend on timing)")
    intra_op_threads: Annotated[int, why(THREADS_WHY)] = Field(default=0, ge=0, le=MAX_THREADS)
    reader: Optional[Union[str, Callable[..., Any]]] = Field(
        default=None, description="a reader of your own (package.module:factory in TOML); None: PP-OCR")

    # -- the stage --
    def open(self, ctx: StageContext) -> None:
        self._reader = self._make_reader(ctx.name)
        self._interval_ns = int(self.interval_s * 1e9)
        self._motion = MotionEstimator()
        self._cuts: ShotCuts = ctx.cuts
        self._held: dict[str, _Held] = {}
        self._generation: dict[str, int] = {}  # per stream, +1 at each read here: older reads are stale
        from vidinfer.models.ocr import line_patches

        self._line_patches = line_patches
        self._worker = _BackgroundReader(self._read_one) if self.background and self._interval_ns else None
        self._reads = 0  # frames whose text was read (the rest held it)
        self._background_reads = 0  # of which read on the reader thread
        ctx.add_layer(self.layer, ["text"], {"read": READ_LABELS})
        ctx.need_full_frames()  # lines are read from the full-resolution frame

    def _make_reader(self, name: str) -> Any:
        what = f"stage {name!r}"
        if self.reader is not None:
            if isinstance(self.reader, str):
                return import_object(self.reader, f"{what}: key 'reader'")()
            return self.reader
        from vidinfer.models.ocr import TextReader

        det = model_file(self.det_model, f"{what}: key 'det_model'")
        rec = model_file(self.rec_model, f"{what}: key 'rec_model'")
        cls = model_file(self.cls_model, f"{what}: key 'cls_model'") if self.orientation else None
        return TextReader(det_model=det, cls_model=cls, rec_model=rec, limit_side=self.limit_side,
                          min_text_height=self.min_text_height, threads=self.intra_op_threads)

    def __call__(self, batch: Batch) -> None:
        frames = batch.frames
        if not self._interval_ns:
            self._reads += len(frames)
            batch[self.layer] = [_Lines.of(r).detections(READ) for r in self._reader(frames)]
            return
        lines: list[_Lines | None] = [None] * len(frames)
        sources = [HELD] * len(frames)
        pending = list(range(len(frames)))
        while pending:  # a later frame of a stream may hold what an earlier frame of this batch read
            to_read: list[tuple[int, bool, np.ndarray]] = []  # (frame index, forced, thumbnail)
            waiting: list[int] = []
            reading: set[str] = set()
            for i in pending:
                sid = frames[i].stream_id
                if sid in reading:
                    waiting.append(i)
                    continue
                lines[i], forced, thumb = self._held_lines(frames[i])
                if lines[i] is None:
                    to_read.append((i, forced, thumb))
                    reading.add(sid)
            texts = self._reader([frames[i] for i, _, _ in to_read]) if to_read else []
            for (i, forced, thumb), text in zip(to_read, texts):
                f = frames[i]
                read = lines[i] = self._with_look(f, _Lines.of(text))
                sources[i] = READ
                # A read here is newer than any still running on the reader thread: that one is stale.
                self._generation[f.stream_id] = self._generation.get(f.stream_id, 0) + 1
                self._held[f.stream_id] = _Held(f.pts_ns, f.pts_ns + self._hold_ns(f.stream_id, forced), read, thumb)
            self._reads += len(to_read)
            pending = waiting
        batch[self.layer] = [(ln if ln is not None else _Lines.empty()).detections(src)
                             for ln, src in zip(lines, sources)]

    def _read_one(self, frame: Frame) -> _Lines:
        """One frame's lines with their look (on the reader thread: the only one touching ``frame``)."""
        return self._with_look(frame, _Lines.of(self._reader([frame])[0]))

    def _with_look(self, frame: Frame, lines: _Lines) -> _Lines:
        lines.look = self._line_patches(frame, lines.quad, rows=LOOK_ROWS, cols=LOOK_COLS)
        return lines

    def _follow(self, frame: Frame, held: _Held, moved: _Lines) -> _Lines | None:
        """The held lines, moved by the camera, looked for in ``frame`` by how they looked when read
        (`vidinfer.tracking.looks`): those seen, at the place found; the place is kept in ``held``
        for the next frame (the camera's move is measured from the frame read, the rest is not).
        None when a line is best matched on the edge of its search window: it may have moved
        farther than the search reaches (a fast zoom and pan), so the frame must be read."""
        look = moved.look
        if not len(moved) or look is None:
            return moved
        assert moved.kept is not None  # made by `moved`
        rows, cols = look.shape[1:3]
        wr, wc = window_size(rows, cols)
        window = self._line_patches(frame, search_quads(moved.quad, rows, cols), rows=wr, cols=wc, supersample=1)
        offset, seen_fraction = best_match(look, window)
        if on_edge(offset).any():
            return None
        seen = seen_fraction >= 0.5
        q = moved.quad
        along, across = (q[:, 1] - q[:, 0]) / cols, (q[:, 3] - q[:, 0]) / rows
        step = (offset[:, :1] * along + offset[:, 1:] * across).astype(np.float32) * seen[:, None]  # (N, 2)
        held.lines = held.lines.nudged(moved.kept, step)
        return moved.nudged(np.arange(len(moved)), step).subset(seen)

    def _hold_ns(self, stream_id: str, forced: bool) -> int:
        """How long a read is held. After a read the stream could not avoid (its start, a cut, a
        discontinuity), a fraction from 1/2 to 1 that depends on the stream's id, so that streams
        started (or looped) together spread their reads over the interval instead of all reading
        in the same batch."""
        if not forced:
            return self._interval_ns
        return int(self._interval_ns * (0.5 + 0.5 * (zlib.crc32(stream_id.encode()) % 1000) / 1000))

    def _held_lines(self, frame: Frame) -> tuple[_Lines | None, bool, np.ndarray]:
        """(the held lines moved to this frame, or None when this frame's text must be read; forced:
        the held lines cannot be used at all (none yet, a cut, a discontinuity); the frame's thumbnail)."""
        cut = self._cuts.is_cut(frame)  # asked for every frame, so the detector compares neighbours
        sid = frame.stream_id
        thumb = self._motion.thumbnail(frame.image)
        if self._worker is not None:
            self._take_background_read(sid)
        held = self._held.get(sid)
        # A new shot's first read goes ahead of everything, on this thread: its text counts from
        # its first frame, and nothing of the old shot is held past the cut.
        if held is None or cut or frame.discontinuity or frame.pts_ns < held.pts_ns:
            return None, True, thumb
        if self._worker is None and frame.pts_ns >= held.due_ns:
            return None, False, thumb
        box = frame.letterbox
        shift = self._motion.source_shift(held.thumb, thumb, (box.src_w / box.new_w, box.src_h / box.new_h))
        if shift is None:
            return None, True, thumb
        # The held lines are looked for before the frame may go to the reader thread (below).
        seen = self._follow(frame, held, held.lines.moved(shift[0], shift[1], frame.width, frame.height))
        if seen is None:
            return None, True, thumb
        # Only a frame that is not read here may go to the reader thread: PyAV frames must not be
        # converted by two threads at once. Its result replaces the held text at the stream's next
        # analysed frame.
        if self._worker is not None and frame.pts_ns >= held.due_ns:
            self._worker.submit(sid, self._generation.get(sid, 0), frame, thumb)
            held.due_ns = frame.pts_ns + self._interval_ns
        return seen, False, thumb

    def _take_background_read(self, stream_id: str) -> None:
        """The stream's read on the reader thread, finished (waiting for it if need be), becomes the
        held text; one of an earlier shot, or one that failed, is dropped."""
        assert self._worker is not None
        done = self._worker.result(stream_id)
        if done is None:
            return
        generation, pts_ns, lines, read_thumb = done
        self._reads += 1
        self._background_reads += 1
        if generation != self._generation.get(stream_id, 0) or lines is None:
            return
        due = self._held[stream_id].due_ns if stream_id in self._held else pts_ns + self._interval_ns
        self._held[stream_id] = _Held(pts_ns, due, lines, read_thumb)

    @property
    def reads(self) -> int:
        """Frames whose text was read (the others held it)."""
        return self._reads

    @property
    def background_reads(self) -> int:
        """Of those, read on the reader thread."""
        return self._background_reads

    @property
    def reads_in_flight(self) -> int:
        """Reads queued or running on the reader thread."""
        return self._worker.in_flight if self._worker is not None else 0

    def on_stream_end(self, stream_id: str) -> None:
        if self._worker is not None:
            self._worker.result(stream_id)  # a read still running for the stream is dropped
        self._held.pop(stream_id, None)
        self._cuts.end(stream_id)

    def close(self) -> None:
        """Stop the reader thread (reads still in flight are dropped)."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
            self._worker = None
