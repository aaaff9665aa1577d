"""Hand-constructed ONNX models for the synthetic rectangle scenes.

Nothing here is trained: every weight is written down from geometry, so the
models really compute detections of the shapes drawn by
:mod:`vidinfer.testing.synthetic` and tests can compare their boxes with exact
ground truth.

Detector (``build_shape_detector``)
    Input ``images`` float32 ``[N, 3, H, W]``, RGB in [0, 1].

    1. Per class ``c`` a colour mask ``m_c = d_c * clip((d_c - T) / E, 0, 1)``
       with ``d_c = x_c - max(other channels)``.  ``d_c`` is ~0 on the neutral
       grey background and letterbox padding, <= 0 on other classes and
       proportional to the area coverage on anti-aliased edges (it is a pure
       chroma quantity), so the mask stays *linear* in coverage; the gate only
       zeroes codec noise below ``T`` (its bias is second order).
    2. For every anchor (stride ``s`` = 8, centre ``((j + .5) s, (i + .5) s)``)
       the mass and the first / second moments of ``m_c`` over the
       ``K x K`` (K = 64) window centred on the anchor, computed with two
       separable strided convolutions (taps ``1, u, u^2`` along x, then
       ``1, v, v^2`` along y; ``u``, ``v`` are offsets from the window centre,
       so float32 stays precise).
    3. Box: centre = anchor + first moment / mass; side = ``sqrt(12 var + 1)``
       (a uniform segment of length L has variance L^2 / 12; the ``+ 1`` is
       Sheppard's correction for sampling at pixel centres).  The moments are
       invariant to the mask's scale, so bright and dim objects give the same
       box.
    4. Class score = product of soft (0..1) tests: enough mass, centroid in
       the anchor's own cell (``|dx| <= s/2`` with a 1 px ramp) and box inside
       the window with a margin.  A window that cuts an object can never pass
       the centroid test for objects up to ``K - s - 2 * 8`` = 40 px (the
       visible part would have to be wider than that), and the scene contract
       guarantees that a window never sees two objects of one class.  1 to 4
       neighbouring anchors may report the same box; NMS removes duplicates.

    Output ``output0``: YOLOv8 layout ``[N, 4 + 3, A]`` (rows cx, cy, w, h in
    input pixels, then the 3 class scores; anchors row-major over the
    ``H/s x W/s`` grid, so A = 6400 at 640x640, a single stride level), or with
    ``layout="yolov5"`` ``[N, A, 5 + 3]`` (cx, cy, w, h, objectness, class
    probabilities; objectness * probability = the class score).

Shade classifier (``build_shade_classifier``)
    Input ``images`` float32 ``[N, 3, h, w]`` in [0, 1], a crop of one object
    resized to ``h x w``; output ``probs`` float32 ``[N, 2]``, softmax over
    ``SHADE_LABELS``.  It averages the per-pixel max channel over the central
    half of the crop (away from the blended edges) and thresholds it smoothly
    between the bright (~0.92) and dim (~0.53) levels.

Run ``python -m vidinfer.testing.shape_models`` to rebuild the shipped copies
in ``models/shapes/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vidinfer.testing.synthetic import (
    BRIGHT_COLORS,
    CLASS_NAMES,
    DETECTOR_INPUT_SIZE,
    DETECTOR_STRIDE,
    DETECTOR_WINDOW,
    DIM_FACTOR,
    MAX_OBJECT_SIZE,
    SHADE_NAMES,
)

SHAPE_CLASSES: list[str] = list(CLASS_NAMES)
SHADE_LABELS: list[str] = list(SHADE_NAMES)

OPSET = 17
#: Colour-mask gate: differences below GATE_T are codec noise (grey background
#: after 4:2:0 compression stays within a few levels); full pass above T + E.
GATE_T = 0.06
GATE_E = 0.04
#: Minimum mask mass for a detection (a dim 12x12 object has ~65).
MASS_LO, MASS_HI = 8.0, 24.0
#: Centroid must lie within the anchor cell; the score ramps to 0 over 1 px.
CELL_SLACK = 0.5
#: Box edges must stay this far inside the window (ramp over 1 px).
WINDOW_MARGIN = 1.0

#: Room kept between an object and its anchor's window border, per side, on top
#: of the anchor offset (<= s/2): the mask's blurred tails (chroma subsampling,
#: resizing) extend ~2 px past the true edge and must stay inside the window.
_WINDOW_ROOM = 8.0
# The scene contract must leave every object that room in the window of the
# anchor whose cell holds its centre (40 <= 64 - 8 - 16).
if MAX_OBJECT_SIZE > DETECTOR_WINDOW - DETECTOR_STRIDE - 2 * _WINDOW_ROOM:
    raise RuntimeError("scene contract and detector window are inconsistent")

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = _REPO_ROOT / "models" / "shapes"


class _Graph:
    """Tiny graph builder: unique tensor names, shared identical initializers."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._cache: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, hint: str, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._cache:
            self._cache[key] = name = self.name(hint)
            self.inits.append(numpy_helper.from_array(arr, name))
        return self._cache[key]

    def op(self, op_type: str, inputs: list[str], hint: str | None = None,
           out: str | None = None, **attrs) -> str:
        out = out or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _batch_dim(batch: int | None) -> int | str:
    return "batch" if batch is None else int(batch)


