"""Video sources: demux and decode one stream per thread, resized for the detector."""

from vidinfer.sources.pyav import PyAVSource, SourceStats
from vidinfer.sources.urls import redact_url

__all__ = ["PyAVSource", "SourceStats", "redact_url"]
