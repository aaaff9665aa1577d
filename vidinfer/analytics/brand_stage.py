"""The brand stage: logo detections and text read in the frame become detections of brands.

Output rows have ``class_id`` = brand index and an attribute ``source`` telling where each row came
from (label 0 ``logo``, 1 ``text`` read in this frame, 2 ``text-held``: text read in an earlier frame
of the shot, moved with the camera; its score is the match score). Logo classes that map to no
brand, and text that matches no brand, are dropped.

Reading text is what brand impact spends its time on (a PP-OCR pass over a 1080p frame, ~130 ms
on 2 cores, costs as much as the logo detector on ~15 frames; docs/performance.md). With
``text_interval_s`` a stream's text is read at most that often in stream time; in the frames
between, the brands last read are *held*: their boxes follow the camera's pan/tilt (phase
correlation of thumbnails, `vidinfer.tracking.motion`) and leave when their centre leaves the
frame. A discontinuity, a camera cut, or a camera move that cannot be
measured forces a new read, so held text never crosses a shot. What holding cannot see: a board
hidden by a player or a mark that disappears between two reads is still counted until the next
read (an error of at most ``text_interval_s`` per change, the same as reading at that rate).

With ``background`` (live feeds), reads go to a reader thread and frames go on with the held
text, so no frame waits for OCR; a result replaces the held text when it is ready (moved from the
frame it was read in). At a stream's start, a cut or a discontinuity nothing is held until the new
shot's read answers, and a read of an earlier shot that answers late is dropped. A hold grown
three intervals old (the reader thread cannot keep up) is read on the pipeline's thread:
backpressure instead of ever older text. Results then depend on timing, which is why file jobs
keep it off.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vidinfer.analytics.brands import BrandMatcher
from vidinfer.detections import Attribute, Detections
from vidinfer.frame import Frame
from vidinfer.tracking.cuts import ShotCuts
from vidinfer.tracking.motion import MotionEstimator

__all__ = ["BrandStage", "SOURCE_LABELS"]

log = logging.getLogger(__name__)

SOURCE_LABELS = ["logo", "text", "text-held"]
LOGO, TEXT, TEXT_HELD = range(3)


@dataclass(eq=False)
class _TextRows:
    """Brand rows from text: boxes (source pixels), recognition scores, brand ids, match scores."""

    xyxy: np.ndarray
    score: np.ndarray
    brand: np.ndarray
    match: np.ndarray

    def __len__(self) -> int:
        return len(self.brand)

    def moved(self, dx: float, dy: float, width: int, height: int) -> _TextRows:
        """The rows shifted by the camera's move; rows whose centre left the frame are gone."""
        xyxy = self.xyxy + np.float32([dx, dy, dx, dy])
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
        keep = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        xyxy = np.clip(xyxy[keep], 0, np.float32([width, height, width, height]))
        return _TextRows(xyxy, self.score[keep], self.brand[keep], self.match[keep])


@dataclass(eq=False)
class _Held:
    """A stream's last text read: when, what, and the thumbnail the camera's move is measured from."""

    pts_ns: int
    due_ns: int  # when the next read is due
    rows: _TextRows
    thumb: np.ndarray


class _BackgroundReader:
    """One thread that reads text for frames whose read fell due, one job per stream at a time."""

    def __init__(self, reader: Any):
        self._reader = reader
        self._jobs: queue.SimpleQueue[tuple[str, int, Frame, np.ndarray] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._done: dict[str, tuple[int, int, Any, np.ndarray]] = {}
        self._thread = threading.Thread(target=self._run, name="text-reader", daemon=True)
        self._thread.start()

    def submit(self, stream_id: str, generation: int, frame: Frame, thumb: np.ndarray) -> bool:
        """Queue a read unless one of this stream's is still running; returns whether it was queued."""
        with self._lock:
            if stream_id in self._busy:
                return False
            self._busy.add(stream_id)
        self._jobs.put((stream_id, generation, frame, thumb))
        return True

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._busy)

    def take(self, stream_id: str, generation: int) -> tuple[int, Any, np.ndarray] | None:
        """(pts_ns, text, thumbnail) of a finished read of this shot (``generation``), once."""
        with self._lock:
            done = self._done.pop(stream_id, None)
        if done is None or done[0] != generation or done[2] is None:
            return None  # nothing finished, a read of an earlier shot, or a failed read
        return done[1], done[2], done[3]

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            stream_id, generation, frame, thumb = job
            try:
                text = self._reader([frame])[0]
            except Exception:  # a bad frame must not stop reading for every stream
                log.exception("stream %s: reading text failed", stream_id)
                text = None
            with self._lock:
                self._busy.discard(stream_id)
                self._done[stream_id] = (generation, frame.pts_ns, text, thumb)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5.0)


