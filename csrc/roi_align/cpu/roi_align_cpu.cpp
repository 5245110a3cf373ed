// RoIAlign on the CPU, forward and backward.
//
// A bilinear sample's weights factor into a row part and a column part, and the samples of a bin form
// a grid, so one output bin is  sum_rows wy * sum_cols wx * plane[row, col]  over short per-bin tap
// lists (AxisTaps) built once per RoI and reused for every channel. Work is split over the input's
// (image, channel) planes: a thread takes a plane (which stays in cache) and runs every RoI of that
// image over it. In the backward pass each thread therefore owns whole gradient planes: no atomics,
// no races, and the result does not depend on the number of threads.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "roi_align/cpu/roi_cpu_helpers.h"
#include "roi_align/roi_common.h"

namespace maskrcnn {
namespace {

constexpr const char* kOp = "roi_align";

// Bilinear taps of every RoI along one axis, grouped by output bin. Bin b of RoI k reads the pixels
// index[i] (already multiplied by the axis stride) with weights weight[i] (already divided by the
// number of samples along the axis), for i in [bin_begin[k * (pooled + 1) + b], bin_begin[... + b + 1]).
template <typename acc_t>
struct AxisTaps {
  std::vector<int64_t> bin_begin;
  std::vector<int64_t> index;
  std::vector<acc_t> weight;
};

// lo_column / hi_column: the rois columns holding this axis's extent (1, 3 for x; 2, 4 for y).
template <typename scalar_t, typename acc_t>
AxisTaps<acc_t> build_axis_taps(
    const scalar_t* rois,
    int64_t num_rois,
    int lo_column,
    int hi_column,
    acc_t spatial_scale,
    int pooled,
    int sampling_ratio,
    bool aligned,
    int size,
    int64_t stride) {
  std::vector<roi::AxisGeometry<acc_t>> geometry(num_rois);
  std::vector<int64_t> slab_begin(num_rois + 1, 0);  // room for 2 taps per sample
  for (int64_t k = 0; k < num_rois; ++k) {
    geometry[k] = roi::axis_geometry<acc_t>(
        static_cast<acc_t>(rois[k * 5 + lo_column]), static_cast<acc_t>(rois[k * 5 + hi_column]), spatial_scale,
        pooled, sampling_ratio, aligned);
    slab_begin[k + 1] = slab_begin[k] + int64_t(pooled) * 2 * std::max(geometry[k].grid, 0);
  }
  AxisTaps<acc_t> taps;
  taps.bin_begin.resize(num_rois * (pooled + 1));
  taps.index.resize(slab_begin[num_rois]);
  taps.weight.resize(slab_begin[num_rois]);
  at::parallel_for(0, num_rois, 64, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      const auto& g = geometry[k];
      const acc_t per_sample = g.grid > 0 ? acc_t(1) / static_cast<acc_t>(g.grid) : acc_t(0);
      int64_t pos = slab_begin[k];
      int64_t* bins = taps.bin_begin.data() + k * (pooled + 1);
      for (int b = 0; b < pooled; ++b) {
        bins[b] = pos;
        // Taps come in non-decreasing pixel order within a bin, so repeats are merged with the last one.
        auto push = [&](int pixel, acc_t w) {
          const int64_t index = pixel * stride;
          if (pos > bins[b] && taps.index[pos - 1] == index) {
            taps.weight[pos - 1] += w;
          } else {
            taps.index[pos] = index;
            taps.weight[pos] = w;
            ++pos;
          }
        };
        for (int i = 0; i < g.grid; ++i) {
          const acc_t coord = g.start + static_cast<acc_t>(b) * g.bin_size +
              static_cast<acc_t>(i + .5f) * g.bin_size / static_cast<acc_t>(g.grid);
          const auto tap = roi::linear_tap<acc_t>(coord, size);
          if (!tap.valid) continue;
          push(tap.low, tap.low_weight * per_sample);
          push(tap.high, tap.high_weight * per_sample);
        }
      }
      bins[pooled] = pos;
    }
  });
  return taps;
}

