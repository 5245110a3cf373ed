// Shared pieces of the deformable convolution op (v1 and modulated v2), used by the CPU kernels
// (cpu/deform_conv_cpu.cpp) and the CUDA kernels (cuda/deform_conv_cuda.cu):
//
//   * DeformConvGeometry: sizes of one batch chunk and the convolution hyper-parameters;
//   * check_deform_conv2d_args(): argument validation with messages that name the argument;
//   * BilinearTap / make_bilinear_tap(): the one place that defines how a shifted kernel tap samples
//     the input (zero outside the image) and the derivatives of that sample wrt the tap's position;
//   * deform_conv2d_forward_driver / deform_conv2d_backward_driver: device-independent im2col + GEMM
//     loops over chunks of the batch, parameterised by a Backend that provides the sampling kernels.
//
// Tensor layouts (the ones torchvision and mmcv use):
//   input  [N, C, H, W]                weight [Cout, C / groups, kh, kw]
//   offset [N, 2 * og * kh * kw, Ho, Wo], channel (g * kh * kw + k) * 2 + {0: dy, 1: dx}
//   mask   [N, og * kh * kw, Ho, Wo],     channel  g * kh * kw + k              (v2 only)
// where og = offset_groups, k = i * kw + j is the kernel tap, and input channel c belongs to offset
// group c / (C / og). Tap k of output pixel (ho, wo) samples the input at
//   y = ho * stride_h - pad_h + i * dilation_h + dy,   x = wo * stride_w - pad_w + j * dilation_w + dx.
// The column buffer of a chunk of B images is [C * kh * kw, B * Ho * Wo] (row c * K + k, column
// b * Ho * Wo + p), so each group's output is one matrix product with the weight.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <optional>
#include <string>
#include <vector>

namespace maskrcnn {
namespace deform_conv {

struct DeformConvParams {
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups;
};

// Everything a sampling kernel needs for one chunk of `batch` images.
struct DeformConvGeometry {
  int64_t batch, channels, height, width, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t offset_groups, channels_per_offset_group;

  C10_HOST_DEVICE int64_t taps() const { return kernel_h * kernel_w; }
  C10_HOST_DEVICE int64_t out_pixels() const { return out_height * out_width; }
};

// The bilinear sample of one shifted tap: four neighbour pixels (index into an H*W plane), their
// interpolation weights and the derivatives of those weights wrt the sampling position y and x.
// Neighbours outside the image have zero weights (and index 0), so they read and receive nothing.
template <typename acc_t>
struct BilinearTap {
  int32_t index[4];
  acc_t weight[4];
  acc_t dweight_dy[4];
  acc_t dweight_dx[4];
};

template <typename acc_t>
C10_HOST_DEVICE inline void make_bilinear_tap(acc_t y, acc_t x, int64_t height, int64_t width,
                                              BilinearTap<acc_t>& tap) {
  for (int n = 0; n < 4; ++n) {
    tap.index[n] = 0;
    tap.weight[n] = tap.dweight_dy[n] = tap.dweight_dx[n] = acc_t(0);
  }
  // A sample at least one pixel outside the image is zero and has zero gradient.
  if (!(y > acc_t(-1) && x > acc_t(-1) && y < acc_t(height) && x < acc_t(width))) {
    return;
  }
  // y > -1 here, so floor(y) is -1 for y < 0 and the truncation otherwise.
  const int64_t y0 = y < acc_t(0) ? -1 : static_cast<int64_t>(y);
  const int64_t x0 = x < acc_t(0) ? -1 : static_cast<int64_t>(x);
  const acc_t fy = y - acc_t(y0), fx = x - acc_t(x0);
  const acc_t gy = acc_t(1) - fy, gx = acc_t(1) - fx;
  const int64_t rows[4] = {y0, y0, y0 + 1, y0 + 1};
  const int64_t cols[4] = {x0, x0 + 1, x0, x0 + 1};
  const acc_t weights[4] = {gy * gx, gy * fx, fy * gx, fy * fx};
  const acc_t d_dy[4] = {-gx, -fx, gx, fx};
  const acc_t d_dx[4] = {-gy, gy, -fy, fy};
  for (int n = 0; n < 4; ++n) {
    if (rows[n] >= 0 && rows[n] < height && cols[n] >= 0 && cols[n] < width) {
      tap.index[n] = static_cast<int32_t>(rows[n] * width + cols[n]);
      tap.weight[n] = weights[n];
      tap.dweight_dy[n] = d_dy[n];
      tap.dweight_dx[n] = d_dx[n];
    }
  }
}

// The sampling position of tap (i, j) of output pixel (oh, ow), before adding the learned offset.
C10_HOST_DEVICE inline int64_t tap_base_y(const DeformConvGeometry& g, int64_t oh, int64_t i) {
  return oh * g.stride_h - g.pad_h + i * g.dilation_h;
}
C10_HOST_DEVICE inline int64_t tap_base_x(const DeformConvGeometry& g, int64_t ow, int64_t j) {
  return ow * g.stride_w - g.pad_w + j * g.dilation_w;
}

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    s += (d ? ", " : "") + std::to_string(t.size(d));
  }
  return s + "]";
}

