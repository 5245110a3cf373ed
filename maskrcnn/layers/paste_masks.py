"""Mask pasting (compiled op `torch.ops.maskrcnn.paste_masks`).

Each detection's M x M mask is padded by `padding` zero cells, resampled bilinearly into its box
(enlarged by the padding) and written into an image-sized plane, zero elsewhere; only each box's
pixels are computed. `legacy_plus_one=True` is maskrcnn-benchmark's rule (integer box, as
F.interpolate of the padded mask onto it), False Detectron2's (continuous box, zero outside the mask).
The geometry is spelled out in csrc/paste_masks/paste_masks_common.h.
"""
import torch

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["paste_masks"]

_OP = "maskrcnn::paste_masks"


def paste_masks(masks, boxes, image_height, image_width, threshold=0.5, padding=1, legacy_plus_one=True):
    """Pastes masks into image-sized planes.

    masks: Tensor[N, 1, M, M] (or [N, M, M]) probabilities; boxes: Tensor[N, 4] (x1, y1, x2, y2) in
    image pixels; image_height, image_width: the output size.
    Returns Tensor[N, 1, image_height, image_width]: uint8 (value > threshold) when threshold >= 0,
    else the interpolated values in the masks' dtype.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    return torch.ops.maskrcnn.paste_masks(
        masks, boxes, image_height, image_width, float(threshold), int(padding), bool(legacy_plus_one)
    )


@torch.library.register_fake(_OP)
def _paste_masks_fake(masks, boxes, image_height, image_width, threshold=0.5, padding=1, legacy_plus_one=True):
    torch._check(masks.dim() == 4 and masks.size(1) == 1,
                 lambda: f"paste_masks: masks must be a 4-D tensor of shape [N, 1, M, M], got {list(masks.shape)}")
    torch._check(boxes.dim() == 2 and boxes.size(1) == 4,
                 lambda: f"paste_masks: boxes must be a 2-D tensor of shape [N, 4], got {list(boxes.shape)}")
    torch._check(masks.size(0) == boxes.size(0), lambda: "paste_masks: masks and boxes must have the same N")
    torch._check(padding >= 0, lambda: f"paste_masks: padding must be >= 0, got {padding}")
    dtype = torch.uint8 if threshold >= 0 else masks.dtype
    return masks.new_empty((masks.size(0), 1, image_height, image_width), dtype=dtype)
