import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import their shared helpers module


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The shape detector and shade classifier, built by the tests themselves, once per session."""
    from vidinfer.testing.shape_models import build_shade_classifier, build_shape_detector

    d = tmp_path_factory.mktemp("models")
    build_shape_detector(d / "detector.onnx")
    build_shade_classifier(d / "shade.onnx")
    return d