inline int64_t conv_out_size(int64_t in, int64_t pad, int64_t dilation, int64_t kernel, int64_t stride) {
  return (in + 2 * pad - (dilation * (kernel - 1) + 1)) / stride + 1;
}

// Validates every argument of deform_conv2d (and its backward) and returns the output size [Ho, Wo].
inline std::vector<int64_t> check_deform_conv2d_args(
    const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
    const DeformConvParams& p) {
  const char* op = "deform_conv2d";
  TORCH_CHECK(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got ", shape_str(input));
  TORCH_CHECK(weight.dim() == 4, op, ": weight must be a 4-D tensor [Cout, C / groups, kh, kw], got ",
              shape_str(weight));
  TORCH_CHECK(offset.dim() == 4, op, ": offset must be a 4-D tensor [N, 2 * offset_groups * kh * kw, Ho, Wo], got ",
              shape_str(offset));
  TORCH_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride must be positive, got (", p.stride_h, ", ",
              p.stride_w, ")");
  TORCH_CHECK(p.dilation_h > 0 && p.dilation_w > 0, op, ": dilation must be positive, got (", p.dilation_h,
              ", ", p.dilation_w, ")");
  TORCH_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be non-negative, got (", p.pad_h, ", ",
              p.pad_w, ")");
  TORCH_CHECK(p.groups > 0, op, ": groups must be positive, got ", p.groups);
  TORCH_CHECK(p.offset_groups > 0, op, ": offset_groups must be positive, got ", p.offset_groups);

  const auto dtype = input.scalar_type();
  TORCH_CHECK(at::isFloatingType(dtype), op, ": input must be a floating point tensor, got ", dtype);
  auto same_kind = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have the dtype of input (", dtype, "), got ",
                t.scalar_type());
    TORCH_CHECK(t.device() == input.device(), op, ": ", name, " must be on the device of input (",
                input.device(), "), got ", t.device());
  };
  same_kind(weight, "weight");
  same_kind(offset, "offset");

  const int64_t n = input.size(0), channels = input.size(1);
  const int64_t out_channels = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  TORCH_CHECK(kh > 0 && kw > 0, op, ": weight must have a non-empty kernel, got ", shape_str(weight));
  TORCH_CHECK(channels % p.groups == 0, op, ": input channels (", channels, ") must be divisible by groups (",
              p.groups, ")");
  TORCH_CHECK(out_channels % p.groups == 0, op, ": weight's output channels (", out_channels,
              ") must be divisible by groups (", p.groups, ")");
  TORCH_CHECK(weight.size(1) * p.groups == channels, op, ": weight must have C / groups = ", channels, " / ",
              p.groups, " input channels, got weight ", shape_str(weight));
  TORCH_CHECK(channels % p.offset_groups == 0, op, ": input channels (", channels,
              ") must be divisible by offset_groups (", p.offset_groups, ")");

  const int64_t out_h = conv_out_size(input.size(2), p.pad_h, p.dilation_h, kh, p.stride_h);
  const int64_t out_w = conv_out_size(input.size(3), p.pad_w, p.dilation_w, kw, p.stride_w);
  TORCH_CHECK(out_h > 0 && out_w > 0, op, ": input ", shape_str(input), " is too small for a ", kh, "x", kw,
              " kernel with this padding and dilation (output would be ", out_h, "x", out_w, ")");

  const int64_t taps = p.offset_groups * kh * kw;
  TORCH_CHECK(offset.size(0) == n && offset.size(1) == 2 * taps && offset.size(2) == out_h &&
                  offset.size(3) == out_w,
              op, ": offset must have shape [N, 2 * offset_groups * kh * kw, Ho, Wo] = [", n, ", ", 2 * taps, ", ",
              out_h, ", ", out_w, "], got ", shape_str(offset));
  if (mask.has_value()) {
    const at::Tensor& m = *mask;
    TORCH_CHECK(m.dim() == 4, op, ": mask must be a 4-D tensor [N, offset_groups * kh * kw, Ho, Wo], got ",
                shape_str(m));
    same_kind(m, "mask");
    TORCH_CHECK(m.size(0) == n && m.size(1) == taps && m.size(2) == out_h && m.size(3) == out_w, op,
                ": mask must have shape [N, offset_groups * kh * kw, Ho, Wo] = [", n, ", ", taps, ", ", out_h,
                ", ", out_w, "], got ", shape_str(m));
  }
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    same_kind(b, "bias");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == out_channels, op, ": bias must be a 1-D tensor [Cout] = [",
                out_channels, "], got ", shape_str(b));
  }
  const int64_t plane = input.size(2) * input.size(3);
  TORCH_CHECK(plane < (int64_t(1) << 31), op, ": input planes larger than 2^31 pixels are not supported");
  return {out_h, out_w};
}

