"""Keypoint heatmap decoding (compiled op `torch.ops.maskrcnn.heatmaps_to_keypoints`).

Each detection's K heatmaps are resized bicubically (F.interpolate, half-pixel centres) to the
detection's box, ceil(h) x ceil(w) pixels with w = max(x2 - x1, 1), h = max(y2 - y1, 1); each
keypoint is the arg-max pixel's centre mapped into the image, x = x1 + (column + 0.5) * w / ceil(w),
and its score the resized value there. The kernels never store a resized map: they evaluate the
separable bicubic weights pixel by pixel (one row buffer per task), with the rounding of
F.interpolate's CPU kernel, so on the CPU the result is bit-identical to resizing with
F.interpolate and taking torch.argmax. Ties: the first maximum in row-major order (smallest row,
then smallest column) wins; a NaN counts as the maximum. The box convention plays no part (the
heatmap spans x1..x2 in both, as keypoints_to_heat_map encodes it). Not differentiable (arg-max).
Details: csrc/heatmaps_to_keypoints/heatmaps_to_keypoints_common.h.
"""
import torch

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["heatmaps_to_keypoints"]

_OP = "maskrcnn::heatmaps_to_keypoints"


def heatmaps_to_keypoints(maps, rois):
    """maps: Tensor[N, K, H, W] heatmap logits; rois: Tensor[N, 4] (x1, y1, x2, y2), finite.

    Returns (xy Tensor[N, K, 3] of (x, y, 1), scores Tensor[N, K]): float64 for float64 maps,
    float32 otherwise (16-bit maps are decoded as their float32 values).
    """
    return torch.ops.maskrcnn.heatmaps_to_keypoints(maps, rois)


@torch.library.register_fake(_OP)
def _heatmaps_to_keypoints_fake(maps, rois):
    torch._check(maps.dim() == 4, lambda: f"heatmaps_to_keypoints: maps must be a 4-D tensor of shape "
                                          f"[N, K, H, W], got {list(maps.shape)}")
    torch._check(rois.dim() == 2 and rois.size(1) == 4,
                 lambda: f"heatmaps_to_keypoints: rois must be a 2-D tensor of shape [N, 4], got {list(rois.shape)}")
    torch._check(maps.size(0) == rois.size(0), lambda: "heatmaps_to_keypoints: maps and rois must have the same N")
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    return (maps.new_empty((maps.size(0), maps.size(1), 3), dtype=dtype),
            maps.new_empty((maps.size(0), maps.size(1)), dtype=dtype))
