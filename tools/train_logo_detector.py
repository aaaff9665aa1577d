#!/usr/bin/env python3
"""Train the brand logo detector on generated images and export it to ONNX (YOLOv8 layout).

The images mix generated scenes with real photographs of the training split
(``--backgrounds train``: crops of the photos as backgrounds, photo patches as
signs) and unlabelled hard negatives (signs, lettering, non-brand marks on
shirts and boards), so the detector keeps quiet on ordinary scenes.

    python tools/train_logo_detector.py                    # the committed models/logos/detector.onnx
    python tools/train_logo_detector.py --iters 200 --out /tmp/logos   # a quick smoke run

Needs PyTorch (CPU is enough: ``pip install torch``); the exported model only
needs onnxruntime.  Data: :mod:`vidinfer.testing.logo_data` (train seed
``TRAIN_SEED``; the held-out evaluation uses ``HELDOUT_SEED``).

Model: a small fully-convolutional CNN, anchor-free, one stride-8 output grid.
Per grid cell it predicts 5 class logits (sigmoid) and the distances
(left, top, right, bottom) from the cell centre to the box edges.  Training
uses 320 x 320 images; the network is exported at ``--export-size`` (640 by
default, so a 1920 x 1080 frame letterboxed into it keeps logos of >= 40 source
px at >= 13 model px).  Output ``output0``: ``[N, 4 + 5, (S/8)^2]`` = cx, cy,
w, h in input pixels and 5 class scores in [0, 1]; no NMS inside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vidinfer.testing.brands import BRAND_NAMES  # noqa: E402
from vidinfer.testing.logo_data import TRAIN_SEED, make_dataset  # noqa: E402

STRIDE = 8
NUM_CLASSES = len(BRAND_NAMES)


def cbr(ci: int, co: int, s: int = 1, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ci, co, 3, s, padding=d, dilation=d, bias=False),
                         nn.BatchNorm2d(co), nn.ReLU(inplace=True))


class LogoNet(nn.Module):
    """Stride-8 anchor-free detector: a 4-stage backbone, one top-down merge, two 1x1 heads."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 64):
        super().__init__()
        w = width
        self.s8 = nn.Sequential(cbr(3, 16, 2), cbr(16, 32, 2), cbr(32, 32), cbr(32, w, 2), cbr(w, w))
        self.s16 = nn.Sequential(cbr(w, 96, 2), cbr(96, 96), cbr(96, 96, d=2), cbr(96, 96, d=3))
        self.lat = nn.Conv2d(96, w, 1)
        self.neck = nn.Sequential(cbr(w, w), cbr(w, w))
        self.cls = nn.Conv2d(w, num_classes, 1)
        self.box = nn.Conv2d(w, 4, 1)
        nn.init.constant_(self.cls.bias, -4.0)
        nn.init.constant_(self.box.bias, 0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c8 = self.s8(x)
        c16 = self.s16(c8)
        f = c8 + F.interpolate(self.lat(c16), size=c8.shape[-2:], mode="nearest")
        f = self.neck(f)
        return self.cls(f), self.box(f)  # logits [N,C,h,w], raw ltrb [N,4,h,w]


def ltrb_pixels(raw: torch.Tensor) -> torch.Tensor:
    """Raw box output -> distances in input pixels (softplus keeps them positive)."""
    return F.softplus(raw) * (2.0 * STRIDE)


class Exported(nn.Module):
    """Wraps LogoNet into the YOLOv8 output layout [N, 4 + C, anchors]."""

    def __init__(self, net: LogoNet, size: int):
        super().__init__()
        self.net = net
        g = size // STRIDE
        ys, xs = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("cx", ((xs + 0.5) * STRIDE).reshape(1, -1))
        self.register_buffer("cy", ((ys + 0.5) * STRIDE).reshape(1, -1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits, raw = self.net(images)
        n = images.shape[0]
        d = ltrb_pixels(raw).reshape(n, 4, -1)
        l, t, r, b = d[:, 0], d[:, 1], d[:, 2], d[:, 3]
        cx = self.cx + (r - l) * 0.5
        cy = self.cy + (b - t) * 0.5
        box = torch.stack([cx, cy, l + r, t + b], dim=1)
        scores = torch.sigmoid(logits).reshape(n, logits.shape[1], -1)
        return torch.cat([box, scores], dim=1)


def build_targets(boxes: list[np.ndarray], classes: list[np.ndarray], g: int) -> tuple[np.ndarray, ...]:
    """Per-cell class target [N,C,g,g], box target [N,4,g,g] (x1y1x2y2 px), positive mask [N,g,g]."""
    n = len(boxes)
    cls_t = np.zeros((n, NUM_CLASSES, g, g), np.float32)
    box_t = np.zeros((n, 4, g, g), np.float32)
    pos = np.zeros((n, g, g), bool)
    area = np.full((n, g, g), np.inf, np.float32)
    centers = (np.arange(g, dtype=np.float32) + 0.5) * STRIDE
    for i, (bb, cc) in enumerate(zip(boxes, classes)):
        for (x1, y1, x2, y2), c in zip(bb, cc):
            bw, bh = x2 - x1, y2 - y1
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            rx, ry = max(0.3 * bw, 0.75 * STRIDE), max(0.3 * bh, 0.75 * STRIDE)
            okx = (np.abs(centers - mx) <= rx) & (centers > x1) & (centers < x2)
            oky = (np.abs(centers - my) <= ry) & (centers > y1) & (centers < y2)
            okx[min(g - 1, int(mx // STRIDE))] = True
            oky[min(g - 1, int(my // STRIDE))] = True
            m = oky[:, None] & okx[None, :]
            m &= (bw * bh) < area[i]
            area[i][m] = bw * bh
            pos[i][m] = True
            cls_t[i, :, m] = 0
            cls_t[i, c][m] = 1.0
            box_t[i, :, m] = np.array([x1, y1, x2, y2], np.float32)
    return cls_t, box_t, pos


def giou_loss(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    ix1, iy1 = torch.max(pred[:, 0], tgt[:, 0]), torch.max(pred[:, 1], tgt[:, 1])
    ix2, iy2 = torch.min(pred[:, 2], tgt[:, 2]), torch.min(pred[:, 3], tgt[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    at = (tgt[:, 2] - tgt[:, 0]) * (tgt[:, 3] - tgt[:, 1])
    union = ap + at - inter + 1e-6
    iou = inter / union
    cx1, cy1 = torch.min(pred[:, 0], tgt[:, 0]), torch.min(pred[:, 1], tgt[:, 1])
    cx2, cy2 = torch.max(pred[:, 2], tgt[:, 2]), torch.max(pred[:, 3], tgt[:, 3])
    c = (cx2 - cx1) * (cy2 - cy1) + 1e-6
    return (1 - iou + (c - union) / c), iou


def focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    w = alpha * target + (1 - alpha) * (1 - target)
    return (w * (1 - pt) ** gamma * ce).sum()


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = make_dataset(args.images, seed=TRAIN_SEED + args.seed, size=args.size,
                        backgrounds=None if args.backgrounds == "none" else args.backgrounds)
    print(f"generated {args.images} training images in {time.time() - t0:.0f} s", flush=True)
    g = args.size // STRIDE
    cls_t, box_t, pos = build_targets(data["boxes"], data["classes"], g)
    images = data["images"]
    net = LogoNet()
    print(f"parameters: {sum(p.numel() for p in net.parameters()):,}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters, pct_start=0.05)
    centers = (torch.arange(g, dtype=torch.float32) + 0.5) * STRIDE
    gx = centers[None, None, :].expand(1, g, g)
    gy = centers[None, :, None].expand(1, g, g)
    rng = np.random.default_rng(args.seed)
    net.train()
    t_train = time.time()
    for it in range(args.iters):
        idx = rng.integers(0, len(images), args.batch)
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div_(255.0)
        ct = torch.from_numpy(cls_t[idx])
        bt = torch.from_numpy(box_t[idx])
        pm = torch.from_numpy(pos[idx])
        logits, raw = net(x)
        npos = max(1.0, float(pm.sum()))
        l_cls = focal(logits, ct) / npos
        d = ltrb_pixels(raw)
        pred = torch.stack([gx - d[:, 0], gy - d[:, 1], gx + d[:, 2], gy + d[:, 3]], dim=1)
        pp = pred.permute(0, 2, 3, 1)[pm]
        tt = bt.permute(0, 2, 3, 1)[pm]
        if len(pp):
            lg, _ = giou_loss(pp, tt)
            l_box = lg.mean()
            l_l1 = (F.l1_loss(pp, tt, reduction="none").sum(1) / (tt[:, 2:] - tt[:, :2]).mean(1).clamp(min=8)).mean()
        else:
            l_box = l_l1 = torch.zeros(())
        loss = l_cls + 2.0 * l_box + 0.5 * l_l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if it % 50 == 0 or it == args.iters - 1:
            el = time.time() - t_train
            print(f"it {it:5d}  loss {loss.item():.3f}  cls {l_cls.item():.3f}  giou {l_box.item():.3f} "
                  f"l1 {l_l1.item():.3f}  {el:.0f} s", flush=True)
    train_s = time.time() - t_train
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "logo_net.pt")
    export(net, out / "detector.onnx", args.export_size)
    (out / "labels.txt").write_text("\n".join(BRAND_NAMES) + "\n")
    (out / "train_info.json").write_text(json.dumps({
        "iters": args.iters, "batch": args.batch, "images": args.images, "size": args.size,
        "lr": args.lr, "seed": args.seed, "backgrounds": args.backgrounds, "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1), "threads": args.threads,
        "torch": torch.__version__}, indent=1) + "\n")
    print(f"trained {args.iters} iterations in {train_s:.0f} s; wrote {out / 'detector.onnx'}", flush=True)


def export(net: LogoNet, path: Path, size: int) -> None:
    import onnx

    net.eval()
    model = Exported(net, size).eval()
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    m = onnx.load(str(path))
    # Pin the static output dims (the tracer leaves dim 1 symbolic): [batch, 4 + C, anchors].
    dims = m.graph.output[0].type.tensor_type.shape.dim
    dims[1].Clear()
    dims[1].dim_value = 4 + NUM_CLASSES
    dims[2].Clear()
    dims[2].dim_value = (size // STRIDE) ** 2
    names = {i: n for i, n in enumerate(BRAND_NAMES)}
    for key, value in (("names", str(names)), ("stride", str(STRIDE)), ("imgsz", str([size, size])),
                       ("task", "detect"), ("description", "vidinfer brand logo detector (generated data, real backgrounds, hard negatives)")):
        p = m.metadata_props.add()
        p.key, p.value = key, value
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=8000, help="generated training images")
    ap.add_argument("--size", type=int, default=320, help="training image size")
    ap.add_argument("--export-size", type=int, default=640, help="ONNX input size (square)")
    ap.add_argument("--backgrounds", default="train", choices=["train", "none"],
                    help="real photographs mixed in (never the held-out split); none: generated only")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "models" / "logos"))
    ap.add_argument("--export-only", help="export a saved state dict (logo_net.pt) instead of training")
    args = ap.parse_args(argv)
    if args.export_only:
        net = LogoNet()
        net.load_state_dict(torch.load(args.export_only))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        export(net, out / "detector.onnx", args.export_size)
        (out / "labels.txt").write_text("\n".join(BRAND_NAMES) + "\n")
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
