// RoIAlign on the CPU, forward and backward.
//
// A bilinear sample's weights factor into a row part and a column part, and the samples of a bin form
// a grid, so output bin (ph, pw) of a channel is  sum_rows wy * sum_cols wx * plane[row, col]  over
// short per-bin tap lists (AxisTaps) built once per RoI and reused for every channel. When the RoI's
// column span is narrow enough, the row sums are first formed for the whole span at once (a
// contiguous, vectorisable pass) and the column taps then read that line ("two-pass"); otherwise the
// taps are applied directly. Work is split over the input's (image, channel) planes: a thread takes a
// plane (which stays in cache) and runs every RoI of that image over it. In the backward pass each
// thread therefore owns whole gradient planes: no atomics, no races, and the result does not depend
// on the number of threads.
//
// Channels-last input (NHWC memory, as the FPN features of a channels-last model) takes its own path
// instead of being copied to NCHW: every tap then reads C contiguous values, the loops over channels
// vectorise, and the output (and, in the backward pass, the input gradient) is channels-last too.
// The forward pass splits the work over RoIs; the backward pass over blocks of channels, so that
// each thread again owns what it writes and the sums do not depend on the number of threads.
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
// index[i] (multiplied by the axis stride; for columns, relative to the RoI's first tapped column
// lo[k]) with weights weight[i] (already divided by the number of samples along the axis), for i in
// [bin_begin[k * (pooled + 1) + b], bin_begin[k * (pooled + 1) + b + 1]). lo[k] <= hi[k] bound the
// RoI's tapped pixels (before making them relative); a RoI without taps has lo = 0, hi = -1.
template <typename acc_t>
struct AxisTaps {
  std::vector<int64_t> bin_begin;
  std::vector<int64_t> index;
  std::vector<acc_t> weight;
  std::vector<int64_t> lo;
  std::vector<int64_t> hi;

  int64_t count(int64_t k, int pooled) const {
    return bin_begin[k * (pooled + 1) + pooled] - bin_begin[k * (pooled + 1)];
  }
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
    int64_t stride,
    bool relative) {
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
  taps.lo.assign(num_rois, 0);
  taps.hi.assign(num_rois, -1);
  at::parallel_for(0, num_rois, 64, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      const auto& g = geometry[k];
      const acc_t per_sample = g.grid > 0 ? acc_t(1) / static_cast<acc_t>(g.grid) : acc_t(0);
      int64_t pos = slab_begin[k];
      int64_t* bins = taps.bin_begin.data() + k * (pooled + 1);
      for (int b = 0; b < pooled; ++b) {
        bins[b] = pos;
        // Taps come in monotonic pixel order within a bin, so repeats are merged with the last one.
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
      if (pos > bins[0]) {
        const auto range = std::minmax_element(taps.index.begin() + bins[0], taps.index.begin() + pos);
        taps.lo[k] = *range.first;
        taps.hi[k] = *range.second;
        if (relative) {
          for (int64_t i = bins[0]; i < pos; ++i) taps.index[i] -= taps.lo[k];
        }
      }
    }
  });
  return taps;
}

// Everything about the RoIs that does not depend on the channel: row taps (absolute, pre-multiplied
// by the width), column taps (relative to the first tapped column), and which RoIs go two-pass.
template <typename acc_t>
struct RoiAlignPlan {
  AxisTaps<acc_t> rows;
  AxisTaps<acc_t> cols;
  std::vector<char> two_pass;
  int pooled_height;
  int pooled_width;
};

template <typename scalar_t, typename acc_t>
RoiAlignPlan<acc_t> make_plan(
    const scalar_t* rois, int64_t num_rois, double spatial_scale, int pooled_height, int pooled_width,
    int sampling_ratio, bool aligned, int height, int width, int64_t row_stride, int64_t col_stride) {
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  RoiAlignPlan<acc_t> plan;
  plan.pooled_height = pooled_height;
  plan.pooled_width = pooled_width;
  plan.rows = build_axis_taps<scalar_t, acc_t>(
      rois, num_rois, 2, 4, scale, pooled_height, sampling_ratio, aligned, height, row_stride, false);
  plan.cols = build_axis_taps<scalar_t, acc_t>(
      rois, num_rois, 1, 3, scale, pooled_width, sampling_ratio, aligned, width, col_stride, true);
  plan.two_pass.resize(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    // Direct: every (row tap, column tap) pair of every bin, scalar. Two-pass: every row tap over the
    // column span (vectorised, counted as 1/4), then every column tap once per output row.
    const int64_t row_taps = plan.rows.count(k, pooled_height);
    const int64_t col_taps = plan.cols.count(k, pooled_width);
    const int64_t span = plan.cols.hi[k] - plan.cols.lo[k] + 1;
    plan.two_pass[k] = row_taps * span / 4 + int64_t(pooled_height) * col_taps < row_taps * col_taps;
  }
  return plan;
}