def build_shape_detector(
    path: str | Path,
    input_size: tuple[int, int] = DETECTOR_INPUT_SIZE,
    batch: int | None = None,
    layout: str = "yolov8",
) -> Path:
    """Write the hand-built rectangle detector to ``path`` and return it.

    ``input_size`` is ``(height, width)``, both multiples of the stride (8).
    ``batch=None`` makes the batch dimension dynamic (named ``"batch"``).
    """
    if layout not in ("yolov8", "yolov5"):
        raise ValueError(f"layout must be 'yolov8' or 'yolov5', not {layout!r}")
    in_h, in_w = (int(v) for v in input_size)
    s, k = DETECTOR_STRIDE, DETECTOR_WINDOW
    if in_h % s or in_w % s:
        raise ValueError(f"input size {input_size} must be a multiple of {s}")
    gh, gw = in_h // s, in_w // s
    n_cls = len(SHAPE_CLASSES)
    g = _Graph()

    # 1. colour masks -------------------------------------------------------
    x = "images"
    ch = [
        g.op("Slice", [x, g.init("st", [c], np.int64), g.init("en", [c + 1], np.int64),
                       g.init("ax", [1], np.int64)], f"ch{c}")
        for c in range(3)
    ]
    diffs = []
    for c in range(n_cls):
        others = [ch[o] for o in range(3) if o != c]
        diffs.append(g.op("Sub", [ch[c], g.op("Max", others)], f"d{c}"))
    d = g.op("Concat", diffs, "d", axis=1)  # [N, 3, H, W]
    gate = g.op("Clip", [g.op("Mul", [g.op("Sub", [d, g.init("t", GATE_T)]),
                                      g.init("inv_e", 1.0 / GATE_E)]),
                         g.init("zero", 0.0), g.init("one", 1.0)], "gate")
    mask = g.op("Mul", [d, gate], "mask")

    # 2. windowed moments with two separable strided convolutions -----------
    u = np.arange(k, dtype=np.float64) + 0.5 - k / 2  # tap offset from window centre
    pad = (k - s) // 2  # window of output j covers [j*s - pad, j*s - pad + k)
    w1 = np.zeros((3 * n_cls, 1, 1, k), np.float32)  # per class: sum 1, u, u^2 along x
    for c in range(n_cls):
        w1[3 * c + 0, 0, 0] = 1.0
        w1[3 * c + 1, 0, 0] = u
        w1[3 * c + 2, 0, 0] = u * u
    rows = g.op("Conv", [mask, g.init("w1", w1)], "rowmom", group=n_cls,
                kernel_shape=[1, k], strides=[1, s], pads=[0, pad, 0, pad])
    # per class, from (R0, R1, R2) -> (M00, M10, M01, M20, M02)
    w2 = np.zeros((5 * n_cls, 3, k, 1), np.float32)
    for c in range(n_cls):
        w2[5 * c + 0, 0, :, 0] = 1.0  # mass
        w2[5 * c + 1, 1, :, 0] = 1.0  # sum u
        w2[5 * c + 2, 0, :, 0] = u  # sum v
        w2[5 * c + 3, 2, :, 0] = 1.0  # sum u^2
        w2[5 * c + 4, 0, :, 0] = u * u  # sum v^2
    mom = g.op("Conv", [rows, g.init("w2", w2)], "mom", group=n_cls,
               kernel_shape=[k, 1], strides=[s, 1], pads=[pad, 0, pad, 0])
    # [N, 15, gh, gw] -> [N, 3, 5, gh*gw]
    mom = g.op("Reshape", [mom, g.init("shp", [0, n_cls, 5, gh * gw], np.int64)], "mom5")

    def take(i: int) -> str:  # [N, 3, A]
        sl = g.op("Slice", [mom, g.init("st", [i], np.int64), g.init("en", [i + 1], np.int64),
                            g.init("ax", [2], np.int64)])
        return g.op("Squeeze", [sl, g.init("ax", [2], np.int64)])

    m0, mx, my, mxx, myy = (take(i) for i in range(5))

    # 3. boxes relative to the anchor ----------------------------------------
    den = g.op("Max", [m0, g.init("eps", 1e-3)], "den")
    dx = g.op("Div", [mx, den], "dx")
    dy = g.op("Div", [my, den], "dy")
    twelve, one = g.init("twelve", 12.0), g.init("one", 1.0)

    def side(m2: str, mean: str) -> str:
        var = g.op("Relu", [g.op("Sub", [g.op("Div", [m2, den]), g.op("Mul", [mean, mean])])])
        return g.op("Sqrt", [g.op("Add", [g.op("Mul", [var, twelve]), one])])

    bw, bh = side(mxx, dx), side(myy, dy)

    # 4. scores -----------------------------------------------------------------
    def ramp(v: str, lo: float, hi: float) -> str:
        """0 at v <= lo, 1 at v >= hi, linear in between."""
        t = g.op("Mul", [g.op("Sub", [v, g.init("lo", lo)]), g.init("sc", 1.0 / (hi - lo))])
        return g.op("Clip", [t, g.init("zero", 0.0), g.init("one", 1.0)])

    half = g.init("half", 0.5)
    ax_, ay_ = g.op("Abs", [dx]), g.op("Abs", [dy])
    f_mass = ramp(m0, MASS_LO, MASS_HI)
    # negate |d| so the ramp goes up as the centroid moves towards the anchor
    f_cx = ramp(g.op("Neg", [ax_]), -(s / 2 + CELL_SLACK + 1.0), -(s / 2 + CELL_SLACK))
    f_cy = ramp(g.op("Neg", [ay_]), -(s / 2 + CELL_SLACK + 1.0), -(s / 2 + CELL_SLACK))
    # margin between the box and the window border
    mgx = g.op("Sub", [g.op("Sub", [g.init("hk", k / 2), ax_]), g.op("Mul", [bw, half])])
    mgy = g.op("Sub", [g.op("Sub", [g.init("hk", k / 2), ay_]), g.op("Mul", [bh, half])])
    f_wx = ramp(mgx, WINDOW_MARGIN, WINDOW_MARGIN + 1.0)
    f_wy = ramp(mgy, WINDOW_MARGIN, WINDOW_MARGIN + 1.0)
    score = f_mass
    for f in (f_cx, f_cy, f_wx, f_wy):
        score = g.op("Mul", [score, f])
    # score: [N, 3, A]

    # absolute box per class, then pick the best class per anchor
    jj, ii = np.meshgrid(np.arange(gw), np.arange(gh))
    anc_x = ((jj.reshape(-1) + 0.5) * s).astype(np.float32)
    anc_y = ((ii.reshape(-1) + 0.5) * s).astype(np.float32)
    cx = g.op("Add", [dx, g.init("anc_x", anc_x)])
    cy = g.op("Add", [dy, g.init("anc_y", anc_y)])
    boxes = g.op("Concat", [g.op("Unsqueeze", [t, g.init("ax", [2], np.int64)])
                            for t in (cx, cy, bw, bh)], "boxes_c", axis=2)  # [N, 3, 4, A]
    best = g.op("ReduceMax", [score], keepdims=1, axes=[1])  # [N, 1, A]
    onehot = g.op("Cast", [g.op("Equal", [score, best])], to=TensorProto.FLOAT)
    weight = g.op("Div", [onehot, g.op("ReduceSum", [onehot, g.init("ax", [1], np.int64)],
                                       keepdims=1)])  # ties (all-zero background) average
    weight = g.op("Unsqueeze", [weight, g.init("ax", [2], np.int64)])  # [N, 3, 1, A]
    box = g.op("ReduceSum", [g.op("Mul", [boxes, weight]), g.init("ax", [1], np.int64)],
               "box", keepdims=0)  # [N, 4, A]

    if layout == "yolov8":
        g.op("Concat", [box, score], out="output0", axis=1)  # [N, 7, A]
        out_shape = [_batch_dim(batch), 4 + n_cls, gh * gw]
    else:
        obj = g.op("ReduceMax", [score], keepdims=1, axes=[1])  # [N, 1, A]
        cls = g.op("Div", [score, g.op("Max", [obj, g.init("eps", 1e-6)])])
        cat = g.op("Concat", [box, obj, cls], axis=1)  # [N, 8, A]
        g.op("Transpose", [cat], out="output0", perm=[0, 2, 1])  # [N, A, 8]
        out_shape = [_batch_dim(batch), gh * gw, 5 + n_cls]

    graph = helper.make_graph(
        g.nodes,
        f"shape_detector_{layout}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                       [_batch_dim(batch), 3, in_h, in_w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=g.inits,
    )
    return _save(graph, path, doc=(
        "Hand-constructed (not trained) detector of the coloured rectangles drawn by "
        "vidinfer.testing.synthetic. Classes: " + ", ".join(SHAPE_CLASSES) + ". "
        f"Layout {layout}; boxes cx,cy,w,h in input pixels; anchors on a stride-{s} grid."
    ), names=SHAPE_CLASSES)


