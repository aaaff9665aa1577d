"""GPU preprocessing kernels (vidinfer/preprocess/kernels/*.cu) and their NumPy references.

Without a GPU, three layers are checked here:
1. the NumPy references (vidinfer.preprocess.reference) against known values and the CPU path;
2. the kernel sources, executed on the CPU: each .cu file is compiled with g++ against a stub of the
   CUDA thread model, every thread of the launch grid is run in a loop, and the result must equal the
   reference bit for bit; the arguments come from the same builders the CuPy launchers use, so
   argument order and types are checked against the kernel signatures too;
3. nvcc compiles every kernel for sm_80 and sm_90.
The `gpu`-marked test runs the CuPy launchers on a CUDA device (tools/gpu_check.sh).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
from gpu_fakes import kernel_emulator

from vidinfer.preprocess import gpu
from vidinfer.preprocess.crops import crop_resize_yuv420, yuv_to_rgb_matrix
from vidinfer.preprocess.letterbox import PAD_VALUE, Letterbox, fill_batch_slot
from vidinfer.preprocess.reference import (
    crop_resize_nv12_reference,
    letterbox_nv12_reference,
    normalisation_constants,
    nv12_from_rgb,
    nv12_to_yuv420,
)

STANDARDS = list(itertools.product(["bt601", "bt709"], [False, True]))
PAD = np.float32(PAD_VALUE / 255.0)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _planes_of_colour(h: int, w: int, yuv: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    y = np.full((h, w), yuv[0], np.uint8)
    uv = np.empty(((h + 1) // 2, 2 * ((w + 1) // 2)), np.uint8)
    uv[:, 0::2], uv[:, 1::2] = yuv[1], yuv[2]
    return y, uv


def _exact_rgb(yuv, standard: str, full_range: bool) -> np.ndarray:
    """Float64 M @ (yuv - offsets) / 255, clamped to [0, 1]."""
    m, off = yuv_to_rgb_matrix(standard, full_range)
    rgb = m.astype(np.float64) @ (np.asarray(yuv, np.float64) - off)
    return np.clip(rgb / 255.0, 0, 1)


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with a dozen flat, hard-edged rectangles (boards, logos)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 61 - c) for c in range(3)], -1)
    for _ in range(12):
        x0, y0 = rng.integers(0, w - 200), rng.integers(0, h - 100)
        img[y0:y0 + rng.integers(20, 100), x0:x0 + rng.integers(40, 200)] = rng.integers(0, 256, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _image_window(box: Letterbox) -> tuple[slice, slice, slice]:
    return (slice(None), slice(box.pad_y, box.pad_y + box.new_h), slice(box.pad_x, box.pad_x + box.new_w))


def _pad_mask(box: Letterbox) -> np.ndarray:
    mask = np.ones((box.dst_h, box.dst_w), bool)
    mask[_image_window(box)[1:]] = False
    return mask


# --- 1. References: colour conversion ------------------------------------------------------------

# Textbook 8-bit codes (Y, Cb, Cr) of the primaries, limited range.
TEXTBOOK = {
    "bt601": {"red": (81, 90, 240), "green": (145, 54, 34), "blue": (41, 240, 110)},
    "bt709": {"red": (63, 102, 240), "green": (173, 42, 26), "blue": (32, 240, 118)},
}
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0), "grey": (128, 128, 128), "orange": (200, 30, 60)}


@pytest.mark.parametrize("standard", ["bt601", "bt709"])
def test_nv12_from_rgb_gives_textbook_codes(standard):
    for name, codes in TEXTBOOK[standard].items():
        y, uv = nv12_from_rgb(np.full((2, 2, 3), COLOURS[name], np.uint8), standard, False)
        assert (y[0, 0], uv[0, 0], uv[0, 1]) == codes, name
    for full, (white, black) in ((False, (235, 16)), (True, (255, 0))):
        for rgb, luma in (((255, 255, 255), white), ((0, 0, 0), black)):
            y, uv = nv12_from_rgb(np.full((2, 2, 3), rgb, np.uint8), standard, full)
            assert (y[0, 0], uv[0, 0], uv[0, 1]) == (luma, 128, 128)


@pytest.mark.parametrize("standard, full_range", STANDARDS)
def test_colour_conversion_of_known_pixels(standard, full_range):
    m, off = yuv_to_rgb_matrix(standard, full_range)
    box = Letterbox.fit(4, 4, 4, 4)
    # Exact: the decoded value of a code triple is M @ (yuv - offsets) (float32 vs float64).
    for yuv in [(16, 128, 128), (235, 128, 128), (81, 90, 240), (145, 54, 34), (41, 240, 110),
                (0, 0, 0), (255, 255, 255), (100, 200, 50), (200, 60, 180)]:
        out = letterbox_nv12_reference(*_planes_of_colour(4, 4, yuv), box, m, off)
        np.testing.assert_allclose(out[:, 1, 1], _exact_rgb(yuv, standard, full_range), atol=1e-6)
    # Round trip of pure colours through 8-bit NV12: white/black/grey are exact (to float32); other
    # colours are off by the rounding of Y, Cb, Cr to integers: at most 0.5 * (row sum of |M|),
    # i.e. 1.48/255 for BT.709 limited range; the measured worst case is 1.34/255 (BT.709 full, blue).
    bound = 0.5 * np.abs(m).sum(axis=1) / 255 + 1e-6
    for name, rgb in COLOURS.items():
        y, uv = nv12_from_rgb(np.full((4, 4, 3), rgb, np.uint8), standard, full_range)
        got = letterbox_nv12_reference(y, uv, box, m, off)[:, 2, 2]
        err = np.abs(got - np.asarray(rgb) / 255)
        if name in ("white", "black"):
            assert err.max() < 1e-6, (name, got * 255)
        assert np.all(err <= bound), (name, got * 255)
        assert err.max() < 1.4 / 255, (name, got * 255)


# --- 1. References: resampling -------------------------------------------------------------------

def _grey_planes(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full-range planes with neutral chroma: every channel of the RGB equals luma exactly."""
    h, w = luma.shape
    return luma.astype(np.uint8), np.full(((h + 1) // 2, 2 * ((w + 1) // 2)), 128, np.uint8)


FULL601 = yuv_to_rgb_matrix("bt601", True)


@pytest.mark.parametrize("src, dst", [((50, 30), (64, 64)), ((1920, 1080), (640, 640)), ((33, 17), (100, 90))])
def test_constant_image_stays_constant(src, dst):
    w, h = src
    box = Letterbox.fit(w, h, *dst)
    for standard, full in STANDARDS:
        m, off = yuv_to_rgb_matrix(standard, full)
        yuv = (120, 90, 170)
        out = letterbox_nv12_reference(*_planes_of_colour(h, w, yuv), box, m, off)
        img = out[_image_window(box)].reshape(3, -1)
        np.testing.assert_allclose(img, np.broadcast_to(_exact_rgb(yuv, standard, full)[:, None], img.shape),
                                   atol=1e-6)
        assert np.ptp(img, axis=1).max() <= 2e-7  # c * (1 - w) + c * w may round by an ulp


def test_horizontal_ramp_stays_a_ramp():
    luma = np.tile(np.arange(64, dtype=np.uint8) * 2, (8, 1))  # Y(x) = 2x, pixel centres at x + 0.5
    y, uv = _grey_planes(luma)
    # 2x upscale: output j samples source index (j + 0.5) / 2 - 0.5 = j/2 - 0.25, clamped at 0 and 63.
    up = letterbox_nv12_reference(y, uv, Letterbox.fit(64, 8, 128, 16), *FULL601)
    expect = 2 * np.clip(np.arange(128) / 2 - 0.25, 0, 63)
    assert expect[:3].tolist() == [0.0, 0.5, 1.5] and expect[-1] == 126
    for c in range(3):
        np.testing.assert_allclose(up[c] * 255, np.broadcast_to(expect, (16, 128)), atol=1e-4)
    # 2x downscale: output j samples index 2j + 0.5, halfway between pixels 2j and 2j + 1: 4j + 1.
    down = letterbox_nv12_reference(y, uv, Letterbox(64, 8, 32, 4, 32, 4, 0, 0), *FULL601)
    np.testing.assert_allclose(down[0] * 255, np.broadcast_to(4 * np.arange(32) + 1.0, (4, 32)), atol=1e-4)
    # Non-integer ratio (64 -> 48): index (j + 0.5) * 4/3 - 0.5, value twice that.
    odd = letterbox_nv12_reference(y, uv, Letterbox(64, 8, 48, 6, 48, 6, 0, 0), *FULL601)
    np.testing.assert_allclose(odd[1, 0] * 255, 2 * ((np.arange(48) + 0.5) * 4 / 3 - 0.5), atol=1e-3)


def test_checkerboard_2x_downscale_is_half_grey():
    luma = ((np.indices((64, 96)).sum(axis=0) % 2) * 255).astype(np.uint8)
    y, uv = _grey_planes(luma)
    out = letterbox_nv12_reference(y, uv, Letterbox(96, 64, 48, 32, 48, 32, 0, 0), *FULL601)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    # 4:2:0 chroma checkerboard (2x2 cells of the chroma plane) -> neutral after the 2x2 average too.
    uvc = uv.copy()
    cells = (np.indices((32, 48)).sum(axis=0) % 2).astype(bool)
    uvc[:, 0::2][cells], uvc[:, 0::2][~cells] = 168, 88
    out = letterbox_nv12_reference(np.full((64, 96), 100, np.uint8), uvc, Letterbox(96, 64, 24, 16, 24, 16, 0, 0),
                                   *FULL601)
    np.testing.assert_allclose(out, 100 / 255, atol=1e-6)


@pytest.mark.parametrize("src, new, pad", [((1920, 1080), (640, 360), (0, 140)), ((720, 1280), (360, 640), (140, 0))])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_letterbox_geometry_and_padding(src, new, pad, dtype):
    box = Letterbox.fit(*src, 640, 640)
    assert (box.new_w, box.new_h, box.pad_x, box.pad_y) == (*new, *pad)
    m, off = yuv_to_rgb_matrix("bt709", False)
    yuv = (63, 102, 240)  # red: far from the padding grey in every channel
    out = letterbox_nv12_reference(*_planes_of_colour(src[1], src[0], yuv), box, m, off, dtype=dtype)
    assert out.dtype == dtype and out.shape == (3, 640, 640)
    mask = _pad_mask(box)
    assert mask.sum() == 640 * 640 - new[0] * new[1]
    assert np.all(out[:, mask] == dtype(PAD))  # exactly float32(114/255) (rounded to float16)
    img = out[_image_window(box)]
    np.testing.assert_allclose(img, np.broadcast_to(_exact_rgb(yuv, "bt709", False)[:, None, None], img.shape),
                               atol=1e-6 if dtype == np.float32 else 1e-3)
    # The first and last image rows/columns are image, the ones just outside are padding.
    x0, y0 = pad
    if y0:
        assert out[1, y0 - 1, 0] == dtype(PAD) and out[1, y0, 0] != dtype(PAD)
        assert out[1, y0 + new[1] - 1, 0] != dtype(PAD) and out[1, y0 + new[1], 0] == dtype(PAD)
    if x0:
        assert out[1, 0, x0 - 1] == dtype(PAD) and out[1, 0, x0] != dtype(PAD)
        assert out[1, 0, x0 + new[0] - 1] != dtype(PAD) and out[1, 0, x0 + new[0]] == dtype(PAD)


def test_mean_std_normalisation():
    box = Letterbox.fit(64, 32, 64, 64)
    m, off = yuv_to_rgb_matrix("bt601", True)
    yuv = (150, 100, 160)
    mean, std = IMAGENET
    out = letterbox_nv12_reference(*_planes_of_colour(32, 64, yuv), box, m, off, mean=mean, std=std)
    rgb = _exact_rgb(yuv, "bt601", True)
    expect = (rgb - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out[:, 20, 5], expect, atol=1e-5)
    np.testing.assert_allclose(out[:, 0, 0], (PAD_VALUE / 255 - np.array(mean)) / np.array(std), atol=1e-6)
    scale, bias, pad = normalisation_constants()
    assert scale.tolist() == [np.float32(1 / 255)] * 3 and bias.tolist() == [0.0] * 3
    assert pad.tolist() == [PAD] * 3


def test_float16_equals_float32_within_fp16_precision():
    rgb = _scene(270, 480)
    y, uv = nv12_from_rgb(rgb, "bt709", False)
    box = Letterbox.fit(480, 270, 320, 320)
    m, off = yuv_to_rgb_matrix("bt709", False)
    for mean, std in ((None, None), IMAGENET):
        f32 = letterbox_nv12_reference(y, uv, box, m, off, mean=mean, std=std)
        f16 = letterbox_nv12_reference(y, uv, box, m, off, dtype=np.float16, mean=mean, std=std)
        assert f16.dtype == np.float16
        assert np.array_equal(f16, f32.astype(np.float16))  # round to nearest of the float32 result
        # fp16 has an 11-bit significand: relative error at most 2^-11 (plus subnormals near 0).
        assert np.all(np.abs(f16.astype(np.float32) - f32) <= np.abs(f32) * 2.0 ** -11 + 2.0 ** -24)


def test_letterbox_of_a_region_equals_the_crop_kernel():
    """A letterbox without padding over src_rect samples exactly like the crop kernel's box."""
    rgb = _scene(180, 320, seed=3)
    y, uv = nv12_from_rgb(rgb, "bt601", False)
    m, off = yuv_to_rgb_matrix("bt601", False)
    rect = (17.25, 30.5, 211.0, 150.75)
    out = letterbox_nv12_reference(y, uv, Letterbox(320, 180, 64, 48, 64, 48, 0, 0), m, off, src_rect=rect)
    crop = crop_resize_nv12_reference(y, uv, np.array([rect], np.float32), 48, 64, m, off)
    assert np.array_equal(out, crop[0])


# --- 1. References against the CPU path -----------------------------------------------------------

def _fill(image: np.ndarray, box: Letterbox) -> np.ndarray:
    batch = np.zeros((1, 3, box.dst_h, box.dst_w), np.float32)
    fill_batch_slot(batch, 0, image, box)
    return batch[0]


def _yuv420p_frame(y: np.ndarray, uv: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, arr in zip(frame.planes, nv12_to_yuv420(y, uv)):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :arr.shape[1]] = arr
    return frame


@pytest.mark.parametrize("w, h", [(1920, 1080), (720, 1280)])
def test_letterbox_reference_agrees_with_cpu_path(w, h):
    """Same RGB frame: GPU path (RGB -> NV12 -> kernel reference) vs CPU path (swscale bilinear
    resize of the RGB -> fill_batch_slot). Differences: chroma subsampling and 8-bit YUV in the GPU
    path, swscale's filter (wider than 2x2 when downscaling) and uint8 rounding in the CPU path.
    Measured mean |diff| 0.52/255 (1920x1080) and 0.59/255 (720x1280); sharp edges differ more."""
    rgb = _scene(h, w)
    box = Letterbox.fit(w, h, 640, 640)
    y, uv = nv12_from_rgb(rgb, "bt601", False)
    ref = letterbox_nv12_reference(y, uv, box, *yuv_to_rgb_matrix("bt601", False))
    cpu = _fill(av.VideoFrame.from_ndarray(rgb, format="rgb24")
                .reformat(width=box.new_w, height=box.new_h, format="rgb24", interpolation="BILINEAR")
                .to_ndarray(), box)
    mask = _pad_mask(box)
    assert np.array_equal(ref[:, mask], cpu[:, mask])  # padding identical, bit for bit
    diff = np.abs(ref - cpu)[_image_window(box)]
    assert diff.mean() < 1 / 255, diff.mean() * 255
    assert np.percentile(diff, 99) < 3 / 255


def test_letterbox_reference_agrees_with_the_pipelines_swscale_at_2x():
    """Same YUV planes through the CPU pipeline's own resize (AREA | ACCURATE_RND | FULL_CHR_H_INT,
    vidinfer.sources.pyav): at an exact 2x downscale the area average equals bilinear at the pixel
    corner, so the two paths differ only by the CPU path's rounding to uint8 (<= 0.5/255)."""
    from vidinfer.sources.pyav import INTERPOLATION

    rgb = _scene(720, 1280, seed=1)
    box = Letterbox.fit(1280, 720, 640, 640)
    y, uv = nv12_from_rgb(rgb, "bt601", False)
    ref = letterbox_nv12_reference(y, uv, box, *yuv_to_rgb_matrix("bt601", False))
    cpu = _fill(_yuv420p_frame(y, uv).reformat(width=box.new_w, height=box.new_h, format="rgb24",
                                               interpolation=INTERPOLATION).to_ndarray(), box)
    diff = np.abs(ref - cpu)
    # Measured: max 0.51/255 (swscale's fixed-point coefficients add a hair), mean 0.25/255.
    assert diff.max() < 0.6 / 255, diff.max() * 255
    assert diff.mean() < 0.3 / 255, diff.mean() * 255


@pytest.mark.parametrize("standard, full_range", STANDARDS)
def test_crop_reference_equals_crops_module(standard, full_range):
    rgb = _scene(360, 640, seed=2)
    y, uv = nv12_from_rgb(rgb, standard, full_range)
    boxes = np.array([[10.3, 5.2, 50.7, 40.1], [-5, -5, 20, 30], [0, 0, 640, 360], [600.5, 300, 660, 380],
                      [100, 100, 100.5, 100.5]], np.float32)
    m, off = yuv_to_rgb_matrix(standard, full_range)
    ref = crop_resize_nv12_reference(y, uv, boxes, 24, 32, m, off)
    cpu = crop_resize_yuv420(*nv12_to_yuv420(y, uv), boxes, 24, 32, standard, full_range)
    assert ref.shape == (5, 3, 24, 32) and ref.dtype == np.float32
    # Same arithmetic; crops.py computes the weights in float64: measured max |diff| 2.1e-7.
    np.testing.assert_allclose(ref, cpu.transpose(0, 3, 1, 2), atol=1e-6, rtol=0)
    assert crop_resize_nv12_reference(y, uv, np.zeros((0, 4)), 8, 8, m, off).shape == (0, 3, 8, 8)


# --- 2. Kernel sources executed on the CPU ---------------------------------------------------------

@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The .cu kernels compiled for the CPU: launch(name, grid, block, args) runs every thread."""
    return kernel_emulator(tmp_path_factory.mktemp("kernel_emulation"))


def _pitched(a: np.ndarray, extra: int) -> np.ndarray:
    """A view of ``a`` inside rows ``extra`` bytes longer (a pitched plane, like NVDEC's)."""
    buf = np.full((a.shape[0], a.shape[1] + extra), 77, np.uint8)
    buf[:, :a.shape[1]] = a
    return buf[:, :a.shape[1]]


@pytest.mark.parametrize("src, dst", [((1920, 1080), (640, 640)), ((720, 1280), (640, 640)),
                                      ((97, 61), (64, 48)), ((33, 17), (100, 90))])
def test_letterbox_kernel_source_matches_reference(emulator, src, dst):
    w, h = src
    rng = np.random.default_rng(w)
    y, uv = nv12_from_rgb(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "bt709", False)
    box = Letterbox.fit(w, h, *dst)
    m, off = yuv_to_rgb_matrix("bt709", False)
    planes = [(_pitched(y, 64), _pitched(uv, 32))]
    if h % 2 == 0:
        planes.append((np.concatenate([y, uv]), None))  # the single (1.5H, W) array of PyNvVideoCodec
    for (yp, uvp), dtype, (mean, std) in itertools.product(planes, (np.float32, np.float16),
                                                           ((None, None), IMAGENET)):
        batch = np.full((3, 3, dst[1], dst[0]), np.nan, dtype)
        emulator(*gpu.letterbox_nv12_args(batch, 1, yp, uvp, box, m, off, mean, std))
        ref = letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype, mean=mean, std=std)
        np.testing.assert_array_equal(batch[1], ref)
        assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all()  # other slots untouched


def test_letterbox_kernel_source_with_region_and_cai_planes(emulator):
    """src_rect, and the planes as PyNvVideoCodec's CAI views: Y (H, W, 1), UV (H/2, W/2, 2)."""
    y, uv = nv12_from_rgb(_scene(240, 320), "bt601", True)
    box = Letterbox.fit(150, 100, 96, 96)
    m, off = yuv_to_rgb_matrix("bt601", True)
    rect = (40.0, 30.5, 190.0, 130.5)
    batch = np.zeros((1, 3, 96, 96), np.float32)
    # box describes the region (150 x 100) but the planes are the whole 320 x 240 frame: pass the
    # frame size through a Letterbox whose src is the frame and whose new/pad come from the region.
    frame_box = Letterbox(320, 240, 96, 96, box.new_w, box.new_h, box.pad_x, box.pad_y)
    emulator(*gpu.letterbox_nv12_args(batch, 0, y[:, :, None], uv.reshape(120, 160, 2), frame_box, m, off,
                                      src_rect=rect))
    ref = letterbox_nv12_reference(y, uv, frame_box, m, off, src_rect=rect)
    np.testing.assert_array_equal(batch[0], ref)


def test_crop_kernel_source_matches_reference(emulator):
    y, uv = nv12_from_rgb(_scene(360, 640, seed=5), "bt709", True)
    m, off = yuv_to_rgb_matrix("bt709", True)
    boxes = np.array([[10.3, 5.2, 50.7, 40.1], [-5, -5, 20, 30], [0, 0, 640, 360], [600.5, 300, 660, 380]],
                     np.float32)
    out = np.full((4, 3, 24, 40), np.nan, np.float32)
    emulator(*gpu.crop_resize_nv12_args(_pitched(y, 128), _pitched(uv, 128), boxes, out, m, off))
    np.testing.assert_array_equal(out, crop_resize_nv12_reference(y, uv, boxes, 24, 40, m, off))


@pytest.mark.parametrize("src, dst", [((97, 61), (64, 48)), ((40, 30), (96, 80))])
def test_kernel_sources_follow_the_chroma_siting_they_are_given(emulator, src, dst):
    """Letterbox (float32, float16) and crops, centre- and left-sited chroma: the kernel sources equal
    the references bit for bit, and the two sitings give different pixels on a frame with chroma
    detail (the argument reaches the kernel) but identical ones where the chroma is flat."""
    w, h = src
    y, uv = nv12_from_rgb(np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8), "bt709", False)
    m, off = yuv_to_rgb_matrix("bt709", False)
    box = Letterbox.fit(w, h, *dst)
    boxes = np.array([[3.3, 2.2, 30.7, 20.1], [-4, -4, w + 4, h + 4], [10.5, 5, 12.5, 7]], np.float32)
    out = {}
    for siting in ("center", "left"):
        for dtype in (np.float32, np.float16):
            batch = np.full((2, 3, dst[1], dst[0]), np.nan, dtype)
            emulator(*gpu.letterbox_nv12_args(batch, 1, _pitched(y, 64), _pitched(uv, 32), box, m, off,
                                              chroma_siting=siting))
            np.testing.assert_array_equal(batch[1], letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype,
                                                                             chroma_siting=siting))
            assert np.isnan(batch[0]).all()
            out[siting, dtype] = batch[1].astype(np.float32)
        crops = np.full((3, 3, 20, 24), np.nan, np.float32)
        emulator(*gpu.crop_resize_nv12_args(_pitched(y, 16), _pitched(uv, 16), boxes, crops, m, off,
                                            chroma_siting=siting))
        np.testing.assert_array_equal(crops, crop_resize_nv12_reference(y, uv, boxes, 20, 24, m, off,
                                                                        chroma_siting=siting))
        out[siting, "crop"] = crops
    for kind in (np.float32, np.float16, "crop"):
        assert np.abs(out["left", kind] - out["center", kind]).max() > 10 / 255, kind
    flat = _planes_of_colour(h, w, (120, 90, 170))
    assert np.array_equal(*(letterbox_nv12_reference(*flat, box, m, off, chroma_siting=s) for s in ("left", "center")))
    with pytest.raises(ValueError, match="chroma_siting must be one of center, left, got 'top'"):
        gpu.letterbox_nv12_args(batch, 0, y, uv, box, m, off, chroma_siting="top")
    with pytest.raises(ValueError, match="chroma_siting must be one of center, left, got 'top'"):
        gpu.crop_resize_nv12_args(y, uv, boxes, crops, m, off, chroma_siting="top")


