"""The source seam: one stream's frames and events into a bounded queue.

A `Source` runs on its own thread (or is fed by the caller's threads, `ArraySource`), and puts
`Frame`s and `StreamEvent`s into the queue the pipeline gives it in ``start``. The pipeline
owns the queue (bounded; a live source's oldest frame is dropped when it is full, a file
source waits), the batching and the shutdown.

Every source must, in this order: put a ``CONNECTED`` event before its first frame (with what
it knows of the stream in ``info``: width, height, fps, codec), then frames, and finally exactly
one event with ``end_of_stream=True`` (state ``ENDED`` or ``FAILED`` with a reason), also when
it is stopped; `StreamQueue.put` returning False (the pipeline is stopping) means: stop now and
put the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from vidinfer.frame import Frame, StreamEvent, StreamState

__all__ = ["DecodeHints", "FrameQueue", "Source", "SourceStats", "StreamClock"]


@dataclass(frozen=True)
class DecodeHints:
    """What the pipeline's stages need of the frames, given to every source at ``start``.

    Attributes:
        size: (width, height) of the first detector's input: ``frame.image`` is letterboxed into
            it straight from the decoder (one swscale pass on the CPU); None: no detector, the
            image is the whole frame.
        full_frames: keep the full-resolution frame as ``frame.source`` (crops, text, a second
            detector with another input size need it).
        decode_threads: decoder threads per stream (0: the decoder decides).
    """

    size: tuple[int, int] | None = None
    full_frames: bool = False
    decode_threads: int = 0


@dataclass
class SourceStats:
    """Counters of one stream, readable while it runs."""

    decoded: int = 0  # frames out of the decoder
    queued: int = 0  # frames selected for analysis and handed to the queue
    decode_errors: int = 0  # packets the decoder rejected
    decoder_recreations: int = 0  # hardware decoders re-created after an error (NVDEC)
    reconnects: int = 0
    retimed_frames: int = 0  # frames whose timestamp went back or stood still, moved one frame on (`StreamClock`)
    state: StreamState = StreamState.CONNECTING
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class StreamClock:
    """A stream's time in ns, never going back, from the decoder's timestamps.

    Each frame's time is its timestamp relative to the first timestamped frame of the pass,
    counted from where the pass starts (0, or one frame after the previous pass: loops and
    reconnects carry on). Which timestamp, locked for the pass at its first frame that has one:

    - ``prefer_dts`` (every frame is decoded): the dts FFmpeg gives the frame (that of the packet
      that brought it out), which only grows in output order. AVI and some MP4 files carry no
      presentation times, and FFmpeg invents them in decoding order: with B-frames those go back
      on about half the frames, while the dts stay right.
    - otherwise (the decoder skips frames, NVDEC): the pts, which stays the frame's own time when
      frames are left out; the dts then is that of a later packet.

    A frame without that timestamp (FFmpeg drains the last frames without a dts; raw streams have
    none) comes one frame after the last. A frame whose time would go back or stand still is
    moved to one frame after the last and counted in ``retimed``.
    """

    def __init__(self, time_base: Fraction, frame_ns: int, prefer_dts: bool = True):
        self.retimed = 0
        self.last_ns = -1  # the latest time given, -1 before the first frame
        self.pass_start_ns = 0
        self.new_pass(time_base, frame_ns, prefer_dts)

    def new_pass(self, time_base: Fraction, frame_ns: int, prefer_dts: bool = True) -> None:
        """A new pass over the input (loop, reconnect): its first frame comes one frame after the last."""
        if self.last_ns >= 0:
            self.pass_start_ns = self.last_ns + frame_ns
        self._tb, self.frame_ns, self._prefer_dts = time_base, frame_ns, prefer_dts
        self._kind: str | None = None  # "pts" or "dts", once a frame of the pass has one
        self._origin: tuple[int, int] | None = None  # (timestamp, ns) of the pass's first timestamped frame

    def tick(self, pts: int | None, dts: int | None) -> int:
        """The time of the next frame out of the decoder, from its pts and dts (time base units)."""
        stamp = self._stamp(pts, dts)
        nxt = self.pass_start_ns if self.last_ns < self.pass_start_ns else self.last_ns + self.frame_ns
        if stamp is None:
            ns = nxt
        else:
            if self._origin is None:
                self._origin = (stamp, nxt)
            ns = self._ns(stamp, self._origin)
            if ns <= self.last_ns:
                ns = self.last_ns + self.frame_ns
                self.retimed += 1
        self.last_ns = ns
        return ns

    def at(self, stamp: int) -> int | None:
        """The time of a timestamp of this pass; None before its first timestamped frame."""
        return None if self._origin is None else self._ns(stamp, self._origin)

    def _ns(self, stamp: int, origin: tuple[int, int]) -> int:
        return origin[1] + int((stamp - origin[0]) * self._tb * 1_000_000_000)

    def reaches(self, ns: int) -> None:
        """The input goes on until ``ns`` without frames coming out (packets left undecoded)."""
        self.last_ns = max(self.last_ns, ns)

    def _stamp(self, pts: int | None, dts: int | None) -> int | None:
        stamps = {"pts": pts, "dts": dts}
        if self._kind is None:
            order = ("dts", "pts") if self._prefer_dts else ("pts", "dts")
            self._kind = next((kind for kind in order if stamps[kind] is not None), None)
        return stamps[self._kind] if self._kind is not None else None


class FrameQueue(Protocol):
    """Where a source puts its frames and events (`vidinfer.batching.StreamQueue`)."""

    dropped: int

    def put(self, item: Frame | StreamEvent) -> bool:
        """Queue an item; False for a frame refused because the pipeline is stopping."""
        ...


@runtime_checkable
class Source(Protocol):
    """One stream's frames.

    Attributes:
        stream_id: the stream's id (letters, digits, ``_``, ``-``, ``:``).
        live: a camera or feed (its queue drops the oldest frame when full) rather than a file
            (its queue makes it wait).
        queue_size: frames its queue holds.
        stats: its counters, readable from any thread.
    """

    stream_id: str
    live: bool
    queue_size: int
    stats: SourceStats

    def start(self, queue: FrameQueue, hints: DecodeHints) -> None:
        """Begin producing into ``queue``; returns at once."""
        ...

    def stop(self) -> None:
        """Ask it to end soon (it then puts its end-of-stream event); returns at once."""
        ...

    def join(self, timeout: float | None = None) -> None:
        """Wait for it to end, at most ``timeout`` seconds."""
        ...

    @property
    def alive(self) -> bool:
        """Whether it is still producing."""
        ...
