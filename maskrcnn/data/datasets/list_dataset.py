"""Plain images (a folder or a list of paths) without annotations, e.g. for demos / inference."""
import os

import torch

from maskrcnn.structures.bounding_box import BoxList

from .image_io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ListDataset(torch.utils.data.Dataset):
    """Items (image BGR uint8, empty BoxList target, index) of `image_paths` (a list, or a folder
    whose image files are taken in sorted order)."""

    def __init__(self, image_paths, transforms=None):
        if isinstance(image_paths, str):
            if not os.path.isdir(image_paths):
                raise ValueError("ListDataset: %s is not a folder" % image_paths)
            folder = image_paths
            image_paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                           if f.lower().endswith(IMAGE_EXTENSIONS)]
        self.image_paths = list(image_paths)
        self.transforms = transforms
        self._sizes = {}

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        image = read_image(self.image_paths[index], index)
        height, width = image.shape[:2]
        self._sizes[index] = (height, width)
        target = BoxList(torch.zeros((0, 4)), (width, height))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target, index

    def get_img_info(self, index):
        if index not in self._sizes:
            self._sizes[index] = read_image(self.image_paths[index], index).shape[:2]
        height, width = self._sizes[index]
        return {"height": height, "width": width, "file_name": self.image_paths[index]}
