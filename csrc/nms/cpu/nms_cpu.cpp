// CPU kernels of maskrcnn::nms and maskrcnn::batched_nms.
//
// Greedy NMS on score-sorted boxes, done in blocks so that the costly part vectorises and runs in
// parallel:
//   1. the next candidates (in score order) are resolved one by one against the boxes kept so far
//      in the current block, until the block holds kBlock kept boxes;
//   2. every later candidate is tested against all of the block's kept boxes (structure-of-arrays,
//      branch-free inner loop, at::parallel_for over the candidates when there are many);
//   3. the suppressed candidates are dropped (compaction), so later blocks only visit survivors.
// Every survivor is tested against every kept box before it exactly once, as in plain greedy NMS,
// but without the per-pair branches and with the suppressed boxes removed from the scans.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "nms/nms_checks.h"

namespace maskrcnn {
namespace {

constexpr int64_t kBlock = 64;    // kept boxes per block
constexpr int64_t kChunk = 1024;  // candidates per cache-resident chunk
// Candidate tests (candidates x kept boxes) of one block, about 1 ms of work, that make a parallel
// region worth its cost (even on a busy machine, where waking a second thread can take a while).
constexpr int64_t kParallelWork = 1 << 20;

// Score-sorted boxes as contiguous coordinate arrays; `pos` is each box's rank in score order.
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int64_t> pos;