# --- Chroma siting against the CPU path, per codec -------------------------------------------------

def _decoded_nv12(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
    """The (y, uv) NV12 planes of a decoded yuv420p frame: its own samples, U and V interleaved."""
    y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in frame.planes)
    uv = np.empty((u.shape[0], 2 * u.shape[1]), np.uint8)
    uv[:, 0::2], uv[:, 1::2] = u, v
    return y, uv


def _siting_errors(frame: av.VideoFrame) -> dict[str, float]:
    """Max |reference - CPU path| (in 0..255 levels) of each siting, for an exact 2x downscale of a
    decoded frame: the CPU path is the pipeline's own swscale call on the frame as FFmpeg tags it."""
    from vidinfer.preprocess.crops import colour_standard
    from vidinfer.sources.pyav import INTERPOLATION

    w, h = frame.width, frame.height
    box = Letterbox(w, h, w // 2, h // 2, w // 2, h // 2, 0, 0)
    cpu = _fill(frame.reformat(width=w // 2, height=h // 2, format="rgb24", interpolation=INTERPOLATION)
                .to_ndarray(), box)
    y, uv = _decoded_nv12(frame)
    matrix = yuv_to_rgb_matrix(*colour_standard(frame.colorspace, frame.color_range))
    return {s: float(np.abs(letterbox_nv12_reference(y, uv, box, *matrix, chroma_siting=s) - cpu).max() * 255)
            for s in ("left", "center")}


def test_sample_clip_h264_frames_match_the_cpu_path_with_left_sited_chroma():
    """sample_streams/shapes_a.mp4 (libx264, 640x360, BT.601 TV range): its first frame through the
    GPU reference with the siting vidinfer picks for its codec agrees with the CPU path to uint8
    rounding (measured 0.50/255); centre siting misplaces the coloured rectangles' edges (31/255)."""
    from ground_truth import CLIPS

    from vidinfer.preprocess.crops import chroma_siting

    with av.open(str(CLIPS / "shapes_a.mp4")) as src:
        stream = src.streams.video[0]
        codec, fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        frame = next(src.decode(stream))
    assert (codec, fmt, frame.width, frame.height) == ("h264", "yuv420p", 640, 360)
    assert chroma_siting(codec) == "left"
    err = _siting_errors(frame)
    assert err["left"] < 0.6, err
    assert err["center"] > 10, err


def _stripes(h: int, w: int) -> np.ndarray:
    """4-pixel vertical stripes of red, blue, green and yellow: chroma that changes every 2 chroma pixels."""
    colours = np.array([(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0)], np.uint8)
    return np.broadcast_to(colours[(np.arange(w) // 4) % 4], (h, w, 3)).copy()


@pytest.mark.parametrize("encoder, codec", [("libx264", "h264"), ("libx265", "hevc"), ("mpeg4", "mpeg4"),
                                            ("mpeg2video", "mpeg2video"), ("mpeg1video", "mpeg1video"),
                                            ("libvpx", "vp8"), ("libvpx-vp9", "vp9")])
def test_each_codecs_chroma_siting_is_where_the_cpu_paths_swscale_puts_its_chroma(tmp_path, encoder, codec):
    """Per codec, FFmpeg tags decoded frames left-sited (H.264, HEVC, MPEG-4 part 2, MPEG-2) or not
    (MPEG-1, VP8, VP9) and swscale follows the tag: `chroma_siting(codec)` must name the siting that
    matches the CPU path (measured max 0.44..0.50/255) and the other must not (55..58/255)."""
    from vidinfer.preprocess.crops import chroma_siting

    try:
        av.codec.Codec(encoder, "w")
    except Exception:  # noqa: BLE001 - this FFmpeg build lacks the encoder
        pytest.skip(f"FFmpeg has no {encoder} encoder")
    path = tmp_path / "stripes.mkv"
    with av.open(str(path), "w") as out:
        st = out.add_stream(encoder, rate=25)
        st.width, st.height, st.pix_fmt = 128, 64, "yuv420p"
        if encoder == "libx265":
            st.options = {"x265-params": "log-level=error"}
        for packet in [*st.encode(av.VideoFrame.from_ndarray(_stripes(64, 128), format="rgb24")), *st.encode()]:
            out.mux(packet)
    with av.open(str(path)) as src:
        assert src.streams.video[0].codec_context.name == codec
        frame = next(src.decode(video=0))
    err = _siting_errors(frame)
    siting = chroma_siting(codec)
    other = "center" if siting == "left" else "left"
    assert err[siting] < 0.6, (siting, err)
    assert err[other] > 20, (siting, err)


# --- Odd frame sizes as PyNvVideoCodec lays them out -------------------------------------------------

def _pynvvideocodec_nv12(y: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The single NV12 array PyNvVideoCodec's DLPack gives for a W x H frame: (floor(1.5H), W) rows,
    i.e. floor(H/2) chroma rows of W bytes: floor(W/2) U, V pairs (an odd W ends in a lone U)."""
    h, w = y.shape
    nv12 = np.concatenate([y, uv[:h // 2, :w]])
    assert nv12.shape == (int(1.5 * h), w)
    return nv12


def _edge_repeated(uv: np.ndarray, w: int, h: int) -> np.ndarray:
    """A complete (ceil(H/2), 2 ceil(W/2)) chroma plane from one short at the odd edges: the missing
    last column / row of U, V samples filled with the one before it."""
    u, v = uv[:, 0:2 * (w // 2):2], uv[:, 1:2 * (w // 2):2]
    pad = ((0, (h + 1) // 2 - u.shape[0]), (0, (w + 1) // 2 - u.shape[1]))
    full = np.stack([np.pad(u, pad, mode="edge"), np.pad(v, pad, mode="edge")], axis=-1)
    return full.reshape(full.shape[0], -1)


@pytest.mark.parametrize("w, h", [(33, 17), (33, 18), (32, 17), (97, 61)])
@pytest.mark.parametrize("siting", ["center", "left"])
def test_odd_sized_frames_in_pynvvideocodecs_layout_match_the_reference(emulator, w, h, siting):
    """Odd width and/or height given as the one (floor(1.5H), W) array (and as its two planes, and the
    CAI (H/2, W/2, 2) chroma view): kernels equal the references bit for bit, letterbox f32/f16 and
    crops, and the references read the short chroma plane as the full one with its edge repeated."""
    rgb = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, uv_full = nv12_from_rgb(rgb, "bt709", False)
    nv12 = _pynvvideocodec_nv12(y, uv_full)
    ys, uvs = gpu.split_nv12(nv12)
    assert ys.shape == (h, w) and uvs.shape == (h // 2, w)
    m, off = yuv_to_rgb_matrix("bt709", False)
    box = Letterbox.fit(w, h, 64, 48)
    ref = letterbox_nv12_reference(ys, uvs, box, m, off, chroma_siting=siting)
    np.testing.assert_allclose(ref, letterbox_nv12_reference(y, _edge_repeated(uvs, w, h), box, m, off,
                                                             chroma_siting=siting), atol=1e-6, rtol=0)
    cai = uvs[:, :2 * (w // 2)].reshape(h // 2, w // 2, 2)
    for (yp, uvp), dtype in itertools.product([(nv12, None), (ys, uvs), (ys[:, :, None], cai)],
                                              (np.float32, np.float16)):
        batch = np.full((1, 3, 48, 64), np.nan, dtype)
        emulator(*gpu.letterbox_nv12_args(batch, 0, yp, uvp, box, m, off, chroma_siting=siting))
        np.testing.assert_array_equal(batch[0], letterbox_nv12_reference(ys, uvs, box, m, off, dtype=dtype,
                                                                         chroma_siting=siting))
    boxes = np.array([[w - 9.5, h - 7.25, w + 2, h + 1], [-2, -2, w + 2, h + 2], [0, 0, w, h]], np.float32)
    crops = np.full((3, 3, 12, 16), np.nan, np.float32)
    emulator(*gpu.crop_resize_nv12_args(nv12, None, boxes, crops, m, off, chroma_siting=siting))
    np.testing.assert_array_equal(crops, crop_resize_nv12_reference(ys, uvs, boxes, 12, 16, m, off,
                                                                    chroma_siting=siting))


def test_last_row_and_column_of_an_odd_sized_frame_show_in_the_output(emulator):
    """A 33 x 17 frame, grey but for a bright last column and a dark last row (luma: at an odd edge
    NV12 has no chroma of its own), upscaled exactly 2x from PyNvVideoCodec's (25, 33) array: the
    output's last column and row carry those values, everything away from them stays grey."""
    w, h = 33, 17
    y = np.full((h, w), 128, np.uint8)
    y[:, -1], y[-1, :] = 220, 30
    nv12 = _pynvvideocodec_nv12(y, np.full(((h + 1) // 2, 2 * ((w + 1) // 2)), 128, np.uint8))
    box = Letterbox(w, h, 2 * w, 2 * h, 2 * w, 2 * h, 0, 0)
    batch = np.full((1, 3, 2 * h, 2 * w), np.nan, np.float32)
    emulator(*gpu.letterbox_nv12_args(batch, 0, nv12, None, box, *FULL601))
    np.testing.assert_array_equal(batch[0], letterbox_nv12_reference(*gpu.split_nv12(nv12), box, *FULL601))
    got = batch[0] * 255  # full range, neutral chroma: every channel is the luma
    # Output pixel j samples source index j/2 - 0.25: the last one clamps onto the last column/row,
    # those up to 2n - 4 see only the grey part.
    np.testing.assert_allclose(got[:, :2 * h - 3, -1], 220, atol=1e-3)
    np.testing.assert_allclose(got[:, -1, :2 * w - 3], 30, atol=1e-3)
    np.testing.assert_allclose(got[:, :2 * h - 3, :2 * w - 3], 128, atol=1e-3)


@pytest.mark.parametrize("h", [3, 17, 18, 1081])
def test_split_nv12_of_odd_heights_starts_the_chroma_at_row_h(h):
    """PyNvVideoCodec's floor(1.5H) rows and a full H + ceil(H/2) both split at row H, with or
    without ``height``; the chroma view is the rows after the luma, floor(H/2) or ceil(H/2) of them."""
    for rows in sorted({h + h // 2, h + (h + 1) // 2}):
        nv12 = np.repeat(np.arange(rows, dtype=np.int32)[:, None], 5, axis=1)  # each row holds its index
        for height in (None, h):
            ys, uvs = gpu.split_nv12(nv12, height)
            assert ys.shape == (h, 5) and ys[-1, 0] == h - 1
            assert uvs.shape == (rows - h, 5) and uvs[0, 0] == h and uvs[-1, 0] == rows - 1
    with pytest.raises(ValueError, match="cannot hold NV12"):
        gpu.split_nv12(np.zeros((h + h // 2 - 1, 4), np.uint8), h)


# --- Launcher argument checks (no GPU needed) -------------------------------------------------------

def test_gpu_module_imports_without_cupy():
    code = "import sys, vidinfer.preprocess.gpu; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_split_nv12_and_argument_validation():
    y, uv = nv12_from_rgb(np.zeros((6, 8, 3), np.uint8))
    ys, uvs = gpu.split_nv12(np.concatenate([y, uv]))
    assert ys.shape == (6, 8) and uvs.shape == (3, 8)
    box = Letterbox.fit(8, 6, 16, 16)
    m, off = yuv_to_rgb_matrix()
    name, grid, block, args = gpu.letterbox_nv12_args(np.zeros((2, 3, 16, 16), np.float16), 1, y, uv, box, m, off)
    assert name == "letterbox_nv12_f16" and grid == (1, 2, 1) and block == gpu.BLOCK_2D and len(args) == 42
    with pytest.raises(ValueError, match="batch"):
        gpu.letterbox_nv12_args(np.zeros((2, 3, 8, 16), np.float32), 0, y, uv, box, m, off)
    with pytest.raises(ValueError, match="dtype"):
        gpu.letterbox_nv12_args(np.zeros((2, 3, 16, 16), np.float64), 0, y, uv, box, m, off)
    with pytest.raises(IndexError):
        gpu.letterbox_nv12_args(np.zeros((2, 3, 16, 16), np.float32), 2, y, uv, box, m, off)
    with pytest.raises(ValueError, match="smaller"):
        gpu.letterbox_nv12_args(np.zeros((1, 3, 16, 16), np.float32), 0, y[:4], uv, box, m, off)
    with pytest.raises(ValueError, match="chroma"):
        gpu.letterbox_nv12_args(np.zeros((1, 3, 16, 16), np.float32), 0, y, uv[:, ::2], box, m, off)
    src = gpu.kernel_source("letterbox_nv12.cu")
    assert "#include \"" not in src and "vi_sample_nv12" in src


# --- 3. nvcc -------------------------------------------------------------------------------------

KERNEL_FILES = sorted(p.name for p in gpu.KERNEL_DIR.glob("*.cu"))


def test_kernel_files_present():
    assert KERNEL_FILES == ["crop_resize_nv12.cu", "letterbox_nv12.cu"]


@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_nvcc_compiles_kernel(filename, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: the CUDA toolkit is needed to compile the kernels")
    # The text NVRTC gets (headers inlined), with and without <cuda_fp16.h>, for Ampere and Hopper.
    src = tmp_path / filename
    src.write_text(gpu.kernel_source(filename))
    for extra in ([], [gpu.NO_FP16_HEADER]):
        cmd = [nvcc, "-std=c++17", "--fmad=false", *extra, "--fatbin", "-Werror", "all-warnings",
               "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
               str(src), "-o", str(tmp_path / "out.fatbin")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out.fatbin").stat().st_size > 0


# --- GPU ------------------------------------------------------------------------------------------

def _cupy():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception:
        pytest.skip("CuPy with a CUDA device is not available")
    return cupy


@pytest.mark.gpu
def test_cupy_kernels_match_references():
    cp = _cupy()
    stream = cp.cuda.Stream(non_blocking=True)
    for (w, h), standard, full in [((1920, 1080), "bt709", False), ((720, 1280), "bt601", True),
                                   ((97, 61), "bt601", False)]:
        rgb = _scene(h, w) if min(w, h) > 300 else np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
        y, uv = nv12_from_rgb(rgb, standard, full)
        m, off = yuv_to_rgb_matrix(standard, full)
        box = Letterbox.fit(w, h, 640, 640)
        dy, duv = cp.asarray(y), cp.asarray(uv)
        for dtype, (mean, std) in itertools.product((np.float32, np.float16), ((None, None), IMAGENET)):
            batch = cp.full((3, 3, 640, 640), cp.nan, dtype)
            gpu.letterbox_nv12_into(batch, 2, dy, duv, box, m, off, mean=mean, std=std)
            got = batch.get()
            ref = letterbox_nv12_reference(y, uv, box, m, off, dtype=dtype, mean=mean, std=std)
            if dtype == np.float32:  # compiled with --fmad=false: expected bit-exact; allow a few ulps
                np.testing.assert_allclose(got[2], ref, atol=1e-5, rtol=0)
            else:
                np.testing.assert_allclose(got[2].astype(np.float32), ref.astype(np.float32), atol=2e-3, rtol=0)
            assert np.isnan(got[:2]).all()
        if h % 2 == 0:  # the single (1.5H, W) array, launched on a non-default stream
            batch = cp.zeros((1, 3, 640, 640), cp.float32)
            gpu.letterbox_nv12_into(batch, 0, cp.asarray(np.concatenate([y, uv])), None, box, m, off, stream=stream)
            stream.synchronize()
            np.testing.assert_allclose(batch.get()[0], letterbox_nv12_reference(y, uv, box, m, off), atol=1e-5, rtol=0)
        boxes = np.array([[10.3, 5.2, 50.7, 40.1], [-5, -5, 20, 30], [0, 0, w, h]], np.float32)
        crops = gpu.crop_resize_nv12(dy, duv, boxes, 32, 24, m, off)
        assert crops.shape == (3, 3, 32, 24) and crops.dtype == cp.float32
        np.testing.assert_allclose(crops.get(), crop_resize_nv12_reference(y, uv, boxes, 32, 24, m, off),
                                   atol=1e-5, rtol=0)
        assert gpu.crop_resize_nv12(dy, duv, np.zeros((0, 4)), 8, 8, m, off).shape == (0, 3, 8, 8)