def build_shade_classifier(
    path: str | Path, input_size: tuple[int, int] = (32, 32), batch: int | None = None
) -> Path:
    """Write the hand-built bright/dim classifier to ``path`` and return it.

    ``input_size`` is ``(height, width)`` of the object crop fed to the model.
    """
    h, w = (int(v) for v in input_size)
    if h < 4 or w < 4:
        raise ValueError("input_size must be at least 4x4")
    # Reference levels of the per-pixel max channel for the synthetic palette.
    bright = max(BRIGHT_COLORS[0]) / 255.0
    dim = round(max(BRIGHT_COLORS[0]) * DIM_FACTOR) / 255.0
    thr = 0.5 * (bright + dim)
    gain = 8.0 / (0.5 * (bright - dim))  # logit gap 16 (p > 0.9999) at the reference levels
    g = _Graph()
    y0, y1 = h // 4, h - h // 4
    x0, x1 = w // 4, w - w // 4
    centre = g.op("Slice", ["images", g.init("st", [y0, x0], np.int64),
                            g.init("en", [y1, x1], np.int64), g.init("ax", [2, 3], np.int64)])
    vmax = g.op("ReduceMax", [centre], keepdims=1, axes=[1])  # [N, 1, h', w']
    level = g.op("ReduceMean", [vmax], keepdims=0, axes=[1, 2, 3])  # [N]
    level = g.op("Unsqueeze", [level, g.init("ax", [1], np.int64)])  # [N, 1]
    # logits: bright = gain * (level - thr), dim = -bright
    logits = g.op("Mul", [g.op("Sub", [level, g.init("thr", thr)]),
                          g.init("gain", np.array([[gain, -gain]]))])  # [N, 2]
    g.op("Softmax", [logits], out="probs", axis=1)
    graph = helper.make_graph(
        g.nodes,
        "shade_classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [_batch_dim(batch), 3, h, w])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [_batch_dim(batch), 2])],
        initializer=g.inits,
    )
    return _save(graph, path, doc=(
        "Hand-constructed (not trained) bright/dim classifier for crops of the "
        "synthetic rectangles: softmax over mean max-channel level of the crop centre."
    ), names=SHADE_LABELS)


