// CPU kernels of maskrcnn::sigmoid_focal_loss_forward / _backward.
//
// Every entry of a row is a negative except at most one (column targets[n] - 1), so the kernels run
// the negative formula over whole blocks of rows in one branch-free loop, then redo the positive
// entries. For float, that loop uses polynomial exp/log1p that the compiler vectorises (and is
// also built for AVX2); double, half and bfloat16 use the standard functions (half and bfloat16
// compute in float).
//
// The file is compiled without -ftrapping-math: it only drops the guarantee that floating-point
// exception flags are raised as written, and lets GCC turn the clamps and selects of the float
// loop into branch-free vector code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "sigmoid_focal_loss/sigmoid_focal_loss_checks.h"
#include "sigmoid_focal_loss/sigmoid_focal_loss_math.h"

namespace maskrcnn {
namespace {

using focal_detail::focal_grad;
using focal_detail::focal_loss;

struct StdMath {
  template <typename T>
  static T exp(T x) { return std::exp(x); }
  template <typename T>
  static T log1p(T x) { return std::log1p(x); }
};

// Branch-free float exp and log1p (Cephes-style polynomials, about 1-2 ulp), vectorisable.
struct FastFloatMath {
  static inline float exp(float x) {
    x = x < -87.0f ? -87.0f : x;  // results below ~1e-38 are raised to it: harmless here
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to integer
    float k = (x * 1.44269504088896341f + magic) - magic;
    float r = x - k * 0.693359375f - k * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    int32_t bits = (static_cast<int32_t>(k) + 127) << 23;  // 2^k
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return y * scale;
  }

  // log1p(e) for e in [0, 1] (the only range the focal loss needs).
  static inline float log1p(float e) {
    float u = 1.0f + e;
    const bool big = u > 1.41421356f;
    const float half_u = 0.5f * u;
    const float m = big ? half_u : u;  // m in [0.707, 1.414], so f = m - 1 is exact
    const float k = big ? 1.0f : 0.0f;
    float f = m - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z + k * -2.12194440e-4f - 0.5f * z;
    float log_u = f + y + k * 0.693359375f;
    // log1p(e) = log(u) + (e - (u - 1)) / u corrects the rounding of 1 + e (exact for tiny e).
    return log_u + (e - (u - 1.0f)) / u;
  }
};

// Negative-entry loss (or gradient times grad_loss) over a flat float range, one function per loop
// so that each vectorises on its own; built for AVX2 too where the compiler supports it. gamma == 2
// (the usual value) has its own loops that square instead of calling exp.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MASKRCNN_FOCAL_CLONES __attribute__((target_clones("avx2", "default"), noinline))
#elif defined(__GNUC__)
#define MASKRCNN_FOCAL_CLONES __attribute__((noinline))
#else
#define MASKRCNN_FOCAL_CLONES
#endif

template <bool kSquare>
MASKRCNN_FOCAL_CLONES void negative_loss_loop(const float* __restrict x, float* __restrict out, int64_t len, float gamma,
                               float alpha) {
  for (int64_t i = 0; i < len; ++i) out[i] = focal_loss<float, FastFloatMath, kSquare>(x[i], false, gamma, alpha);
}

void negative_loss_float(const float* x, float* out, int64_t len, float gamma, float alpha) {
  if (gamma == 2.0f) {
    negative_loss_loop<true>(x, out, len, gamma, alpha);
  } else {
    negative_loss_loop<false>(x, out, len, gamma, alpha);
  }
}

// kBroadcast: every entry's grad_loss is `scale` (the gradient of a sum); otherwise grad[i].
template <bool kSquare, bool kBroadcast>
MASKRCNN_FOCAL_CLONES void negative_grad_loop(const float* __restrict x, const float* __restrict grad, float scale,
                                              float* __restrict out, int64_t len, float gamma, float alpha) {
  for (int64_t i = 0; i < len; ++i) {
    const float d = focal_grad<float, FastFloatMath, kSquare>(x[i], false, gamma, alpha);
    if constexpr (kBroadcast) {
      out[i] = scale * d;
    } else {
      out[i] = grad[i] * d;
    }
  }
}

// grad: one value per entry, or nullptr when every entry's value is `scale`.
void negative_grad_float(const float* x, const float* grad, float scale, float* out, int64_t len, float gamma,
                         float alpha) {
  if (gamma == 2.0f) {
    if (grad) {
      negative_grad_loop<true, false>(x, grad, scale, out, len, gamma, alpha);
    } else {
      negative_grad_loop<true, true>(x, grad, scale, out, len, gamma, alpha);
    }
  } else {
    if (grad) {
      negative_grad_loop<false, false>(x, grad, scale, out, len, gamma, alpha);
    } else {
      negative_grad_loop<false, true>(x, grad, scale, out, len, gamma, alpha);
    }
  }
}

// Loss of rows [begin, end): generic version (standard math in opmath type).
template <typename scalar_t>
void forward_rows(const scalar_t* x, const int64_t* tgt, scalar_t* out, int64_t begin, int64_t end, int64_t k,
                  double gamma, double alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t g = static_cast<opmath_t>(gamma), a = static_cast<opmath_t>(alpha);
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      int64_t i = r * k + c;
      out[i] = static_cast<scalar_t>(focal_loss<opmath_t, StdMath>(static_cast<opmath_t>(x[i]), tgt[r] == c + 1, g, a));
    }
  }
}