inline DeformConvGeometry make_geometry(const at::Tensor& input, const at::Tensor& weight, int64_t batch,
                                        const std::vector<int64_t>& out_size, const DeformConvParams& p) {
  DeformConvGeometry g;
  g.batch = batch;
  g.channels = input.size(1);
  g.height = input.size(2);
  g.width = input.size(3);
  g.out_height = out_size[0];
  g.out_width = out_size[1];
  g.kernel_h = weight.size(2);
  g.kernel_w = weight.size(3);
  g.stride_h = p.stride_h;
  g.stride_w = p.stride_w;
  g.pad_h = p.pad_h;
  g.pad_w = p.pad_w;
  g.dilation_h = p.dilation_h;
  g.dilation_w = p.dilation_w;
  g.offset_groups = p.offset_groups;
  g.channels_per_offset_group = g.channels / p.offset_groups;
  return g;
}

// Float for half/bfloat16, the type itself otherwise: where gradients are accumulated.
inline at::ScalarType accumulate_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// Images per chunk, so that a chunk's column buffer stays below `column_budget` elements.
inline int64_t images_per_chunk(int64_t n, int64_t column_rows, int64_t out_pixels, int64_t column_budget) {
  const int64_t per_image = std::max<int64_t>(1, column_rows * out_pixels);
  return std::max<int64_t>(1, std::min<int64_t>(n, column_budget / per_image));
}

inline std::optional<at::Tensor> narrow_batch(const std::optional<at::Tensor>& t, int64_t start, int64_t len) {
  if (!t.has_value()) return std::nullopt;
  return t->narrow(0, start, len);
}

