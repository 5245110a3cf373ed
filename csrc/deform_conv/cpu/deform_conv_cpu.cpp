// CPU kernels of deform_conv2d (forward and backward), parallelised with at::parallel_for.
//
// For each chunk of images the bilinear taps (neighbour indices, weights and weight derivatives, see
// make_bilinear_tap) are computed once per (image, offset group, kernel tap, output pixel) into a
// table, and then reused by every input channel of that offset group. Work is split so that no two
// threads write the same element:
//   im2col        over (channel, image): each writes its own rows/columns of the column buffer;
//   input grad    over (channel, image): each scatters only into its own input plane;
//   offset/mask   over (image, offset group, tap, pixel) ranges: each owns those output elements and
//   grads         sums over the group's channels itself; the same pass rewrites the columns (for the
//                 weight gradient) from the samples it reads anyway.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "deform_conv/deform_conv_common.h"

namespace maskrcnn {
namespace deform_conv {
namespace {

// A bilinear tap plus the modulation (mask value, 1 for v1) of that tap.
// Smallest amount of work (in bilinear samples) worth a parallel task: below it, the OpenMP fork/join
// costs more than it saves, and tiny problems (gradcheck, small feature maps) run on one thread.
constexpr int64_t kMinSamplesPerTask = int64_t(1) << 15;

inline int64_t grain_size(int64_t samples_per_item) {
  return std::max<int64_t>(1, kMinSamplesPerTask / std::max<int64_t>(1, samples_per_item));
}

// The bilinear taps of a chunk, one entry per (image b, offset group, kernel tap k, pixel p) at
// ((b * og + group) * K + k) * P + p, split so that each pass streams only what it reads:
// samples (neighbour indices and weights, 32 bytes in float) for every pass, the modulation
// (mask value, 1 for v1), and the weight derivatives only for the backward pass.
template <typename acc_t>
struct TapSamples {
  int32_t index[4];
  acc_t weight[4];
};

template <typename acc_t>
struct TapDerivatives {
  acc_t dy[4];
  acc_t dx[4];
};

template <typename acc_t>
struct TapTable {
  std::vector<TapSamples<acc_t>> samples;
  std::vector<acc_t> modulation;
  std::vector<TapDerivatives<acc_t>> derivatives;  // empty unless built for the backward pass
};

template <typename scalar_t, typename acc_t>
TapTable<acc_t> build_tap_table(const scalar_t* offset, const scalar_t* mask, const DeformConvGeometry& g,
                                bool with_derivatives) {
  const int64_t taps = g.taps(), pixels = g.out_pixels();
  const int64_t entries = g.batch * g.offset_groups * taps * pixels;
  TapTable<acc_t> table;
  table.samples.resize(entries);
  table.modulation.resize(entries);
  if (with_derivatives) table.derivatives.resize(entries);
  at::parallel_for(0, entries, grain_size(1), [&](int64_t begin, int64_t end) {
    BilinearTap<acc_t> tap;
    for (int64_t e = begin; e < end; ++e) {
      const int64_t row = e / pixels, p = e % pixels;  // row = (b * og + group) * K + k
      const int64_t k = row % taps;
      const int64_t oh = p / g.out_width, ow = p % g.out_width;
      const scalar_t* off = offset + row * 2 * pixels;
      const acc_t y = acc_t(tap_base_y(g, oh, k / g.kernel_w)) + acc_t(off[p]);
      const acc_t x = acc_t(tap_base_x(g, ow, k % g.kernel_w)) + acc_t(off[pixels + p]);
      make_bilinear_tap<acc_t>(y, x, g.height, g.width, tap);
      for (int n = 0; n < 4; ++n) {
        table.samples[e].index[n] = tap.index[n];
        table.samples[e].weight[n] = tap.weight[n];
      }
      if (with_derivatives) {
        for (int n = 0; n < 4; ++n) {
          table.derivatives[e].dy[n] = tap.dweight_dy[n];
          table.derivatives[e].dx[n] = tap.dweight_dx[n];
        }
      }
      table.modulation[e] = mask ? acc_t(mask[e]) : acc_t(1);
    }
  });
  return table;
}

template <typename scalar_t, typename acc_t>
inline acc_t sample(const scalar_t* plane, const acc_t* weights, const int32_t* index) {
  return weights[0] * acc_t(plane[index[0]]) + weights[1] * acc_t(plane[index[1]]) +
         weights[2] * acc_t(plane[index[2]]) + weights[3] * acc_t(plane[index[3]]);
}

template <typename scalar_t>
void im2col_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
                   const DeformConvGeometry& g, scalar_t* columns) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto table = build_tap_table<scalar_t, acc_t>(offset, mask, g, /*with_derivatives=*/false);
  const int64_t taps = g.taps(), pixels = g.out_pixels(), plane_size = g.height * g.width;
  const int64_t column_width = g.batch * pixels;
  at::parallel_for(0, g.channels * g.batch, grain_size(taps * pixels), [&](int64_t begin, int64_t end) {
    for (int64_t cb = begin; cb < end; ++cb) {
      const int64_t c = cb / g.batch, b = cb % g.batch;
      const int64_t group = c / g.channels_per_offset_group;
      const scalar_t* plane = input + (b * g.channels + c) * plane_size;
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t first = ((b * g.offset_groups + group) * taps + k) * pixels;
        const TapSamples<acc_t>* samples = table.samples.data() + first;
        const acc_t* modulation = table.modulation.data() + first;
        scalar_t* out = columns + (c * taps + k) * column_width + b * pixels;
        for (int64_t p = 0; p < pixels; ++p) {
          out[p] = scalar_t(modulation[p] * sample(plane, samples[p].weight, samples[p].index));
        }
      }
    }
  });
}

