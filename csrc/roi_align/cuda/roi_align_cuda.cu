// RoIAlign on CUDA, forward and backward: one thread per output element (grid-stride loops).
// float, double, half and bfloat16; sums in at::opmath_type (float for the 16-bit types). The
// backward pass scatters with atomics into an opmath-typed buffer, converted to the grad dtype at the
// end. RoIs whose batch index is outside [0, N) give zeros (checking would need a device sync).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "roi_align/roi_common.h"

namespace maskrcnn {
namespace {

constexpr int kThreads = 256;

int grid_size(int64_t elements) {
  return static_cast<int>(std::min<int64_t>((elements + kThreads - 1) / kThreads, 1 << 16));
}

struct AlignShape {
  int batch_size, channels, height, width, pooled_height, pooled_width, sampling_ratio;
  bool aligned;
};

// Calls visit(pixel_index, weight) for every bilinear tap of output bin (ph, pw) of one RoI; weights
// are divided by the number of samples. Returns nothing; out-of-map samples are skipped.
template <typename acc_t, typename Visit>
__device__ inline void for_each_tap(
    const roi::AxisGeometry<acc_t>& gy, const roi::AxisGeometry<acc_t>& gx, int ph, int pw,
    const AlignShape& s, const Visit& visit) {
  const int samples = max(gy.grid * gx.grid, 1);
  const acc_t per_sample = acc_t(1) / static_cast<acc_t>(samples);
  for (int iy = 0; iy < gy.grid; ++iy) {
    const acc_t y = gy.start + static_cast<acc_t>(ph) * gy.bin_size +
        static_cast<acc_t>(iy + .5f) * gy.bin_size / static_cast<acc_t>(gy.grid);
    const auto ty = roi::linear_tap<acc_t>(y, s.height);
    if (!ty.valid) continue;
    for (int ix = 0; ix < gx.grid; ++ix) {
      const acc_t x = gx.start + static_cast<acc_t>(pw) * gx.bin_size +
          static_cast<acc_t>(ix + .5f) * gx.bin_size / static_cast<acc_t>(gx.grid);
      const auto tx = roi::linear_tap<acc_t>(x, s.width);
      if (!tx.valid) continue;
      visit(ty.low * s.width + tx.low, ty.low_weight * tx.low_weight * per_sample);
      visit(ty.low * s.width + tx.high, ty.low_weight * tx.high_weight * per_sample);
      visit(ty.high * s.width + tx.low, ty.high_weight * tx.low_weight * per_sample);
      visit(ty.high * s.width + tx.high, ty.high_weight * tx.high_weight * per_sample);
    }
  }
}

// Output element `index` of [K, C, PH, PW]: its RoI's batch index (or -1) and sampling geometry.
template <typename scalar_t, typename acc_t>
__device__ inline int locate(
    int64_t index, const scalar_t* rois, acc_t spatial_scale, const AlignShape& s, int* c, int* ph, int* pw,
    roi::AxisGeometry<acc_t>* gy, roi::AxisGeometry<acc_t>* gx) {
  *pw = static_cast<int>(index % s.pooled_width);
  *ph = static_cast<int>((index / s.pooled_width) % s.pooled_height);
  *c = static_cast<int>((index / s.pooled_width / s.pooled_height) % s.channels);
  const int64_t k = index / s.pooled_width / s.pooled_height / s.channels;
  const scalar_t* roi = rois + k * 5;
  const acc_t batch = static_cast<acc_t>(roi[0]);
  if (!(batch >= acc_t(0) && batch < static_cast<acc_t>(s.batch_size))) return -1;
  *gy = roi::axis_geometry<acc_t>(
      static_cast<acc_t>(roi[2]), static_cast<acc_t>(roi[4]), spatial_scale, s.pooled_height, s.sampling_ratio,
      s.aligned);
  *gx = roi::axis_geometry<acc_t>(
      static_cast<acc_t>(roi[1]), static_cast<acc_t>(roi[3]), spatial_scale, s.pooled_width, s.sampling_ratio,
      s.aligned);
  return static_cast<int>(batch);
}

template <typename scalar_t, typename acc_t>
__global__ void roi_align_forward_kernel(
    int64_t total, const scalar_t* __restrict__ input, const scalar_t* __restrict__ rois, acc_t spatial_scale,
    AlignShape s, scalar_t* __restrict__ output) {
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    int c, ph, pw;
    roi::AxisGeometry<acc_t> gy, gx;
    const int n = locate(index, rois, spatial_scale, s, &c, &ph, &pw, &gy, &gx);
    acc_t sum = 0;
    if (n >= 0) {
      const scalar_t* plane = input + (int64_t(n) * s.channels + c) * s.height * s.width;
      for_each_tap(gy, gx, ph, pw, s, [&](int pixel, acc_t weight) {
        sum += weight * static_cast<acc_t>(plane[pixel]);
      });
    }
    output[index] = static_cast<scalar_t>(sum);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_kernel(
    int64_t total, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ rois, acc_t spatial_scale,
    AlignShape s, acc_t* __restrict__ grad_input) {
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    int c, ph, pw;
    roi::AxisGeometry<acc_t> gy, gx;
    const int n = locate(index, rois, spatial_scale, s, &c, &ph, &pw, &gy, &gx);
    if (n < 0) continue;
    const acc_t value = static_cast<acc_t>(grad[index]);
    acc_t* plane = grad_input + (int64_t(n) * s.channels + c) * s.height * s.width;
    for_each_tap(gy, gx, ph, pw, s, [&](int pixel, acc_t weight) { gpuAtomicAdd(plane + pixel, value * weight); });
  }
}

at::ScalarType opmath_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor roi_align_forward_cuda(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned) {
  roi::check_forward_args("roi_align", input, rois, spatial_scale, pooled_height, pooled_width);
  c10::cuda::CUDAGuard guard(input.device());
  auto output = at::empty({rois.size(0), input.size(1), pooled_height, pooled_width}, input.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  if (input.size(2) == 0 || input.size(3) == 0) return output.zero_();
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  const AlignShape shape{
      static_cast<int>(input.size(0)), static_cast<int>(input.size(1)), static_cast<int>(input.size(2)),
      static_cast<int>(input.size(3)), static_cast<int>(pooled_height), static_cast<int>(pooled_width),
      static_cast<int>(sampling_ratio), aligned};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_align_forward_kernel<scalar_t, acc_t><<<grid_size(total), kThreads, 0, stream>>>(
        total, input_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(),
        static_cast<acc_t>(spatial_scale), shape, output.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

at::Tensor roi_align_backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned) {
  roi::check_backward_args(
      "_roi_align_backward", grad, rois, pooled_height, pooled_width, batch_size, channels, height, width);
  c10::cuda::CUDAGuard guard(grad.device());
  auto grad_input = at::zeros({batch_size, channels, height, width}, grad.options().dtype(opmath_dtype(grad.scalar_type())));
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input.to(grad.scalar_type());
  const auto grad_c = grad.contiguous();
  const auto rois_c = rois.contiguous();
  const AlignShape shape{
      static_cast<int>(batch_size), static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width),
      static_cast<int>(pooled_height), static_cast<int>(pooled_width), static_cast<int>(sampling_ratio), aligned};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_align_backward_kernel<scalar_t, acc_t><<<grid_size(total), kThreads, 0, stream>>>(
        total, grad_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(),
        static_cast<acc_t>(spatial_scale), shape, grad_input.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("roi_align", TORCH_FN(roi_align_forward_cuda));
  m.impl("_roi_align_backward", TORCH_FN(roi_align_backward_cuda));
}

}  // namespace maskrcnn