class BrandStage:
    """Maps a batch's detections (and, with a reader, its text) into brand space.

    Args:
        matcher: the brands and how text matches them.
        detector_classes: the logo detector's class names.
        reader: a text reader called with the batch's frames (one result per frame with
            ``xyxy``, ``score`` and ``text``), or None to use logos only.
        text_interval_s: read a stream's text at most this often (stream time); 0 reads every
            analysed frame. See the module's description of held text.
        background: read due text on a thread while the held text stands in (needs an interval).
        cuts: the pipeline's shared cut detection (the tracker asks about the same frames).
    """

    def __init__(self, matcher: BrandMatcher, detector_classes: Sequence[str], reader: Any = None,
                 text_interval_s: float = 0.0, background: bool = False, cuts: ShotCuts | None = None):
        self.matcher = matcher
        self.reader = reader
        self.logo_brand = matcher.logo_map(detector_classes)
        self.classes = matcher.names
        self.text_interval_ns = int(text_interval_s * 1e9)
        self.motion = MotionEstimator()
        self._held: dict[str, _Held] = {}
        self.cuts = cuts if cuts is not None else ShotCuts()
        self._generation: dict[str, int] = {}  # per stream, +1 at each read here: older reads are stale
        self._worker = _BackgroundReader(reader) if background and reader is not None and self.text_interval_ns \
            else None
        self.reads = 0  # frames whose text was read (the rest held it)
        self.background_reads = 0  # of which read on the reader thread

    def __call__(self, frames: Sequence[Frame], detections: list[Detections]) -> list[Detections]:
        if self.reader is None:
            return [self._combine(det, None, TEXT) for det in detections]
        if not self.text_interval_ns:
            self.reads += len(frames)
            return [self._combine(det, self._text_rows(text), TEXT)
                    for det, text in zip(detections, self.reader(frames))]
        rows: list[_TextRows | None] = [None] * len(frames)
        sources = [TEXT_HELD] * len(frames)
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
                rows[i], forced, thumb = self._held_rows(frames[i])
                if rows[i] is None:
                    to_read.append((i, forced, thumb))
                    reading.add(sid)
            texts = self.reader([frames[i] for i, _, _ in to_read]) if to_read else []
            for (i, forced, thumb), text in zip(to_read, texts):
                f = frames[i]
                rows[i], sources[i] = self._text_rows(text), TEXT
                # A read here is newer than any still running on the reader thread: that one is stale.
                self._generation[f.stream_id] = self._generation.get(f.stream_id, 0) + 1
                self._held[f.stream_id] = _Held(f.pts_ns, f.pts_ns + self._hold_ns(f.stream_id, forced), rows[i],
                                                thumb)
            self.reads += len(to_read)
            pending = waiting
        return [self._combine(det, r, src) for det, r, src in zip(detections, rows, sources)]

    def _hold_ns(self, stream_id: str, forced: bool) -> int:
        """How long a read is held. After a read the stream could not avoid (its start, a cut, a
        discontinuity), a fraction from 1/2 to 1 that depends on the stream's id, so that streams
        started (or looped) together spread their reads over the interval instead of all reading
        in the same batch."""
        if not forced:
            return self.text_interval_ns
        return int(self.text_interval_ns * (0.5 + 0.5 * (zlib.crc32(stream_id.encode()) % 1000) / 1000))

    def _held_rows(self, frame: Frame) -> tuple[_TextRows | None, bool, np.ndarray]:
        """(the held text moved to this frame, or None when this frame's text must be read; forced:
        the held text cannot be used at all (none yet, a cut, a discontinuity); the frame's thumbnail)."""
        cut = self.cuts.is_cut(frame)  # asked for every frame, so the detector compares neighbours
        held = self._held.get(frame.stream_id)
        thumb = self.motion.thumbnail(frame.image)
        if held is None or cut or frame.discontinuity or frame.pts_ns < held.pts_ns:
            if self._worker is None:
                return None, True, thumb
            # Background: nothing from the last shot is held; this shot's text counts from when
            # its read (queued below) is ready, and no frame waits for it.
            held = self._new_shot(frame, thumb)
        if self._worker is not None:
            held = self._take_background_read(frame.stream_id, held)
            if frame.pts_ns - held.pts_ns >= 3 * self.text_interval_ns:
                return None, False, thumb  # the reader thread is behind: read here (backpressure)
        elif frame.pts_ns >= held.due_ns:
            return None, False, thumb
        box = frame.letterbox
        shift = self.motion.source_shift(held.thumb, thumb, (box.src_w / box.new_w, box.src_h / box.new_h))
        if shift is None:
            if self._worker is None:
                return None, True, thumb
            held, shift = self._new_shot(frame, thumb), (0.0, 0.0)
        # Only a frame that is not read here may go to the reader thread: PyAV frames must not be
        # converted by two threads at once.
        if self._worker is not None and frame.pts_ns >= held.due_ns and self._worker.submit(
                frame.stream_id, self._generation.get(frame.stream_id, 0), frame, thumb):
            held.due_ns = frame.pts_ns + self.text_interval_ns  # the read in flight answers this one
        return held.rows.moved(shift[0], shift[1], frame.width, frame.height), False, thumb

    def _new_shot(self, frame: Frame, thumb: np.ndarray) -> _Held:
        """Background mode at a cut (or the start): hold nothing, read as soon as the reader can."""
        sid = frame.stream_id
        self._generation[sid] = self._generation.get(sid, 0) + 1  # reads of the last shot are stale
        empty = np.zeros(0, np.float32)
        rows = _TextRows(np.zeros((0, 4), np.float32), empty, np.zeros(0, np.int32), empty)
        held = self._held[sid] = _Held(frame.pts_ns, frame.pts_ns, rows, thumb)
        return held

    def _take_background_read(self, stream_id: str, held: _Held) -> _Held:
        """A finished background read of this shot becomes the held text."""
        assert self._worker is not None
        done = self._worker.take(stream_id, self._generation.get(stream_id, 0))
        if done is None:
            return held
        pts_ns, text, read_thumb = done
        self.reads += 1
        self.background_reads += 1
        held = self._held[stream_id] = _Held(pts_ns, pts_ns + self.text_interval_ns, self._text_rows(text), read_thumb)
        return held

    @property
    def reads_in_flight(self) -> int:
        """Reads queued or running on the reader thread."""
        return self._worker.in_flight if self._worker is not None else 0

    def close(self) -> None:
        """Stop the reader thread (reads still in flight are dropped)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def end(self, stream_id: str) -> None:
        self._held.pop(stream_id, None)
        self.cuts.end(stream_id)

    def _join_split_names(self, texts: Sequence[str], xyxy: np.ndarray, score: np.ndarray, ids: np.ndarray,
                          match: np.ndarray) -> tuple[np.ndarray, ...]:
        """Unmatched neighbours on one line may be one name split by an occluder: join them.

        Neighbours overlap vertically by at least half a line and sit at most three line heights
        apart. A joined pair becomes one row (the union box) in place of its left piece; the
        right piece's row is dropped.
        """
        loose = np.flatnonzero(ids < 0)
        if len(loose) < 2:
            return xyxy, score, ids, match
        loose = loose[np.argsort(xyxy[loose, 0])]
        drop = np.zeros(len(ids), bool)
        ids, match, xyxy, score = ids.copy(), match.copy(), xyxy.copy(), score.copy()
        for i, j in zip(loose[:-1], loose[1:]):
            if drop[i] or ids[i] >= 0:
                continue
            h = min(xyxy[i, 3] - xyxy[i, 1], xyxy[j, 3] - xyxy[j, 1])
            overlap = min(xyxy[i, 3], xyxy[j, 3]) - max(xyxy[i, 1], xyxy[j, 1])
            gap = xyxy[j, 0] - xyxy[i, 2]
            if overlap < 0.5 * h or not (-0.5 * h <= gap <= 3 * h):
                continue
            brand, s = self.matcher.match_split(texts[i], texts[j])
            if brand >= 0:
                ids[i], match[i] = brand, s
                xyxy[i] = [xyxy[i, 0], min(xyxy[i, 1], xyxy[j, 1]), xyxy[j, 2], max(xyxy[i, 3], xyxy[j, 3])]
                score[i] = min(score[i], score[j])
                drop[j] = True
        keep = ~drop
        return xyxy[keep], score[keep], ids[keep], match[keep]

    def _text_rows(self, text: Any) -> _TextRows:
        """The rows of a frame's text lines that name a brand."""
        if text is None or len(text.text) == 0:
            empty = np.zeros(0, np.float32)
            return _TextRows(np.zeros((0, 4), np.float32), empty, np.zeros(0, np.int32), empty)
        xyxy = np.asarray(text.xyxy, np.float32)
        rec_score = np.asarray(text.score, np.float32)
        ids, match = self.matcher.match(text.text)
        xyxy, rec_score, ids, match = self._join_split_names(text.text, xyxy, rec_score, ids, match)
        keep = ids >= 0
        return _TextRows(xyxy[keep], rec_score[keep], ids[keep].astype(np.int32), match[keep].astype(np.float32))

    def _combine(self, det: Detections, text: _TextRows | None, text_source: int) -> Detections:
        """Logo rows (mapped to brands) followed by the text rows, with the ``source`` attribute."""
        brand = self.logo_brand[det.class_id] if len(det) else np.zeros(0, np.int32)
        logos = det[brand >= 0]
        logo_brand = brand[brand >= 0]
        n_logo = len(logos)
        if text is None or len(text) == 0:
            return Detections(logos.xyxy, logos.score, logo_brand, logos.track_id,
                              {**logos.attributes, "source": Attribute(np.full(n_logo, LOGO, np.int32),
                                                                       np.ones(n_logo, np.float32))})
        n_text = len(text)
        attrs = {name: Attribute(np.concatenate([a.label_id, np.full(n_text, -1, np.int32)]),
                                 np.concatenate([a.score, np.zeros(n_text, np.float32)]))
                 for name, a in logos.attributes.items()}
        attrs["source"] = Attribute(
            np.concatenate([np.full(n_logo, LOGO, np.int32), np.full(n_text, text_source, np.int32)]),
            np.concatenate([np.ones(n_logo, np.float32), text.match]))
        return Detections(np.concatenate([logos.xyxy, text.xyxy]), np.concatenate([logos.score, text.score]),
                          np.concatenate([logo_brand, text.brand]),
                          np.concatenate([logos.track_id, np.full(n_text, -1, np.int64)]), attrs)