def _save(graph: onnx.GraphProto, path: str | Path, doc: str, names: list[str]) -> Path:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vidinfer.testing.shape_models",
        doc_string=doc,
    )
    model.ir_version = 8  # loadable by older onnxruntime releases too
    helper.set_model_props(model, {"names": repr(dict(enumerate(names)))})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


_MODEL_CARD = """\
# Hand-built "shapes" models (test / demo assets)

These ONNX models are **constructed by hand, not trained**: every weight is
written down from geometry in `vidinfer/testing/shape_models.py`.  They
really detect and classify the coloured rectangles drawn by
`vidinfer.testing.synthetic` (the clips in `sample_streams/`), so tests can
compare real model output with exact ground truth.  They know nothing else.

Rebuild (deterministic): `python -m vidinfer.testing.shape_models`
(`--out DIR` to write elsewhere).

## detector.onnx - rectangle detector, YOLOv8 output layout

* input `images`: float32 `[batch, 3, 640, 640]`, RGB, pixel / 255,
  letterboxed (scale = min(640 / w, 640 / h), centred, padding grey 114);
  `batch` is dynamic.
* output `output0`: float32 `[batch, 7, 6400]`: rows 0-3 = box cx, cy, w, h
  in input pixels (pixel i covers [i, i + 1)), rows 4-6 = scores of the
  classes in `labels.txt` (red, green, blue), each in [0, 1].  The 6400
  anchors form one stride-8 grid of 80x80, row-major (not the 8400 of a
  3-level YOLOv8).  Apply a score threshold (0.5 is fine) and NMS: 1-4
  neighbouring anchors report the same object.
* how: per class a colour mask (own channel minus the largest other channel,
  gated against codec noise), then per anchor the mass and first / second
  moments of the mask over a 64x64 window (two separable strided
  convolutions); centre = mean, side = sqrt(12 variance + 1); the score is
  high only when there is enough mass, the centroid lies in the anchor's cell
  and the box lies inside the window.
* accuracy on the sample clips (decoded with PyAV, letterboxed with
  `frame.reformat(..., format="rgb24", interpolation=Interpolation.AREA |
  Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT)`): every box
  within 0.5 source px of ground truth at 640x360 and at 1920x1080 (plain
  `"AREA"` gives <= 0.95 px); about 6 ms per 640x640 image on one CPU thread
  (onnxruntime).
* only valid for scenes that keep the contract of `vidinfer.testing.synthetic`
  (object sides 12-40 px and same-class objects at least 64 px apart in
  model space, objects separated by 8 px).

Variants (`build_shape_detector(path, input_size=(h, w), batch=None,
layout="yolov8" | "yolov5")`): fixed batch size, other input sizes (multiples
of 8), or the YOLOv5 layout `[batch, anchors, 8]` = cx, cy, w, h, objectness,
3 class probabilities (objectness * probability = class score).

## shade.onnx - bright / dim classifier for object crops

* input `images`: float32 `[batch, 3, 32, 32]`, RGB / 255, the crop of one
  detected box resized to 32x32 (bilinear).
* output `probs`: float32 `[batch, 2]`, softmax over `bright`, `dim`.
* how: mean over the central half of the crop of the per-pixel maximum
  channel, compared smoothly with the midpoint between the bright (~0.92) and
  dim (~0.53) levels of the synthetic palette.
"""


def build_all(out_dir: str | Path = DEFAULT_MODEL_DIR) -> list[Path]:
    """(Re)build the shipped copies in ``out_dir`` (default ``models/shapes``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        build_shape_detector(out_dir / "detector.onnx"),
        build_shade_classifier(out_dir / "shade.onnx"),
    ]
    labels = out_dir / "labels.txt"
    labels.write_text("".join(f"{name}\n" for name in SHAPE_CLASSES))
    readme = out_dir / "README.md"
    readme.write_text(_MODEL_CARD)
    return paths + [labels, readme]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild the hand-built shape models.")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="output folder")
    args = ap.parse_args(argv)
    for path in build_all(args.out):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