// Backend interface (static members):
//   int64_t column_budget();
//   void im2col(input [B, C, H, W], offset [B, ...], mask [B, ...] or nullopt, geometry,
//               columns [C * K, B * P]);                    // overwrites columns
//   void col2im(grad_columns [C * K, B * P], input, offset, mask, geometry,
//               grad_input [B, C, H, W] (accumulate dtype, added to),
//               grad_offset [B, ...], grad_mask [B, ...] or undefined (written),
//               columns [C * K, B * P] (written: what im2col gives, for the weight gradient));
template <typename Backend>
at::Tensor deform_conv2d_forward_driver(const at::Tensor& input_, const at::Tensor& weight_,
                                        const at::Tensor& offset_, const std::optional<at::Tensor>& mask_,
                                        const std::optional<at::Tensor>& bias_, const DeformConvParams& p) {
  const auto out_size = check_deform_conv2d_args(input_, weight_, offset_, mask_, bias_, p);
  const at::Tensor input = input_.contiguous(), weight = weight_.contiguous(), offset = offset_.contiguous();
  std::optional<at::Tensor> mask;
  if (mask_.has_value()) mask = mask_->contiguous();

  const int64_t n = input.size(0), channels = input.size(1), out_channels = weight.size(0);
  at::Tensor output = at::empty({n, out_channels, out_size[0], out_size[1]}, input.options());
  if (output.numel() == 0) return output;

  const DeformConvGeometry full = make_geometry(input, weight, n, out_size, p);
  const int64_t rows = channels * full.taps(), pixels = full.out_pixels();
  const int64_t chunk = images_per_chunk(n, rows, pixels, Backend::column_budget());
  const at::Tensor weight_groups = weight.view({p.groups, out_channels / p.groups, rows / p.groups});
  at::Tensor column_storage = at::empty({rows * chunk * pixels}, input.options());

  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t b = std::min(chunk, n - start);
    const DeformConvGeometry g = make_geometry(input, weight, b, out_size, p);
    at::Tensor columns = column_storage.narrow(0, 0, rows * b * pixels).view({rows, b * pixels});
    Backend::im2col(input.narrow(0, start, b), offset.narrow(0, start, b), narrow_batch(mask, start, b), g,
                    columns);
    const at::Tensor result = at::bmm(weight_groups, columns.view({p.groups, rows / p.groups, b * pixels}));
    output.narrow(0, start, b).copy_(result.view({out_channels, b, out_size[0], out_size[1]}).transpose(0, 1));
  }
  if (bias_.has_value()) {
    output.add_(bias_->view({1, out_channels, 1, 1}));
  }
  return output;
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_driver(
    const at::Tensor& grad_, const at::Tensor& input_, const at::Tensor& weight_, const at::Tensor& offset_,
    const std::optional<at::Tensor>& mask_, const std::optional<at::Tensor>& bias_, const DeformConvParams& p) {
  const auto out_size = check_deform_conv2d_args(input_, weight_, offset_, mask_, bias_, p);
  const int64_t n = input_.size(0), channels = input_.size(1), out_channels = weight_.size(0);
  TORCH_CHECK(grad_.dim() == 4 && grad_.size(0) == n && grad_.size(1) == out_channels &&
                  grad_.size(2) == out_size[0] && grad_.size(3) == out_size[1],
              "deform_conv2d backward: grad must have the output's shape [", n, ", ", out_channels, ", ",
              out_size[0], ", ", out_size[1], "], got ", shape_str(grad_));
  TORCH_CHECK(grad_.scalar_type() == input_.scalar_type() && grad_.device() == input_.device(),
              "deform_conv2d backward: grad must have input's dtype and device");

  const at::Tensor grad = grad_.contiguous(), input = input_.contiguous(), weight = weight_.contiguous();
  const at::Tensor offset = offset_.contiguous();
  std::optional<at::Tensor> mask;
  if (mask_.has_value()) mask = mask_->contiguous();

  const auto dtype = input.scalar_type();
  const auto acc_options = input.options().dtype(accumulate_dtype(dtype));
  at::Tensor grad_input = at::zeros(input.sizes(), acc_options);
  at::Tensor grad_offset = at::zeros(offset.sizes(), offset.options());
  at::Tensor grad_mask = mask.has_value() ? at::zeros(mask->sizes(), mask->options()) : at::empty({0}, input.options());
  at::Tensor grad_bias = bias_.has_value() ? at::sum(grad, {0, 2, 3}, false, accumulate_dtype(dtype)).to(dtype)
                                           : at::empty({0}, input.options());
  const int64_t rows = channels * weight.size(2) * weight.size(3);
  const int64_t rows_per_group = rows / p.groups, out_per_group = out_channels / p.groups;
  at::Tensor grad_weight = at::zeros({p.groups, out_per_group, rows_per_group}, acc_options);

  if (n > 0 && out_channels > 0) {
    const int64_t pixels = out_size[0] * out_size[1];
    const int64_t chunk = images_per_chunk(n, rows, pixels, Backend::column_budget());
    const at::Tensor weight_groups_t = weight.view({p.groups, out_per_group, rows_per_group}).transpose(1, 2);
    at::Tensor column_storage = at::empty({rows * chunk * pixels}, input.options());
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t b = std::min(chunk, n - start);
      const DeformConvGeometry g = make_geometry(input, weight, b, out_size, p);
      // [b, Cout, Ho, Wo] -> [groups, Cout / groups, b * P]
      const at::Tensor grad_groups =
          grad.narrow(0, start, b).transpose(0, 1).reshape({p.groups, out_per_group, b * pixels});
      const at::Tensor grad_columns = at::bmm(weight_groups_t, grad_groups).view({rows, b * pixels});
      const at::Tensor input_b = input.narrow(0, start, b), offset_b = offset.narrow(0, start, b);
      const auto mask_b = narrow_batch(mask, start, b);
      at::Tensor columns = column_storage.narrow(0, 0, rows * b * pixels).view({rows, b * pixels});
      Backend::col2im(grad_columns, input_b, offset_b, mask_b, g, grad_input.narrow(0, start, b),
                      grad_offset.narrow(0, start, b),
                      mask.has_value() ? grad_mask.narrow(0, start, b) : at::Tensor(), columns);
      const at::Tensor columns_t = columns.view({p.groups, rows_per_group, b * pixels}).transpose(1, 2);
      if (grad_weight.scalar_type() == dtype) {
        grad_weight.baddbmm_(grad_groups, columns_t);
      } else {
        grad_weight.add_(at::bmm(grad_groups, columns_t).to(grad_weight.scalar_type()));
      }
    }
  }
  return {grad_input.to(dtype), grad_weight.view(weight.sizes()).to(dtype), grad_offset, grad_mask, grad_bias};
}

}  // namespace deform_conv
}  // namespace maskrcnn
