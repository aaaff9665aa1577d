// Batched crop-and-resize for secondary stages: M boxes (float xyxy, source pixels, continuous
// coordinates) from one NV12 frame -> (M, 3, out_h, out_w) float32 RGB in [0, 1], CHW.
// One thread per output pixel per crop (1-D grid over M * out_h * out_w).
// Output pixel (j, i) of box (x1, y1, x2, y2) samples x = x1 + ((j + 0.5) / out_w) * (x2 - x1),
// y likewise; boxes are not clipped (sampling clamps at the frame edge). Value:
// clamp((M @ (yuv - o)) * (1/255), 0, 1). Chroma (chroma_w x chroma_h pairs, chroma_dx) as in
// nv12_common.cuh. With chroma_dx = 0, the sampling of vidinfer.preprocess.crops.crop_resize_yuv420;
// NumPy reference of this exact arithmetic: vidinfer.preprocess.reference.crop_resize_nv12_reference.
#include "nv12_common.cuh"

extern "C" __global__ void crop_resize_nv12_f32(
    const vi_u8* __restrict__ y_plane, int y_pitch, const vi_u8* __restrict__ uv_plane, int uv_pitch,
    int src_w, int src_h, int chroma_w, int chroma_h, float chroma_dx,
    const float* __restrict__ boxes, int num_boxes,
    float* __restrict__ out, int out_h, int out_w,
    float m00, float m01, float m02, float m10, float m11, float m12, float m20, float m21, float m22,
    float o0, float o1, float o2) {
  const size_t per_crop = (size_t)out_h * (size_t)out_w;
  const size_t idx = (size_t)blockIdx.x * (size_t)blockDim.x + (size_t)threadIdx.x;
  if (idx >= per_crop * (size_t)num_boxes) return;
  const size_t m = idx / per_crop;
  const size_t rem = idx - m * per_crop;
  const int i = (int)(rem / (size_t)out_w), j = (int)(rem - (size_t)i * (size_t)out_w);
  const float* box = boxes + 4 * m;
  const float x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
  const float sx = x1 + (((float)j + 0.5f) / (float)out_w) * (x2 - x1);
  const float sy = y1 + (((float)i + 0.5f) / (float)out_h) * (y2 - y1);
  const ViColour colour = {m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2};
  const ViRgb c = vi_sample_nv12(y_plane, y_pitch, uv_plane, uv_pitch, src_w, src_h, chroma_w, chroma_h,
                                 chroma_dx, sx, sy, colour);
  const float k = 1.0f / 255.0f;
  float* o = out + m * 3 * per_crop + rem;
  o[0] = vi_clampf(c.r * k, 0.0f, 1.0f);
  o[per_crop] = vi_clampf(c.g * k, 0.0f, 1.0f);
  o[2 * per_crop] = vi_clampf(c.b * k, 0.0f, 1.0f);
}
