"""Multi-object tracking: persistent ids per stream (the `vidinfer.Track` stage uses these)."""

from vidinfer.tracking.bytetrack import ByteTracker, iou_matrix

__all__ = ["ByteTracker", "iou_matrix"]
