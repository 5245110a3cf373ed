"""RoIPool: Fast R-CNN max pooling of a fixed-size feature per region (the op is `torch.ops.maskrcnn.roi_pool`).

Region corners are rounded to feature pixels and the extent counts both end pixels (the "+1"
convention); each output bin is the maximum over its pixels, 0 for an empty bin.
"""
import torch
from torch import nn
from torch.nn.modules.utils import _pair

from maskrcnn._ext import load_ops

from ._roi_checks import check_roi_pooling_inputs

load_ops()

_OP = "maskrcnn::roi_pool"
_BACKWARD_OP = "maskrcnn::_roi_pool_backward"


@torch.library.register_fake(_OP)
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    check_roi_pooling_inputs("roi_pool", input, rois)
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int32)


@torch.library.register_fake(_BACKWARD_OP)
def _roi_pool_backward_fake(
    grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width
):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width = inputs
    _, argmax = output
    ctx.save_for_backward(rois, argmax)
    ctx.input_shape = tuple(input.shape)
    ctx.params = (spatial_scale, pooled_height, pooled_width)


def _backward(ctx, grad, grad_argmax):
    rois, argmax = ctx.saved_tensors
    grad_input = torch.ops.maskrcnn._roi_pool_backward(grad, rois, argmax, *ctx.params, *ctx.input_shape)
    return grad_input, None, None, None, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
# Under autocast the features and the RoI coordinates run in float32 (see roi_align.py).
for _device in ("cpu", "cuda"):
    torch.library.register_autocast(_OP, _device, torch.float32)
    torch.library.register_autocast(_BACKWARD_OP, _device, torch.float32)


def roi_pool(input, rois, output_size, spatial_scale):
    """Max-pools a fixed-size feature for each region.

    input: Tensor[N, C, H, W]; rois: Tensor[K, 5] (batch_index, x1, y1, x2, y2) in image coordinates,
    same dtype and device as input; output_size: int or (height, width); spatial_scale: feature-map
    pixels per image pixel. Returns Tensor[K, C, output_height, output_width].
    """
    pooled_height, pooled_width = _pair(output_size)
    output, _ = torch.ops.maskrcnn.roi_pool(input, rois, float(spatial_scale), pooled_height, pooled_width)
    return output


class ROIPool(nn.Module):
    """RoIPool as a module: forward(input Tensor[N, C, H, W], rois Tensor[K, 5]) -> Tensor[K, C, *output_size]."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self):
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