// Gradients wrt input, offset and mask from the column gradient; also rewrites `columns` (the
// forward's im2col result, which the weight gradient needs) from the samples this pass reads anyway.
template <typename scalar_t>
void col2im_kernel(const scalar_t* grad_columns, const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
                   const DeformConvGeometry& g, at::opmath_type<scalar_t>* grad_input, scalar_t* grad_offset,
                   scalar_t* grad_mask, scalar_t* columns) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto table = build_tap_table<scalar_t, acc_t>(offset, mask, g, /*with_derivatives=*/true);
  const int64_t taps = g.taps(), pixels = g.out_pixels(), plane_size = g.height * g.width;
  const int64_t column_width = g.batch * pixels;

  // Input gradient: scatter each column entry back to its four neighbours, one plane per task.
  at::parallel_for(0, g.channels * g.batch, grain_size(taps * pixels), [&](int64_t begin, int64_t end) {
    for (int64_t cb = begin; cb < end; ++cb) {
      const int64_t c = cb / g.batch, b = cb % g.batch;
      const int64_t group = c / g.channels_per_offset_group;
      acc_t* plane = grad_input + (b * g.channels + c) * plane_size;
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t first = ((b * g.offset_groups + group) * taps + k) * pixels;
        const TapSamples<acc_t>* samples = table.samples.data() + first;
        const acc_t* modulation = table.modulation.data() + first;
        const scalar_t* grad_row = grad_columns + (c * taps + k) * column_width + b * pixels;
        for (int64_t p = 0; p < pixels; ++p) {
          const acc_t value = acc_t(grad_row[p]) * modulation[p];
          for (int n = 0; n < 4; ++n) {
            plane[samples[p].index[n]] += samples[p].weight[n] * value;
          }
        }
      }
    }
  });

  // Offset and mask gradients (and the columns): each task owns a range of pixels of some
  // (image, group, tap) rows and sums over the group's channels itself.
  const int64_t rows = g.batch * g.offset_groups * taps;
  at::parallel_for(0, rows * pixels, grain_size(g.channels_per_offset_group), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> grad_y, grad_x, grad_m;
    for (int64_t e = begin; e < end;) {
      const int64_t row = e / pixels, p0 = e % pixels;
      const int64_t p1 = std::min(pixels, p0 + (end - e));
      const int64_t k = row % taps, group_row = row / taps;
      const int64_t b = group_row / g.offset_groups, group = group_row % g.offset_groups;
      const TapSamples<acc_t>* samples = table.samples.data() + row * pixels;
      const TapDerivatives<acc_t>* derivatives = table.derivatives.data() + row * pixels;
      const acc_t* modulation = table.modulation.data() + row * pixels;
      grad_y.assign(p1 - p0, acc_t(0));
      grad_x.assign(p1 - p0, acc_t(0));
      grad_m.assign(p1 - p0, acc_t(0));
      for (int64_t cl = 0; cl < g.channels_per_offset_group; ++cl) {
        const int64_t c = group * g.channels_per_offset_group + cl;
        const scalar_t* plane = input + (b * g.channels + c) * plane_size;
        const scalar_t* grad_row = grad_columns + (c * taps + k) * column_width + b * pixels;
        scalar_t* column_row = columns + (c * taps + k) * column_width + b * pixels;
        for (int64_t p = p0; p < p1; ++p) {
          const int32_t* index = samples[p].index;
          const acc_t v[4] = {acc_t(plane[index[0]]), acc_t(plane[index[1]]), acc_t(plane[index[2]]),
                              acc_t(plane[index[3]])};
          const acc_t* w = samples[p].weight;
          const acc_t* dy = derivatives[p].dy;
          const acc_t* dx = derivatives[p].dx;
          const acc_t value = w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3];
          const acc_t grad_value = acc_t(grad_row[p]);
          grad_y[p - p0] += grad_value * (dy[0] * v[0] + dy[1] * v[1] + dy[2] * v[2] + dy[3] * v[3]);
          grad_x[p - p0] += grad_value * (dx[0] * v[0] + dx[1] * v[1] + dx[2] * v[2] + dx[3] * v[3]);
          grad_m[p - p0] += grad_value * value;
          column_row[p] = scalar_t(modulation[p] * value);
        }
      }
      scalar_t* out_y = grad_offset + row * 2 * pixels;
      for (int64_t p = p0; p < p1; ++p) {
        out_y[p] = scalar_t(grad_y[p - p0] * modulation[p]);
        out_y[pixels + p] = scalar_t(grad_x[p - p0] * modulation[p]);
        if (grad_mask) grad_mask[row * pixels + p] = scalar_t(grad_m[p - p0]);
      }
      e += p1 - p0;
    }
  });
}

