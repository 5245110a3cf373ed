// RoIPool on CUDA, forward and backward: one thread per output element (grid-stride loops).
// float, double, half and bfloat16. The backward pass scatters through argmax with atomics into an
// opmath-typed (float or double) buffer, converted to the grad dtype at the end. RoIs whose batch
// index is outside [0, N) give zeros and argmax -1 (checking would need a device sync).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "roi_align/roi_common.h"

namespace maskrcnn {
namespace {

constexpr int kThreads = 256;

int grid_size(int64_t elements) {
  return static_cast<int>(std::min<int64_t>((elements + kThreads - 1) / kThreads, 1 << 16));
}

struct PoolShape {
  int batch_size, channels, height, width, pooled_height, pooled_width;
};

// Batch index of output element `index`'s RoI (-1 when out of range) and its plane's channel.
template <typename scalar_t>
__device__ inline int batch_of(int64_t index, const scalar_t* rois, const PoolShape& s, int64_t* k, int* c) {
  const int64_t bins = int64_t(s.pooled_height) * s.pooled_width;
  *c = static_cast<int>((index / bins) % s.channels);
  *k = index / bins / s.channels;
  const float batch = static_cast<float>(rois[*k * 5]);
  return (batch >= 0.f && batch < static_cast<float>(s.batch_size)) ? static_cast<int>(batch) : -1;
}

template <typename scalar_t, typename acc_t>
__global__ void roi_pool_forward_kernel(
    int64_t total, const scalar_t* __restrict__ input, const scalar_t* __restrict__ rois, acc_t spatial_scale,
    PoolShape s, scalar_t* __restrict__ output, int* __restrict__ argmax) {
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    int64_t k;
    int c;
    const int n = batch_of(index, rois, s, &k, &c);
    const int pw = static_cast<int>(index % s.pooled_width);
    const int ph = static_cast<int>((index / s.pooled_width) % s.pooled_height);
    const scalar_t* roi = rois + k * 5;
    int h0 = 0, h1 = 0, w0 = 0, w1 = 0;
    if (n >= 0) {
      const int x1 = static_cast<int>(::round(static_cast<acc_t>(roi[1]) * spatial_scale));
      const int y1 = static_cast<int>(::round(static_cast<acc_t>(roi[2]) * spatial_scale));
      const int x2 = static_cast<int>(::round(static_cast<acc_t>(roi[3]) * spatial_scale));
      const int y2 = static_cast<int>(::round(static_cast<acc_t>(roi[4]) * spatial_scale));
      const acc_t bin_h = static_cast<acc_t>(max(y2 - y1 + 1, 1)) / static_cast<acc_t>(s.pooled_height);
      const acc_t bin_w = static_cast<acc_t>(max(x2 - x1 + 1, 1)) / static_cast<acc_t>(s.pooled_width);
      roi::pool_bin<acc_t>(ph, y1, bin_h, s.height, &h0, &h1);
      roi::pool_bin<acc_t>(pw, x1, bin_w, s.width, &w0, &w1);
    }
    const bool empty = h1 <= h0 || w1 <= w0;
    acc_t best = empty ? acc_t(0) : -std::numeric_limits<acc_t>::max();
    int best_index = -1;
    if (!empty) {
      const scalar_t* plane = input + (int64_t(n) * s.channels + c) * s.height * s.width;
      for (int h = h0; h < h1; ++h) {
        for (int w = w0; w < w1; ++w) {
          const int pixel = h * s.width + w;
          const acc_t value = static_cast<acc_t>(plane[pixel]);
          if (value > best) {
            best = value;
            best_index = pixel;
          }
        }
      }
    }
    output[index] = static_cast<scalar_t>(best);
    argmax[index] = best_index;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void roi_pool_backward_kernel(
    int64_t total, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ rois,
    const int* __restrict__ argmax, PoolShape s, acc_t* __restrict__ grad_input) {
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    int64_t k;
    int c;
    const int n = batch_of(index, rois, s, &k, &c);
    const int pixel = argmax[index];
    if (n < 0 || pixel < 0 || pixel >= s.height * s.width) continue;
    gpuAtomicAdd(grad_input + (int64_t(n) * s.channels + c) * s.height * s.width + pixel,
                 static_cast<acc_t>(grad[index]));
  }
}

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width) {
  roi::check_forward_args("roi_pool", input, rois, spatial_scale, pooled_height, pooled_width);
  TORCH_CHECK(
      input.size(2) * input.size(3) <= std::numeric_limits<int>::max(),
      "roi_pool: an input plane is too large for int32 argmax indices");
  c10::cuda::CUDAGuard guard(input.device());
  auto output = at::empty({rois.size(0), input.size(1), pooled_height, pooled_width}, input.options());
  auto argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
  const int64_t total = output.numel();
  if (total == 0) return {output, argmax};
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  const PoolShape shape{
      static_cast<int>(input.size(0)), static_cast<int>(input.size(1)), static_cast<int>(input.size(2)),
      static_cast<int>(input.size(3)), static_cast<int>(pooled_height), static_cast<int>(pooled_width)};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_pool_forward_kernel<scalar_t, acc_t><<<grid_size(total), kThreads, 0, stream>>>(
        total, input_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(),
        static_cast<acc_t>(spatial_scale), shape, output.mutable_data_ptr<scalar_t>(),
        argmax.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {output, argmax};
}

at::Tensor roi_pool_backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  roi::check_backward_args(
      "_roi_pool_backward", grad, rois, pooled_height, pooled_width, batch_size, channels, height, width);
  TORCH_CHECK(
      argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt && argmax.device() == grad.device(),
      "_roi_pool_backward: argmax must be an int32 tensor shaped like grad, on its device");
  c10::cuda::CUDAGuard guard(grad.device());
  const auto acc_dtype = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_input = at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc_dtype));
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input.to(grad.scalar_type());
  const auto grad_c = grad.contiguous();
  const auto rois_c = rois.contiguous();
  const auto argmax_c = argmax.contiguous();
  const PoolShape shape{
      static_cast<int>(batch_size), static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width),
      static_cast<int>(pooled_height), static_cast<int>(pooled_width)};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi_pool_backward_kernel<scalar_t, acc_t><<<grid_size(total), kThreads, 0, stream>>>(
        total, grad_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(),
        argmax_c.const_data_ptr<int>(), shape, grad_input.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("roi_pool", TORCH_FN(roi_pool_forward_cuda));
  m.impl("_roi_pool_backward", TORCH_FN(roi_pool_backward_cuda));
}

}  // namespace maskrcnn
