"""The base of the built-in stages and sinks: their options are their fields.

A built-in stage or sink is a pydantic model: ``vi.Detect(model="m.onnx", conf_threshold=0.5)``
validates its keyword arguments exactly as a ``[[stages]]`` table of a TOML file is validated
(same rules, same one-line errors naming the key), and its runtime state (engines, trackers,
sockets) is made in ``open`` and kept in private attributes. Your own stages and sinks need not
derive from it: any object with the protocol's methods works (`vidinfer.stages.Stage`,
`vidinfer.publish.sinks.Sink`).
"""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Component", "Options"]


class Options(BaseModel):
    """Validated options: unknown keys refused, numbers finite (TOML allows inf and nan)."""

    # Arbitrary types: callables and trackers given in Python code.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              arbitrary_types_allowed=True)


class Component(Options):
    """Options as validated fields, runtime state made in ``open``.

    ``type`` is the name TOML uses (``[[stages]] type = "detect"``); ``name`` names the instance in
    errors, logs and the run report (default: derived from the type, made unique by the pipeline).
    """

    type: ClassVar[str] = ""
    name: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_\-:.]{1,64}$",
                                description="names this stage or sink in errors, logs and the report")

    def default_name(self) -> str:
        """The name used when ``name`` is not given."""
        return self.type
