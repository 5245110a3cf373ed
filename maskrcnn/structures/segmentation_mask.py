"""Instance segmentations of one image: polygons or binary masks, behind one SegmentationMask.

* ``PolygonInstance``: the polygons of one object (COCO's flat [x0, y0, x1, y1, ...] lists).
* ``PolygonList``: one PolygonInstance per object.
* ``BinaryMaskList``: Tensor[N, H, W] uint8 masks (built from tensors or COCO RLE dicts).
* ``SegmentationMask``: wraps either, converts between them, and follows a BoxList through
  resize / crop / transpose.

Polygons are rasterised with pycocotools (``frPyObjects`` + ``decode``) so masks match COCO's.
An object whose polygons are all empty stays in the list (it rasterises to an all-zero mask), so
instance i always lines up with box i.
"""
import numbers

import numpy as np
import pycocotools.mask as mask_utils
import torch

from maskrcnn.structures._helpers import normalize_index, normalize_size, positions_of, tensor_index
from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM
from maskrcnn.structures.box_convention import pixel_offset, resolve_legacy_plus_one

_MODES = ("poly", "mask")


def _check_flip(method):
    if method not in (FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM):
        raise NotImplementedError(
            f"transpose: only FLIP_LEFT_RIGHT (0) and FLIP_TOP_BOTTOM (1) are implemented, got {method!r}"
        )


def _crop_window(box):
    """(x1, y1, x2, y2) as floats, with x2 >= x1 + 1 and y2 >= y1 + 1 so the crop is never empty."""
    if isinstance(box, torch.Tensor):
        box = box.tolist()
    if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
        raise ValueError(f"crop: box must be 4 numbers (x1, y1, x2, y2), got {box!r}")
    x1, y1, x2, y2 = (float(b) for b in box)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"crop: box must have x2 >= x1 and y2 >= y1, got {[x1, y1, x2, y2]}")
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _resize_target(size):
    """``size`` as (width, height); a single number means a square."""
    if isinstance(size, numbers.Real):
        size = (size, size)
    width, height = normalize_size(size, "size")
    if width <= 0 or height <= 0:
        raise ValueError(f"resize: size must be positive, got {size!r}")
    return width, height


def _raster_shape(size):
    """Integer (height, width) of the raster for a (possibly fractional) (width, height)."""
    return int(round(size[1])), int(round(size[0]))


class PolygonInstance(object):
    """The polygons of one object.

    Arguments:
        polygons: list of flat coordinate sequences [x0, y0, x1, y1, ...] (lists, numpy arrays or
            tensors), or a PolygonInstance. Sequences with fewer than 3 points are dropped.
        size: (width, height) of the image.
        legacy_plus_one: pixel convention used by flips (None: the process default).
    """

    def __init__(self, polygons, size, legacy_plus_one=None):
        if isinstance(polygons, PolygonInstance):
            if legacy_plus_one is None:
                legacy_plus_one = polygons.legacy_plus_one
            polygons = polygons.polygons
        if not isinstance(polygons, (list, tuple)):
            raise TypeError(
                f"PolygonInstance: polygons must be a list of [x0, y0, x1, y1, ...] lists, got {type(polygons).__name__}"
            )
        valid = []
        for position, polygon in enumerate(polygons):
            if isinstance(polygon, numbers.Real):
                raise TypeError(
                    "PolygonInstance: polygons must be a list of coordinate lists (one per polygon), "
                    f"got a number at position {position}; wrap a single polygon in a list"
                )
            if not (isinstance(polygon, torch.Tensor) and polygon.dtype == torch.float64 and polygon.dim() == 1):
                polygon = torch.as_tensor(np.asarray(polygon, dtype=np.float64)).reshape(-1)
            if polygon.numel() % 2:
                raise ValueError(
                    f"PolygonInstance: polygon {position} has an odd number of coordinates ({polygon.numel()})"
                )
            if polygon.numel() >= 6:  # at least 3 points
                valid.append(polygon)
        self.polygons = valid
        self.size = normalize_size(size, "size")
        self.legacy_plus_one = resolve_legacy_plus_one(legacy_plus_one)

    def _new(self, polygons, size):
        return PolygonInstance(polygons, size, legacy_plus_one=self.legacy_plus_one)

    def transpose(self, method):
        _check_flip(method)
        axis = 0 if method == FLIP_LEFT_RIGHT else 1
        extent = self.size[axis]
        offset = pixel_offset(self.legacy_plus_one)
        flipped = []
        for polygon in self.polygons:
            polygon = polygon.clone()
            polygon[axis::2] = extent - polygon[axis::2] - offset
            flipped.append(polygon)
        return self._new(flipped, self.size)

    def crop(self, box):
        x1, y1, x2, y2 = _crop_window(box)
        cropped = []
        for polygon in self.polygons:
            polygon = polygon.clone()
            polygon[0::2] -= x1
            polygon[1::2] -= y1
            cropped.append(polygon)
        return self._new(cropped, (x2 - x1, y2 - y1))

    def resize(self, size):
        size = _resize_target(size)
        ratio_width, ratio_height = (float(new) / float(old) for new, old in zip(size, self.size))
        resized = []
        for polygon in self.polygons:
            polygon = polygon.clone()
            polygon[0::2] *= ratio_width
            polygon[1::2] *= ratio_height
            resized.append(polygon)
        return self._new(resized, size)

    def convert_to_binarymask(self):
        """Tensor[H, W] uint8: the union of the polygons, rasterised by pycocotools."""
        height, width = _raster_shape(self.size)
        if not self.polygons or height == 0 or width == 0:
            return torch.zeros((height, width), dtype=torch.uint8)
        rles = mask_utils.frPyObjects([p.tolist() for p in self.polygons], height, width)
        return torch.from_numpy(mask_utils.decode(mask_utils.merge(rles)))

    def __len__(self):
        return len(self.polygons)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_groups={len(self.polygons)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]})"
        )


