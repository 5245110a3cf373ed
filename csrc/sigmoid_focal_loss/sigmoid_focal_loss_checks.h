// Argument checks shared by the CPU and CUDA kernels of the sigmoid focal loss.
#pragma once

#include <ATen/ATen.h>

namespace maskrcnn {
namespace focal_detail {

// logits: [N, K] floating; targets: [N] integer, on the device of logits.
inline void check_inputs(const at::Tensor& logits, const at::Tensor& targets, const char* op) {
  TORCH_CHECK(logits.dim() == 2, op, ": logits must be a 2-D tensor of shape [N, K], got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op,
              ": logits must be a floating-point tensor, got ", logits.scalar_type());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), op,
              ": targets must be a 1-D tensor of shape [N] matching logits [N, K], got targets ",
              targets.sizes(), " and logits ", logits.sizes());
  TORCH_CHECK(at::isIntegralType(targets.scalar_type(), /*includeBool=*/false), op,
              ": targets must be an integer (int64) tensor, got ", targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), op, ": targets must be on the device of logits, got ",
              targets.device(), " and ", logits.device());
}

// grad_loss: the shape of logits, floating, same device.
inline void check_grad(const at::Tensor& logits, const at::Tensor& grad_loss, const char* op) {
  TORCH_CHECK(grad_loss.sizes() == logits.sizes(), op, ": grad_loss must have the shape of logits ",
              logits.sizes(), ", got ", grad_loss.sizes());
  TORCH_CHECK(at::isFloatingType(grad_loss.scalar_type()), op,
              ": grad_loss must be a floating-point tensor, got ", grad_loss.scalar_type());
  TORCH_CHECK(grad_loss.device() == logits.device(), op, ": grad_loss must be on the device of logits, got ",
              grad_loss.device(), " and ", logits.device());
}

// Contiguous int64 copy of CPU targets, checked to lie in 0..num_classes.
inline at::Tensor checked_targets_cpu(const at::Tensor& targets, int64_t num_classes, const char* op) {
  at::Tensor t = targets.to(at::kLong).contiguous();
  const int64_t* p = t.data_ptr<int64_t>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] <= num_classes, op, ": targets must lie in 0..", num_classes,
                " (0 = background, c = column c - 1 of logits), got ", p[i], " at index ", i);
  }
  return t;
}

}  // namespace focal_detail
}  // namespace maskrcnn
