"""Smooth L1 (Huber-like) loss with maskrcnn-benchmark's `beta` transition point."""
import torch

__all__ = ["smooth_l1_loss"]


def smooth_l1_loss(input, target, beta=1.0 / 9, size_average=True):
    """Elementwise 0.5 * d**2 / beta where d = |input - target| < beta, else d - 0.5 * beta.

    input, target: Tensors of the same shape. beta >= 0; beta == 0 is plain L1.
    Returns the mean over all elements if `size_average`, else their sum (maskrcnn-benchmark's box
    losses sum and then divide by the number of sampled RoIs / anchors themselves).
    """
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    if input.shape != target.shape:
        raise ValueError(
            f"smooth_l1_loss: input and target must have the same shape, "
            f"got {list(input.shape)} and {list(target.shape)}"
        )
    diff = torch.abs(input - target)
    if beta == 0:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    if size_average:
        return loss.mean()
    return loss.sum()
