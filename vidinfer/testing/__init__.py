"""Test and demo support for vidinfer: synthetic scenes and hand-built models.

Nothing here is needed in production.  The package provides

* :mod:`vidinfer.testing.synthetic` - a deterministic generator of simple
  moving-rectangle scenes with exact, sub-pixel ground truth, and a writer that
  encodes them as H.264 MP4 clips with a ground-truth JSON next to each clip;
* :mod:`vidinfer.testing.shape_models` - ONNX models built by hand (not
  trained) that really detect those rectangles (YOLOv8 / YOLOv5 output
  layouts) and classify their shade, so tests can check real boxes against
  ground truth.
"""
