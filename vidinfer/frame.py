"""What flows from sources to the batcher: decoded frames and in-band stream events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vidinfer.preprocess.letterbox import Letterbox

__all__ = ["DeviceNV12", "Frame", "StreamEvent", "StreamState"]


@dataclass(eq=False)
class DeviceNV12:
    """A decoded frame left in GPU memory (the GPU backend's `Frame.image`).

    Attributes:
        data: CuPy uint8 NV12: ``height`` luma rows, then ceil(height / 2) rows of interleaved U, V;
            its width may be ``width`` rounded up to even (NVDEC's layout for an odd width).
        width, height: the frame's size in pixels.
        standard: the colour matrix, "bt601" or "bt709", from the stream's colour information.
        full_range: True for full-range (JPEG) YUV, False for studio range (16..235).
        chroma_siting: "left" (chroma co-sited with the even luma columns: H.264, HEVC, MPEG-4
            part 2) or "center" (VP8, VP9, AV1), as the CPU path's swscale places it
            (`vidinfer.preprocess.crops.chroma_siting`).
    """

    data: Any
    width: int
    height: int
    standard: str = "bt601"
    full_range: bool = False
    chroma_siting: str = "center"

    def colour(self) -> tuple[Any, Any]:
        """(3x3 matrix, offsets) turning this frame's YUV into RGB (`yuv_to_rgb_matrix`)."""
        from vidinfer.preprocess.crops import yuv_to_rgb_matrix

        return yuv_to_rgb_matrix(self.standard, self.full_range)


@dataclass(eq=False)
class Frame:
    """One decoded frame, already resized for the detector.

    Attributes:
        stream_id: the stream it came from.
        frame_no: index of this frame among all frames the source decoded (0-based, continues
            across loops), so skipped frames leave visible gaps.
        pts_ns: presentation time in integer nanoseconds (monotonic across loops).
        capture_ns: wall-clock time (ns since the epoch) when the frame was decoded.
        image: the detector input: resized RGB, HxWx3 uint8 (CPU backend), or the whole decoded
            frame in GPU memory, a `DeviceNV12` (GPU backend).
        letterbox: where ``image`` sits in the model input and how to map boxes back.
        source: the decoder's full-resolution frame, for crops of secondary stages.
        discontinuity: True for the first frame after a loop, seek or reconnect.
    """

    stream_id: str
    frame_no: int
    pts_ns: int
    capture_ns: int
    image: Any
    letterbox: Letterbox
    source: Any = None
    discontinuity: bool = False
    enqueued_at: float = 0.0  # monotonic seconds, set by the queue: drives max_delay_ms
    decoded_at: float = 0.0  # monotonic seconds: start of the decode-to-publish latency

    @property
    def width(self) -> int:
        return self.letterbox.src_w

    @property
    def height(self) -> int:
        return self.letterbox.src_h


class StreamState(str, Enum):
    """Stream states published on the status topic."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DEGRADED = "degraded"
    FAILED = "failed"
    ENDED = "ended"


@dataclass(eq=False)
class StreamEvent:
    """A status change or end of stream, carried in order with the stream's frames."""

    stream_id: str
    state: StreamState
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    end_of_stream: bool = False
    enqueued_at: float = 0.0
    time_ns: int = field(default_factory=time.time_ns)  # when the state was entered (wall clock)
