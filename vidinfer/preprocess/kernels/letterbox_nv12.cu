// Fused NV12 -> RGB -> letterbox bilinear resize -> normalise -> CHW, written straight into slot
// `index` of a preallocated (N, 3, dst_h, dst_w) batch. One thread per output pixel (2-D grid over
// dst_w x dst_h); every thread writes its pixel's three channels, padding included.
//
// Inputs: a pitched NV12 frame (luma src_w x src_h at y_plane / y_pitch bytes per row, chroma_w x
// chroma_h interleaved U, V pairs at uv_plane / uv_pitch, sited by chroma_dx). The source span [rx0, rx0 + rw) x [ry0, ry0 + rh)
// (continuous pixels; the whole frame is 0, 0, src_w, src_h) is resized to new_w x new_h and placed
// at (pad_x, pad_y); every other pixel gets the per-channel pad value p0..p2.
// Image pixels: out_c = clamp(rgb_c, 0, 255) * a_c + b_c with rgb = M @ (yuv - o); a_c = 1/(255 std_c),
// b_c = -mean_c / std_c (plain [0, 1] scaling: a_c = 1/255, b_c = 0; a 0-255 model: a_c = 1). A BGR
// model gets M with its first and last rows swapped, so out_0 is blue. Sampling: nv12_common.cuh.
// NumPy reference: vidinfer.preprocess.reference.letterbox_nv12_reference.
#include "nv12_common.cuh"

template <typename T>
__device__ __forceinline__ void vi_letterbox_nv12(
    const vi_u8* __restrict__ y_plane, int y_pitch, const vi_u8* __restrict__ uv_plane, int uv_pitch,
    int src_w, int src_h, int chroma_w, int chroma_h, float chroma_dx,
    float rx0, float ry0, float rw, float rh,
    T* __restrict__ out, int index, int dst_w, int dst_h, int new_w, int new_h, int pad_x, int pad_y,
    const ViColour& colour, float a0, float a1, float a2, float b0, float b1, float b2,
    float p0, float p1, float p2) {
  const int dx = blockIdx.x * blockDim.x + threadIdx.x;
  const int dy = blockIdx.y * blockDim.y + threadIdx.y;
  if (dx >= dst_w || dy >= dst_h) return;
  const size_t plane = (size_t)dst_w * (size_t)dst_h;
  T* o = out + (size_t)index * 3 * plane + (size_t)dy * (size_t)dst_w + (size_t)dx;
  const int lx = dx - pad_x, ly = dy - pad_y;
  float r = p0, g = p1, b = p2;
  if (lx >= 0 && ly >= 0 && lx < new_w && ly < new_h) {
    const float sx = rx0 + (((float)lx + 0.5f) / (float)new_w) * rw;
    const float sy = ry0 + (((float)ly + 0.5f) / (float)new_h) * rh;
    const ViRgb c = vi_sample_nv12(y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h, chroma_w, chroma_h,
                                   chroma_dx, sx, sy, colour);
    r = vi_clampf(c.r, 0.0f, 255.0f) * a0 + b0;
    g = vi_clampf(c.g, 0.0f, 255.0f) * a1 + b1;
    b = vi_clampf(c.b, 0.0f, 255.0f) * a2 + b2;
  }
  vi_store(o, r);
  vi_store(o + plane, g);
  vi_store(o + 2 * plane, b);
}

#define VI_LETTERBOX_PARAMS(T)                                                                     \
    const vi_u8* __restrict__ y_plane, int y_pitch, const vi_u8* __restrict__ uv_plane, int uv_pitch, \
    int src_w, int src_h, int chroma_w, int chroma_h, float chroma_dx,                              \
    float rx0, float ry0, float rw, float rh,                                                        \
    T* __restrict__ out, int index, int dst_w, int dst_h, int new_w, int new_h, int pad_x, int pad_y, \
    float m00, float m01, float m02, float m10, float m11, float m12, float m20, float m21, float m22, \
    float o0, float o1, float o2, float a0, float a1, float a2, float b0, float b1, float b2,       \
    float p0, float p1, float p2

#define VI_LETTERBOX_CALL                                                                          \
  const ViColour colour = {m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2};                \
  vi_letterbox_nv12(y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h, chroma_w, chroma_h,         \
                    chroma_dx, rx0, ry0, rw, rh, out, index, dst_w, dst_h, new_w, new_h, pad_x,     \
                    pad_y, colour, a0, a1, a2, b0, b1, b2, p0, p1, p2)

extern "C" __global__ void letterbox_nv12_f32(VI_LETTERBOX_PARAMS(float)) { VI_LETTERBOX_CALL; }

extern "C" __global__ void letterbox_nv12_f16(VI_LETTERBOX_PARAMS(vi_half)) { VI_LETTERBOX_CALL; }
