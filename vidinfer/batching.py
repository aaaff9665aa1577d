"""Bounded per-stream queues and the cross-stream batcher.

Every stream owns a bounded queue. A file stream's producer blocks when its queue is full, so no
frame is lost; a live stream's queue drops its oldest frame and counts the drop, so a slow
consumer never makes a camera fall behind real time. Events (status changes, end of stream) are
never dropped and never block.

The batcher takes frames round-robin across streams until it holds ``max_batch_size`` frames or
the first frame in the batch has waited ``max_delay_ms`` since it was queued (Triton's
``max_queue_delay_microseconds``, DeepStream's ``batched-push-timeout``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from vidinfer.frame import Frame, StreamEvent

__all__ = ["Collected", "Batcher", "StreamQueue"]


class StreamQueue:
    """One stream's queue. Producers call `put`; only the batcher takes from it."""

    def __init__(self, stream_id: str, capacity: int, drop_oldest: bool, cond: threading.Condition):
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, got {capacity}")
        self.stream_id = stream_id
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.dropped = 0  # frames dropped because the queue was full (live streams only)
        self.max_depth = 0  # high-water mark of queued frames, for metrics and tests
        self._items: deque[Frame | StreamEvent] = deque()
        self._frames = 0
        self._cond = cond
        self._closed = False
        self.finished = False  # end of stream has been taken by the batcher

    def put(self, item: Frame | StreamEvent) -> bool:
        """Queue a frame or event. Returns False for a frame refused because the pipeline is stopping."""
        with self._cond:
            now = time.monotonic()
            item.enqueued_at = now
            if isinstance(item, Frame):
                while self._frames >= self.capacity and not self._closed:
                    if self.drop_oldest:
                        self._drop_oldest_frame()
                        break
                    self._cond.wait()
                if self._closed:
                    return False
                self._frames += 1
                self.max_depth = max(self.max_depth, self._frames)
            # Events are always accepted, also while shutting down: every stream's end must go out.
            self._items.append(item)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """Wake a blocked producer; later puts are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        return self._frames

    # -- used by the batcher, with the condition held --
    def _drop_oldest_frame(self) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, Frame):
                del self._items[i]
                self._frames -= 1
                self.dropped += 1
                return

    def _peek(self) -> Frame | StreamEvent | None:
        return self._items[0] if self._items else None

    def _pop(self) -> Frame | StreamEvent:
        item = self._items.popleft()
        if isinstance(item, Frame):
            self._frames -= 1
        elif item.end_of_stream:
            self.finished = True
        return item


@dataclass
class Collected:
    """Frames of several streams to run together, and the events around them, in stream order.

    ``events_before`` happened before this batch's frames of their stream, ``events_after`` after
    them; publishing before / frames / after keeps every stream's messages in order.
    """

    frames: list[Frame] = field(default_factory=list)
    events_before: list[StreamEvent] = field(default_factory=list)
    events_after: list[StreamEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


class Batcher:
    """Collects frames across streams into batches under a size and delay budget."""

    def __init__(self, max_batch_size: int, max_delay_ms: float):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be 0 or more, got {max_delay_ms}")
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000.0
        self._cond = threading.Condition()
        self._queues: list[StreamQueue] = []
        self._next = 0  # round-robin start, rotated every batch so no stream is favoured
        self._stopped = False

    def add_stream(self, stream_id: str, capacity: int, drop_oldest: bool) -> StreamQueue:
        q = StreamQueue(stream_id, capacity, drop_oldest, self._cond)
        with self._cond:
            self._queues.append(q)
        return q

    @property
    def queues(self) -> list[StreamQueue]:
        return list(self._queues)

    def stop(self) -> None:
        """Make `next_batch` return what it holds now and producers stop blocking."""
        with self._cond:
            self._stopped = True
            for q in self._queues:
                q._closed = True
            self._cond.notify_all()

    def next_batch(self) -> Collected | None:
        """Block until a batch is due; None once every stream has ended and been drained."""
        batch = Collected()
        taken: set[str] = set()  # streams with frames in this batch
        barred: set[str] = set()  # streams whose later items must wait for the next batch
        with self._cond:
            while True:
                self._collect(batch, taken, barred)
                if len(batch.frames) >= self.max_batch_size:
                    break
                if batch.events_before or batch.events_after:
                    if not batch.frames:
                        break  # events alone go out at once
                if self._stopped or all(q.finished and q._peek() is None for q in self._queues):
                    break
                if batch.frames:
                    remaining = batch.frames[0].enqueued_at + self.max_delay - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                else:
                    self._cond.wait()
            self._cond.notify_all()  # room was made: wake producers blocked on full queues
        if not batch.frames and not batch.events_before and not batch.events_after:
            return None
        return batch

    def _collect(self, batch: Collected, taken: set[str], barred: set[str]) -> None:
        """Take items round-robin, one frame per stream per turn, until full or nothing is ready."""
        queues = self._queues
        n = len(queues)
        if n == 0:
            return
        start = self._next
        self._next = (self._next + 1) % n
        progress = True
        while progress and len(batch.frames) < self.max_batch_size:
            progress = False
            for k in range(n):
                q = queues[(start + k) % n]
                if q.stream_id in barred:
                    continue
                # Events in front of the stream's next frame travel with this batch.
                while isinstance(q._peek(), StreamEvent):
                    event = q._pop()
                    assert isinstance(event, StreamEvent)
                    if q.stream_id in taken:
                        batch.events_after.append(event)
                        barred.add(q.stream_id)
                        break
                    batch.events_before.append(event)
                if q.stream_id in barred or q._peek() is None:
                    continue
                batch.frames.append(q._pop())  # type: ignore[arg-type]
                taken.add(q.stream_id)
                progress = True
                if len(batch.frames) >= self.max_batch_size:
                    break
