// CUDA kernels of deform_conv2d (forward and backward): float, double, half and bfloat16, with
// sampling arithmetic and gradient accumulation in at::opmath_type (float for half/bfloat16).
//
//   im2col        one thread per (channel, image, output pixel), looping over the kernel taps;
//   input grad    one thread per column entry, scattering into four input pixels with atomics
//                 (into a float buffer for half/bfloat16);
//   offset/mask   one thread per (image, offset group, tap, pixel) summing over the group's channels,
//   grads         so each output element is written by exactly one thread; it also rewrites the
//                 columns (for the weight gradient) from the samples it reads anyway.
// The GEMMs and the loop over batch chunks are in deform_conv_common.h (shared with the CPU path).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "deform_conv/deform_conv_common.h"

namespace maskrcnn {
namespace deform_conv {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}

#define DCN_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

template <typename scalar_t, typename acc_t>
__device__ inline void tap_at(const scalar_t* offset, int64_t group_row, int64_t k, int64_t p, int64_t i, int64_t j,
                              const DeformConvGeometry& g, BilinearTap<acc_t>& tap) {
  const int64_t pixels = g.out_pixels();
  const scalar_t* off = offset + (group_row * g.taps() + k) * 2 * pixels;
  const int64_t oh = p / g.out_width, ow = p % g.out_width;
  const acc_t y = acc_t(tap_base_y(g, oh, i)) + static_cast<acc_t>(off[p]);
  const acc_t x = acc_t(tap_base_x(g, ow, j)) + static_cast<acc_t>(off[pixels + p]);
  make_bilinear_tap<acc_t>(y, x, g.height, g.width, tap);
}

template <typename scalar_t, typename acc_t>
__device__ inline acc_t sample(const scalar_t* plane, const acc_t* weights, const int32_t* index) {
  acc_t value = acc_t(0);
#pragma unroll
  for (int n = 0; n < 4; ++n) value += weights[n] * static_cast<acc_t>(plane[index[n]]);
  return value;
}

template <typename scalar_t>
__global__ void im2col_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, DeformConvGeometry g, scalar_t* __restrict__ columns) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t pixels = g.out_pixels(), taps = g.taps(), column_width = g.batch * pixels;
  const int64_t total = g.channels * g.batch * pixels;
  DCN_GRID_STRIDE_LOOP(e, total) {
    const int64_t p = e % pixels, b = (e / pixels) % g.batch, c = e / (pixels * g.batch);
    const int64_t group_row = b * g.offset_groups + c / g.channels_per_offset_group;
    const scalar_t* plane = input + (b * g.channels + c) * g.height * g.width;
    for (int64_t k = 0; k < taps; ++k) {
      BilinearTap<acc_t> tap;
      tap_at<scalar_t, acc_t>(offset, group_row, k, p, k / g.kernel_w, k % g.kernel_w, g, tap);
      acc_t value = sample(plane, tap.weight, tap.index);
      if (mask) value *= static_cast<acc_t>(mask[(group_row * taps + k) * pixels + p]);
      columns[(c * taps + k) * column_width + b * pixels + p] = static_cast<scalar_t>(value);
    }
  }
}

template <typename scalar_t>
__global__ void col2im_input_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ offset,
                                    const scalar_t* __restrict__ mask, DeformConvGeometry g,
                                    at::opmath_type<scalar_t>* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t pixels = g.out_pixels(), taps = g.taps(), column_width = g.batch * pixels;
  const int64_t total = g.channels * taps * g.batch * pixels;
  DCN_GRID_STRIDE_LOOP(e, total) {
    // e enumerates the column buffer in memory order: row (c * K + k), column (b * P + p).
    const int64_t p = e % pixels, b = (e / pixels) % g.batch, row = e / column_width;
    const int64_t k = row % taps, c = row / taps;
    const int64_t group_row = b * g.offset_groups + c / g.channels_per_offset_group;
    BilinearTap<acc_t> tap;
    tap_at<scalar_t, acc_t>(offset, group_row, k, p, k / g.kernel_w, k % g.kernel_w, g, tap);
    acc_t value = static_cast<acc_t>(grad_columns[e]);
    if (mask) value *= static_cast<acc_t>(mask[(group_row * taps + k) * pixels + p]);
    acc_t* plane = grad_input + (b * g.channels + c) * g.height * g.width;
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      if (tap.weight[n] != acc_t(0)) gpuAtomicAdd(plane + tap.index[n], tap.weight[n] * value);
    }
  }
}

