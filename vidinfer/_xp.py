"""Array-module dispatch: the same stage code runs on NumPy (CPU) and CuPy (GPU) arrays.

CuPy is never imported here: an array is a CuPy array exactly when its type comes from the
`cupy` module, so CPU-only installs never touch GPU libraries.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np


def array_module(a: Any) -> ModuleType:
    """Return `numpy` or `cupy`, whichever owns ``a``."""
    if type(a).__module__.startswith("cupy"):
        return sys.modules["cupy"]
    return np


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy view (CPU arrays) or host copy (CuPy arrays) of ``a``."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