// The RoIAlign arguments every kernel below takes.
struct RoiAlignArgs {
  double spatial_scale;
  int pooled_height;
  int pooled_width;
  int sampling_ratio;
  bool aligned;
};

// What every kernel starts from: the shape of the feature map (input, or grad_input, [N, C, H, W]),
// the RoIs grouped by image (checks their batch indices) and, when H and W are not zero, their
// sampling taps with the strides of NCHW or NHWC memory.
template <typename scalar_t, typename acc_t>
struct RoiAlignSetup {
  int64_t batch_size;
  int64_t channels;
  int height;
  int width;
  int64_t num_rois;
  const scalar_t* rois;
  roi::RoisByImage groups;
  RoiAlignPlan<acc_t> plan;
};

template <typename scalar_t, typename acc_t>
RoiAlignSetup<scalar_t, acc_t> make_setup(
    const at::Tensor& feature, const at::Tensor& rois, const RoiAlignArgs& args, bool channels_last) {
  RoiAlignSetup<scalar_t, acc_t> setup;
  setup.batch_size = feature.size(0);
  setup.channels = feature.size(1);
  setup.height = static_cast<int>(feature.size(2));
  setup.width = static_cast<int>(feature.size(3));
  setup.num_rois = rois.size(0);
  setup.rois = rois.const_data_ptr<scalar_t>();
  setup.groups = roi::group_rois_by_image(kOp, setup.rois, setup.num_rois, setup.batch_size);
  if (setup.height > 0 && setup.width > 0) {
    const int64_t row_stride = channels_last ? int64_t(setup.width) * setup.channels : setup.width;
    const int64_t col_stride = channels_last ? setup.channels : 1;
    setup.plan = make_plan<scalar_t, acc_t>(
        setup.rois, setup.num_rois, args.spatial_scale, args.pooled_height, args.pooled_width,
        args.sampling_ratio, args.aligned, setup.height, setup.width, row_stride, col_stride);
  }
  return setup;
}

// out[ph * PW + pw] for one RoI over one input plane; line: scratch of at least `width` elements.
template <typename scalar_t, typename acc_t>
void roi_align_forward_one(
    const RoiAlignPlan<acc_t>& plan, int64_t k, const scalar_t* plane, scalar_t* out, acc_t* line) {
  const int PH = plan.pooled_height, PW = plan.pooled_width;
  const int64_t* row_bins = plan.rows.bin_begin.data() + k * (PH + 1);
  const int64_t* col_bins = plan.cols.bin_begin.data() + k * (PW + 1);
  const int64_t* row_index = plan.rows.index.data();
  const acc_t* row_weight = plan.rows.weight.data();
  const int64_t* col_index = plan.cols.index.data();
  const acc_t* col_weight = plan.cols.weight.data();
  const scalar_t* base = plane + plan.cols.lo[k];
  if (plan.two_pass[k]) {
    const int64_t span = plan.cols.hi[k] - plan.cols.lo[k] + 1;
    for (int ph = 0; ph < PH; ++ph) {
      std::fill(line, line + span, acc_t(0));
      for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
        const scalar_t* __restrict src = base + row_index[i];
        acc_t* __restrict dst = line;
        const acc_t w = row_weight[i];
        for (int64_t x = 0; x < span; ++x) dst[x] += w * static_cast<acc_t>(src[x]);
      }
      for (int pw = 0; pw < PW; ++pw) {
        acc_t sum = 0;
        for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) sum += col_weight[j] * line[col_index[j]];
        out[ph * PW + pw] = static_cast<scalar_t>(sum);
      }
    }
    return;
  }
  for (int ph = 0; ph < PH; ++ph) {
    for (int pw = 0; pw < PW; ++pw) {
      acc_t sum = 0;
      for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
        const scalar_t* src = base + row_index[i];
        acc_t row_sum = 0;
        for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) {
          row_sum += col_weight[j] * static_cast<acc_t>(src[col_index[j]]);
        }
        sum += row_weight[i] * row_sum;
      }
      out[ph * PW + pw] = static_cast<scalar_t>(sum);
    }
  }
}

