"""Small argument checks shared by the structures: image sizes and instance indices."""
import numbers

import numpy as np
import torch


def normalize_size(size, name="size"):
    """Return ``size`` as a tuple ``(width, height)`` of Python numbers (symbolic sizes, as
    torch.export traces with a dynamic image size, are kept as they are).

    Accepts a list or tuple of two numbers or 0-d tensors; raises TypeError / ValueError that
    name the argument and show what was received.
    """
    if not isinstance(size, (list, tuple)):
        raise TypeError(f"{name} must be a (width, height) tuple, got {type(size).__name__} {size!r}")
    if len(size) != 2:
        raise ValueError(f"{name} must have 2 entries (width, height), got {len(size)}: {size!r}")
    values = []
    for value in size:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"{name} entries must be scalars, got a tensor of shape {list(value.shape)}")
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.SymInt, torch.SymFloat)):
            raise TypeError(f"{name} entries must be numbers, got {size!r}")
        if value < 0:
            raise ValueError(f"{name} entries must be non-negative, got {size!r}")
        values.append(value)
    return tuple(values)


def normalize_index(item, length, name="index"):
    """Turn an instance index into a form both tensors and Python lists can use.

    Returns a ``slice`` (for an int or a slice) or a 1-D ``torch.long`` tensor of positions (for a
    bool / uint8 mask, an index tensor, a list or a numpy array). An int selects one instance but
    keeps the instance dimension, as maskrcnn-benchmark's structures do.
    """
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"{name} must not be a bool; use a bool tensor to select instances")
    if isinstance(item, (numbers.Integral, np.integer)) or (
        isinstance(item, torch.Tensor) and item.dim() == 0 and not item.is_floating_point()
        and item.dtype != torch.bool
    ):
        position = int(item)
        if not -length <= position < length:
            raise IndexError(f"{name} {position} is out of range for {length} instances")
        position %= length
        return slice(position, position + 1)
    if isinstance(item, slice):
        return item
    if isinstance(item, (list, tuple, np.ndarray)):
        item = torch.as_tensor(np.asarray(item))
        if item.numel() == 0:
            item = item.long()
    if not isinstance(item, torch.Tensor):
        raise TypeError(
            f"{name} must be an int, a slice, a bool mask or an index tensor/list, got {type(item).__name__}"
        )
    if item.dim() != 1:
        raise IndexError(f"{name} must be 1-D, got shape {list(item.shape)}")
    if item.dtype in (torch.bool, torch.uint8):
        if item.numel() != length:
            raise IndexError(f"{name} mask has {item.numel()} entries but there are {length} instances")
        return item.bool().nonzero().squeeze(1).cpu()
    if item.is_floating_point():
        raise TypeError(f"{name} tensor must hold integers or bools, got {item.dtype}")
    item = item.long().cpu()
    if item.numel() and (item.max() >= length or item.min() < -length):
        raise IndexError(f"{name} holds positions out of range for {length} instances")
    return item % max(length, 1)


def tensor_index(item, length, name="index"):
    """Like ``normalize_index`` but leaves index tensors where they are (no device sync).

    Used by tensor-backed structures: an int becomes a one-element slice, lists and numpy arrays
    become tensors, uint8 masks become bool masks; bounds are left to torch's own indexing checks.
    """
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"{name} must not be a bool; use a bool tensor to select instances")
    if isinstance(item, (numbers.Integral, np.integer, slice)):
        return normalize_index(item, length, name)
    if isinstance(item, (list, tuple, np.ndarray)):
        return normalize_index(item, length, name)
    if not isinstance(item, torch.Tensor):
        raise TypeError(
            f"{name} must be an int, a slice, a bool mask or an index tensor/list, got {type(item).__name__}"
        )
    if item.dim() == 0:
        return normalize_index(item, length, name)
    if item.dim() != 1:
        raise IndexError(f"{name} must be 1-D, got shape {list(item.shape)}")
    if item.dtype in (torch.bool, torch.uint8):
        if item.numel() != length:
            raise IndexError(f"{name} mask has {item.numel()} entries but there are {length} instances")
        return item.bool()
    if item.is_floating_point():
        raise TypeError(f"{name} tensor must hold integers or bools, got {item.dtype}")
    return item


def positions_of(index, length):
    """A list of int positions for the output of ``normalize_index`` (for Python-list storage)."""
    if isinstance(index, slice):
        return list(range(length))[index]
    return index.tolist()
