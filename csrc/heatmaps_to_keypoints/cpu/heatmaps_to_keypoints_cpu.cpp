// CPU kernel of maskrcnn::heatmaps_to_keypoints (geometry, weights and rounding:
// heatmaps_to_keypoints_common.h).
//
// at::parallel_for over (detection, keypoint) pairs. Each task builds its box's column and row
// taps, resizes every heatmap row onto the box's columns once (H x ceil(w) values), then produces
// the output rows one at a time (each blends four of those rows) and keeps the running arg-max.
//
// Which rounding F.interpolate uses on this machine follows torch's CPU dispatch: its AVX2 and
// AVX-512 kernels contract multiply-adds into FMAs, its default kernel does not. The fused variant
// of the inner loops is compiled with the FMA instruction set enabled (and only run when torch
// itself runs its AVX2 / AVX-512 kernels, which need it); everything else is compiled for the
// baseline instruction set, where nothing can be contracted.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "heatmaps_to_keypoints/heatmaps_to_keypoints_common.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MASKRCNN_X86 1
#define MASKRCNN_TARGET_FMA __attribute__((target("avx2,fma")))
#define MASKRCNN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MASKRCNN_X86 0
#define MASKRCNN_TARGET_FMA
#define MASKRCNN_ALWAYS_INLINE inline
#endif

