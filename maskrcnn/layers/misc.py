"""Layers that accept empty batches (N = 0) and still return correctly shaped outputs.

maskrcnn-benchmark wrapped `Conv2d`, `ConvTranspose2d`, `BatchNorm2d` and `interpolate` because the
PyTorch of its time crashed on tensors with zero elements (e.g. a mask head fed no positive RoIs).
PyTorch 2.x handles N = 0 natively for interpolation and for convolutions with a non-empty spatial
size; these subclasses keep the names (ported code imports them unchanged) and cover the rest: a
convolution input with any zero-sized dimension gets its output shape computed here, and an empty
training batch in `BatchNorm2d` neither counts as a tracked batch nor touches the running
statistics. In every empty case each parameter still receives a (zero) gradient, so
DistributedDataParallel does not report unused parameters. Under torch.export, where the batch size
may be data-dependent (the detections fed to the mask head), the ordinary layer is traced: torch
runs it on N = 0 too.
"""
import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import guard_or_true
from torch.nn import functional as F

from .winograd_conv import winograd_applies, winograd_conv3x3

__all__ = ["_NewEmptyTensorOp", "Conv2d", "ConvTranspose2d", "BatchNorm2d", "interpolate"]


class _NewEmptyTensorOp(torch.autograd.Function):
    """Returns an uninitialised tensor of `new_shape` (like `x`) whose backward gives `x` an empty
    gradient of `x`'s shape. Kept for code that builds empty outputs by hand, as maskrcnn-benchmark did;
    meant for shapes with zero elements."""

    @staticmethod
    def forward(ctx, x, new_shape):
        ctx.input_shape = x.shape
        return x.new_empty(new_shape)

    @staticmethod
    def backward(ctx, grad):
        return _NewEmptyTensorOp.apply(grad, ctx.input_shape), None


def _empty_like_output(x, shape, params):
    """An empty Tensor[shape] (zero elements) tied to `x` and every tensor in `params` through
    zero-valued terms, so backward still reaches them (DDP expects a gradient for each parameter)."""
    out = x.new_zeros(shape) + x.sum() * 0
    for p in params:
        if p is not None:
            out = out + p.sum() * 0
    return out


class Conv2d(nn.Conv2d):
    """`torch.nn.Conv2d`; input Tensor[N, C_in, H, W] -> Tensor[N, C_out, H', W'].

    An input with zero elements (N = 0, or an empty spatial size that torch itself rejects) gives an
    empty output of the usual shape, H' = (H + 2p - d(k - 1) - 1) // s + 1, and zero gradients to
    `weight` and `bias`.

    With `winograd` set (MODEL.WINOGRAD, `set_winograd`), a 3x3 stride-1 convolution on a CPU
    float32 channels-last input is computed by Winograd F(4x4, 3x3) (layers/winograd_conv.py,
    `winograd_applies` says exactly when); the values agree with the direct kernel up to rounding."""

    winograd = False

    def forward(self, x):
        if self.winograd and winograd_applies(self, x):
            return winograd_conv3x3(x, self.weight, self.bias)
        if guard_or_true(x.numel() > 0) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        spatial = [
            (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            for size, pad, dil, k, stride in zip(
                x.shape[-2:], self.padding, self.dilation, self.kernel_size, self.stride
            )
        ]
        shape = [x.shape[0], self.out_channels] + [max(s, 0) for s in spatial]
        return _empty_like_output(x, shape, (self.weight, self.bias))


class ConvTranspose2d(nn.ConvTranspose2d):
    """`torch.nn.ConvTranspose2d`; input Tensor[N, C_in, H, W] -> Tensor[N, C_out, H', W'].

    An input with zero elements gives an empty output of the usual shape,
    H' = (H - 1)s - 2p + d(k - 1) + output_padding + 1, and zero gradients to the parameters."""

    def forward(self, x, output_size=None):
        if guard_or_true(x.numel() > 0) or output_size is not None:
            return super().forward(x, output_size)
        spatial = [
            (size - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1
            for size, pad, dil, k, stride, out_pad in zip(
                x.shape[-2:], self.padding, self.dilation, self.kernel_size, self.stride,
                self.output_padding,
            )
        ]
        shape = [x.shape[0], self.out_channels] + [max(s, 0) for s in spatial]
        return _empty_like_output(x, shape, (self.weight, self.bias))


class BatchNorm2d(nn.BatchNorm2d):
    """`torch.nn.BatchNorm2d` that passes an empty batch through untouched.

    x: Tensor[N, C, H, W]. For N = 0 (or H * W = 0) the result is an empty tensor of the input's shape
    computed from `weight` and `bias`, so both still get (zero) gradients, and the running statistics
    and `num_batches_tracked` stay as they were, in training mode too.
    """

    def forward(self, x):
        if guard_or_true(x.numel() > 0):
            return super().forward(x)
        self._check_input_dim(x)
        if not self.affine:
            return x.clone()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.reshape(shape) + self.bias.reshape(shape)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None, **kwargs):
    """`torch.nn.functional.interpolate`, same positional order as maskrcnn-benchmark's wrapper.

    input: Tensor[N, C, *spatial]; N = 0 gives an empty output of the resized shape.
    Extra keyword arguments (e.g. `antialias`) go to `F.interpolate`.
    """
    return F.interpolate(
        input, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kwargs
    )