class PolygonList(object):
    """One PolygonInstance per object.

    Arguments:
        polygons: list (per object) of lists of flat coordinate sequences, a list of
            PolygonInstance, or a PolygonList.
        size: (width, height) of the image.
        legacy_plus_one: pixel convention used by flips (None: the process default).
    """

    def __init__(self, polygons, size, legacy_plus_one=None):
        if isinstance(polygons, PolygonList):
            if legacy_plus_one is None:
                legacy_plus_one = polygons.legacy_plus_one
            polygons = polygons.polygons
        if not isinstance(polygons, (list, tuple)):
            raise TypeError(
                f"PolygonList: polygons must be a list with one list of polygons per object, got {type(polygons).__name__}"
            )
        self.size = normalize_size(size, "size")
        self.legacy_plus_one = resolve_legacy_plus_one(legacy_plus_one)
        self.polygons = [self._instance(instance) for instance in polygons]

    def _instance(self, instance):
        """``instance`` as a PolygonInstance of this list's size and convention (reused when it is one:
        every operation returns new instances, so they are never modified in place)."""
        if (
            isinstance(instance, PolygonInstance)
            and instance.size == self.size
            and instance.legacy_plus_one == self.legacy_plus_one
        ):
            return instance
        return PolygonInstance(instance, self.size, legacy_plus_one=self.legacy_plus_one)

    def _new(self, instances, size):
        return PolygonList(instances, size, legacy_plus_one=self.legacy_plus_one)

    def transpose(self, method):
        _check_flip(method)
        return self._new([instance.transpose(method) for instance in self.polygons], self.size)

    def crop(self, box):
        x1, y1, x2, y2 = _crop_window(box)
        window = (x1, y1, x2, y2)
        return self._new([instance.crop(window) for instance in self.polygons], (x2 - x1, y2 - y1))

    def resize(self, size):
        size = _resize_target(size)
        return self._new([instance.resize(size) for instance in self.polygons], size)

    def to(self, *args, **kwargs):
        """Polygons stay on the CPU (pycocotools rasterises them there)."""
        return self

    def convert_to_binarymask(self):
        height, width = _raster_shape(self.size)
        if self.polygons:
            masks = torch.stack([instance.convert_to_binarymask() for instance in self.polygons])
        else:
            masks = torch.zeros((0, height, width), dtype=torch.uint8)
        return BinaryMaskList(masks, (width, height))

    def __len__(self):
        return len(self.polygons)

    def __getitem__(self, item):
        index = normalize_index(item, len(self), "PolygonList index")
        return self._new([self.polygons[i] for i in positions_of(index, len(self))], self.size)

    def __iter__(self):
        return iter(self.polygons)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_instances={len(self.polygons)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]})"
        )


def _decode_rle(rles, size):
    """Tensor[N, H, W] uint8 from COCO RLE dicts (compressed or uncompressed counts)."""
    width, height = size
    compressed = []
    for position, rle in enumerate(rles):
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            raise ValueError(f"BinaryMaskList: RLE {position} must be a dict with 'counts' and 'size'")
        if list(rle["size"]) != [height, width]:
            raise ValueError(
                f"BinaryMaskList: RLE {position} has size {list(rle['size'])} (h, w) but the image is "
                f"{[height, width]} (h, w)"
            )
        counts = rle["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(counts, str):
            rle = {"size": rle["size"], "counts": counts.encode("ascii")}
        compressed.append(rle)
    if not compressed:
        return torch.zeros((0, height, width), dtype=torch.uint8)
    decoded = mask_utils.decode(compressed)  # [H, W, N]
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))


