"""BoxList: the boxes of one image, with the image size and per-box fields (labels, scores, masks...).

The pixel convention (legacy "+1" or modern) is carried by each BoxList as ``legacy_plus_one``;
see ``maskrcnn.structures.box_convention``.
"""
import torch

from maskrcnn.structures._helpers import normalize_size, tensor_index
from maskrcnn.structures.box_convention import pixel_offset, resolve_legacy_plus_one

# transpose methods (the values of PIL.Image.FLIP_LEFT_RIGHT / FLIP_TOP_BOTTOM)
FLIP_LEFT_RIGHT = 0
FLIP_TOP_BOTTOM = 1

_MODES = ("xyxy", "xywh")


def _check_mode(mode, name="mode"):
    if mode not in _MODES:
        raise ValueError(f"{name} must be 'xyxy' or 'xywh', got {mode!r}")


def _geometric(value, method):
    """True when a field follows the boxes through ``method`` (resize / crop / transpose).

    Tensors are per-box data (labels, scores) and are copied as they are, even though
    ``torch.Tensor`` has methods of the same names.
    """
    return not isinstance(value, torch.Tensor) and callable(getattr(value, method, None))


class BoxList(object):
    """A set of N boxes of one image, plus per-box fields.

    Arguments:
        bbox: Tensor[N, 4] (or anything ``torch.as_tensor`` takes): (x1, y1, x2, y2) in "xyxy"
            mode, (x, y, w, h) in "xywh" mode. Stored as float32 (float64 is kept as it is).
        image_size: (width, height) of the image.
        mode: "xyxy" or "xywh".
        legacy_plus_one: the pixel convention (None: the process default, see box_convention).

    Fields added with ``add_field`` hold one entry per box (tensors indexed along dim 0, or
    structures such as SegmentationMask / Keypoints); ``resize``, ``crop`` and ``transpose``
    apply the same operation to fields that implement it.
    """

    def __init__(self, bbox, image_size, mode="xyxy", legacy_plus_one=None):
        device = bbox.device if isinstance(bbox, torch.Tensor) else torch.device("cpu")
        bbox = torch.as_tensor(bbox, device=device)
        if bbox.dtype != torch.float64:
            bbox = bbox.to(torch.float32)
        if bbox.dim() != 2 and bbox.numel() == 0:  # (the rank first: torch.export may not know N)
            bbox = bbox.reshape(0, 4)
        if bbox.dim() != 2 or bbox.shape[-1] != 4:
            raise ValueError(f"bbox must be a 2-D tensor of shape [N, 4], got shape {list(bbox.shape)}")
        _check_mode(mode)
        self.bbox = bbox
        self.size = normalize_size(image_size, "image_size")  # (image_width, image_height)
        self.mode = mode
        self.legacy_plus_one = resolve_legacy_plus_one(legacy_plus_one)
        self.extra_fields = {}

    # ------------------------------------------------------------------ fields
    def add_field(self, field, field_data):
        """Attach per-box data (a tensor with N rows, or a structure with N instances)."""
        convention = getattr(field_data, "legacy_plus_one", None)
        if isinstance(convention, bool) and convention != self.legacy_plus_one:
            raise ValueError(
                f"field {field!r} uses legacy_plus_one={convention} but the BoxList uses "
                f"legacy_plus_one={self.legacy_plus_one}; build both under the same box convention"
            )
        self.extra_fields[field] = field_data

    def get_field(self, field):
        try:
            return self.extra_fields[field]
        except KeyError:
            raise KeyError(f"BoxList has no field {field!r}; its fields are {self.fields()}") from None

    def has_field(self, field):
        return field in self.extra_fields

    def fields(self):
        return list(self.extra_fields.keys())

    def _copy_extra_fields(self, bbox):
        for name, value in bbox.extra_fields.items():
            self.extra_fields[name] = value

    def _new(self, bbox, size, mode):
        """A BoxList with the same convention and no fields."""
        return BoxList(bbox, size, mode=mode, legacy_plus_one=self.legacy_plus_one)

    # ------------------------------------------------------------------ modes
    def convert(self, mode):
        """This BoxList in ``mode`` ("xyxy" or "xywh"); ``self`` when already in it."""
        _check_mode(mode)
        if mode == self.mode:
            return self
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        if mode == "xyxy":
            bbox = torch.cat((xmin, ymin, xmax, ymax), dim=-1)
        else:
            offset = pixel_offset(self.legacy_plus_one)
            bbox = torch.cat((xmin, ymin, xmax - xmin + offset, ymax - ymin + offset), dim=-1)
        converted = self._new(bbox, self.size, mode)
        converted._copy_extra_fields(self)
        return converted

    def _split_into_xyxy(self):
        """Four Tensor[N, 1]: xmin, ymin, xmax, ymax."""
        if self.mode == "xyxy":
            return self.bbox.split(1, dim=-1)
        offset = pixel_offset(self.legacy_plus_one)
        xmin, ymin, width, height = self.bbox.split(1, dim=-1)
        return (
            xmin,
            ymin,
            xmin + (width - offset).clamp(min=0),
            ymin + (height - offset).clamp(min=0),
        )

    # ------------------------------------------------------------------ geometry
    def _with_fields(self, bbox, size, method, *args, **kwargs):
        """A BoxList (xyxy) over ``bbox`` whose fields went through ``method`` where they support it."""
        result = self._new(bbox, size, "xyxy")
        for name, value in self.extra_fields.items():
            if _geometric(value, method):
                value = getattr(value, method)(*args, **kwargs)
            result.add_field(name, value)
        return result.convert(self.mode)

    def resize(self, size, *args, **kwargs):
        """A copy resized to ``size`` = (width, height); fields with ``resize`` are resized too."""
        size = normalize_size(size, "size")
        ratio_width, ratio_height = (float(new) / float(old) for new, old in zip(size, self.size))
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        scaled = torch.cat(
            (xmin * ratio_width, ymin * ratio_height, xmax * ratio_width, ymax * ratio_height), dim=-1
        )
        return self._with_fields(scaled, size, "resize", size, *args, **kwargs)

    def transpose(self, method):
        """A copy flipped by FLIP_LEFT_RIGHT or FLIP_TOP_BOTTOM (fields flipped too).

        A flip maps x to W - x - 1 under the legacy convention and W - x under the modern one
        (the same for y / H); maskrcnn-benchmark used the "- 1" only left-right, here both
        directions follow the convention so that two flips always restore the boxes.
        """
        if method not in (FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM):
            raise NotImplementedError(
                f"transpose: only FLIP_LEFT_RIGHT (0) and FLIP_TOP_BOTTOM (1) are implemented, got {method!r}"
            )
        image_width, image_height = self.size
        offset = pixel_offset(self.legacy_plus_one)
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        if method == FLIP_LEFT_RIGHT:
            flipped = (image_width - xmax - offset, ymin, image_width - xmin - offset, ymax)
        else:
            flipped = (xmin, image_height - ymax - offset, xmax, image_height - ymin - offset)
        return self._with_fields(torch.cat(flipped, dim=-1), self.size, "transpose", method)

    def crop(self, box):
        """The boxes seen through the window ``box`` = (x1, y1, x2, y2), an image of size
        (x2 - x1, y2 - y1); coordinates are clamped to the window, empty boxes are kept.
        Fields with ``crop`` are cropped to the same window."""
        box = [float(b) for b in box]
        if len(box) != 4:
            raise ValueError(f"crop: box must have 4 values (x1, y1, x2, y2), got {len(box)}")
        width, height = box[2] - box[0], box[3] - box[1]
        if width < 0 or height < 0:
            raise ValueError(f"crop: box must have x2 >= x1 and y2 >= y1, got {box}")
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        cropped = torch.cat(
            (
                (xmin - box[0]).clamp(min=0, max=width),
                (ymin - box[1]).clamp(min=0, max=height),
                (xmax - box[0]).clamp(min=0, max=width),
                (ymax - box[1]).clamp(min=0, max=height),
            ),
            dim=-1,
        )
        return self._with_fields(cropped, (width, height), "crop", box)

    def clip_to_image(self, remove_empty=True):
        """Clamp the boxes (in place) into the image: [0, W - 1] x [0, H - 1] under the legacy
        convention, [0, W] x [0, H] under the modern one. With ``remove_empty`` the result keeps
        only boxes with x2 > x1 and y2 > y1."""
        if self.mode != "xyxy":
            clipped = self.convert("xyxy").clip_to_image(remove_empty=remove_empty)
            return clipped.convert(self.mode)
        offset = pixel_offset(self.legacy_plus_one)
        max_x, max_y = self.size[0] - offset, self.size[1] - offset
        self.bbox[:, 0].clamp_(min=0, max=max_x)
        self.bbox[:, 1].clamp_(min=0, max=max_y)
        self.bbox[:, 2].clamp_(min=0, max=max_x)
        self.bbox[:, 3].clamp_(min=0, max=max_y)
        if remove_empty:
            box = self.bbox
            keep = (box[:, 3] > box[:, 1]) & (box[:, 2] > box[:, 0])
            return self[keep]
        return self

    def area(self):
        """Tensor[N]: box areas in the BoxList's convention."""
        box = self.bbox
        if self.mode == "xywh":
            return box[:, 2] * box[:, 3]
        offset = pixel_offset(self.legacy_plus_one)
        return (box[:, 2] - box[:, 0] + offset) * (box[:, 3] - box[:, 1] + offset)

    # ------------------------------------------------------------------ tensor-like
    def copy_with_fields(self, fields, skip_missing=False):
        """A BoxList sharing the boxes and carrying only ``fields`` (a name or a list of names)."""
        copied = self._new(self.bbox, self.size, self.mode)
        if not isinstance(fields, (list, tuple)):
            fields = [fields]
        for field in fields:
            if self.has_field(field):
                copied.add_field(field, self.get_field(field))
            elif not skip_missing:
                raise KeyError(f"copy_with_fields: BoxList has no field {field!r}; its fields are {self.fields()}")
        return copied

    def to(self, device):
        moved = self._new(self.bbox.to(device), self.size, self.mode)
        for name, value in self.extra_fields.items():
            if hasattr(value, "to"):
                value = value.to(device)
            moved.add_field(name, value)
        return moved

    def __getitem__(self, item):
        """Select boxes by int (kept as a 1-box BoxList), slice, bool mask or index tensor/list."""
        index = tensor_index(item, self.bbox.shape[0], "BoxList index")  # (len() needs a concrete int)
        selected = self._new(self.bbox[index], self.size, self.mode)
        for name, value in self.extra_fields.items():
            if isinstance(value, torch.Tensor) and isinstance(index, torch.Tensor) and index.device != value.device:
                value = value[index.to(value.device)]
            else:
                value = value[index]
            selected.add_field(name, value)
        return selected

    def __len__(self):
        return self.bbox.shape[0]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_boxes={len(self)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]}, mode={self.mode})"
        )
