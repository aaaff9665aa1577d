"""Which FFmpeg option names FFmpeg knows: for the warning about a stream's unknown ``options``.

PyAV passes a stream's ``options`` to ``avformat_open_input`` and then drops the dictionary in
which FFmpeg leaves the options nobody consumed, so it cannot tell which were ignored
(PyAV 18, ``av/container/core.py``). This module asks FFmpeg itself, the way the ``ffmpeg`` tool
checks its own options (``opt_default`` in ``fftools/cmdutils.c``): ``av_opt_find`` with
``AV_OPT_SEARCH_CHILDREN | AV_OPT_SEARCH_FAKE_OBJ`` on the classes of ``AVFormatContext`` (whose
children are every demuxer, muxer, the I/O layer and every protocol: rtsp_transport, timeout,
user_agent, ...) and ``AVCodecContext`` (every decoder: ``av.open`` also hands the options to the
decoders it opens to probe the streams). A name none of them knows is ignored by FFmpeg in
silence. The libraries are the ones PyAV loaded (its wheel's ``av.libs``, else those in the
process's memory map), called through ctypes; where they cannot be found, nothing is checked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["unknown_options"]

log = logging.getLogger(__name__)

_SEARCH_CHILDREN = 1 << 0  # AV_OPT_SEARCH_CHILDREN
_SEARCH_FAKE_OBJ = 1 << 1  # AV_OPT_SEARCH_FAKE_OBJ


def _library(name: str) -> str | None:
    """The path of the FFmpeg library ``name`` (e.g. ``avformat``) that PyAV uses."""
    import av

    wheel_libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    found = sorted(wheel_libs.glob(f"lib{name}-*.so*")) if wheel_libs.is_dir() else []
    if found:
        return str(found[0])
    try:  # a PyAV built against the system's FFmpeg: the copy this process has mapped
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if f"/lib{name}." in path or f"/lib{name}-" in path:
                    return path
    except OSError:
        pass
    return ctypes.util.find_library(name)


@functools.lru_cache(maxsize=1)
def _finders() -> tuple[Any, list[ctypes.c_void_p]] | None:
    """(av_opt_find, [the AVFormatContext class, the AVCodecContext class]), or None."""
    try:
        import av  # noqa: F401  (loads the libraries first)

        paths = {n: _library(n) for n in ("avutil", "avformat", "avcodec")}
        if not all(paths.values()):
            log.debug("FFmpeg's libraries not found (%s): stream options are not checked", paths)
            return None
        avutil = ctypes.CDLL(paths["avutil"])
        avformat = ctypes.CDLL(paths["avformat"])
        avcodec = ctypes.CDLL(paths["avcodec"])
        find = avutil.av_opt_find
        find.restype = ctypes.c_void_p
        find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        classes = []
        for lib, fn in ((avformat, "avformat_get_class"), (avcodec, "avcodec_get_class")):
            get_class = getattr(lib, fn)
            get_class.restype = ctypes.c_void_p
            get_class.argtypes = []
            classes.append(ctypes.c_void_p(get_class()))
        return find, classes
    except (OSError, AttributeError, ImportError) as exc:
        log.debug("FFmpeg's option tables cannot be read (%s): stream options are not checked", exc)
        return None


def unknown_options(names: Iterable[str]) -> list[str] | None:
    """The names no FFmpeg demuxer, protocol, I/O layer or decoder knows, in the given order;
    None when FFmpeg's option tables cannot be read here (nothing checked)."""
    finders = _finders()
    if finders is None:
        return None
    find, classes = finders
    unknown = []
    for name in names:
        key = name.encode("utf-8", "replace")
        if not any(find(ctypes.byref(cls), key, None, 0, _SEARCH_CHILDREN | _SEARCH_FAKE_OBJ) for cls in classes):
            unknown.append(name)
    return unknown
