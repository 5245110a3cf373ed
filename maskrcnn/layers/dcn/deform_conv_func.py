"""Deformable convolution functions (DCN v1 and modulated DCN v2) on torch.ops.maskrcnn.deform_conv2d.

Layouts (as in maskrcnn-benchmark, mmcv and torchvision), with K = kh * kw kernel taps and
og = deformable_groups:

    input   Tensor[N, C, H, W]
    offset  Tensor[N, 2 * og * K, Ho, Wo]   channel (g * K + k) * 2 is tap k's dy, +1 its dx
    mask    Tensor[N, og * K, Ho, Wo]       modulation of tap k of offset group g (v2 only)
    weight  Tensor[Cout, C / groups, kh, kw],  bias Tensor[Cout] or None
    output  Tensor[N, Cout, Ho, Wo]

Tap k = i * kw + j of output pixel (y, x) samples the input bilinearly (zero outside the image) at
(y * stride - pad + i * dilation + dy, x * stride - pad + j * dilation + dx), using input channels of
offset group g = c // (C / og). The op has CPU and CUDA kernels, fake kernels for torch.compile /
torch.export, autograd for input, offset, mask, weight and bias, and runs in float32 under autocast.
"""
import torch
from torch.nn.modules.utils import _pair

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["deform_conv2d", "deform_conv", "modulated_deform_conv"]


def _out_size(size, pad, dilation, kernel, stride):
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


@torch.library.register_fake("maskrcnn::deform_conv2d")
def _deform_conv2d_fake(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                        dilation_h, dilation_w, groups, offset_groups):
    torch._check(input.dim() == 4, lambda: f"deform_conv2d: input must be a 4-D tensor, got {input.dim()}-D")
    torch._check(weight.dim() == 4, lambda: f"deform_conv2d: weight must be a 4-D tensor, got {weight.dim()}-D")
    out_h = _out_size(input.shape[2], pad_h, dilation_h, weight.shape[2], stride_h)
    out_w = _out_size(input.shape[3], pad_w, dilation_w, weight.shape[3], stride_w)
    return input.new_empty((input.shape[0], weight.shape[0], out_h, out_w))


@torch.library.register_fake("maskrcnn::_deform_conv2d_backward")
def _deform_conv2d_backward_fake(grad, input, weight, offset, mask, bias, *params):
    def like(t):
        return t.new_empty(t.shape) if t is not None else input.new_empty((0,))

    return like(input), like(weight), like(offset), like(mask), like(bias)


def _setup_context(ctx, inputs, output):
    input, weight, offset, mask, bias, *params = inputs
    ctx.save_for_backward(input, weight, offset, mask, bias)
    ctx.params = params


def _backward(ctx, grad):
    input, weight, offset, mask, bias = ctx.saved_tensors
    grad_input, grad_weight, grad_offset, grad_mask, grad_bias = torch.ops.maskrcnn._deform_conv2d_backward(
        grad, input, weight, offset, mask, bias, *ctx.params
    )
    return (
        grad_input,
        grad_weight,
        grad_offset,
        grad_mask if mask is not None else None,
        grad_bias if bias is not None else None,
    ) + (None,) * len(ctx.params)


torch.library.register_autograd("maskrcnn::deform_conv2d", _backward, setup_context=_setup_context)


def deform_conv2d(input, offset, weight, bias=None, mask=None, stride=1, padding=0, dilation=1, groups=1,
                  deformable_groups=1):
    """Deformable convolution; modulated (DCN v2) when `mask` is given, DCN v1 otherwise.

    input: Tensor[N, C, H, W]; offset: Tensor[N, 2 * deformable_groups * kh * kw, Ho, Wo];
    weight: Tensor[Cout, C / groups, kh, kw]; bias: Tensor[Cout] or None;
    mask: Tensor[N, deformable_groups * kh * kw, Ho, Wo] or None. stride, padding, dilation: int or
    (h, w). Returns Tensor[N, Cout, Ho, Wo].
    """
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dilation_h, dilation_w = _pair(dilation)
    return torch.ops.maskrcnn.deform_conv2d(
        input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
        groups, deformable_groups,
    )


def deform_conv(input, offset, weight, stride=1, padding=0, dilation=1, groups=1, deformable_groups=1,
                im2col_step=64):
    """DCN v1 with maskrcnn-benchmark's argument order (no bias). `im2col_step` is accepted for
    compatibility and ignored: the op sizes its own batch chunks."""
    del im2col_step
    return deform_conv2d(input, offset, weight, None, None, stride, padding, dilation, groups, deformable_groups)


def modulated_deform_conv(input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                          deformable_groups=1):
    """Modulated DCN (v2) with maskrcnn-benchmark's argument order."""
    return deform_conv2d(input, offset, weight, bias, mask, stride, padding, dilation, groups, deformable_groups)