class BinaryMaskList(object):
    """Binary masks of all objects of an image.

    Arguments:
        masks: Tensor[N, H, W] or Tensor[H, W] (uint8 or bool; stored as uint8), a list of
            Tensor[H, W], COCO RLE dicts (one dict or a list), or a BinaryMaskList.
        size: (width, height) of the image; must match the masks' W and H.
    """

    def __init__(self, masks, size):
        size = normalize_size(size, "size")
        size = (int(round(size[0])), int(round(size[1])))
        if isinstance(masks, BinaryMaskList):
            masks = masks.masks
        elif isinstance(masks, dict):
            masks = _decode_rle([masks], size)
        elif isinstance(masks, (list, tuple)):
            if len(masks) == 0:
                masks = torch.zeros((0, size[1], size[0]), dtype=torch.uint8)
            elif isinstance(masks[0], dict):
                masks = _decode_rle(masks, size)
            else:
                masks = torch.stack([torch.as_tensor(mask) for mask in masks])
        elif isinstance(masks, np.ndarray):
            masks = torch.from_numpy(masks)
        if not isinstance(masks, torch.Tensor):
            raise TypeError(
                "BinaryMaskList: masks must be a tensor, a list of tensors or COCO RLE dicts, "
                f"got {type(masks).__name__}"
            )
        if masks.dim() == 2:
            masks = masks[None]
        if masks.dim() != 3:
            raise ValueError(f"BinaryMaskList: masks must be [N, H, W], got shape {list(masks.shape)}")
        if masks.shape[1] != size[1] or masks.shape[2] != size[0]:
            raise ValueError(
                f"BinaryMaskList: masks of shape {list(masks.shape)} [N, H, W] do not match size "
                f"{size} (width, height)"
            )
        if masks.dtype != torch.uint8:
            masks = (masks != 0).to(torch.uint8)
        self.masks = masks
        self.size = size

    def transpose(self, method):
        _check_flip(method)
        dim = 2 if method == FLIP_LEFT_RIGHT else 1
        return BinaryMaskList(self.masks.flip(dim), self.size)

    def crop(self, box):
        """The masks seen through ``box`` (rounded to whole pixels); outside the image is zero."""
        x1, y1, x2, y2 = (int(round(v)) for v in _crop_window(box))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        width, height = self.size
        cropped = self.masks.new_zeros((len(self), y2 - y1, x2 - x1))
        src_x1, src_y1 = max(x1, 0), max(y1, 0)
        src_x2, src_y2 = min(x2, width), min(y2, height)
        if src_x2 > src_x1 and src_y2 > src_y1:
            cropped[:, src_y1 - y1 : src_y2 - y1, src_x1 - x1 : src_x2 - x1] = self.masks[
                :, src_y1:src_y2, src_x1:src_x2
            ]
        return BinaryMaskList(cropped, (x2 - x1, y2 - y1))

    def resize(self, size):
        """Bilinear resampling thresholded at 0.5 (so a mask and its polygon agree after resize)."""
        width, height = (int(round(v)) for v in _resize_target(size))
        if len(self) == 0:
            return BinaryMaskList(self.masks.new_zeros((0, height, width)), (width, height))
        resized = torch.nn.functional.interpolate(
            self.masks[None].float(), size=(height, width), mode="bilinear", align_corners=False
        )[0]
        return BinaryMaskList((resized >= 0.5).to(torch.uint8), (width, height))

    def convert_to_polygon(self, legacy_plus_one=None):
        """A PolygonList tracing each mask's outer contours (OpenCV); holes are not kept."""
        return PolygonList(self._find_contours(), self.size, legacy_plus_one=legacy_plus_one)

    def _find_contours(self):
        """Outer contours per mask, as flat [x0, y0, ...] lists in COCO polygon coordinates.

        OpenCV traces the centres of the boundary pixels, and pycocotools fills the pixels whose
        centres fall inside a polygon, so tracing the mask itself would lose half a pixel all
        round. Tracing a 2x nearest-upsampled copy and mapping u -> (u + 0.5) / 2 puts the outline
        a quarter pixel inside the mask's edge, so rasterising it gives the mask back.
        """
        import cv2

        instances = []
        for mask in self.masks.detach().cpu().numpy():
            upsampled = np.ascontiguousarray(mask.repeat(2, axis=0).repeat(2, axis=1))
            contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            instances.append(
                [((contour.reshape(-1).astype(np.float64) + 0.5) / 2).tolist() for contour in contours]
            )
        return instances

    def to(self, *args, **kwargs):
        moved = BinaryMaskList.__new__(BinaryMaskList)
        moved.masks = self.masks.to(*args, **kwargs)
        moved.size = self.size
        return moved

    def __len__(self):
        return self.masks.shape[0]

    def __getitem__(self, index):
        index = tensor_index(index, len(self), "BinaryMaskList index")
        if isinstance(index, torch.Tensor):
            index = index.to(self.masks.device)
        return BinaryMaskList(self.masks[index], self.size)

    def __iter__(self):
        return iter(self.masks)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_instances={len(self)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]})"
        )


