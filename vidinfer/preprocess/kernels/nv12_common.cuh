// Shared device code of the NV12 kernels: bilinear sampling of NV12 planes at continuous
// coordinates, YUV -> RGB with a host-computed 3x3 matrix, and stores to float / half.
//
// Sampling convention (identical to vidinfer.preprocess.crops and vidinfer.preprocess.reference):
//   * continuous coordinates: pixel i spans [i, i+1), its centre is i + 0.5;
//   * output pixel j of a span [x0, x0 + len) resized to n pixels samples the continuous point
//     x = x0 + ((j + 0.5) / n) * len       (whole frame: index x - 0.5 = (j + 0.5) * src / n - 0.5);
//   * luma index  = clamp(x - 0.5,       0, w  - 1), bilinear between floor and floor + 1 (clamped);
//   * chroma (4:2:0, half resolution, cw x ch samples) is sampled at the same point in its own
//     pixels: vertically index = clamp(y * 0.5 - 0.5, 0, ch - 1) (between its two luma rows, as in
//     MPEG-2, H.264 and HEVC), horizontally index = clamp(x * 0.5 + chroma_dx - 0.5, 0, cw - 1) with
//     chroma_dx = 0 for centre-sited chroma and 0.25 for chroma co-sited with the even luma columns
//     ("left", the H.264 / HEVC / MPEG-4 part 2 default); cw, ch are ceil(w/2), ceil(h/2), or one
//     fewer at an odd edge whose last sample the plane lacks (that sample is then repeated);
//   * rgb = M @ (yuv - offsets) in 0..255 units, M and offsets from crops.yuv_to_rgb_matrix.
// The expression order below is mirrored operation by operation in reference.py (float32).
//
// Define VIDINFER_NO_CUDA_FP16 to avoid <cuda_fp16.h> (its NVRTC availability varies with the
// CUDA/CuPy install); half values are then written with the PTX cvt.rn.f16.f32 instruction,
// which is what __float2half compiles to.
#ifndef VIDINFER_NV12_COMMON_CUH
#define VIDINFER_NV12_COMMON_CUH

#ifndef VIDINFER_NO_CUDA_FP16
#include <cuda_fp16.h>
typedef __half vi_half;
__device__ __forceinline__ void vi_store(vi_half* p, float v) { *p = __float2half(v); }
#else
typedef unsigned short vi_half;
__device__ __forceinline__ void vi_store(vi_half* p, float v) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  *p = h;
}
#endif
__device__ __forceinline__ void vi_store(float* p, float v) { *p = v; }

typedef unsigned char vi_u8;

__device__ __forceinline__ int vi_imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ float vi_clampf(float v, float lo, float hi) { return fminf(fmaxf(v, lo), hi); }

// One axis of a bilinear tap: indices i0, i1 and the weight of i1.
struct ViTap { int i0, i1; float w; };

// `coord` is continuous (pixel centres at i + 0.5) in the plane's own pixels; n is the plane size.
__device__ __forceinline__ ViTap vi_tap(float coord, int n) {
  const float f = vi_clampf(coord - 0.5f, 0.0f, (float)(n - 1));
  ViTap t;
  t.i0 = (int)f;  // f >= 0, so truncation is floor
  t.i1 = vi_imin(t.i0 + 1, n - 1);
  t.w = f - (float)t.i0;
  return t;
}

// Bilinear value of an 8-bit plane; `step` bytes between horizontal neighbours (1: Y, 2: UV),
// `lane` selects U (0) or V (1) in the interleaved chroma plane.
__device__ __forceinline__ float vi_bilinear(const vi_u8* __restrict__ plane, int pitch, int step, int lane,
                                             const ViTap& tx, const ViTap& ty) {
  const vi_u8* r0 = plane + (size_t)ty.i0 * (size_t)pitch;
  const vi_u8* r1 = plane + (size_t)ty.i1 * (size_t)pitch;
  const int c0 = tx.i0 * step + lane, c1 = tx.i1 * step + lane;
  const float top = (float)r0[c0] * (1.0f - tx.w) + (float)r0[c1] * tx.w;
  const float bottom = (float)r1[c0] * (1.0f - tx.w) + (float)r1[c1] * tx.w;
  return top * (1.0f - ty.w) + bottom * ty.w;
}

// YUV -> RGB (0..255 units, unclamped): rgb = M @ (yuv - off). Row-major M.
struct ViColour {
  float m00, m01, m02, m10, m11, m12, m20, m21, m22;
  float o0, o1, o2;
};

struct ViRgb { float r, g, b; };

// Sample an NV12 frame (w x h luma, cw x ch interleaved U, V pairs at half resolution, chroma
// offset chroma_dx) at continuous (x, y).
__device__ __forceinline__ ViRgb vi_sample_nv12(const vi_u8* __restrict__ y_plane, int y_pitch,
                                                const vi_u8* __restrict__ uv_plane, int uv_pitch,
                                                int w, int h, int cw, int ch, float chroma_dx,
                                                float x, float y, const ViColour& c) {
  const ViTap lx = vi_tap(x, w), ly = vi_tap(y, h);
  const ViTap cx = vi_tap(x * 0.5f + chroma_dx, cw), cy = vi_tap(y * 0.5f, ch);
  const float Y = vi_bilinear(y_plane, y_pitch, 1, 0, lx, ly) - c.o0;
  const float U = vi_bilinear(uv_plane, uv_pitch, 2, 0, cx, cy) - c.o1;
  const float V = vi_bilinear(uv_plane, uv_pitch, 2, 1, cx, cy) - c.o2;
  ViRgb out;
  out.r = c.m00 * Y + c.m01 * U + c.m02 * V;
  out.g = c.m10 * Y + c.m11 * U + c.m12 * V;
  out.b = c.m20 * Y + c.m21 * U + c.m22 * V;
  return out;
}

#endif  // VIDINFER_NV12_COMMON_CUH