// Adds one RoI's output gradient g[ph * PW + pw] into the gradient plane acc; line: scratch as above.
template <typename scalar_t, typename acc_t>
void roi_align_backward_one(
    const RoiAlignPlan<acc_t>& plan, int64_t k, const scalar_t* g, acc_t* acc, acc_t* line) {
  const int PH = plan.pooled_height, PW = plan.pooled_width;
  const int64_t* row_bins = plan.rows.bin_begin.data() + k * (PH + 1);
  const int64_t* col_bins = plan.cols.bin_begin.data() + k * (PW + 1);
  const int64_t* row_index = plan.rows.index.data();
  const acc_t* row_weight = plan.rows.weight.data();
  const int64_t* col_index = plan.cols.index.data();
  const acc_t* col_weight = plan.cols.weight.data();
  acc_t* base = acc + plan.cols.lo[k];
  if (plan.two_pass[k]) {
    const int64_t span = plan.cols.hi[k] - plan.cols.lo[k] + 1;
    for (int ph = 0; ph < PH; ++ph) {
      if (row_bins[ph] == row_bins[ph + 1]) continue;
      std::fill(line, line + span, acc_t(0));
      for (int pw = 0; pw < PW; ++pw) {
        const acc_t value = static_cast<acc_t>(g[ph * PW + pw]);
        for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) line[col_index[j]] += value * col_weight[j];
      }
      for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
        acc_t* __restrict dst = base + row_index[i];
        const acc_t* __restrict src = line;
        const acc_t w = row_weight[i];
        for (int64_t x = 0; x < span; ++x) dst[x] += w * src[x];
      }
    }
    return;
  }
  for (int ph = 0; ph < PH; ++ph) {
    for (int pw = 0; pw < PW; ++pw) {
      const acc_t value = static_cast<acc_t>(g[ph * PW + pw]);
      for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
        acc_t* dst = base + row_index[i];
        const acc_t row_value = value * row_weight[i];
        for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) dst[col_index[j]] += row_value * col_weight[j];
      }
    }
  }
}

// NCHW forward: out (contiguous [K, C, PH, PW]); a task takes one (image, channel) plane and every
// RoI of that image over it.
template <typename scalar_t, typename acc_t>
void roi_align_forward_nchw(
    const RoiAlignSetup<scalar_t, acc_t>& setup, const RoiAlignArgs& args, const scalar_t* in_data,
    scalar_t* out_data) {
  const auto& [batch_size, channels, height, width, num_rois, rois_data, groups, plan] = setup;
  const int64_t plane_size = int64_t(height) * width;
  const int64_t bins_per_roi = int64_t(args.pooled_height) * args.pooled_width;
  const int64_t grain = roi::plane_grain(plane_size + num_rois / batch_size * bins_per_roi * 16);
  at::parallel_for(0, batch_size * channels, grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> line(width);
    for (int64_t task = first; task < last; ++task) {
      const int64_t plane = roi::plane_of_task(task, batch_size, channels);
      const int64_t n = plane / channels;
      const int64_t c = plane % channels;
      for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
        const int64_t k = groups.order[r];
        roi_align_forward_one(
            plan, k, in_data + plane * plane_size, out_data + (k * channels + c) * bins_per_roi, line.data());
      }
    }
  });
}

// NCHW backward: grad (contiguous [K, C, PH, PW]) into grad_input (contiguous [N, C, H, W]).
template <typename scalar_t, typename acc_t>
void roi_align_backward_nchw(
    const RoiAlignSetup<scalar_t, acc_t>& setup, const RoiAlignArgs& args, const at::Tensor& grad,
    at::Tensor& grad_input) {
  const auto& [batch_size, channels, height, width, num_rois, rois_data, groups, plan] = setup;
  const scalar_t* grad_data = grad.const_data_ptr<scalar_t>();
  const int64_t bins_per_roi = int64_t(args.pooled_height) * args.pooled_width;
  const int64_t plane_size = int64_t(height) * width;
  roi::for_each_gradient_plane<scalar_t, acc_t>(
      grad_input.mutable_data_ptr<scalar_t>(), batch_size, channels, plane_size,
      roi::plane_grain(plane_size + num_rois / batch_size * bins_per_roi * 16),
      [&](int64_t plane, acc_t* acc) {
        std::vector<acc_t> line(width);
        const int64_t n = plane / channels;
        const int64_t c = plane % channels;
        for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
          const int64_t k = groups.order[r];
          roi_align_backward_one(plan, k, grad_data + (k * channels + c) * bins_per_roi, acc, line.data());
        }
      });
}