def _kind_of(instances):
    """'poly' or 'mask': the representation ``instances`` is given in (None when empty)."""
    if isinstance(instances, PolygonList):
        return "poly"
    if isinstance(instances, (BinaryMaskList, torch.Tensor, np.ndarray, dict)):
        return "mask"
    if isinstance(instances, (list, tuple)):
        if len(instances) == 0:
            return None
        first = instances[0]
        if isinstance(first, (dict, torch.Tensor, np.ndarray)):
            return "mask"
        return "poly"
    raise TypeError(
        "SegmentationMask: instances must be polygons (a list per object of coordinate lists), "
        f"binary masks (Tensor[N, H, W]) or COCO RLE dicts, got {type(instances).__name__}"
    )


class SegmentationMask(object):
    """The segmentations of all objects of an image, as polygons or binary masks.

    Arguments:
        instances: polygons (a list per object of flat [x0, y0, ...] lists, or a PolygonList),
            binary masks (Tensor[N, H, W] uint8/bool, a list of Tensor[H, W], a BinaryMaskList),
            COCO RLE dicts, or a SegmentationMask.
        size: (width, height) of the image.
        mode: "poly" or "mask", the representation kept; input in the other one is converted.
        legacy_plus_one: pixel convention of polygon flips (None: the process default).
    """

    def __init__(self, instances, size, mode="poly", legacy_plus_one=None):
        if mode not in _MODES:
            raise ValueError(f"SegmentationMask: mode must be 'poly' or 'mask', got {mode!r}")
        size = normalize_size(size, "size")
        if isinstance(instances, SegmentationMask):
            if legacy_plus_one is None:
                legacy_plus_one = instances.legacy_plus_one
            instances = instances.instances
        self.legacy_plus_one = resolve_legacy_plus_one(legacy_plus_one)
        kind = _kind_of(instances) or mode
        if kind == "poly":
            instances = PolygonList(instances, size, legacy_plus_one=self.legacy_plus_one)
            if mode == "mask":
                instances = instances.convert_to_binarymask()
        else:
            instances = BinaryMaskList(instances, size)
            if mode == "poly":
                instances = instances.convert_to_polygon(legacy_plus_one=self.legacy_plus_one)
        self.instances = instances
        self.mode = mode
        self.size = instances.size

    def _new(self, instances):
        return SegmentationMask(instances, instances.size, self.mode, legacy_plus_one=self.legacy_plus_one)

    def transpose(self, method):
        return self._new(self.instances.transpose(method))

    def crop(self, box):
        return self._new(self.instances.crop(box))

    def resize(self, size, *args, **kwargs):
        return self._new(self.instances.resize(size))

    def to(self, *args, **kwargs):
        return self._new(self.instances.to(*args, **kwargs))

    def convert(self, mode):
        """This SegmentationMask in ``mode`` ("poly" or "mask")."""
        if mode not in _MODES:
            raise ValueError(f"SegmentationMask.convert: mode must be 'poly' or 'mask', got {mode!r}")
        if mode == self.mode:
            return self
        return SegmentationMask(self.instances, self.size, mode, legacy_plus_one=self.legacy_plus_one)

    def get_mask_tensor(self):
        """Tensor[N, H, W] uint8 masks; Tensor[H, W] when there is exactly one instance."""
        instances = self.instances
        if self.mode == "poly":
            instances = instances.convert_to_binarymask()
        return instances.masks.squeeze(0)

    @classmethod
    def cat(cls, masks):
        """Concatenate SegmentationMasks of the same size and mode (used by cat_boxlist)."""
        first = masks[0]
        for position, mask in enumerate(masks):
            if mask.size != first.size or mask.mode != first.mode:
                raise ValueError(
                    f"SegmentationMask.cat: masks[{position}] has size {mask.size} mode {mask.mode!r}, "
                    f"expected size {first.size} mode {first.mode!r}"
                )
        if first.mode == "poly":
            instances = [instance for mask in masks for instance in mask.instances.polygons]
        else:
            instances = torch.cat([mask.instances.masks for mask in masks], dim=0)
        return cls(instances, first.size, first.mode, legacy_plus_one=first.legacy_plus_one)

    def __len__(self):
        return len(self.instances)

    def __getitem__(self, item):
        return self._new(self.instances[item])

    def __iter__(self):
        """Single-instance SegmentationMasks, one per object."""
        for position in range(len(self)):
            yield self[position]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_instances={len(self)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]}, mode={self.mode})"
        )
