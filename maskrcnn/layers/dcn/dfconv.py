"""DFConv2d: the deformable 3x3 convolution that ResNet's DCN stages use (maskrcnn-benchmark's
`layers.misc.DFConv2d`): a plain conv `offset` predicts the offsets (and, for the modulated
version, the mask logits) from the input, and the deformable conv `conv` applies them.
"""
from torch import nn
from torch.nn.modules.utils import _pair

from .deform_conv_module import DeformConv, ModulatedDeformConv


class DFConv2d(nn.Module):
    """Deformable convolution with its own offset predictor, "same" padding for odd kernels.

    forward(x Tensor[N, in_channels, H, W]) -> Tensor[N, out_channels, Ho, Wo].
    `offset` outputs deformable_groups * K * 3 channels (K = kh * kw) when with_modulated_dcn (the first
    2 * deformable_groups * K are offsets, the rest mask logits passed through a sigmoid), else
    deformable_groups * K * 2. It is zero-initialised, so the layer starts as an ordinary convolution
    (with mask 0.5 in the modulated case) and learns its deformation from there.
    """

    def __init__(self, in_channels, out_channels, with_modulated_dcn=True, kernel_size=3, stride=1, groups=1,
                 dilation=1, deformable_groups=1, bias=False):
        super().__init__()
        kernel_size, stride, dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel_size))
        taps = kernel_size[0] * kernel_size[1]
        self.offset_channels = deformable_groups * taps * 2
        conv_block = ModulatedDeformConv if with_modulated_dcn else DeformConv
        self.offset = nn.Conv2d(
            in_channels,
            deformable_groups * taps * (3 if with_modulated_dcn else 2),
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=1,
            dilation=dilation,
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = conv_block(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            deformable_groups=deformable_groups,
            bias=bias,
        )
        self.with_modulated_dcn = with_modulated_dcn
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def forward(self, x):
        offset = self.offset(x)
        if not self.with_modulated_dcn:
            return self.conv(x, offset)
        mask = offset[:, self.offset_channels:].sigmoid()
        return self.conv(x, offset[:, : self.offset_channels], mask)
