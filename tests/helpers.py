"""Small builders shared by tests."""

import numpy as np

from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.preprocess.letterbox import Letterbox

_BOX = Letterbox.fit(64, 64, 64, 64)


def make_frame(stream_id: str, frame_no: int) -> Frame:
    return Frame(stream_id, frame_no, frame_no * 40_000_000, 0, np.zeros((64, 64, 3), np.uint8), _BOX)


def end_event(stream_id: str) -> StreamEvent:
    return StreamEvent(stream_id, StreamState.ENDED, "end of file", end_of_stream=True)