  void resize(int64_t n) {
    x1.resize(n); y1.resize(n); x2.resize(n); y2.resize(n); area.resize(n); pos.resize(n);
  }
};

// Whether box a suppresses box b: they intersect and inter > thr * union (IoU > thr without a
// division). Boxes that do not intersect (including zero-area and inverted ones) never suppress.
template <typename T>
inline bool suppresses(const SortedBoxes<T>& b, int64_t a, int64_t c, T thr, T offset) {
  T w = std::max(T(0), std::min(b.x2[a], b.x2[c]) - std::max(b.x1[a], b.x1[c]) + offset);
  T h = std::max(T(0), std::min(b.y2[a], b.y2[c]) - std::max(b.y1[a], b.y1[c]) + offset);
  T inter = w * h;
  T uni = b.area[a] + b.area[c] - inter;
  return inter > T(0) && inter > thr * uni;
}

// By-value min/max: std::min/max return references, which turns the selects into loads from one
// of two addresses and stops the loops from vectorising.
template <typename T>
inline T min_of(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max_of(T a, T b) { return a < b ? b : a; }

// Flag type of the candidate tests: as wide as T, so that the test loop vectorises cleanly.
template <typename T>
using flag_t = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// flags[j] |= (box k suppresses candidate j) for j in [0, len). Branch-free, so it vectorises.
template <typename T>
inline void mark_suppressed(const T* __restrict x1, const T* __restrict y1, const T* __restrict x2,
                            const T* __restrict y2, const T* __restrict area, flag_t<T>* __restrict flags,
                            int64_t len, T kx1, T ky1, T kx2, T ky2, T karea, T thr, T offset) {
  for (int64_t j = 0; j < len; ++j) {
    T w = max_of(T(0), min_of(kx2, x2[j]) - max_of(kx1, x1[j]) + offset);
    T h = max_of(T(0), min_of(ky2, y2[j]) - max_of(ky1, y1[j]) + offset);
    T inter = w * h;
    T uni = karea + area[j] - inter;
    flags[j] |= static_cast<flag_t<T>>((inter > T(0)) & (inter > thr * uni));
  }
}

// The float loop is the hot one: it is also built for AVX2 and picked at load time where the CPU
// has it. Kept out of line (noinline for double) so that it vectorises as a loop of its own.
#if !defined(MASKRCNN_NO_CLONES) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define MASKRCNN_NMS_CLONES __attribute__((target_clones("avx2", "default"), noinline))
#elif defined(__GNUC__)
#define MASKRCNN_NMS_CLONES __attribute__((noinline))
#else
#define MASKRCNN_NMS_CLONES
#endif

MASKRCNN_NMS_CLONES void mark_suppressed_out_of_line(const float* x1, const float* y1, const float* x2,
                                                     const float* y2, const float* area, int32_t* flags,
                                                     int64_t len, float kx1, float ky1, float kx2, float ky2,
                                                     float karea, float thr, float offset) {
  mark_suppressed<float>(x1, y1, x2, y2, area, flags, len, kx1, ky1, kx2, ky2, karea, thr, offset);
}

#if defined(__GNUC__)
__attribute__((noinline))
#endif
void mark_suppressed_out_of_line(const double* x1, const double* y1, const double* x2, const double* y2,
                                 const double* area, int64_t* flags, int64_t len, double kx1, double ky1,
                                 double kx2, double ky2, double karea, double thr, double offset) {
  mark_suppressed<double>(x1, y1, x2, y2, area, flags, len, kx1, ky1, kx2, ky2, karea, thr, offset);
}

// flags[j] = (some box kept[t] suppresses candidate j) for j in [begin, end), end - begin <= kChunk.
// Works on a local flag buffer, so the test loop needs no run-time alias checks.
template <typename T>
inline void test_candidates(const T* x1, const T* y1, const T* x2, const T* y2, const T* area,
                            flag_t<T>* flags, int64_t begin, int64_t end, const int64_t* kept,
                            int64_t num_kept, T thr, T offset) {
  flag_t<T> local[kChunk];
  const int64_t len = end - begin;
  for (int64_t j = 0; j < len; ++j) local[j] = 0;
  for (int64_t t = 0; t < num_kept; ++t) {
    const int64_t k = kept[t];
    mark_suppressed_out_of_line(x1 + begin, y1 + begin, x2 + begin, y2 + begin, area + begin, local, len,
                                x1[k], y1[k], x2[k], y2[k], area[k], thr, offset);
  }
  for (int64_t j = 0; j < len; ++j) flags[begin + j] = local[j];
}

// Greedy NMS of n score-sorted boxes held in `b` (overwritten). Sets keep[b.pos[i]] = 1 for the
// kept boxes. `flags` is scratch (resized to n). parallel: may open parallel regions.
template <typename T>
void nms_sorted(SortedBoxes<T>& b, int64_t n, T thr, T offset, bool parallel, uint8_t* keep,
                std::vector<flag_t<T>>& flags) {
  flags.resize(std::max<int64_t>(n, 1));
  int64_t alive = n;  // survivors occupy [0, alive) of the arrays, in score order
  int64_t kept[kBlock];
  while (alive > 0) {
    // 1. Resolve candidates in order until the block is full.
    int64_t num_kept = 0;
    int64_t next = 0;
    while (next < alive && num_kept < kBlock) {
      bool survives = true;
      for (int64_t t = 0; t < num_kept; ++t) {
        if (suppresses(b, kept[t], next, thr, offset)) {
          survives = false;
          break;
        }
      }
      if (survives) {
        kept[num_kept++] = next;
        keep[b.pos[next]] = 1;
      }
      ++next;
    }
    if (next == alive) break;

    // 2. Test the remaining candidates [next, alive) against the block's kept boxes.
    flag_t<T>* f = flags.data();
    auto test_range = [&](int64_t begin, int64_t end) {
      for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
        int64_t c1 = std::min(end, c0 + kChunk);
        test_candidates(b.x1.data(), b.y1.data(), b.x2.data(), b.y2.data(), b.area.data(), f, c0, c1, kept,
                        num_kept, thr, offset);
      }
    };
    int64_t remaining = alive - next;
    if (parallel && remaining * num_kept >= kParallelWork) {
      at::parallel_for(next, alive, kChunk, test_range);
    } else {
      test_range(next, alive);
    }

    // 3. Compact the survivors to the front, keeping their order.
    int64_t out = 0;
    for (int64_t j = next; j < alive; ++j) {
      b.x1[out] = b.x1[j];
      b.y1[out] = b.y1[j];
      b.x2[out] = b.x2[j];
      b.y2[out] = b.y2[j];
      b.area[out] = b.area[j];
      b.pos[out] = b.pos[j];
      out += 1 - static_cast<int64_t>(f[j]);
    }
    alive = out;
  }
}

// Loads boxes[order[p]] for the ranks p in `ranks` into `b` (compute type T).
template <typename T, typename scalar_t>
void gather_sorted(const scalar_t* boxes, const int64_t* order, const int64_t* ranks, int64_t n, T offset,
                   SortedBoxes<T>& b) {
  b.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t p = ranks ? ranks[i] : i;
    const scalar_t* box = boxes + 4 * order[p];
    T x1 = static_cast<T>(box[0]), y1 = static_cast<T>(box[1]);
    T x2 = static_cast<T>(box[2]), y2 = static_cast<T>(box[3]);
    b.x1[i] = x1; b.y1[i] = y1; b.x2[i] = x2; b.y2[i] = y2;
    b.area[i] = (x2 - x1 + offset) * (y2 - y1 + offset);
    b.pos[i] = p;
  }
}

// Indices of boxes by decreasing score, equal scores by increasing index.
at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
}

