// CUDA kernels of maskrcnn::sigmoid_focal_loss_forward / _backward: one thread per entry, the
// formulas of sigmoid_focal_loss_math.h in at::opmath_type (float for half / bfloat16). Targets out
// of 0..K trip a device assertion (checking them on the host would need a synchronisation).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "sigmoid_focal_loss/sigmoid_focal_loss_checks.h"
#include "sigmoid_focal_loss/sigmoid_focal_loss_math.h"

namespace maskrcnn {
namespace {

struct DeviceMath {
  __device__ static float exp(float x) { return ::expf(x); }
  __device__ static double exp(double x) { return ::exp(x); }
  __device__ static float log1p(float x) { return ::log1pf(x); }
  __device__ static double log1p(double x) { return ::log1p(x); }
};

constexpr int kThreads = 256;

// grad == nullptr: out = loss; otherwise out = grad * d loss / d logits.
template <typename scalar_t>
__global__ void focal_kernel(int64_t total, int64_t num_classes, const scalar_t* __restrict__ logits,
                             const int64_t* __restrict__ targets, const scalar_t* __restrict__ grad,
                             scalar_t* __restrict__ out, float gamma, float alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t g = static_cast<opmath_t>(gamma), a = static_cast<opmath_t>(alpha);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t row = i / num_classes, col = i % num_classes;
    const int64_t target = targets[row];
    CUDA_KERNEL_ASSERT(target >= 0 && target <= num_classes);
    const bool positive = target == col + 1;
    const opmath_t x = static_cast<opmath_t>(logits[i]);
    if (grad == nullptr) {
      out[i] = static_cast<scalar_t>(focal_detail::focal_loss<opmath_t, DeviceMath>(x, positive, g, a));
    } else {
      const opmath_t d = focal_detail::focal_grad<opmath_t, DeviceMath>(x, positive, g, a);
      out[i] = static_cast<scalar_t>(static_cast<opmath_t>(grad[i]) * d);
    }
  }
}

at::Tensor launch(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor* grad_loss, double gamma,
                  double alpha) {
  c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor x = logits.contiguous();
  at::Tensor t = targets.to(at::kLong).contiguous();
  at::Tensor grad;
  if (grad_loss) grad = grad_loss->to(x.scalar_type()).contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t total = x.numel();
  if (total == 0) return out;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 16);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sigmoid_focal_loss_cuda", [&] {
    focal_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        total, x.size(1), x.data_ptr<scalar_t>(), t.data_ptr<int64_t>(),
        grad_loss ? grad.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), static_cast<float>(gamma),
        static_cast<float>(alpha));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor forward_cuda(const at::Tensor& logits, const at::Tensor& targets, double gamma, double alpha) {
  focal_detail::check_inputs(logits, targets, "sigmoid_focal_loss_forward");
  TORCH_CHECK(logits.is_cuda(), "sigmoid_focal_loss_forward: logits must be a CUDA tensor for the CUDA kernel");
  return launch(logits, targets, nullptr, gamma, alpha);
}

at::Tensor backward_cuda(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_loss,
                         double gamma, double alpha) {
  focal_detail::check_inputs(logits, targets, "sigmoid_focal_loss_backward");
  focal_detail::check_grad(logits, grad_loss, "sigmoid_focal_loss_backward");
  TORCH_CHECK(logits.is_cuda(), "sigmoid_focal_loss_backward: logits must be a CUDA tensor for the CUDA kernel");
  return launch(logits, targets, &grad_loss, gamma, alpha);
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CUDA, m) {
  m.impl("sigmoid_focal_loss_forward", &forward_cuda);
  m.impl("sigmoid_focal_loss_backward", &backward_cuda);
}

}  // namespace maskrcnn
