"""Model adapters: turn an engine's raw outputs into detections and labels."""

from vidinfer.models.classifier import ClassifierAdapter, SecondaryClassifier
from vidinfer.models.nms import batched_nms, box_iou
from vidinfer.models.yolo import YoloAdapter, YoloLayout

__all__ = ["YoloAdapter", "YoloLayout", "ClassifierAdapter", "SecondaryClassifier",
           "batched_nms", "box_iou"]