// order[p] for the ranks p with keep[p] set, in rank order.
at::Tensor kept_indices(const at::Tensor& order, const std::vector<uint8_t>& keep) {
  const int64_t n = order.size(0);
  const int64_t* o = order.data_ptr<int64_t>();
  int64_t count = std::count(keep.begin(), keep.end(), uint8_t(1));
  at::Tensor result = at::empty({count}, order.options());
  int64_t* r = result.data_ptr<int64_t>();
  for (int64_t p = 0, out = 0; p < n; ++p) {
    if (keep[p]) r[out++] = o[p];
  }
  return result;
}

// Boxes in the compute type: float and double as they are, half and bfloat16 as float.
at::Tensor compute_boxes(const at::Tensor& boxes) {
  auto type = boxes.scalar_type();
  bool native = type == at::kFloat || type == at::kDouble;
  return (native ? boxes : boxes.to(at::kFloat)).contiguous();
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                   bool legacy_plus_one) {
  nms_detail::check_boxes_and_scores(boxes, scores, "nms");
  TORCH_CHECK(boxes.device().is_cpu(), "nms: boxes must be a CPU tensor for the CPU kernel");
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor order = score_order(scores);
  at::Tensor b = compute_boxes(boxes);
  std::vector<uint8_t> keep(n, 0);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_cpu", [&] {
    SortedBoxes<scalar_t> sorted;
    std::vector<flag_t<scalar_t>> flags;
    scalar_t offset = legacy_plus_one ? scalar_t(1) : scalar_t(0);
    gather_sorted(b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), nullptr, n, offset, sorted);
    nms_sorted(sorted, n, static_cast<scalar_t>(iou_threshold), offset, /*parallel=*/true, keep.data(), flags);
  });
  return kept_indices(order, keep);
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold, bool legacy_plus_one) {
  nms_detail::check_boxes_and_scores(boxes, scores, "batched_nms");
  nms_detail::check_idxs(boxes, idxs, "batched_nms");
  TORCH_CHECK(boxes.device().is_cpu(), "batched_nms: boxes must be a CPU tensor for the CPU kernel");
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor order = score_order(scores);
  at::Tensor b = compute_boxes(boxes);
  at::Tensor classes = idxs.to(at::kLong).contiguous();

  // Ranks grouped by class, score order within a class (stable sort of the ranks by class).
  const int64_t* o = order.data_ptr<int64_t>();
  const int64_t* cls = classes.data_ptr<int64_t>();
  std::vector<int64_t> ranks(n);
  std::iota(ranks.begin(), ranks.end(), int64_t(0));
  std::stable_sort(ranks.begin(), ranks.end(),
                   [&](int64_t a, int64_t c) { return cls[o[a]] < cls[o[c]]; });
  std::vector<int64_t> starts;  // segment boundaries of `ranks`, one segment per class
  for (int64_t i = 0; i < n; ++i) {
    if (i == 0 || cls[o[ranks[i]]] != cls[o[ranks[i - 1]]]) starts.push_back(i);
  }
  starts.push_back(n);
  const int64_t num_classes = static_cast<int64_t>(starts.size()) - 1;

  std::vector<uint8_t> keep(n, 0);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "batched_nms_cpu", [&] {
    const scalar_t* data = b.data_ptr<scalar_t>();
    const scalar_t offset = legacy_plus_one ? scalar_t(1) : scalar_t(0);
    const scalar_t thr = static_cast<scalar_t>(iou_threshold);
    auto run_class = [&](int64_t c, bool parallel, SortedBoxes<scalar_t>& sorted, std::vector<flag_t<scalar_t>>& flags) {
      int64_t len = starts[c + 1] - starts[c];
      gather_sorted(data, o, ranks.data() + starts[c], len, offset, sorted);
      nms_sorted(sorted, len, thr, offset, parallel, keep.data(), flags);
    };
    // Large classes one after the other, each with parallel blocks; small ones in parallel.
    constexpr int64_t kLargeClass = 2048;
    std::vector<int64_t> small;
    SortedBoxes<scalar_t> sorted;
    std::vector<flag_t<scalar_t>> flags;
    for (int64_t c = 0; c < num_classes; ++c) {
      if (starts[c + 1] - starts[c] >= kLargeClass) {
        run_class(c, /*parallel=*/true, sorted, flags);
      } else {
        small.push_back(c);
      }
    }
    at::parallel_for(0, static_cast<int64_t>(small.size()), 1, [&](int64_t begin, int64_t end) {
      SortedBoxes<scalar_t> local;
      std::vector<flag_t<scalar_t>> local_flags;
      for (int64_t i = begin; i < end; ++i) run_class(small[i], /*parallel=*/false, local, local_flags);
    });
  });
  return kept_indices(order, keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace maskrcnn
