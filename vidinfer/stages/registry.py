"""The ``type`` names of ``[[stages]]`` and ``[[sinks]]`` tables, and what each one builds.

Built-in types are listed here by import path (so nothing is imported until a pipeline uses it;
brand impact is a plug-in package like any other). Other packages add their own through the entry
point groups ``vidinfer.stages`` and ``vidinfer.sinks`` (``name = "package.module:Class"``), and
``type = "python"`` names any importable function or class directly.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

__all__ = ["STAGE_TYPES", "SINK_TYPES", "stage_types", "sink_types", "load_type"]

STAGE_TYPES = {
    "detect": "vidinfer.stages.detect:Detect",
    "classify": "vidinfer.stages.classify:Classify",
    "track": "vidinfer.stages.track:Track",
    "read_text": "vidinfer.stages.read_text:ReadText",
    "brand_exposure": "vidinfer.analytics.brand_stage:BrandExposure",
}
SINK_TYPES = {
    "zmq": "vidinfer.publish.sinks:ZmqSink",
    "reliable": "vidinfer.publish.reliable:ReliableSink",
    "file": "vidinfer.publish.sinks:FileSink",
}
PYTHON = "python"  # type = "python": function = "package.module:name"


def _plugins(group: str) -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group=group)}
    except Exception:  # a broken distribution's metadata must not stop pipelines that do not use it
        return {}


def stage_types() -> dict[str, str]:
    """Every stage type known here: built-in, then installed plug-ins."""
    return {**_plugins("vidinfer.stages"), **STAGE_TYPES}


def sink_types() -> dict[str, str]:
    return {**_plugins("vidinfer.sinks"), **SINK_TYPES}


def load_type(ref: str) -> Any:
    """The class named ``package.module:Class``."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
