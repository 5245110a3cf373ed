"""Layers and the Python side of the compiled ops (maskrcnn-benchmark's maskrcnn_benchmark.layers)."""
from .batch_norm import FrozenBatchNorm2d
from .misc import BatchNorm2d, Conv2d, ConvTranspose2d, interpolate
from .nms import batched_nms, nms
from .sigmoid_focal_loss import SigmoidFocalLoss, sigmoid_focal_loss
from .smooth_l1_loss import smooth_l1_loss
from .dcn.deform_conv_func import deform_conv, modulated_deform_conv
from .dcn.deform_conv_module import DeformConv, ModulatedDeformConv, ModulatedDeformConvPack
from .dcn.dfconv import DFConv2d
from .roi_align import ROIAlign, roi_align
from .roi_pool import ROIPool, roi_pool
from .paste_masks import paste_masks
from .heatmaps_to_keypoints import heatmaps_to_keypoints
