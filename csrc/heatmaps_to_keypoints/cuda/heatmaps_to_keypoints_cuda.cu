// CUDA kernel of maskrcnn::heatmaps_to_keypoints (geometry, weights and rounding:
// heatmaps_to_keypoints_common.h, fused form). One block per (detection, keypoint): its threads
// stride over the box's output pixels, evaluating each resized value directly from the 4 x 4
// heatmap cells and weights it reads, and keep their own arg-max; a shared-memory reduction then
// picks the block's (larger value, NaN first, smaller index on ties). float, double, half and
// bfloat16 maps; values in at::opmath_type (float for the 16-bit types).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "heatmaps_to_keypoints/heatmaps_to_keypoints_common.h"

namespace maskrcnn {
namespace {

namespace h2k = heatmaps_to_keypoints;

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void heatmaps_to_keypoints_kernel(const scalar_t* __restrict__ maps,
                                             const at::opmath_type<scalar_t>* __restrict__ boxes,
                                             at::opmath_type<scalar_t>* __restrict__ xy,
                                             at::opmath_type<scalar_t>* __restrict__ scores, int64_t num_keypoints,
                                             int64_t height, int64_t width) {
  using T = at::opmath_type<scalar_t>;
  __shared__ T best_values[kThreads];
  __shared__ int64_t best_indices[kThreads];

  const int64_t task = blockIdx.x;  // n * num_keypoints + k
  const T* box = boxes + 4 * (task / num_keypoints);
  const h2k::Axis<T> ax = h2k::make_axis<T>(box[0], box[2]);
  const h2k::Axis<T> ay = h2k::make_axis<T>(box[1], box[3]);
  const scalar_t* map = maps + task * height * width;
  const int64_t total = ax.size * ay.size;

  T best = T(0);
  int64_t best_index = -1;
  for (int64_t index = threadIdx.x; index < total; index += blockDim.x) {
    const int64_t y = index / ax.size, x = index % ax.size;
    const h2k::Tap<T> tx = h2k::cubic_tap<true, T>(width, ax.size, x);
    const h2k::Tap<T> ty = h2k::cubic_tap<true, T>(height, ay.size, y);
    T row[4];
    for (int j = 0; j < 4; ++j) {
      const scalar_t* src = map + ty.index[j] * width;
      row[j] = h2k::sum4<true, T>(static_cast<T>(src[tx.index[0]]), tx.weight[0], static_cast<T>(src[tx.index[1]]),
                                  tx.weight[1], static_cast<T>(src[tx.index[2]]), tx.weight[2],
                                  static_cast<T>(src[tx.index[3]]), tx.weight[3]);
    }
    const T value = h2k::sum4<true, T>(row[0], ty.weight[0], row[1], ty.weight[1], row[2], ty.weight[2], row[3],
                                       ty.weight[3]);
    if (best_index < 0 || h2k::replaces(value, index, best, best_index)) {
      best = value;
      best_index = index;
    }
  }
  best_values[threadIdx.x] = best;
  best_indices[threadIdx.x] = best_index;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const T other = best_values[threadIdx.x + stride];
      const int64_t other_index = best_indices[threadIdx.x + stride];
      const T mine = best_values[threadIdx.x];
      const int64_t mine_index = best_indices[threadIdx.x];
      if (other_index >= 0 && (mine_index < 0 || h2k::replaces(other, other_index, mine, mine_index))) {
        best_values[threadIdx.x] = other;
        best_indices[threadIdx.x] = other_index;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int64_t peak = best_indices[0];  // total >= 1: every box has at least one pixel
    xy[3 * task + 0] = h2k::pixel_centre(ax, peak % ax.size);
    xy[3 * task + 1] = h2k::pixel_centre(ay, peak / ax.size);
    xy[3 * task + 2] = T(1);
    scores[task] = best_values[0];
  }
}

std::tuple<at::Tensor, at::Tensor> heatmaps_to_keypoints_cuda(const at::Tensor& maps_in, const at::Tensor& rois) {
  h2k::check_args(maps_in, rois);
  TORCH_CHECK(maps_in.is_cuda(), "heatmaps_to_keypoints: maps must be a CUDA tensor here, got ", maps_in.device());
  c10::cuda::CUDAGuard guard(maps_in.device());
  const at::ScalarType compute_type = at::toOpMathType(maps_in.scalar_type());
  at::Tensor xy, scores;
  std::tie(xy, scores) = h2k::empty_outputs(maps_in, compute_type);
  const int64_t tasks = scores.numel();
  if (tasks == 0) return {xy, scores};
  TORCH_CHECK(tasks <= static_cast<int64_t>(INT32_MAX), "heatmaps_to_keypoints: too many heatmaps (", tasks, ")");
  const at::Tensor maps = maps_in.contiguous();
  const at::Tensor boxes = rois.to(compute_type).contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "heatmaps_to_keypoints_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    heatmaps_to_keypoints_kernel<scalar_t><<<static_cast<unsigned int>(tasks), kThreads, 0, stream>>>(
        maps.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(), xy.mutable_data_ptr<T>(),
        scores.mutable_data_ptr<T>(), maps.size(1), maps.size(2), maps.size(3));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {xy, scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("heatmaps_to_keypoints", TORCH_FN(heatmaps_to_keypoints_cuda));
}

}  // namespace maskrcnn
