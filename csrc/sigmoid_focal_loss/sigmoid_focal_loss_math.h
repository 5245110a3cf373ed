// Elementwise sigmoid focal loss and its derivative, shared by the CPU and CUDA kernels.
//
// Written with softplus so that nothing takes log(0) or overflows: with e = exp(-|x|),
//   sp  = softplus(x)  = max(x, 0) + log1p(e)  = -log(1 - p)
//   spn = softplus(-x) = sp - x                 = -log(p)
//   p = sigmoid(x), q = 1 - p (each from e without cancellation), p^g = exp(-g * spn),
//   q^g = exp(-g * sp).
// Loss:      positive  alpha * q^g * spn          negative  (1 - alpha) * p^g * sp
// Gradient:  positive -alpha * q^g * (q + g * p * spn)      (= d/dx of -alpha q^g log p)
//            negative  (1 - alpha) * p^g * (p + g * q * sp)  (= d/dx of -(1 - alpha) p^g log q)
// The math functions are passed in as a policy (`M::exp`, `M::log1p`), so the CPU float kernel can
// use vectorisable approximations and the others the standard functions.
#pragma once

#if defined(__CUDACC__)
#define MASKRCNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MASKRCNN_HOST_DEVICE inline
#endif

namespace maskrcnn {
namespace focal_detail {

template <typename T, typename M>
struct Terms {
  T p, q, sp, spn;
  MASKRCNN_HOST_DEVICE explicit Terms(T x) {
    // Both sides of every select are computed first: the selects stay branch-free (vectorisable).
    const T neg_x = -x;
    const bool nonneg = x >= T(0);
    const T ax = nonneg ? x : neg_x;
    const T e = M::exp(-ax);
    const T l = M::log1p(e);
    const T inv = T(1) / (T(1) + e);
    const T e_inv = e * inv;
    p = nonneg ? inv : e_inv;
    q = nonneg ? e_inv : inv;
    sp = (nonneg ? x : T(0)) + l;
    spn = (nonneg ? T(0) : neg_x) + l;
  }
};

// base^gamma for base = exp(-s), s >= 0; gamma == 0 gives 1 (also for s = inf). kSquare: the
// caller knows gamma == 2 (the usual value) and base * base replaces the exp.
template <typename T, typename M, bool kSquare>
MASKRCNN_HOST_DEVICE T power(T base, T s, T gamma) {
  if constexpr (kSquare) {
    return base * base;
  } else {
    const T value = M::exp(-gamma * s);
    return gamma == T(0) ? T(1) : value;
  }
}

template <typename T, typename M, bool kSquare = false>
MASKRCNN_HOST_DEVICE T focal_loss(T x, bool positive, T gamma, T alpha) {
  Terms<T, M> t(x);
  return positive ? alpha * power<T, M, kSquare>(t.q, t.sp, gamma) * t.spn
                  : (T(1) - alpha) * power<T, M, kSquare>(t.p, t.spn, gamma) * t.sp;
}

template <typename T, typename M, bool kSquare = false>
MASKRCNN_HOST_DEVICE T focal_grad(T x, bool positive, T gamma, T alpha) {
  Terms<T, M> t(x);
  return positive ? -alpha * power<T, M, kSquare>(t.q, t.sp, gamma) * (t.q + gamma * t.p * t.spn)
                  : (T(1) - alpha) * power<T, M, kSquare>(t.p, t.spn, gamma) * (t.p + gamma * t.q * t.sp);
}

}  // namespace focal_detail
}  // namespace maskrcnn