// True when t is laid out channels-last and not also plain contiguous (C == 1 or H * W == 1 make
// the two layouts the same memory; those take the NCHW path).
bool use_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Channels-last forward: out (NHWC memory of [K, C, PH, PW]) for every RoI, one RoI per task.
template <typename scalar_t, typename acc_t>
void roi_align_forward_nhwc(
    const RoiAlignSetup<scalar_t, acc_t>& setup, const RoiAlignArgs& args, const scalar_t* in_data,
    scalar_t* out_data) {
  const auto& [batch_size, channels, height, width, num_rois, rois_data, groups, plan] = setup;
  const int64_t image_size = int64_t(height) * width * channels;
  const int PH = args.pooled_height, PW = args.pooled_width;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, PH * PW * channels * 4));
  at::parallel_for(0, num_rois, grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> sum(channels);
    for (int64_t k = first; k < last; ++k) {
      const int64_t n = static_cast<int64_t>(rois_data[k * 5]);
      const scalar_t* base = in_data + n * image_size + plan.cols.lo[k];
      const int64_t* row_bins = plan.rows.bin_begin.data() + k * (PH + 1);
      const int64_t* col_bins = plan.cols.bin_begin.data() + k * (PW + 1);
      for (int ph = 0; ph < PH; ++ph) {
        for (int pw = 0; pw < PW; ++pw) {
          acc_t* __restrict acc = sum.data();
          std::fill(acc, acc + channels, acc_t(0));
          for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
            const scalar_t* row = base + plan.rows.index[i];
            for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) {
              const acc_t w = plan.rows.weight[i] * plan.cols.weight[j];
              const scalar_t* __restrict src = row + plan.cols.index[j];
              for (int64_t c = 0; c < channels; ++c) acc[c] += w * static_cast<acc_t>(src[c]);
            }
          }
          scalar_t* __restrict dst = out_data + ((k * PH + ph) * PW + pw) * channels;
          for (int64_t c = 0; c < channels; ++c) dst[c] = static_cast<scalar_t>(acc[c]);
        }
      }
    }
  });
}

