"""A source of frames handed in from Python: NumPy arrays from a camera SDK, a simulator, a test.

    source = vi.ArraySource("sdk-cam", live=True, fps=30)
    pipeline = vi.Pipeline(sources=[source], stages=[...], sinks=[...])
    threading.Thread(target=pipeline.run).start()
    for image in camera:                 # HxWx3 uint8 RGB
        source.push(image)
    source.end()

or with an iterable, read on the source's own thread: ``vi.ArraySource("clip", frames=arrays, fps=25)``.

Each image is letterboxed to the first detector's input by one swscale pass (as decoded video is)
and kept whole as ``frame.source`` when a stage needs full-resolution pixels. A live source's
queue drops its oldest frame when the pipeline is behind; a file-like one (``live=False``, the
default) makes ``push`` wait instead, so no frame is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.preprocess.letterbox import Letterbox
from vidinfer.publish.wire import STREAM_ID_PATTERN, valid_stream_id
from vidinfer.sources.base import DecodeHints, FrameQueue, SourceStats

__all__ = ["ArraySource"]

log = logging.getLogger(__name__)


class ArraySource:
    """Frames from NumPy arrays, pushed by the caller or read from an iterable.

    Args:
        stream_id: the stream's id.
        frames: an iterable of HxWx3 uint8 RGB arrays, read on the source's own thread; None to
            `push` frames from your own thread instead.
        fps: frame rate: frame k's time is k / fps unless ``push`` is given a ``pts_ns``.
        live: drop the oldest queued frame when the pipeline is behind (a camera), instead of
            making the producer wait (a recording).
        queue_size: frames the stream's queue holds.
    """

    def __init__(self, stream_id: str, frames: Iterable[Any] | None = None, *, fps: float = 25.0,
                 live: bool = False, queue_size: int = 8):
        if not valid_stream_id(stream_id):
            raise ValueError(f"stream id {stream_id!r} must match {STREAM_ID_PATTERN}")
        if fps <= 0:
            raise ValueError(f"fps must be above 0, got {fps}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.stream_id = stream_id
        self.live = live
        self.queue_size = queue_size
        self.fps = fps
        self.stats = SourceStats()
        self._frames = frames
        self._queue: FrameQueue | None = None
        self._hints = DecodeHints()
        self._lock = threading.Lock()
        self._ended = False
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._letterbox: Letterbox | None = None
        self._last_pts = -1

    # -- Source --
    def start(self, queue: FrameQueue, hints: DecodeHints) -> None:
        self._queue, self._hints = queue, hints
        self._started.set()
        if self._frames is not None:
            self._thread = threading.Thread(target=self._read, name=f"source-{self.stream_id}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._frames is None:
            self.end("stopped")

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() if self._thread is not None else not self._ended

    # -- feeding --
    def push(self, image: Any, pts_ns: int | None = None) -> bool:
        """Queue one HxWx3 uint8 RGB image. Returns False once the stream has ended or the
        pipeline is stopping (stop pushing then). Waits while a file-like source's queue is full.
        Raises ValueError for an image that is not HxWx3 uint8, naming what it got."""
        if not self._started.wait(timeout=60.0):
            raise RuntimeError(f"source {self.stream_id!r} was not started: add it to a Pipeline and run it first")
        image = _checked(image)
        with self._lock:
            if self._ended:
                return False
            if self.stats.decoded == 0:
                self._put(StreamEvent(self.stream_id, StreamState.CONNECTED, "",
                                      {"width": image.shape[1], "height": image.shape[0], "fps": self.fps,
                                       "codec": "rawvideo", "live": self.live, "url": f"array:{self.stream_id}"}))
                self.stats.state = StreamState.CONNECTED
            n = self.stats.decoded
            pts = round(n * 1e9 / self.fps) if pts_ns is None else int(pts_ns)
            pts = max(pts, self._last_pts + 1)  # time never runs backwards
            self._last_pts = pts
            self.stats.decoded += 1
            frame = self._frame(image, n, pts)
            if not self._put(frame):
                return False
            self.stats.queued += 1
            return True

    def end(self, reason: str = "end of input", failed: bool = False) -> None:
        """The stream's last frame was pushed: publish its end (once; later calls do nothing)."""
        with self._lock:
            if self._ended or self._queue is None:
                self._ended = True
                return
            self._ended = True
            state = StreamState.FAILED if failed else StreamState.ENDED
            self.stats.state, self.stats.reason = state, reason
            self._queue.put(StreamEvent(self.stream_id, state, reason,
                                        {"frames_decoded": self.stats.decoded, "frames_analysed": self.stats.queued,
                                         "frames_dropped": self._queue.dropped}, end_of_stream=True))

    # -- internals --
    def _put(self, item: Frame | StreamEvent) -> bool:
        assert self._queue is not None
        return self._queue.put(item)

    def _frame(self, image: np.ndarray, frame_no: int, pts_ns: int) -> Frame:
        h, w = image.shape[:2]
        size = self._hints.size or (w, h)
        box = self._letterbox
        if box is None or (box.src_w, box.src_h) != (w, h):
            box = self._letterbox = Letterbox.fit(w, h, *size)
        resized = image if (box.new_w, box.new_h) == (w, h) else _resize(image, box.new_w, box.new_h)
        source = image if self._hints.full_frames else None
        return Frame(self.stream_id, frame_no, pts_ns, time.time_ns(), resized, box, source=source,
                     decoded_at=time.monotonic())

    def _read(self) -> None:
        assert self._frames is not None
        try:
            for image in self._frames:
                if self._stopping.is_set() or not self.push(image):
                    break
        except Exception as exc:  # the caller's iterable or a bad image: this stream fails, not the others
            log.warning("stream %s: %s", self.stream_id, exc)
            self.end(f"frames could not be read: {str(exc).splitlines()[0][:200]}", failed=True)
            return
        self.end("stopped" if self._stopping.is_set() else "end of input")


def _checked(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"an ArraySource frame must be an HxWx3 uint8 RGB array, got shape {arr.shape} "
                         f"dtype {arr.dtype}; convert it first (e.g. image[..., ::-1] for BGR)")
    return np.ascontiguousarray(arr)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from vidinfer.sources.pyav import scaled_rgb

    return np.asarray(scaled_rgb(image, width, height))
