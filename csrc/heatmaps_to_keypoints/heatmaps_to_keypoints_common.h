// Shared by the heatmaps_to_keypoints kernels (CPU and CUDA): argument checks, each box's output
// grid, and F.interpolate's bicubic taps (mode="bicubic", align_corners=False, size given).
//
// A detection's box (x1, y1, x2, y2) covers w = max(x2 - x1, 1) by h = max(y2 - y1, 1) pixels; its
// heatmap (H x W cells) is resized to ceil(h) x ceil(w) output pixels. Output pixel d of an axis
// reads the source position u = scale * (d + 0.5) - 0.5 with scale = in / out (not clamped: cubic),
// i = min(floor(u), in - 1), t = clamp(u - i, 0, 1), the four cells i - 1 .. i + 2 (clamped to
// [0, in - 1]) weighted by Keys' cubic convolution with A = -0.75:
//   near(x) = ((A + 2) x - (A + 3)) x x + 1            for the taps i (x = t) and i + 1 (x = 1 - t)
//   far(x)  = ((A x - 5 A) x + 8 A) x - 4 A            for the taps i - 1 (x = t + 1) and i + 2 (x = 2 - t)
// Each output value sums the four columns of each of the four rows, then the four rows.
//
// Rounding: ATen's CPU kernel (UpSampleKernel.cpp) evaluates these expressions in the scalar type
// with GCC's floating-point contraction, which turns some of them into fused multiply-adds in its
// AVX2 / AVX-512 builds and none in its default build. `kFused` selects which of the two to
// reproduce, operation for operation, so the resized values (and with them the arg-max and the
// scores) are bit-identical to F.interpolate's on the CPU:
//   fused:  u = fma(scale, d + 0.5, -0.5); near: fma(A + 2, x, -(A + 3)) * x * x + 1;
//           far: fma(fma(A, x, -5 A), x, 8 A) * x - 4 A; four-tap sum: fma(v0, w0, v1 * w1),
//           then + v2 w2 and + v3 w3 each as an fma;
//   plain:  every product and sum rounded on its own, left to right.
// The CUDA kernel uses the fused form (GPUs have fused multiply-add everywhere).
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <math.h>
#include <cstdint>