template <typename scalar_t>
void roi_align_forward_typed(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int pooled_height,
    int pooled_width,
    int sampling_ratio,
    bool aligned,
    at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = input.size(1);
  const int height = static_cast<int>(input.size(2));
  const int width = static_cast<int>(input.size(3));
  const int64_t num_rois = rois.size(0);
  const scalar_t* rois_data = rois.const_data_ptr<scalar_t>();
  const auto groups = roi::group_rois_by_image(kOp, rois_data, num_rois, input.size(0));
  if (height == 0 || width == 0) {
    output.zero_();
    return;
  }
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  const auto rows = build_axis_taps<scalar_t, acc_t>(
      rois_data, num_rois, 2, 4, scale, pooled_height, sampling_ratio, aligned, height, width);
  const auto cols = build_axis_taps<scalar_t, acc_t>(
      rois_data, num_rois, 1, 3, scale, pooled_width, sampling_ratio, aligned, width, 1);

  const scalar_t* in_data = input.const_data_ptr<scalar_t>();
  scalar_t* out_data = output.mutable_data_ptr<scalar_t>();
  const int64_t plane_size = int64_t(height) * width;
  const int64_t bins_per_roi = int64_t(pooled_height) * pooled_width;
  at::parallel_for(0, input.size(0) * channels, 1, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) {
      const int64_t n = plane / channels;
      const int64_t c = plane % channels;
      const scalar_t* in = in_data + plane * plane_size;
      for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
        const int64_t k = groups.order[r];
        scalar_t* out = out_data + (k * channels + c) * bins_per_roi;
        const int64_t* row_bins = rows.bin_begin.data() + k * (pooled_height + 1);
        const int64_t* col_bins = cols.bin_begin.data() + k * (pooled_width + 1);
        for (int ph = 0; ph < pooled_height; ++ph) {
          for (int pw = 0; pw < pooled_width; ++pw) {
            acc_t sum = 0;
            for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
              const scalar_t* line = in + rows.index[i];
              acc_t line_sum = 0;
              for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) {
                line_sum += cols.weight[j] * static_cast<acc_t>(line[cols.index[j]]);
              }
              sum += rows.weight[i] * line_sum;
            }
            out[ph * pooled_width + pw] = static_cast<scalar_t>(sum);
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void roi_align_backward_typed(
    const at::Tensor& grad,
    const at::Tensor& rois,
    double spatial_scale,
    int pooled_height,
    int pooled_width,
    int sampling_ratio,
    bool aligned,
    at::Tensor& grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t batch_size = grad_input.size(0);
  const int64_t channels = grad_input.size(1);
  const int height = static_cast<int>(grad_input.size(2));
  const int width = static_cast<int>(grad_input.size(3));
  const int64_t num_rois = rois.size(0);
  const scalar_t* rois_data = rois.const_data_ptr<scalar_t>();
  const auto groups = roi::group_rois_by_image(kOp, rois_data, num_rois, batch_size);
  if (grad_input.numel() == 0) return;
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  const auto rows = build_axis_taps<scalar_t, acc_t>(
      rois_data, num_rois, 2, 4, scale, pooled_height, sampling_ratio, aligned, height, width);
  const auto cols = build_axis_taps<scalar_t, acc_t>(
      rois_data, num_rois, 1, 3, scale, pooled_width, sampling_ratio, aligned, width, 1);

  const scalar_t* grad_data = grad.const_data_ptr<scalar_t>();
  scalar_t* grad_in_data = grad_input.mutable_data_ptr<scalar_t>();
  const int64_t plane_size = int64_t(height) * width;
  const int64_t bins_per_roi = int64_t(pooled_height) * pooled_width;
  roi::for_each_gradient_plane<scalar_t, acc_t>(
      grad_in_data, batch_size * channels, plane_size, [&](int64_t plane, acc_t* acc) {
        const int64_t n = plane / channels;
        const int64_t c = plane % channels;
        for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
          const int64_t k = groups.order[r];
          const scalar_t* g = grad_data + (k * channels + c) * bins_per_roi;
          const int64_t* row_bins = rows.bin_begin.data() + k * (pooled_height + 1);
          const int64_t* col_bins = cols.bin_begin.data() + k * (pooled_width + 1);
          for (int ph = 0; ph < pooled_height; ++ph) {
            for (int pw = 0; pw < pooled_width; ++pw) {
              const acc_t value = static_cast<acc_t>(g[ph * pooled_width + pw]);
              for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
                acc_t* line = acc + rows.index[i];
                const acc_t row_value = value * rows.weight[i];
                for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) {
                  line[cols.index[j]] += row_value * cols.weight[j];
                }
              }
            }
          }
        }
      });
}

at::Tensor roi_align_forward_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t sampling_ratio,
    bool aligned) {
  roi::check_forward_args(kOp, input, rois, spatial_scale, pooled_height, pooled_width);
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  auto output = at::empty({rois.size(0), input.size(1), pooled_height, pooled_width}, input.options());
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cpu", [&] {
    roi_align_forward_typed<scalar_t>(
        input_c, rois_c, spatial_scale, static_cast<int>(pooled_height), static_cast<int>(pooled_width),
        static_cast<int>(sampling_ratio), aligned, output);
  });
  return output;
}

at::Tensor roi_align_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    bool aligned) {
  roi::check_backward_args(
      "_roi_align_backward", grad, rois, pooled_height, pooled_width, batch_size, channels, height, width);
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "_roi_align_backward: grad must be a floating-point tensor");
  const auto grad_c = grad.contiguous();
  const auto rois_c = rois.contiguous();
  auto grad_input = at::empty({batch_size, channels, height, width}, grad.options());
  if (rois.size(0) == 0) return grad_input.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cpu", [&] {
    roi_align_backward_typed<scalar_t>(
        grad_c, rois_c, spatial_scale, static_cast<int>(pooled_height), static_cast<int>(pooled_width),
        static_cast<int>(sampling_ratio), aligned, grad_input);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("roi_align", TORCH_FN(roi_align_forward_cpu));
  m.impl("_roi_align_backward", TORCH_FN(roi_align_backward_cpu));
}

}  // namespace maskrcnn
