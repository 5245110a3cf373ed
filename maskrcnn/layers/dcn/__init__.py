"""Deformable convolution (DCN v1 and modulated DCN v2): functions and modules."""
from .deform_conv_func import deform_conv, deform_conv2d, modulated_deform_conv
from .deform_conv_module import DeformConv, ModulatedDeformConv, ModulatedDeformConvPack
from .dfconv import DFConv2d

__all__ = [
    "deform_conv",
    "deform_conv2d",
    "modulated_deform_conv",
    "DeformConv",
    "ModulatedDeformConv",
    "ModulatedDeformConvPack",
    "DFConv2d",
]
