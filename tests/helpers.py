"""Small builders shared by tests."""

import json
from pathlib import Path

import numpy as np

from vidinfer.frame import Frame, StreamEvent, StreamState
from vidinfer.preprocess.letterbox import Letterbox

_BOX = Letterbox.fit(64, 64, 64, 64)


def make_frame(stream_id: str, frame_no: int) -> Frame:
    return Frame(stream_id, frame_no, frame_no * 40_000_000, 0, np.zeros((64, 64, 3), np.uint8), _BOX)


def end_event(stream_id: str) -> StreamEvent:
    return StreamEvent(stream_id, StreamState.ENDED, "end of file", end_of_stream=True)


def shapes_pipeline(path: Path, models: Path, endpoint: str, streams: dict[str, dict], name: str = "shapes",
                    sink_keys: str = "", extra: str = "", classify: bool = True) -> Path:
    """A pipeline file: the shape detector, the shade classifier, a ZeroMQ sink waiting for one
    subscriber (``sink_keys``: more keys of that sink; ``extra``: more tables, e.g. [[sinks]]);
    ``streams``: id -> stream keys."""
    from vidinfer.testing.shape_models import SHADE_LABELS, SHAPE_CLASSES

    lines = [
        f'name = "{name}"', "max_batch_size = 8", "max_delay_ms = 20", "",
        "[[stages]]", 'type = "detect"', f'model = "{models / "detector.onnx"}"',
        f"classes = {json.dumps(SHAPE_CLASSES)}", "conf_threshold = 0.5", "iou_threshold = 0.5", "",
    ]
    if classify:
        lines += ["[[stages]]", 'type = "classify"', 'name = "shade"', f'model = "{models / "shade.onnx"}"',
                  f"labels = {json.dumps(SHADE_LABELS)}", ""]
    lines += ["[[sinks]]", 'type = "zmq"', f'endpoint = "{endpoint}"', "wait_for_subscribers = 1",
              "wait_timeout_s = 30", sink_keys, "", extra, ""]
    for sid, keys in streams.items():
        lines += ["[[streams]]", f'id = "{sid}"'] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()] + [""]
    path.write_text("\n".join(lines))
    return path