// Channels-last backward: grad (NHWC memory of [K, C, PH, PW]) into grad_input (NHWC memory of
// [N, C, H, W], zero on entry). A task owns a block of channels of every pixel; within it the RoIs
// are added in their order, so the result is the same for any number of threads.
template <typename scalar_t, typename acc_t>
void roi_align_backward_nhwc(
    const RoiAlignSetup<scalar_t, acc_t>& setup, const RoiAlignArgs& args, const at::Tensor& grad,
    at::Tensor& grad_input) {
  const auto& [batch_size, channels, height, width, num_rois, rois_data, groups, plan] = setup;
  // the sums run in acc_t: in grad_input itself, or in a float buffer for half / bfloat16
  at::Tensor acc_tensor = std::is_same_v<scalar_t, acc_t>
      ? grad_input
      : at::zeros({batch_size, height, width, channels}, grad_input.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  acc_t* acc_data = acc_tensor.mutable_data_ptr<acc_t>();
  const scalar_t* grad_data = grad.const_data_ptr<scalar_t>();
  const int64_t image_size = int64_t(height) * width * channels;
  const int PH = args.pooled_height, PW = args.pooled_width;
  constexpr int64_t kBlock = 16;
  const int64_t num_blocks = (channels + kBlock - 1) / kBlock;
  const int64_t blocks_per_task = std::max<int64_t>(1, num_blocks / std::max(1, at::get_num_threads()));
  at::parallel_for(0, num_blocks, blocks_per_task, [&](int64_t first, int64_t last) {
    const int64_t c0 = first * kBlock;
    const int64_t c1 = std::min(channels, last * kBlock);
    for (int64_t n = 0; n < batch_size; ++n) {
      for (int64_t r = groups.begin[n]; r < groups.begin[n + 1]; ++r) {
        const int64_t k = groups.order[r];
        acc_t* base = acc_data + n * image_size + plan.cols.lo[k];
        const int64_t* row_bins = plan.rows.bin_begin.data() + k * (PH + 1);
        const int64_t* col_bins = plan.cols.bin_begin.data() + k * (PW + 1);
        for (int ph = 0; ph < PH; ++ph) {
          for (int pw = 0; pw < PW; ++pw) {
            const scalar_t* __restrict g = grad_data + ((k * PH + ph) * PW + pw) * channels;
            for (int64_t i = row_bins[ph]; i < row_bins[ph + 1]; ++i) {
              acc_t* row = base + plan.rows.index[i];
              for (int64_t j = col_bins[pw]; j < col_bins[pw + 1]; ++j) {
                const acc_t w = plan.rows.weight[i] * plan.cols.weight[j];
                acc_t* __restrict dst = row + plan.cols.index[j];
                for (int64_t c = c0; c < c1; ++c) dst[c] += w * static_cast<acc_t>(g[c]);
              }
            }
          }
        }
      }
    }
  });
  if constexpr (!std::is_same_v<scalar_t, acc_t>) {
    grad_input.copy_(acc_tensor.permute({0, 3, 1, 2}));
  }
}

template <typename scalar_t>
void roi_align_forward_typed(
    const at::Tensor& input, const at::Tensor& rois, const RoiAlignArgs& args, bool channels_last,
    at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto setup = make_setup<scalar_t, acc_t>(input, rois, args, channels_last);
  if (setup.height == 0 || setup.width == 0) {
    output.zero_();
    return;
  }
  const scalar_t* in_data = input.const_data_ptr<scalar_t>();
  scalar_t* out_data = output.mutable_data_ptr<scalar_t>();
  if (channels_last) {
    roi_align_forward_nhwc(setup, args, in_data, out_data);
  } else {
    roi_align_forward_nchw(setup, args, in_data, out_data);
  }
}

// grad_input: zero on entry when channels_last (the NHWC kernel adds into it).
template <typename scalar_t>
void roi_align_backward_typed(
    const at::Tensor& grad, const at::Tensor& rois, const RoiAlignArgs& args, bool channels_last,
    at::Tensor& grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto setup = make_setup<scalar_t, acc_t>(grad_input, rois, args, channels_last);
  if (grad_input.numel() == 0) return;
  if (channels_last) {
    roi_align_backward_nhwc(setup, args, grad, grad_input);
  } else {
    roi_align_backward_nchw(setup, args, grad, grad_input);
  }
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
  const RoiAlignArgs args{
      spatial_scale, static_cast<int>(pooled_height), static_cast<int>(pooled_width),
      static_cast<int>(sampling_ratio), aligned};
  const auto rois_c = rois.contiguous();
  const bool channels_last = use_channels_last(input);
  const auto memory_format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const auto input_c = input.contiguous(memory_format);
  auto output = at::empty(
      {rois.size(0), input.size(1), pooled_height, pooled_width}, input.options().memory_format(memory_format));
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cpu", [&] {
    roi_align_forward_typed<scalar_t>(input_c, rois_c, args, channels_last, output);
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
  const RoiAlignArgs args{
      spatial_scale, static_cast<int>(pooled_height), static_cast<int>(pooled_width),
      static_cast<int>(sampling_ratio), aligned};
  const auto rois_c = rois.contiguous();
  const bool channels_last = use_channels_last(grad);
  const auto memory_format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const auto grad_c = grad.contiguous(memory_format);
  // (at::zeros would drop the memory format)
  auto grad_input = at::empty({batch_size, channels, height, width}, grad.options().memory_format(memory_format));
  if (rois.size(0) == 0 || channels_last) grad_input.zero_();
  if (rois.size(0) == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cpu", [&] {
    roi_align_backward_typed<scalar_t>(grad_c, rois_c, args, channels_last, grad_input);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("roi_align", TORCH_FN(roi_align_forward_cpu));
  m.impl("_roi_align_backward", TORCH_FN(roi_align_backward_cpu));
}

}  // namespace maskrcnn
