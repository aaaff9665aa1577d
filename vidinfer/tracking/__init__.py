"""Multi-object tracking: persistent ids per stream."""

from vidinfer.tracking.bytetrack import ByteTracker, TrackerStage, iou_matrix

__all__ = ["ByteTracker", "TrackerStage", "iou_matrix"]