// Loss of rows [begin, end), float: the vectorised negative loop, then the positive entries.
void forward_rows(const float* x, const int64_t* tgt, float* out, int64_t begin, int64_t end, int64_t k,
                  double gamma, double alpha) {
  const float g = static_cast<float>(gamma), a = static_cast<float>(alpha);
  negative_loss_float(x + begin * k, out + begin * k, (end - begin) * k, g, a);
  for (int64_t r = begin; r < end; ++r) {
    if (tgt[r] > 0) {
      int64_t i = r * k + tgt[r] - 1;
      out[i] = focal_loss<float, FastFloatMath>(x[i], true, g, a);
    }
  }
}

// grad_loss * d loss / d logits of rows [begin, end): generic version. grad_step is 1, or 0 when
// grad_loss is one value broadcast to every entry.
template <typename scalar_t>
void backward_rows(const scalar_t* x, const int64_t* tgt, const scalar_t* grad, int64_t grad_step, scalar_t* out,
                   int64_t begin, int64_t end, int64_t k, double gamma, double alpha) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t g = static_cast<opmath_t>(gamma), a = static_cast<opmath_t>(alpha);
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      int64_t i = r * k + c;
      opmath_t d = focal_grad<opmath_t, StdMath>(static_cast<opmath_t>(x[i]), tgt[r] == c + 1, g, a);
      out[i] = static_cast<scalar_t>(static_cast<opmath_t>(grad[i * grad_step]) * d);
    }
  }
}

// Float version: the vectorised negative loop, then the positive entries.
void backward_rows(const float* x, const int64_t* tgt, const float* grad, int64_t grad_step, float* out,
                   int64_t begin, int64_t end, int64_t k, double gamma, double alpha) {
  const float g = static_cast<float>(gamma), a = static_cast<float>(alpha);
  const float* row_grad = grad_step ? grad + begin * k : nullptr;
  negative_grad_float(x + begin * k, row_grad, grad[0], out + begin * k, (end - begin) * k, g, a);
  for (int64_t r = begin; r < end; ++r) {
    if (tgt[r] > 0) {
      int64_t i = r * k + tgt[r] - 1;
      out[i] = grad[i * grad_step] * focal_grad<float, FastFloatMath>(x[i], true, g, a);
    }
  }
}

// Rows per parallel task: about 16k entries.
int64_t row_grain(int64_t num_classes) {
  return std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, num_classes));
}

at::Tensor forward_cpu(const at::Tensor& logits, const at::Tensor& targets, double gamma, double alpha) {
  const char* op = "sigmoid_focal_loss_forward";
  focal_detail::check_inputs(logits, targets, op);
  TORCH_CHECK(logits.device().is_cpu(), op, ": logits must be a CPU tensor for the CPU kernel");
  at::Tensor t = focal_detail::checked_targets_cpu(targets, logits.size(1), op);
  at::Tensor x = logits.contiguous();
  at::Tensor out = at::empty_like(x);
  if (out.numel() == 0) return out;
  const int64_t n = x.size(0), k = x.size(1);
  const int64_t* tgt = t.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sigmoid_focal_loss_forward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* outp = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, row_grain(k), [&](int64_t begin, int64_t end) {
      forward_rows(xp, tgt, outp, begin, end, k, gamma, alpha);
    });
  });
  return out;
}

at::Tensor backward_cpu(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& grad_loss,
                        double gamma, double alpha) {
  const char* op = "sigmoid_focal_loss_backward";
  focal_detail::check_inputs(logits, targets, op);
  focal_detail::check_grad(logits, grad_loss, op);
  TORCH_CHECK(logits.device().is_cpu(), op, ": logits must be a CPU tensor for the CPU kernel");
  at::Tensor t = focal_detail::checked_targets_cpu(targets, logits.size(1), op);
  at::Tensor x = logits.contiguous();
  at::Tensor out = at::empty_like(x);
  if (out.numel() == 0) return out;
  // The gradient of a sum arrives as one value expanded to [N, K] (strides 0): read that value
  // instead of materialising the expansion.
  const bool broadcast = grad_loss.stride(0) == 0 && grad_loss.stride(1) == 0;
  at::Tensor grad = (broadcast ? grad_loss.select(0, 0).select(0, 0).reshape({1}) : grad_loss)
                        .to(x.scalar_type())
                        .contiguous();
  const int64_t grad_step = broadcast ? 0 : 1;
  const int64_t n = x.size(0), k = x.size(1);
  const int64_t* tgt = t.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sigmoid_focal_loss_backward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    scalar_t* outp = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, row_grain(k), [&](int64_t begin, int64_t end) {
      backward_rows(xp, tgt, gp, grad_step, outp, begin, end, k, gamma, alpha);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("sigmoid_focal_loss_forward", &forward_cpu);
  m.impl("sigmoid_focal_loss_backward", &backward_cpu);
}

}  // namespace maskrcnn
