// Shared by the paste_masks kernels (CPU and CUDA): argument checks and the pasting geometry.
//
// With P = M + 2 * padding cells per axis (the padded mask), a box [b1, b2] is enlarged about its
// centre by P / M to [low, high], then per axis:
//   * legacy (maskrcnn-benchmark): the window is the integer box trunc(low) .. trunc(high) (inclusive,
//     length L = max(trunc(high) - trunc(low) + 1, 1)), and the padded mask is resized onto it exactly
//     as F.interpolate(mode="bilinear", align_corners=False): pixel x reads cell
//     u = max((x - start + 0.5) * P / L - 0.5, 0), edge values repeated;
//   * modern (Detectron2): pixel x reads cell u = (x + 0.5 - low) * P / L - 0.5 with L = high - low,
//     taps outside [0, P - 1] contributing zero; pixels floor(low) .. ceil(high) - 1 are written.
// The written range is clipped to the image; every other pixel is zero.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>

namespace maskrcnn {
namespace paste_masks {

inline void check_args(const at::Tensor& masks, const at::Tensor& boxes, int64_t image_height,
                       int64_t image_width, int64_t padding) {
  TORCH_CHECK(masks.dim() == 4 && masks.size(1) == 1,
              "paste_masks: masks must be a 4-D tensor of shape [N, 1, M, M], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "paste_masks: boxes must be a 2-D tensor of shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(masks.size(0) == boxes.size(0), "paste_masks: masks and boxes must have the same N, got ",
              masks.size(0), " masks and ", boxes.size(0), " boxes");
  TORCH_CHECK(at::isFloatingType(masks.scalar_type()),
              "paste_masks: masks must be a floating-point tensor, got ", masks.scalar_type());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()),
              "paste_masks: boxes must be a floating-point tensor, got ", boxes.scalar_type());
  TORCH_CHECK(masks.device() == boxes.device(), "paste_masks: masks and boxes must be on the same device, got ",
              masks.device(), " and ", boxes.device());
  TORCH_CHECK(image_height >= 0 && image_width >= 0,
              "paste_masks: image_height and image_width must be >= 0, got ", image_height, " and ", image_width);
  TORCH_CHECK(padding >= 0, "paste_masks: padding must be >= 0, got ", padding);
  TORCH_CHECK(masks.size(0) == 0 || (masks.size(2) > 0 && masks.size(3) > 0),
              "paste_masks: masks must have a non-empty M x M, got ", masks.sizes());
}

// One axis of one detection: where the window maps from, and which pixels [lo, hi) are written.
template <typename T>
struct Axis {
  T start;       // image coordinate of the padded mask's first cell edge
  T cell_scale;  // padded-mask cells per pixel, P / L
  int64_t lo, hi;
};

// Clamps v (in pixels) to [0, size]; NaN gives 0 (an empty window).
template <typename T>
C10_HOST_DEVICE inline int64_t clamp_pixel(T v, int64_t size) {
  if (!(v > T(0))) return 0;
  if (!(v < static_cast<T>(size))) return size;
  return static_cast<int64_t>(v);
}

// b1, b2: the box's coordinates on this axis; mask_cells: M; cells: P = M + 2 * padding.
template <typename T>
C10_HOST_DEVICE inline Axis<T> make_axis(T b1, T b2, T enlarge, int64_t cells, int64_t size, bool legacy) {
  const T centre = (b1 + b2) * T(0.5);
  const T half = (b2 - b1) * T(0.5) * enlarge;
  const T low = centre - half, high = centre + half;
  Axis<T> axis;
  if (legacy) {
    const T low_int = ::trunc(low), high_int = ::trunc(high);
    T length = high_int - low_int + T(1);
    length = length < T(1) ? T(1) : length;
    axis.start = low_int;
    axis.cell_scale = static_cast<T>(cells) / length;
    axis.lo = clamp_pixel(low_int, size);
    axis.hi = clamp_pixel(high_int + T(1), size);  // as maskrcnn-benchmark: nothing for an inverted box
  } else {
    T length = high - low;
    length = length < T(1e-6) ? T(1e-6) : length;
    axis.start = low;
    axis.cell_scale = static_cast<T>(cells) / length;
    axis.lo = clamp_pixel(::floor(low), size);
    axis.hi = clamp_pixel(::ceil(high), size);
  }
  if (axis.hi < axis.lo) axis.hi = axis.lo;
  return axis;
}

// The two bilinear taps of pixel `pixel` on an axis: cells i0, i1 in [0, P) and their weights.
template <typename T>
struct Tap {
  int64_t i0, i1;
  T w0, w1;
};

template <typename T>
C10_HOST_DEVICE inline Tap<T> make_tap(const Axis<T>& axis, int64_t pixel, int64_t cells, bool legacy) {
  Tap<T> tap;
  if (legacy) {
    // F.interpolate's source index: the offset from the window start is an exact integer
    const T offset = static_cast<T>(pixel) - axis.start;
    T u = axis.cell_scale * (offset + T(0.5)) - T(0.5);
    u = u < T(0) ? T(0) : u;
    int64_t i0 = static_cast<int64_t>(::floor(u));
    i0 = i0 > cells - 1 ? cells - 1 : i0;
    T lambda = u - static_cast<T>(i0);
    lambda = lambda < T(0) ? T(0) : (lambda > T(1) ? T(1) : lambda);
    tap.i0 = i0;
    tap.i1 = i0 < cells - 1 ? i0 + 1 : i0;
    tap.w0 = T(1) - lambda;
    tap.w1 = lambda;
  } else {
    const T u = (static_cast<T>(pixel) + T(0.5) - axis.start) * axis.cell_scale - T(0.5);
    const T low = ::floor(u);
    const T frac = u - low;
    const int64_t i0 = static_cast<int64_t>(low);
    const bool in0 = i0 >= 0 && i0 <= cells - 1;
    const bool in1 = i0 + 1 >= 0 && i0 + 1 <= cells - 1;
    tap.i0 = in0 ? i0 : 0;
    tap.i1 = in1 ? i0 + 1 : 0;
    tap.w0 = in0 ? T(1) - frac : T(0);
    tap.w1 = in1 ? frac : T(0);
  }
  return tap;
}

// Cell (r, c) of the padded mask: the mask value, or zero in the padding.
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline T padded_cell(const scalar_t* mask, int64_t r, int64_t c, int64_t padding,
                                     int64_t mask_h, int64_t mask_w) {
  r -= padding;
  c -= padding;
  if (r < 0 || c < 0 || r >= mask_h || c >= mask_w) return T(0);
  return static_cast<T>(mask[r * mask_w + c]);
}

}  // namespace paste_masks
}  // namespace maskrcnn
