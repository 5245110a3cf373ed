// RoIPool on the CPU, forward and backward.
//
// The bin boundaries of every RoI are computed once; work is split over the input's (image, channel)
// planes, each thread running every RoI of that image over a plane it owns (in the backward pass, a
// gradient plane it alone writes: no atomics, deterministic).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "roi_align/cpu/roi_cpu_helpers.h"
#include "roi_align/roi_common.h"

namespace maskrcnn {
namespace {

constexpr const char* kOp = "roi_pool";

// Pixel ranges of every RoI's bins: RoI k, bin b along an axis covers [edges[2 * (k * pooled + b)],
// edges[2 * (k * pooled + b) + 1]) of the feature map (empty when end <= begin).
template <typename scalar_t>
std::vector<int> pool_bin_edges(
    const scalar_t* rois, int64_t num_rois, int lo_column, int hi_column, double spatial_scale, int pooled,
    int size) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<int> edges(num_rois * pooled * 2);
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  for (int64_t k = 0; k < num_rois; ++k) {
    const int start = static_cast<int>(std::round(static_cast<acc_t>(rois[k * 5 + lo_column]) * scale));
    const int end = static_cast<int>(std::round(static_cast<acc_t>(rois[k * 5 + hi_column]) * scale));
    const acc_t bin_size = static_cast<acc_t>(std::max(end - start + 1, 1)) / static_cast<acc_t>(pooled);
    for (int b = 0; b < pooled; ++b) {
      int* e = edges.data() + 2 * (k * pooled + b);
      roi::pool_bin<acc_t>(b, start, bin_size, size, e, e + 1);
    }
  }
  return edges;
}

void check_sizes_fit_int(const char* op, int64_t height, int64_t width) {
  TORCH_CHECK(
      height * width <= std::numeric_limits<int>::max(), op, ": an input plane of ", height, " x ", width,
      " pixels is too large for int32 argmax indices");
}

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width) {
  roi::check_forward_args(kOp, input, rois, spatial_scale, pooled_height, pooled_width);
  check_sizes_fit_int(kOp, input.size(2), input.size(3));
  const auto input_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  const int height = static_cast<int>(input.size(2));
  const int width = static_cast<int>(input.size(3));
  const int ph_count = static_cast<int>(pooled_height);
  const int pw_count = static_cast<int>(pooled_width);
  auto output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  auto argmax = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options().dtype(at::kInt));
  if (output.numel() == 0) return {output, argmax};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_forward_cpu", [&] {
    const scalar_t* rois_data = rois_c.const_data_ptr<scalar_t>();
    const auto groups = roi::group_rois_by_image(kOp, rois_data, num_rois, input.size(0));
    const auto row_edges = pool_bin_edges(rois_data, num_rois, 2, 4, spatial_scale, ph_count, height);
    const auto col_edges = pool_bin_edges(rois_data, num_rois, 1, 3, spatial_scale, pw_count, width);
    const scalar_t* in_data = input_c.const_data_ptr<scalar_t>();
    scalar_t* out_data = output.mutable_data_ptr<scalar_t>();
    int* arg_data = argmax.mutable_data_ptr<int>();
    const int64_t plane_size = int64_t(height) * width;
    const int64_t bins_per_roi = int64_t(ph_count) * pw_count;
    const int64_t grain = roi::plane_grain(num_rois / input.size(0) * bins_per_roi * 8);
    at::parallel_for(0, input.size(0) * channels, grain, [&](int64_t first, int64_t last) {
      for (int64_t task = first; task < last; ++task) {
        const int64_t plane = roi::plane_of_task(task, input.size(0), channels);
        const int64_t n = plane / channels;
        const int64_t c = plane % channels;
        const scalar_t* in = in_data + plane * plane_size;
        for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
          const int64_t k = groups.order[r];
          const int64_t out_offset = (k * channels + c) * bins_per_roi;
          for (int ph = 0; ph < ph_count; ++ph) {
            const int* rows = row_edges.data() + 2 * (k * ph_count + ph);
            for (int pw = 0; pw < pw_count; ++pw) {
              const int* cols = col_edges.data() + 2 * (k * pw_count + pw);
              const bool empty = rows[1] <= rows[0] || cols[1] <= cols[0];
              scalar_t best = empty ? scalar_t(0) : std::numeric_limits<scalar_t>::lowest();
              int best_index = -1;
              for (int h = rows[0]; h < rows[1]; ++h) {
                for (int w = cols[0]; w < cols[1]; ++w) {
                  const int index = h * width + w;
                  if (in[index] > best) {
                    best = in[index];
                    best_index = index;
                  }
                }
              }
              out_data[out_offset + ph * pw_count + pw] = best;
              arg_data[out_offset + ph * pw_count + pw] = best_index;
            }
          }
        }
      }
    });
  });
  return {output, argmax};
}

at::Tensor roi_pool_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t pooled_height,
    int64_t pooled_width,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  constexpr const char* op = "_roi_pool_backward";
  roi::check_backward_args(op, grad, rois, pooled_height, pooled_width, batch_size, channels, height, width);
  TORCH_CHECK(
      argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt, op,
      ": argmax must be an int32 tensor shaped like grad ", roi::shape_string(grad), ", got ",
      argmax.scalar_type(), " ", roi::shape_string(argmax));
  TORCH_CHECK(argmax.device() == grad.device(), op, ": argmax and grad must be on the same device");
  check_sizes_fit_int(op, height, width);
  const auto grad_c = grad.contiguous();
  const auto rois_c = rois.contiguous();
  const auto argmax_c = argmax.contiguous();
  auto grad_input = at::empty({batch_size, channels, height, width}, grad.options());
  const int64_t num_rois = rois.size(0);
  if (num_rois == 0 || grad_input.numel() == 0) return grad_input.zero_();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto groups = roi::group_rois_by_image(op, rois_c.const_data_ptr<scalar_t>(), num_rois, batch_size);
    const scalar_t* grad_data = grad_c.const_data_ptr<scalar_t>();
    const int* arg_data = argmax_c.const_data_ptr<int>();
    scalar_t* grad_in_data = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t plane_size = height * width;
    const int64_t bins_per_roi = pooled_height * pooled_width;
    roi::for_each_gradient_plane<scalar_t, acc_t>(
        grad_in_data, batch_size, channels, plane_size,
        roi::plane_grain(plane_size + num_rois / batch_size * bins_per_roi), [&](int64_t plane, acc_t* acc) {
          const int64_t n = plane / channels;
          const int64_t c = plane % channels;
          for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
            const int64_t offset = (groups.order[r] * channels + c) * bins_per_roi;
            for (int64_t b = 0; b < bins_per_roi; ++b) {
              const int index = arg_data[offset + b];
              if (index >= 0 && index < plane_size) acc[index] += static_cast<acc_t>(grad_data[offset + b]);
            }
          }
        });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("roi_pool", TORCH_FN(roi_pool_forward_cpu));
  m.impl("_roi_pool_backward", TORCH_FN(roi_pool_backward_cpu));
}

}  // namespace maskrcnn
