// Argument checks shared by the CPU and CUDA kernels of nms / batched_nms.
#pragma once

#include <ATen/ATen.h>

namespace maskrcnn {
namespace nms_detail {

// boxes: [N, 4] floating, scores: [N] floating, on one device.
inline void check_boxes_and_scores(const at::Tensor& boxes, const at::Tensor& scores, const char* op) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op,
              ": boxes must be a 2-D tensor of shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1, op, ": scores must be a 1-D tensor of shape [N], got ", scores.sizes());
  TORCH_CHECK(boxes.size(0) == scores.size(0), op,
              ": boxes and scores must have the same number of rows, got boxes ", boxes.sizes(),
              " and scores ", scores.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), op,
              ": boxes must be a floating-point tensor, got ", boxes.scalar_type());
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()), op,
              ": scores must be a floating-point tensor, got ", scores.scalar_type());
  TORCH_CHECK(boxes.device() == scores.device(), op,
              ": boxes and scores must be on the same device, got ", boxes.device(), " and ",
              scores.device());
}

// idxs: [N] integer, on the device of boxes.
inline void check_idxs(const at::Tensor& boxes, const at::Tensor& idxs, const char* op) {
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), op,
              ": idxs must be a 1-D tensor of shape [N] matching boxes [N, 4], got idxs ",
              idxs.sizes(), " and boxes ", boxes.sizes());
  TORCH_CHECK(at::isIntegralType(idxs.scalar_type(), /*includeBool=*/false), op,
              ": idxs must be an integer tensor, got ", idxs.scalar_type());
  TORCH_CHECK(idxs.device() == boxes.device(), op,
              ": idxs must be on the device of boxes, got ", idxs.device(), " and ", boxes.device());
}

}  // namespace nms_detail
}  // namespace maskrcnn
