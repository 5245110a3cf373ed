// Deformable convolution (v1: mask = None) and modulated deformable convolution (v2: with mask).
//
// Schemas of torch.ops.maskrcnn.deform_conv2d and its backward, plus the autocast kernels: under
// torch.autocast the op runs in float32 (inputs in half/bfloat16 are cast up, as for other
// precision-sensitive ops), so a DCN layer whose offsets come from a reduced-precision conv works.
// Layouts and semantics: deform_conv_common.h. Gradients are registered from Python
// (maskrcnn/layers/dcn/deform_conv_func.py).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include <optional>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, "
      "int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> Tensor");
  // Returns (grad_input, grad_weight, grad_offset, grad_mask, grad_bias); grad_mask / grad_bias are
  // empty tensors of shape [0] when mask / bias is None.
  m.def(
      "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor? mask, "
      "Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

namespace {

template <c10::DeviceType device_type>
at::Tensor deform_conv2d_autocast(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                                  const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                                  int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                  int64_t dilation_h, int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(device_type));
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("maskrcnn::deform_conv2d", "")
                       .typed<decltype(deform_conv2d_autocast<device_type>)>();
  // Float64 stays float64 (cached_cast only casts reduced-precision floating tensors of this device).
  auto to_float = [](const auto& t) { return at::autocast::cached_cast(at::kFloat, t, device_type); };
  return op.call(to_float(input), to_float(weight), to_float(offset), to_float(mask), to_float(bias), stride_h,
                 stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, AutocastCPU, m) {
  m.impl("deform_conv2d", TORCH_FN(deform_conv2d_autocast<c10::DeviceType::CPU>));
}

TORCH_LIBRARY_IMPL(maskrcnn, Autocast, m) {
  m.impl("deform_conv2d", TORCH_FN(deform_conv2d_autocast<c10::DeviceType::CUDA>));
}