template <typename T>
const T* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

struct CpuBackend {
  // 16M elements (64 MB in float) per chunk's column buffer.
  static int64_t column_budget() { return int64_t(1) << 24; }

  static void im2col(const at::Tensor& input, const at::Tensor& offset, const std::optional<at::Tensor>& mask,
                     const DeformConvGeometry& g, at::Tensor& columns) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_im2col_cpu", [&] {
      im2col_kernel<scalar_t>(input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask),
                              g, columns.data_ptr<scalar_t>());
    });
  }

  static void col2im(const at::Tensor& grad_columns, const at::Tensor& input, const at::Tensor& offset,
                     const std::optional<at::Tensor>& mask, const DeformConvGeometry& g, at::Tensor grad_input,
                     at::Tensor grad_offset, at::Tensor grad_mask, at::Tensor columns) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_col2im_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      col2im_kernel<scalar_t>(grad_columns.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
                              offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask), g,
                              grad_input.data_ptr<acc_t>(), grad_offset.data_ptr<scalar_t>(),
                              grad_mask.defined() ? grad_mask.data_ptr<scalar_t>() : nullptr,
                              columns.data_ptr<scalar_t>());
    });
  }
};

at::Tensor deform_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                             const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                             int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                             int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  const DeformConvParams p{stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups};
  return deform_conv2d_forward_driver<CpuBackend>(input, weight, offset, mask, bias, p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cpu(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups,
    int64_t offset_groups) {
  const DeformConvParams p{stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups};
  return deform_conv2d_backward_driver<CpuBackend>(grad, input, weight, offset, mask, bias, p);
}

}  // namespace
}  // namespace deform_conv
}  // namespace maskrcnn

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("deform_conv2d", TORCH_FN(maskrcnn::deform_conv::deform_conv2d_cpu));
  m.impl("_deform_conv2d_backward", TORCH_FN(maskrcnn::deform_conv::deform_conv2d_backward_cpu));
}
