"""The exceptions vidinfer raises.

    VidinferError
    ├── ConfigError      a pipeline description (TOML or code) that cannot run as written
    ├── SourceError      a stream that cannot be opened or read
    ├── ModelError       a model file that is missing, not ONNX, or does not fit the configuration
    └── PublishError     an endpoint that cannot be bound or connected

Every message is one sentence a user can act on: it names the thing (file, key, stream, model)
and says what would fix it. The CLI prints it as one line and never a traceback.
"""

from __future__ import annotations

__all__ = ["VidinferError", "ConfigError", "SourceError", "ModelError", "PublishError"]


class VidinferError(Exception):
    """Base class of every error vidinfer raises on purpose."""


class ConfigError(VidinferError, ValueError):
    """The pipeline description is invalid: unknown key, wrong type, missing file."""


class SourceError(VidinferError):
    """A stream could not be opened or read."""


class ModelError(VidinferError, ValueError):
    """A model is missing, unreadable, or its inputs/outputs do not fit the configuration."""


class PublishError(VidinferError):
    """The publisher could not bind or connect its endpoint."""
