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
from typing import Any, Protocol, runtime_checkable

from vidinfer.frame import Frame, StreamEvent, StreamState

__all__ = ["DecodeHints", "FrameQueue", "Source", "SourceStats"]


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
    state: StreamState = StreamState.CONNECTING
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)


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
