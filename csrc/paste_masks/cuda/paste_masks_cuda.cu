// CUDA kernel of maskrcnn::paste_masks (geometry: paste_masks_common.h): one thread per output pixel
// (grid-stride), each computing its detection's window and writing zero outside it. float, double,
// half and bfloat16 masks; interpolation in at::opmath_type (float for the 16-bit types).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "paste_masks/paste_masks_common.h"

namespace maskrcnn {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t, typename out_t>
__global__ void paste_masks_kernel(const scalar_t* __restrict__ masks, const at::opmath_type<scalar_t>* __restrict__ boxes,
                                   out_t* __restrict__ out, int64_t total, int64_t mask_h, int64_t mask_w,
                                   int64_t height, int64_t width, int64_t padding, bool legacy, bool binary,
                                   at::opmath_type<scalar_t> threshold) {
  using T = at::opmath_type<scalar_t>;
  const int64_t cells_h = mask_h + 2 * padding, cells_w = mask_w + 2 * padding;
  const T enlarge_w = static_cast<T>((mask_w + 2.0 * padding) / mask_w);
  const T enlarge_h = static_cast<T>((mask_h + 2.0 * padding) / mask_h);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % width;
    const int64_t y = (index / width) % height;
    const int64_t n = index / (width * height);
    const T* box = boxes + 4 * n;
    const paste_masks::Axis<T> ax = paste_masks::make_axis<T>(box[0], box[2], enlarge_w, cells_w, width, legacy);
    const paste_masks::Axis<T> ay = paste_masks::make_axis<T>(box[1], box[3], enlarge_h, cells_h, height, legacy);
    T value = T(0);
    if (x >= ax.lo && x < ax.hi && y >= ay.lo && y < ay.hi) {
      const paste_masks::Tap<T> tx = paste_masks::make_tap(ax, x, cells_w, legacy);
      const paste_masks::Tap<T> ty = paste_masks::make_tap(ay, y, cells_h, legacy);
      const scalar_t* mask = masks + n * mask_h * mask_w;
      auto cell = [&](int64_t r, int64_t c) {
        return paste_masks::padded_cell<scalar_t, T>(mask, r, c, padding, mask_h, mask_w);
      };
      const T top = cell(ty.i0, tx.i0) * tx.w0 + cell(ty.i0, tx.i1) * tx.w1;
      const T bottom = cell(ty.i1, tx.i0) * tx.w0 + cell(ty.i1, tx.i1) * tx.w1;
      value = top * ty.w0 + bottom * ty.w1;
    }
    out[index] = binary ? static_cast<out_t>(value > threshold) : static_cast<out_t>(value);
  }
}

at::Tensor paste_masks_cuda(const at::Tensor& masks_in, const at::Tensor& boxes_in, int64_t image_height,
                            int64_t image_width, double threshold, int64_t padding, bool legacy_plus_one) {
  paste_masks::check_args(masks_in, boxes_in, image_height, image_width, padding);
  TORCH_CHECK(masks_in.is_cuda(), "paste_masks: masks must be a CUDA tensor here, got ", masks_in.device());
  c10::cuda::CUDAGuard guard(masks_in.device());
  const bool binary = threshold >= 0;
  const int64_t num = masks_in.size(0);
  at::Tensor output = at::empty({num, 1, image_height, image_width},
                                masks_in.options().dtype(binary ? at::kByte : masks_in.scalar_type()));
  const int64_t total = output.numel();
  if (total == 0) return output;
  const at::Tensor masks = masks_in.contiguous();
  const int64_t mask_h = masks.size(2), mask_w = masks.size(3);
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const at::Tensor boxes = boxes_in.to(c10::CppTypeToScalarType<T>::value).contiguous();
    if (binary) {
      paste_masks_kernel<scalar_t, uint8_t><<<blocks, kThreads, 0, stream>>>(
          masks.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(), output.mutable_data_ptr<uint8_t>(), total,
          mask_h, mask_w, image_height, image_width, padding, legacy_plus_one, true, static_cast<T>(threshold));
    } else {
      paste_masks_kernel<scalar_t, scalar_t><<<blocks, kThreads, 0, stream>>>(
          masks.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(), output.mutable_data_ptr<scalar_t>(), total,
          mask_h, mask_w, image_height, image_width, padding, legacy_plus_one, false, static_cast<T>(threshold));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("paste_masks", TORCH_FN(paste_masks_cuda));
}

}  // namespace maskrcnn