template <typename scalar_t>
__global__ void col2im_coord_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ input,
                                    const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                                    DeformConvGeometry g, scalar_t* __restrict__ grad_offset,
                                    scalar_t* __restrict__ grad_mask, scalar_t* __restrict__ columns) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t pixels = g.out_pixels(), taps = g.taps(), column_width = g.batch * pixels;
  const int64_t total = g.batch * g.offset_groups * taps * pixels;
  DCN_GRID_STRIDE_LOOP(e, total) {
    // e enumerates grad_mask's layout: row ((b * og + group) * K + k), pixel p.
    const int64_t p = e % pixels, row = e / pixels;
    const int64_t k = row % taps, group_row = row / taps;
    const int64_t b = group_row / g.offset_groups, group = group_row % g.offset_groups;
    BilinearTap<acc_t> tap;
    tap_at<scalar_t, acc_t>(offset, group_row, k, p, k / g.kernel_w, k % g.kernel_w, g, tap);
    const acc_t modulation = mask ? static_cast<acc_t>(mask[e]) : acc_t(1);
    acc_t grad_y = 0, grad_x = 0, grad_m = 0;
    for (int64_t cl = 0; cl < g.channels_per_offset_group; ++cl) {
      const int64_t c = group * g.channels_per_offset_group + cl;
      const scalar_t* plane = input + (b * g.channels + c) * g.height * g.width;
      const int64_t column = (c * taps + k) * column_width + b * pixels + p;
      const acc_t grad_value = static_cast<acc_t>(grad_columns[column]);
      acc_t v[4];
#pragma unroll
      for (int n = 0; n < 4; ++n) v[n] = static_cast<acc_t>(plane[tap.index[n]]);
      acc_t value = 0, d_dy = 0, d_dx = 0;
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        value += tap.weight[n] * v[n];
        d_dy += tap.dweight_dy[n] * v[n];
        d_dx += tap.dweight_dx[n] * v[n];
      }
      grad_y += grad_value * d_dy;
      grad_x += grad_value * d_dx;
      grad_m += grad_value * value;
      columns[column] = static_cast<scalar_t>(modulation * value);  // im2col, for the weight gradient
    }
    scalar_t* out = grad_offset + (group_row * taps + k) * 2 * pixels;
    out[p] = static_cast<scalar_t>(grad_y * modulation);
    out[pixels + p] = static_cast<scalar_t>(grad_x * modulation);
    if (grad_mask) grad_mask[e] = static_cast<scalar_t>(grad_m);
  }
}

template <typename T>
const T* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

struct CudaBackend {
  // 64M elements (256 MB in float) per chunk's column buffer.
  static int64_t column_budget() { return int64_t(1) << 26; }

  static void im2col(const at::Tensor& input, const at::Tensor& offset, const std::optional<at::Tensor>& mask,
                     const DeformConvGeometry& g, at::Tensor& columns) {
    const int64_t total = g.channels * g.batch * g.out_pixels();
    if (total == 0) return;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_im2col_cuda", [&] {
      im2col_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
          input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask), g,
          columns.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void col2im(const at::Tensor& grad_columns, const at::Tensor& input, const at::Tensor& offset,
                     const std::optional<at::Tensor>& mask, const DeformConvGeometry& g, at::Tensor grad_input,
                     at::Tensor grad_offset, at::Tensor grad_mask, at::Tensor columns) {
    const int64_t column_entries = grad_columns.numel();
    const int64_t tap_entries = g.batch * g.offset_groups * g.taps() * g.out_pixels();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_col2im_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (column_entries > 0) {
        col2im_input_kernel<scalar_t><<<blocks_for(column_entries), kThreads, 0, stream>>>(
            grad_columns.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask), g,
            grad_input.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (tap_entries > 0) {
        col2im_coord_kernel<scalar_t><<<blocks_for(tap_entries), kThreads, 0, stream>>>(
            grad_columns.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
            data_or_null<scalar_t>(mask), g, grad_offset.data_ptr<scalar_t>(),
            grad_mask.defined() ? grad_mask.data_ptr<scalar_t>() : nullptr, columns.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  }
};

at::Tensor deform_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                              const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                              int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                              int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  TORCH_CHECK(input.is_cuda(), "deform_conv2d: input must be a CUDA tensor for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(input.device());
  const DeformConvParams p{stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups};
  return deform_conv2d_forward_driver<CudaBackend>(input, weight, offset, mask, bias, p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups,
    int64_t offset_groups) {
  TORCH_CHECK(input.is_cuda(), "deform_conv2d backward: input must be a CUDA tensor for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(input.device());
  const DeformConvParams p{stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups};
  return deform_conv2d_backward_driver<CudaBackend>(grad, input, weight, offset, mask, bias, p);
}

}  // namespace
}  // namespace deform_conv
}  // namespace maskrcnn

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("deform_conv2d", TORCH_FN(maskrcnn::deform_conv::deform_conv2d_cuda));
  m.impl("_deform_conv2d_backward", TORCH_FN(maskrcnn::deform_conv::deform_conv2d_backward_cuda));
}