namespace maskrcnn {
namespace heatmaps_to_keypoints {

inline void check_args(const at::Tensor& maps, const at::Tensor& rois) {
  TORCH_CHECK(maps.dim() == 4, "heatmaps_to_keypoints: maps must be a 4-D tensor of shape [N, K, H, W], got ",
              maps.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 4,
              "heatmaps_to_keypoints: rois must be a 2-D tensor of shape [N, 4], got ", rois.sizes());
  TORCH_CHECK(maps.size(0) == rois.size(0), "heatmaps_to_keypoints: maps and rois must have the same N, got ",
              maps.size(0), " heatmaps and ", rois.size(0), " rois");
  TORCH_CHECK(at::isFloatingType(maps.scalar_type()),
              "heatmaps_to_keypoints: maps must be a floating-point tensor, got ", maps.scalar_type());
  TORCH_CHECK(at::isFloatingType(rois.scalar_type()),
              "heatmaps_to_keypoints: rois must be a floating-point tensor, got ", rois.scalar_type());
  TORCH_CHECK(maps.device() == rois.device(), "heatmaps_to_keypoints: maps and rois must be on the same device, got ",
              maps.device(), " and ", rois.device());
  TORCH_CHECK(maps.size(0) * maps.size(1) == 0 || (maps.size(2) > 0 && maps.size(3) > 0),
              "heatmaps_to_keypoints: maps must have a non-empty H x W, got ", maps.sizes());
  TORCH_CHECK(rois.numel() == 0 || at::isfinite(rois).all().item<bool>(),
              "heatmaps_to_keypoints: rois must be finite");
}

// Outputs: xy Tensor[N, K, 3] (x, y, 1) and scores Tensor[N, K] in the maps' compute type T.
inline std::tuple<at::Tensor, at::Tensor> empty_outputs(const at::Tensor& maps, at::ScalarType compute_type) {
  const auto options = maps.options().dtype(compute_type);
  return {at::empty({maps.size(0), maps.size(1), 3}, options), at::empty({maps.size(0), maps.size(1)}, options)};
}

// ---------------------------------------------------------------- arithmetic with chosen rounding
C10_HOST_DEVICE inline float fused_mul_add(float a, float b, float c) { return fmaf(a, b, c); }
C10_HOST_DEVICE inline double fused_mul_add(double a, double b, double c) { return fma(a, b, c); }

// A product or sum rounded on its own: never contracted into a fused multiply-add with a
// neighbouring operation (nvcc contracts a * b + c by default). On the host these kernels'
// plain code is compiled for the baseline instruction set, which has no FMA to contract into.
C10_HOST_DEVICE inline float rounded_mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
C10_HOST_DEVICE inline double rounded_mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
C10_HOST_DEVICE inline float rounded_add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
C10_HOST_DEVICE inline double rounded_add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// a * b + c, fused or rounded twice.
template <bool kFused, typename T>
C10_HOST_DEVICE inline T mul_add(T a, T b, T c) {
  if constexpr (kFused) {
    return fused_mul_add(a, b, c);
  } else {
    return rounded_add(rounded_mul(a, b), c);
  }
}

// v0 w0 + v1 w1 + v2 w2 + v3 w3 in F.interpolate's order (see the top of this file).
template <bool kFused, typename T>
C10_HOST_DEVICE inline T sum4(T v0, T w0, T v1, T w1, T v2, T w2, T v3, T w3) {
  T sum;
  if constexpr (kFused) {
    sum = fused_mul_add(v0, w0, rounded_mul(v1, w1));
  } else {
    sum = rounded_add(rounded_mul(v0, w0), rounded_mul(v1, w1));
  }
  sum = mul_add<kFused>(v2, w2, sum);
  return mul_add<kFused>(v3, w3, sum);
}

// ---------------------------------------------------------------- geometry
// One axis of one detection: the box starts at `start`, spans `extent` >= 1 pixels and is
// resized onto `size` = ceil(extent) output pixels.
template <typename T>
struct Axis {
  T start;
  T extent;
  int64_t size;
};

template <typename T>
C10_HOST_DEVICE inline Axis<T> make_axis(T low, T high) {
  T extent = high - low;
  extent = extent < T(1) ? T(1) : extent;
  Axis<T> axis;
  axis.start = low;
  axis.extent = extent;
  axis.size = static_cast<int64_t>(::ceil(static_cast<double>(extent)));
  return axis;
}

// Image coordinate of output pixel `cell`'s centre: start + (cell + 0.5) * extent / size.
template <typename T>
C10_HOST_DEVICE inline T pixel_centre(const Axis<T>& axis, int64_t cell) {
  const T step = axis.extent / static_cast<T>(axis.size);
  return rounded_add(rounded_mul(static_cast<T>(cell) + T(0.5), step), axis.start);
}

// ---------------------------------------------------------------- bicubic taps
template <typename T>
struct Tap {
  int64_t index[4];
  T weight[4];
};

template <bool kFused, typename T>
C10_HOST_DEVICE inline T cubic_near(T x) {
  const T A = T(-0.75);
  const T inner = mul_add<kFused>(A + T(2), x, -(A + T(3)));
  return rounded_add(rounded_mul(rounded_mul(inner, x), x), T(1));
}

template <bool kFused, typename T>
C10_HOST_DEVICE inline T cubic_far(T x) {
  const T A = T(-0.75);
  T value = mul_add<kFused>(A, x, -(T(5) * A));
  value = mul_add<kFused>(value, x, T(8) * A);
  return rounded_add(rounded_mul(value, x), -(T(4) * A));
}

// The taps of output pixel `dst` on an axis resized from `in_size` to `out_size` pixels.
template <bool kFused, typename T>
C10_HOST_DEVICE inline Tap<T> cubic_tap(int64_t in_size, int64_t out_size, int64_t dst) {
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);
  const T source = mul_add<kFused>(scale, static_cast<T>(dst) + T(0.5), T(-0.5));
  // ATen floors in float (floorf) whatever the scalar type
  int64_t first = static_cast<int64_t>(floorf(static_cast<float>(source)));
  first = first < in_size - 1 ? first : in_size - 1;
  T t = source - static_cast<T>(first);
  t = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
  Tap<T> tap;
  tap.weight[0] = cubic_far<kFused>(t + T(1));
  tap.weight[1] = cubic_near<kFused>(t);
  const T rest = T(1) - t;
  tap.weight[2] = cubic_near<kFused>(rest);
  tap.weight[3] = cubic_far<kFused>(rest + T(1));
  for (int j = 0; j < 4; ++j) {
    int64_t index = first + j - 1;
    index = index < in_size - 1 ? index : in_size - 1;
    tap.index[j] = index > 0 ? index : 0;
  }
  return tap;
}

// Arg-max rule (torch.argmax over the flattened map): the larger value wins, a NaN beats any number,
// and between equal values (or two NaNs) the smaller row-major index wins.
template <typename T>
C10_HOST_DEVICE inline bool replaces(T value, int64_t index, T best, int64_t best_index) {
  const bool value_nan = value != value, best_nan = best != best;
  if (value_nan || best_nan) {
    return value_nan && (!best_nan || index < best_index);
  }
  return value > best || (value == best && index < best_index);
}

}  // namespace heatmaps_to_keypoints
}  // namespace maskrcnn