namespace maskrcnn {
namespace {

namespace h2k = heatmaps_to_keypoints;

// True when torch's own CPU kernels (F.interpolate among them) run with fused multiply-adds.
bool torch_cpu_kernels_fuse() {
#if MASKRCNN_X86
  const std::string capability = at::get_cpu_capability();
  return capability == "AVX2" || capability == "AVX512";
#else
  return true;  // GCC contracts by default where FMA is part of the base instruction set
#endif
}

template <typename T>
struct Peak {
  int64_t index;
  T value;
};

// Taps of every output pixel of an axis, as separate arrays (index j of pixel d at [4 d + j]).
template <bool kFused, typename T>
void fill_taps(int64_t in_size, int64_t out_size, std::vector<int64_t>& index, std::vector<T>& weight) {
  index.resize(4 * out_size);
  weight.resize(4 * out_size);
  for (int64_t d = 0; d < out_size; ++d) {
    const h2k::Tap<T> tap = h2k::cubic_tap<kFused, T>(in_size, out_size, d);
    for (int j = 0; j < 4; ++j) {
      index[4 * d + j] = tap.index[j];
      weight[4 * d + j] = tap.weight[j];
    }
  }
}

// The arg-max of one heatmap resized to out_h x out_w. rows: H x out_w buffer; line: out_w buffer.
template <bool kFused, typename scalar_t, typename T>
MASKRCNN_ALWAYS_INLINE Peak<T> find_peak(const scalar_t* map, int64_t height, int64_t width, int64_t out_h,
                                         int64_t out_w, const int64_t* col_index, const T* col_weight,
                                         const int64_t* row_index, const T* row_weight, T* rows, T* line) {
  for (int64_t r = 0; r < height; ++r) {
    const scalar_t* src = map + r * width;
    T* dst = rows + r * out_w;
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t* c = col_index + 4 * x;
      const T* w = col_weight + 4 * x;
      dst[x] = h2k::sum4<kFused, T>(static_cast<T>(src[c[0]]), w[0], static_cast<T>(src[c[1]]), w[1],
                                    static_cast<T>(src[c[2]]), w[2], static_cast<T>(src[c[3]]), w[3]);
    }
  }
  Peak<T> peak{0, T(0)};
  for (int64_t y = 0; y < out_h; ++y) {
    const int64_t* r = row_index + 4 * y;
    const T* w = row_weight + 4 * y;
    const T* r0 = rows + r[0] * out_w;
    const T* r1 = rows + r[1] * out_w;
    const T* r2 = rows + r[2] * out_w;
    const T* r3 = rows + r[3] * out_w;
    for (int64_t x = 0; x < out_w; ++x) {
      line[x] = h2k::sum4<kFused, T>(r0[x], w[0], r1[x], w[1], r2[x], w[2], r3[x], w[3]);
    }
    int64_t x = 0;
    if (y == 0) {
      peak.value = line[0];
      x = 1;
    } else {
      if (peak.value != peak.value) break;  // the first NaN is final
      // scan the row element by element only when something in it beats the peak (or is NaN)
      int beats = 0;
      for (int64_t i = 0; i < out_w; ++i) beats |= !(line[i] <= peak.value);
      if (!beats) continue;
    }
    for (; x < out_w; ++x) {
      if (h2k::replaces(line[x], y * out_w + x, peak.value, peak.index)) {
        peak.value = line[x];
        peak.index = y * out_w + x;
      }
    }
  }
  return peak;
}

template <typename scalar_t, typename T>
MASKRCNN_TARGET_FMA Peak<T> find_peak_fused(const scalar_t* map, int64_t height, int64_t width, int64_t out_h,
                                            int64_t out_w, const int64_t* col_index, const T* col_weight,
                                            const int64_t* row_index, const T* row_weight, T* rows, T* line) {
  return find_peak<true>(map, height, width, out_h, out_w, col_index, col_weight, row_index, row_weight, rows, line);
}

template <typename scalar_t, typename T>
Peak<T> find_peak_plain(const scalar_t* map, int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                        const int64_t* col_index, const T* col_weight, const int64_t* row_index,
                        const T* row_weight, T* rows, T* line) {
  return find_peak<false>(map, height, width, out_h, out_w, col_index, col_weight, row_index, row_weight, rows, line);
}

template <typename scalar_t>
void decode(const at::Tensor& maps, const at::Tensor& boxes, at::Tensor& xy, at::Tensor& scores, bool fused) {
  using T = at::opmath_type<scalar_t>;
  const int64_t num = maps.size(0), num_keypoints = maps.size(1), height = maps.size(2), width = maps.size(3);
  const scalar_t* map_data = maps.const_data_ptr<scalar_t>();
  const T* box_data = boxes.const_data_ptr<T>();
  T* xy_data = xy.mutable_data_ptr<T>();
  T* score_data = scores.mutable_data_ptr<T>();
  at::parallel_for(0, num * num_keypoints, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> col_index, row_index;
    std::vector<T> col_weight, row_weight, rows, line;
    int64_t taps_of = -1;  // the detection whose taps the vectors hold
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / num_keypoints;
      const T* box = box_data + 4 * n;
      const h2k::Axis<T> ax = h2k::make_axis<T>(box[0], box[2]);
      const h2k::Axis<T> ay = h2k::make_axis<T>(box[1], box[3]);
      if (n != taps_of) {
        if (fused) {
          fill_taps<true, T>(width, ax.size, col_index, col_weight);
          fill_taps<true, T>(height, ay.size, row_index, row_weight);
        } else {
          fill_taps<false, T>(width, ax.size, col_index, col_weight);
          fill_taps<false, T>(height, ay.size, row_index, row_weight);
        }
        rows.resize(height * ax.size);
        line.resize(ax.size);
        taps_of = n;
      }
      const scalar_t* map = map_data + task * height * width;
      const auto find = fused ? &find_peak_fused<scalar_t, T> : &find_peak_plain<scalar_t, T>;
      const Peak<T> peak = find(map, height, width, ay.size, ax.size, col_index.data(), col_weight.data(),
                                row_index.data(), row_weight.data(), rows.data(), line.data());
      T* point = xy_data + 3 * task;
      point[0] = h2k::pixel_centre(ax, peak.index % ax.size);
      point[1] = h2k::pixel_centre(ay, peak.index / ax.size);
      point[2] = T(1);
      score_data[task] = peak.value;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> heatmaps_to_keypoints_cpu(const at::Tensor& maps_in, const at::Tensor& rois) {
  h2k::check_args(maps_in, rois);
  TORCH_CHECK(maps_in.device().is_cpu(), "heatmaps_to_keypoints: maps must be a CPU tensor here, got ",
              maps_in.device());
  const at::ScalarType compute_type = at::toOpMathType(maps_in.scalar_type());
  at::Tensor xy, scores;
  std::tie(xy, scores) = h2k::empty_outputs(maps_in, compute_type);
  if (scores.numel() == 0) return {xy, scores};
  const at::Tensor maps = maps_in.contiguous();
  const at::Tensor boxes = rois.to(compute_type).contiguous();
  const bool fused = torch_cpu_kernels_fuse();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "heatmaps_to_keypoints_cpu", [&] {
    decode<scalar_t>(maps, boxes, xy, scores, fused);
  });
  return {xy, scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("heatmaps_to_keypoints", TORCH_FN(heatmaps_to_keypoints_cpu));
}

}  // namespace maskrcnn
