from maskrcnn.structures.image_list import to_image_list


class BatchCollator(object):
    """[(image Tensor[3, H, W], target, index), ...] -> (ImageList padded to a multiple of
    `size_divisible`, tuple of targets, tuple of indices)."""

    def __init__(self, size_divisible=0):
        self.size_divisible = size_divisible

    def __call__(self, batch):
        images, targets, indices = zip(*batch)
        return to_image_list(images, self.size_divisible), targets, indices


class BBoxAugCollator(object):
    """Test-time augmentation: [(raw BGR uint8 image [H, W, 3], target, index), ...] -> (tuple of
    images, tuple of targets, tuple of indices); engine/bbox_aug.py resizes each view itself."""

    def __call__(self, batch):
        return tuple(zip(*batch))
