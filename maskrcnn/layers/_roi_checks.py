"""Argument checks shared by the fake (meta) kernels of the RoI pooling ops; the compiled kernels
make the same checks with the same messages (csrc/roi_align/roi_common.h)."""
import torch


def check_roi_pooling_inputs(op_name, input, rois):
    """input: Tensor[N, C, H, W]; rois: Tensor[K, 5] (batch_index, x1, y1, x2, y2), same dtype."""
    torch._check(input.dim() == 4, lambda: f"{op_name}: input must be a 4-D tensor [N, C, H, W], got {list(input.shape)}")
    torch._check(
        rois.dim() == 2 and rois.shape[1] == 5,
        lambda: f"{op_name}: rois must be a 2-D tensor of shape [K, 5] (batch_index, x1, y1, x2, y2), got {list(rois.shape)}",
    )
    torch._check(
        rois.dtype == input.dtype,
        lambda: f"{op_name}: rois dtype ({rois.dtype}) must match input dtype ({input.dtype})",
    )
