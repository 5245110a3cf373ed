"""Small tensor helpers shared by the heads."""
import torch

__all__ = ["cat"]


def cat(tensors, dim=0):
    """``torch.cat`` that returns a single tensor as it is (no copy).

    tensors: a non-empty list or tuple of tensors.
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat: tensors must be a list or tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError("cat: tensors must not be empty")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)
