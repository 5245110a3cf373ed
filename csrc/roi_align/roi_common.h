// Shared by the RoIAlign and RoIPool kernels (CPU and CUDA): argument checks and the
// per-axis sampling geometry. Host/device-neutral: includes nothing CUDA-specific.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <string>

namespace maskrcnn {
namespace roi {

inline std::string shape_string(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d > 0) out += ", ";
    out += std::to_string(t.size(d));
  }
  return out + "]";
}

// input: Tensor[N, C, H, W]; rois: Tensor[K, 5] (batch_index, x1, y1, x2, y2), same dtype and device.
inline void check_forward_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got ", shape_string(input));
  TORCH_CHECK(
      rois.dim() == 2 && rois.size(1) == 5,
      op, ": rois must be a 2-D tensor of shape [K, 5] (batch_index, x1, y1, x2, y2), got ", shape_string(rois));
  TORCH_CHECK(
      at::isFloatingType(input.scalar_type()), op, ": input must be a floating-point tensor, got ",
      input.scalar_type());
  TORCH_CHECK(
      rois.scalar_type() == input.scalar_type(), op, ": rois dtype (", rois.scalar_type(),
      ") must match input dtype (", input.scalar_type(), ")");
  TORCH_CHECK(
      rois.device() == input.device(), op, ": input and rois must be on the same device, got ", input.device(),
      " and ", rois.device());
  TORCH_CHECK(
      pooled_height > 0 && pooled_width > 0, op, ": output size must be positive, got (", pooled_height, ", ",
      pooled_width, ")");
  TORCH_CHECK(spatial_scale > 0, op, ": spatial_scale must be positive, got ", spatial_scale);
}

// grad: Tensor[K, C, pooled_height, pooled_width] for rois: Tensor[K, 5].
inline void check_backward_args(
    const char* op,
    const at::Tensor& grad,
    const at::Tensor& rois,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  TORCH_CHECK(
      rois.dim() == 2 && rois.size(1) == 5,
      op, ": rois must be a 2-D tensor of shape [K, 5] (batch_index, x1, y1, x2, y2), got ", shape_string(rois));
  TORCH_CHECK(
      grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels && grad.size(2) == pooled_height &&
          grad.size(3) == pooled_width,
      op, ": grad must have shape [", rois.size(0), ", ", channels, ", ", pooled_height, ", ", pooled_width,
      "], got ", shape_string(grad));
  TORCH_CHECK(
      rois.scalar_type() == grad.scalar_type(), op, ": rois dtype (", rois.scalar_type(),
      ") must match grad dtype (", grad.scalar_type(), ")");
  TORCH_CHECK(
      rois.device() == grad.device(), op, ": grad and rois must be on the same device, got ", grad.device(),
      " and ", rois.device());
  TORCH_CHECK(
      batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0,
      op, ": input sizes must be non-negative, got [", batch_size, ", ", channels, ", ", height, ", ", width, "]");
}

// Where the samples of one RoIAlign output axis lie, in feature-map coordinates: sample i of bin b
// is at start + b * bin_size + (i + 0.5) * bin_size / grid, for i in [0, grid).
template <typename T>
struct AxisGeometry {
  T start;
  T bin_size;
  int grid;  // samples per bin along this axis; <= 0 means none (the bin reads as 0)
};

// lo, hi: the RoI's extent on this axis in image coordinates.
// aligned=false: legacy RoIAlign (extent clamped to >= 1 feature pixel, no half-pixel shift);
// aligned=true: ROIAlignV2 (shift by -0.5, no clamp).
template <typename T>
C10_HOST_DEVICE inline AxisGeometry<T> axis_geometry(
    T lo, T hi, T spatial_scale, int pooled, int sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  const T start = lo * spatial_scale - offset;
  T extent = hi * spatial_scale - offset - start;
  if (!aligned && extent < T(1)) extent = T(1);
  AxisGeometry<T> g;
  g.start = start;
  g.bin_size = extent / static_cast<T>(pooled);
  g.grid = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(::ceil(extent / static_cast<T>(pooled)));
  return g;
}

// The two grid lines a bilinear sample at `coord` reads along an axis of `size` pixels, and their
// weights. Samples beyond one pixel outside the map read nothing; samples near the border clamp.
template <typename T>
struct LinearTap {
  bool valid;
  int low;
  int high;
  T low_weight;
  T high_weight;
};

template <typename T>
C10_HOST_DEVICE inline LinearTap<T> linear_tap(T coord, int size) {
  LinearTap<T> tap;
  if (coord < T(-1) || coord > static_cast<T>(size)) {
    tap.valid = false;
    tap.low = tap.high = 0;
    tap.low_weight = tap.high_weight = T(0);
    return tap;
  }
  tap.valid = true;
  if (coord <= T(0)) coord = T(0);
  int low = static_cast<int>(coord);
  int high;
  if (low >= size - 1) {
    low = high = size - 1;
    coord = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  const T frac = coord - static_cast<T>(low);
  tap.low = low;
  tap.high = high;
  tap.low_weight = T(1) - frac;
  tap.high_weight = frac;
  return tap;
}

// RoIPool's bin b along an axis: pixels [begin, end) of the map, clipped to [0, size).
// roi_start: the rounded RoI start; bin_size: rounded RoI extent (+1, >= 1) / pooled.
template <typename T>
C10_HOST_DEVICE inline void pool_bin(int b, int roi_start, T bin_size, int size, int* begin, int* end) {
  int lo = static_cast<int>(::floor(static_cast<T>(b) * bin_size)) + roi_start;
  int hi = static_cast<int>(::ceil(static_cast<T>(b + 1) * bin_size)) + roi_start;
  lo = lo < 0 ? 0 : (lo > size ? size : lo);
  hi = hi < 0 ? 0 : (hi > size ? size : hi);
  *begin = lo;
  *end = hi;
}

}  // namespace roi
}  // namespace maskrcnn
