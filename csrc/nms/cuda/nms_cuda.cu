// CUDA kernels of maskrcnn::nms and maskrcnn::batched_nms.
//
// The boxes are sorted by score (stable, so equal scores keep the lower index first). One kernel
// fills a bit matrix: bit j of row i says that box i suppresses the later box j (they intersect,
// IoU > threshold and, for batched_nms, have the same idx). Each thread block handles 64 rows x 64
// columns (one 64-bit word per row). The greedy pass over the rows is a short host loop over the
// copied matrix. Coordinates are computed in float for half / bfloat16 (at::acc_type).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "nms/nms_checks.h"

namespace maskrcnn {
namespace {

constexpr int kBoxesPerBlock = 64;  // = bits in a mask word

template <typename T>
__device__ __forceinline__ bool box_suppresses(const T* a, const T* b, T thr, T offset) {
  T w = max(T(0), min(a[2], b[2]) - max(a[0], b[0]) + offset);
  T h = max(T(0), min(a[3], b[3]) - max(a[1], b[1]) + offset);
  T inter = w * h;
  T area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset);
  T area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset);
  return inter > T(0) && inter > thr * (area_a + area_b - inter);
}

// boxes: [n, 4] sorted by score; idxs: [n] sorted the same way, or nullptr (one category).
template <typename scalar_t>
__global__ void nms_mask_kernel(int64_t n, const scalar_t* __restrict__ boxes, const int64_t* __restrict__ idxs,
                                float iou_threshold, float offset, int64_t col_blocks,
                                unsigned long long* __restrict__ mask) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (row_block > col_block) return;  // only later boxes can be suppressed

  const int64_t col_start = col_block * kBoxesPerBlock;
  const int64_t rows_left = n - row_block * kBoxesPerBlock, cols_left = n - col_start;
  const int row_size = static_cast<int>(rows_left < kBoxesPerBlock ? rows_left : kBoxesPerBlock);
  const int col_size = static_cast<int>(cols_left < kBoxesPerBlock ? cols_left : kBoxesPerBlock);

  __shared__ acc_t col_boxes[kBoxesPerBlock][4];
  __shared__ int64_t col_idxs[kBoxesPerBlock];
  if (threadIdx.x < col_size) {
    const int64_t j = col_start + threadIdx.x;
#pragma unroll
    for (int c = 0; c < 4; ++c) col_boxes[threadIdx.x][c] = static_cast<acc_t>(boxes[j * 4 + c]);
    col_idxs[threadIdx.x] = idxs ? idxs[j] : 0;
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int64_t i = row_block * kBoxesPerBlock + threadIdx.x;
    acc_t row_box[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) row_box[c] = static_cast<acc_t>(boxes[i * 4 + c]);
    const int64_t row_idx = idxs ? idxs[i] : 0;
    const acc_t thr = static_cast<acc_t>(iou_threshold), off = static_cast<acc_t>(offset);
    unsigned long long bits = 0;
    const int start = (row_block == col_block) ? threadIdx.x + 1 : 0;
    for (int j = start; j < col_size; ++j) {
      if (col_idxs[j] == row_idx && box_suppresses(row_box, col_boxes[j], thr, off)) bits |= 1ULL << j;
    }
    mask[i * col_blocks + col_block] = bits;
  }
}

// Greedy pass over the bit matrix (on the host): the ranks of the kept boxes, in order.
std::vector<int64_t> scan_mask(const at::Tensor& mask_cpu, int64_t n, int64_t col_blocks) {
  const unsigned long long* mask = reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(col_blocks, 0);
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / kBoxesPerBlock;
    if (removed[block] & (1ULL << (i % kBoxesPerBlock))) continue;
    kept.push_back(i);
    const unsigned long long* row = mask + i * col_blocks;
    for (int64_t b = block; b < col_blocks; ++b) removed[b] |= row[b];
  }
  return kept;
}

at::Tensor nms_common(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor* idxs,
                      double iou_threshold, bool legacy_plus_one) {
  c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  at::Tensor sorted_idxs;
  if (idxs) sorted_idxs = idxs->to(at::kLong).index_select(0, order).contiguous();

  const int64_t col_blocks = (n + kBoxesPerBlock - 1) / kBoxesPerBlock;
  TORCH_CHECK(col_blocks <= 65535, "nms: too many boxes for the CUDA kernel (", n, ", at most ",
              int64_t(65535) * kBoxesPerBlock, ")");
  at::Tensor mask = at::empty({n * col_blocks}, boxes.options().dtype(at::kLong));
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(col_blocks));
  const dim3 block(kBoxesPerBlock);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sorted_boxes.scalar_type(), "nms_cuda", [&] {
    nms_mask_kernel<scalar_t><<<grid, block, 0, stream>>>(
        n, sorted_boxes.data_ptr<scalar_t>(), idxs ? sorted_idxs.data_ptr<int64_t>() : nullptr,
        static_cast<float>(iou_threshold), legacy_plus_one ? 1.0f : 0.0f, col_blocks,
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  std::vector<int64_t> kept = scan_mask(mask.cpu(), n, col_blocks);
  at::Tensor kept_ranks = at::tensor(kept, at::TensorOptions().dtype(at::kLong)).to(boxes.device());
  return order.index_select(0, kept_ranks);
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, bool legacy_plus_one) {
  nms_detail::check_boxes_and_scores(boxes, scores, "nms");
  TORCH_CHECK(boxes.is_cuda(), "nms: boxes must be a CUDA tensor for the CUDA kernel");
  return nms_common(boxes, scores, nullptr, iou_threshold, legacy_plus_one);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold, bool legacy_plus_one) {
  nms_detail::check_boxes_and_scores(boxes, scores, "batched_nms");
  nms_detail::check_idxs(boxes, idxs, "batched_nms");
  TORCH_CHECK(boxes.is_cuda(), "batched_nms: boxes must be a CUDA tensor for the CUDA kernel");
  return nms_common(boxes, scores, &idxs, iou_threshold, legacy_plus_one);
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
}

}  // namespace maskrcnn
