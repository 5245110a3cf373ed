"""Deformable convolution modules with maskrcnn-benchmark's names, constructors and parameter names.

- DeformConv(…)(input, offset): DCN v1, offset Tensor[N, 2 * dg * kh * kw, Ho, Wo] given by the caller.
- ModulatedDeformConv(…)(input, offset, mask): DCN v2, mask Tensor[N, dg * kh * kw, Ho, Wo].
- ModulatedDeformConvPack(…)(input): DCN v2 that predicts its own offsets and mask with the
  zero-initialised conv `conv_offset_mask` (so it starts as a plain convolution).
"""
import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .deform_conv_func import deform_conv2d


class _DeformConvBase(nn.Module):
    """Parameters and initialisation shared by the deformable convolution modules."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 deformable_groups, bias):
        super().__init__()
        if in_channels % groups != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        if in_channels % deformable_groups != 0:
            raise ValueError(
                f"in_channels ({in_channels}) must be divisible by deformable_groups ({deformable_groups})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.with_bias = bias
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _deform_conv(self, input, offset, mask):
        return deform_conv2d(input, offset, self.weight, self.bias, mask, self.stride, self.padding,
                             self.dilation, self.groups, self.deformable_groups)

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, "
            f"padding={self.padding}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.with_bias}"
        )


class DeformConv(_DeformConvBase):
    """DCN v1. forward(input Tensor[N, C, H, W], offset Tensor[N, 2*dg*kh*kw, Ho, Wo]) -> Tensor[N, Cout, Ho, Wo]."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 deformable_groups=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, _pair(stride), _pair(padding), _pair(dilation),
                         groups, deformable_groups, bias)

    def forward(self, input, offset):
        return self._deform_conv(input, offset, None)


class ModulatedDeformConv(_DeformConvBase):
    """DCN v2. forward(input, offset Tensor[N, 2*dg*kh*kw, Ho, Wo], mask Tensor[N, dg*kh*kw, Ho, Wo])."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 deformable_groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deformable_groups, bias)

    def forward(self, input, offset, mask):
        return self._deform_conv(input, offset, mask)


class ModulatedDeformConvPack(ModulatedDeformConv):
    """DCN v2 predicting its own offsets and mask from the input. forward(input Tensor[N, C, H, W]).

    `conv_offset_mask` outputs 3 * dg * kh * kw channels, read (as in maskrcnn-benchmark) as three
    equal chunks: the first two concatenated are the offsets, the sigmoid of the third is the mask.
    It is zero-initialised, so the layer starts as an ordinary convolution with mask 0.5.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 deformable_groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deformable_groups, bias)
        self.conv_offset_mask = nn.Conv2d(
            self.in_channels,
            self.deformable_groups * 3 * self.kernel_size[0] * self.kernel_size[1],
            kernel_size=self.kernel_size,
            stride=_pair(self.stride),
            padding=_pair(self.padding),
            dilation=_pair(self.dilation),
            bias=True,
        )
        self.init_offset()

    def init_offset(self):
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, input):
        offset_y, offset_x, mask = torch.chunk(self.conv_offset_mask(input), 3, dim=1)
        offset = torch.cat((offset_y, offset_x), dim=1)
        return self._deform_conv(input, offset, torch.sigmoid(mask))
