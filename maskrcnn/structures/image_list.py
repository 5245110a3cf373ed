"""ImageList: a batch of images of different sizes, zero-padded into one tensor."""
import math

import torch


class ImageList(object):
    """Images padded into one tensor, with the size of each image before padding.

    Arguments:
        tensors: Tensor[N, C, H, W], the padded batch.
        image_sizes: list of N (height, width) pairs, the unpadded size of each image.
    """

    def __init__(self, tensors, image_sizes):
        if not isinstance(tensors, torch.Tensor) or tensors.dim() != 4:
            shape = list(tensors.shape) if isinstance(tensors, torch.Tensor) else type(tensors).__name__
            raise ValueError(f"ImageList: tensors must be a 4-D tensor [N, C, H, W], got {shape}")
        # ints, except symbolic sizes (torch.export with a dynamic image size) that int() would fix
        image_sizes = [tuple(s if isinstance(s, torch.SymInt) else int(s) for s in size) for size in image_sizes]
        if len(image_sizes) != tensors.shape[0]:
            raise ValueError(
                f"ImageList: image_sizes has {len(image_sizes)} entries but tensors holds {tensors.shape[0]} images"
            )
        for size in image_sizes:
            if len(size) != 2:
                raise ValueError(f"ImageList: each image size must be (height, width), got {size}")
        self.tensors = tensors
        self.image_sizes = image_sizes

    def to(self, *args, **kwargs):
        return ImageList(self.tensors.to(*args, **kwargs), self.image_sizes)

    def __len__(self):
        return len(self.image_sizes)

    def __repr__(self):
        return f"{self.__class__.__name__}(tensors={list(self.tensors.shape)}, image_sizes={self.image_sizes})"


def _round_up(value, divisor):
    return int(math.ceil(value / divisor) * divisor) if divisor > 0 else value


def to_image_list(tensors, size_divisible=0):
    """Batch images into an ImageList.

    Arguments:
        tensors: an ImageList (returned as it is), a Tensor[C, H, W] or Tensor[N, C, H, W], or a
            list/tuple of Tensor[C, H, W] of possibly different sizes.
        size_divisible: when > 0, the padded height and width are rounded up to a multiple of it
            (FPN needs sizes divisible by its largest stride).

    Images are copied into the top-left corner of a zero tensor of the largest (rounded) size.
    """
    if isinstance(tensors, ImageList):
        return tensors
    if isinstance(tensors, torch.Tensor):
        if tensors.dim() == 3:
            tensors = tensors[None]
        if tensors.dim() != 4:
            raise ValueError(
                f"to_image_list: a tensor must be [C, H, W] or [N, C, H, W], got shape {list(tensors.shape)}"
            )
        image_sizes = [tuple(tensors.shape[-2:])] * tensors.shape[0]
        if size_divisible > 0:
            tensors = list(tensors.unbind(0))
        else:
            return ImageList(tensors, image_sizes)
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"to_image_list: unsupported type {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError("to_image_list: got an empty list of images")
    for position, image in enumerate(tensors):
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"to_image_list: image {position} must be a tensor [C, H, W], got {shape}")
    channels = {image.shape[0] for image in tensors}
    if len(channels) != 1:
        raise ValueError(f"to_image_list: images have different channel counts {sorted(channels)}")
    max_height = _round_up(max(image.shape[1] for image in tensors), size_divisible)
    max_width = _round_up(max(image.shape[2] for image in tensors), size_divisible)
    first = tensors[0]
    batched = first.new_zeros((len(tensors), first.shape[0], max_height, max_width))
    for image, padded in zip(tensors, batched):
        padded[:, : image.shape[1], : image.shape[2]].copy_(image)
    image_sizes = [tuple(image.shape[-2:]) for image in tensors]
    return ImageList(batched, image_sizes)
