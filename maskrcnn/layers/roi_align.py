"""RoIAlign: bilinear pooling of a fixed-size feature per region (the op is `torch.ops.maskrcnn.roi_align`).

`aligned=False` is maskrcnn-benchmark's RoIAlign (RoI extent clamped to at least one feature pixel,
no half-pixel shift); `aligned=True` is Detectron2's ROIAlignV2 (coordinates shifted by -0.5 pixel,
no clamp), which matches a pixel model where pixel centres sit at integer + 0.5.
"""
import torch
from torch import nn
from torch.nn.modules.utils import _pair

from maskrcnn._ext import load_ops

from ._roi_checks import check_roi_pooling_inputs

load_ops()

_OP = "maskrcnn::roi_align"
_BACKWARD_OP = "maskrcnn::_roi_align_backward"


def kernel_uses_channels_last(tensor):
    """True when the CPU kernels read and write `tensor` as NHWC: a 4-D CPU tensor stored
    channels-last and not also plain contiguous (C == 1 or H * W == 1 make the two the same).
    The CUDA kernels take every input as NCHW."""
    return (tensor.device.type == "cpu" and tensor.dim() == 4 and not tensor.is_contiguous()
            and tensor.is_contiguous(memory_format=torch.channels_last))


def _empty_like_layout(tensor, shape):
    """An empty Tensor[shape] in the layout the kernels give for `tensor` (channels-last or not)."""
    memory_format = torch.channels_last if kernel_uses_channels_last(tensor) else torch.contiguous_format
    return tensor.new_empty(shape).contiguous(memory_format=memory_format)


@torch.library.register_fake(_OP)
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    check_roi_pooling_inputs("roi_align", input, rois)
    return _empty_like_layout(input, (rois.shape[0], input.shape[1], pooled_height, pooled_width))


@torch.library.register_fake(_BACKWARD_OP)
def _roi_align_backward_fake(
    grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width, sampling_ratio, aligned
):
    return _empty_like_layout(grad, (batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.input_shape = tuple(input.shape)
    ctx.channels_last = kernel_uses_channels_last(input)
    ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
    batch_size, channels, height, width = ctx.input_shape
    # the input gradient comes out in the layout the gradient is given in: the input's
    memory_format = torch.channels_last if ctx.channels_last else torch.contiguous_format
    grad_input = torch.ops.maskrcnn._roi_align_backward(
        grad.contiguous(memory_format=memory_format), rois, spatial_scale, pooled_height, pooled_width,
        batch_size, channels, height, width, sampling_ratio, aligned,
    )
    return grad_input, None, None, None, None, None, None


def _setup_backward_context(ctx, inputs, output):
    grad, rois, spatial_scale, pooled_height, pooled_width, _, _, _, _, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _backward_of_backward(ctx, grad_grad_input):
    # The backward op is linear in grad with the forward op as its adjoint.
    (rois,) = ctx.saved_tensors
    grad_grad = torch.ops.maskrcnn.roi_align(grad_grad_input, rois, *ctx.params)
    return (grad_grad,) + (None,) * 10


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
torch.library.register_autograd(_BACKWARD_OP, _backward_of_backward, setup_context=_setup_backward_context)
# Under autocast both the features and the RoI coordinates run in float32: RoI coordinates in
# half or bfloat16 would be rounded by several pixels, and the features may come in another dtype.
for _device in ("cpu", "cuda"):
    torch.library.register_autocast(_OP, _device, torch.float32)
    torch.library.register_autocast(_BACKWARD_OP, _device, torch.float32)


def roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=False):
    """Pools a fixed-size feature for each region by averaging bilinear samples.

    input: Tensor[N, C, H, W]; rois: Tensor[K, 5] (batch_index, x1, y1, x2, y2) in image coordinates,
    same dtype and device as input; output_size: int or (height, width); spatial_scale: feature-map
    pixels per image pixel (e.g. 1/4); sampling_ratio: samples per bin along each axis (<= 0: adaptive,
    ceil(roi_size / output_size)); aligned: False for maskrcnn-benchmark's legacy RoIAlign, True for
    ROIAlignV2 (half-pixel shift). Returns Tensor[K, C, output_height, output_width].

    On the CPU a channels-last input (e.g. the features of a model converted with
    ``model.to(memory_format=torch.channels_last)``) is read as it is, without a copy, and gives a
    channels-last output; its gradient is channels-last too.
    """
    pooled_height, pooled_width = _pair(output_size)
    return torch.ops.maskrcnn.roi_align(
        input, rois, float(spatial_scale), pooled_height, pooled_width, int(sampling_ratio), bool(aligned)
    )


class ROIAlign(nn.Module):
    """RoIAlign as a module: forward(input Tensor[N, C, H, W], rois Tensor[K, 5]) -> Tensor[K, C, *output_size]."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )
