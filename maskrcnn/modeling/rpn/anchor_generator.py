"""Anchors: reference boxes tiled over every feature-map location.

Two layouts, chosen by the box convention (``MODEL.BOX_CONVENTION_LEGACY``):

* legacy (default): Detectron's / maskrcnn-benchmark's anchors. The cell anchors are built around
  the centre of the first stride x stride cell, ((stride - 1) / 2, (stride - 1) / 2), by the
  "ratio enumeration then scale enumeration" of the original Faster R-CNN code, with widths
  x2 - x1 + 1 and rounded side lengths; e.g. stride 16, size 32, ratio 0.5 gives (-15, -4, 30, 19).
* modern: torchvision's anchors, centred on (0, 0), (-w / 2, -h / 2, w / 2, h / 2) rounded, with
  w = size / sqrt(ratio) and h = size * sqrt(ratio).

In both the order of the A anchors of a location is ratio-major (all sizes of the first ratio,
then the next ratio), which fixes the channel layout of the RPN head, and a location (x, y) of a
map with stride s shifts the cell anchors by (x * s, y * s). The stride is the level's configured
one, or, with ``stride_from_image_size`` (torchvision's rule), (padded height // map height,
padded width // map width) of the batch.
"""
import torch
from torch import nn

from maskrcnn.config.conventions import box_convention
from maskrcnn.structures.bounding_box import BoxList

__all__ = [
    "BufferList",
    "AnchorGenerator",
    "make_anchor_generator",
    "make_anchor_generator_retinanet",
    "generate_anchors",
    "generate_centered_anchors",
]


class BufferList(nn.Module):
    """A list of tensors registered as buffers named "0", "1", ... (they move with ``.to()`` and
    are saved in the state dict as ``<name>.0``, ``<name>.1``, ...)."""

    def __init__(self, buffers=None):
        super().__init__()
        if buffers is not None:
            self.extend(buffers)

    def extend(self, buffers):
        offset = len(self)
        for i, buffer in enumerate(buffers):
            self.register_buffer(str(offset + i), buffer)
        return self

    def __len__(self):
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())

    def __getitem__(self, index):
        return list(self._buffers.values())[index]


class AnchorGenerator(nn.Module):
    """For a batch of images and its feature maps, the anchors of every location of every map.

    Arguments:
        sizes: anchor side lengths (sqrt of the area) in input pixels. With one stride, all of
            them are used on the single map. With several strides (FPN), one entry per level,
            each a number or a tuple of numbers (several sizes per level, as RetinaNet).
        aspect_ratios: height / width ratios.
        anchor_strides: stride of each feature map, one per level.
        straddle_thresh: anchors reaching more than this many pixels outside the image are
            marked invisible (field ``visibility``); a negative value keeps all of them visible.
        legacy_plus_one: True for the legacy anchors (see module doc), False for the modern ones.
        stride_from_image_size: shift the anchors of a level by (padded image size // map size)
            per axis, as torchvision, instead of by its anchor stride (the cell anchors are the
            same: the modern ones do not depend on the stride).
    """

    def __init__(
        self,
        sizes=(128, 256, 512),
        aspect_ratios=(0.5, 1.0, 2.0),
        anchor_strides=(8, 16, 32),
        straddle_thresh=0,
        legacy_plus_one=True,
        stride_from_image_size=False,
    ):
        super().__init__()
        sizes = tuple(sizes)
        anchor_strides = tuple(anchor_strides)
        if len(anchor_strides) == 0:
            raise ValueError("AnchorGenerator: anchor_strides must not be empty")
        if len(anchor_strides) == 1:
            sizes_per_level = [tuple(s for size in sizes for s in _as_tuple(size))]
        else:
            if len(anchor_strides) != len(sizes):
                raise ValueError(
                    "AnchorGenerator: FPN should have as many anchor_strides as sizes, got "
                    f"{len(anchor_strides)} strides {anchor_strides} and {len(sizes)} sizes {sizes}"
                )
            sizes_per_level = [_as_tuple(size) for size in sizes]

        cell_anchors = []
        for stride, level_sizes in zip(anchor_strides, sizes_per_level):
            if legacy_plus_one:
                anchors = generate_anchors(stride, level_sizes, aspect_ratios)
            else:
                anchors = generate_centered_anchors(level_sizes, aspect_ratios)
            cell_anchors.append(anchors.float())
        self.strides = anchor_strides
        self.cell_anchors = BufferList(cell_anchors)
        self.straddle_thresh = straddle_thresh
        self.legacy_plus_one = bool(legacy_plus_one)
        self.stride_from_image_size = bool(stride_from_image_size)

    def num_anchors_per_location(self):
        """list[int]: A, the anchors per location, for each level."""
        return [len(cell_anchors) for cell_anchors in self.cell_anchors]

    def grid_anchors(self, grid_sizes, strides=None):
        """For each level with grid (H, W): Tensor[H * W * A, 4], location-major
        (row by row, then the A cell anchors of a location). ``strides``: one (stride_y, stride_x)
        per level (default: the anchor strides)."""
        if strides is None:
            strides = [(stride, stride) for stride in self.strides]
        anchors = []
        for (grid_height, grid_width), (stride_y, stride_x), base_anchors in zip(grid_sizes, strides, self.cell_anchors):
            device = base_anchors.device
            shifts_x = torch.arange(0, grid_width, dtype=torch.float32, device=device) * stride_x
            shifts_y = torch.arange(0, grid_height, dtype=torch.float32, device=device) * stride_y
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def visibility(self, anchors, image_width, image_height):
        """Tensor[N] bool: anchors (Tensor[N, 4]) that stay within ``straddle_thresh`` pixels of
        the image (x2 < W + t under the legacy convention, where the last pixel is W - 1;
        x2 <= W + t under the modern one)."""
        if self.straddle_thresh < 0:
            return torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
        t = self.straddle_thresh
        inside = (anchors[:, 0] >= -t) & (anchors[:, 1] >= -t)
        if self.legacy_plus_one:
            inside &= (anchors[:, 2] < image_width + t) & (anchors[:, 3] < image_height + t)
        else:
            inside &= (anchors[:, 2] <= image_width + t) & (anchors[:, 3] <= image_height + t)
        return inside

    def add_visibility_to(self, boxlist):
        image_width, image_height = boxlist.size
        boxlist.add_field("visibility", self.visibility(boxlist.bbox, image_width, image_height))

    def forward(self, image_list, feature_maps):
        """
        Arguments:
            image_list: ImageList (its ``image_sizes`` are (height, width) per image).
            feature_maps: list of Tensor[N, C, H_l, W_l], one per level.
        Returns:
            list (images) of list (levels) of BoxList (xyxy) with a bool field ``visibility``.
        """
        if len(feature_maps) != len(self.strides):
            raise ValueError(
                f"AnchorGenerator: got {len(feature_maps)} feature maps for {len(self.strides)} anchor strides"
            )
        grid_sizes = [feature_map.shape[-2:] for feature_map in feature_maps]
        strides = None
        if self.stride_from_image_size:
            padded_height, padded_width = image_list.tensors.shape[-2:]
            strides = [(padded_height // int(h), padded_width // int(w)) for h, w in grid_sizes]
        anchors_over_all_feature_maps = self.grid_anchors(grid_sizes, strides)
        anchors = []
        for image_height, image_width in image_list.image_sizes:
            anchors_in_image = []
            for anchors_per_feature_map in anchors_over_all_feature_maps:
                boxlist = BoxList(
                    anchors_per_feature_map, (image_width, image_height), mode="xyxy", legacy_plus_one=self.legacy_plus_one
                )
                self.add_visibility_to(boxlist)
                anchors_in_image.append(boxlist)
            anchors.append(anchors_in_image)
        return anchors


def _as_tuple(size):
    return tuple(size) if isinstance(size, (tuple, list)) else (size,)


def make_anchor_generator(config):
    """The RPN's AnchorGenerator from MODEL.RPN.{ANCHOR_SIZES, ASPECT_RATIOS, ANCHOR_STRIDE,
    STRADDLE_THRESH, USE_FPN, ANCHOR_STRIDE_FROM_IMAGE_SIZE} and the box convention."""
    anchor_sizes = config.MODEL.RPN.ANCHOR_SIZES
    aspect_ratios = config.MODEL.RPN.ASPECT_RATIOS
    anchor_stride = config.MODEL.RPN.ANCHOR_STRIDE
    if config.MODEL.RPN.USE_FPN:
        if len(anchor_stride) != len(anchor_sizes):
            raise ValueError(
                "MODEL.RPN.USE_FPN needs len(MODEL.RPN.ANCHOR_STRIDE) == len(MODEL.RPN.ANCHOR_SIZES), got "
                f"{tuple(anchor_stride)} and {tuple(anchor_sizes)}"
            )
    elif len(anchor_stride) != 1:
        raise ValueError(
            f"without FPN MODEL.RPN.ANCHOR_STRIDE must have a single value, got {tuple(anchor_stride)}"
        )
    return AnchorGenerator(
        anchor_sizes,
        aspect_ratios,
        anchor_stride,
        config.MODEL.RPN.STRADDLE_THRESH,
        legacy_plus_one=box_convention(config).legacy_plus_one,
        stride_from_image_size=config.MODEL.RPN.ANCHOR_STRIDE_FROM_IMAGE_SIZE,
    )


def make_anchor_generator_retinanet(config):
    """RetinaNet's AnchorGenerator: for each level size s, the sizes s * OCTAVE ** (i / n) for
    i in [0, n), n = MODEL.RETINANET.SCALES_PER_OCTAVE."""
    anchor_sizes = config.MODEL.RETINANET.ANCHOR_SIZES
    anchor_strides = config.MODEL.RETINANET.ANCHOR_STRIDES
    if len(anchor_strides) != len(anchor_sizes):
        raise ValueError(
            "MODEL.RETINANET.ANCHOR_STRIDES and MODEL.RETINANET.ANCHOR_SIZES must have the same length "
            f"(one per FPN level), got {tuple(anchor_strides)} and {tuple(anchor_sizes)}"
        )
    octave = config.MODEL.RETINANET.OCTAVE
    scales_per_octave = config.MODEL.RETINANET.SCALES_PER_OCTAVE
    octave_scales = [octave ** (i / float(scales_per_octave)) for i in range(scales_per_octave)]
    sizes = tuple(tuple(scale * size for scale in octave_scales) for size in anchor_sizes)
    return AnchorGenerator(
        sizes,
        config.MODEL.RETINANET.ASPECT_RATIOS,
        anchor_strides,
        config.MODEL.RETINANET.STRADDLE_THRESH,
        legacy_plus_one=box_convention(config).legacy_plus_one,
    )


# ----------------------------------------------------------------------------- cell anchors
def generate_anchors(stride=16, sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1, 2)):
    """Detectron's legacy cell anchors (float64 Tensor[len(aspect_ratios) * len(sizes), 4]).

    Start from the box (0, 0, stride - 1, stride - 1). For each ratio r, keep its area
    stride**2 but reshape it: w = round(sqrt(area / r)), h = round(w * r), around the same
    centre; then scale w and h by size / stride for each size. Boxes are written with the "+1"
    convention: (cx - (w - 1) / 2, cy - (h - 1) / 2, cx + (w - 1) / 2, cy + (h - 1) / 2).
    """
    scales = torch.tensor(sizes, dtype=torch.float64) / stride
    ratios = torch.tensor(aspect_ratios, dtype=torch.float64)
    base_size = float(stride)
    centre = 0.5 * (base_size - 1)  # centre of (0, 0, stride - 1, stride - 1)
    area = base_size * base_size
    # ratio enumeration (numpy's and torch's round both round half to even)
    ratio_widths = torch.round(torch.sqrt(area / ratios))  # [R]
    ratio_heights = torch.round(ratio_widths * ratios)  # [R]
    # scale enumeration, ratio-major
    widths = (ratio_widths[:, None] * scales[None, :]).reshape(-1)  # [R * S]
    heights = (ratio_heights[:, None] * scales[None, :]).reshape(-1)
    return torch.stack(
        (
            centre - 0.5 * (widths - 1),
            centre - 0.5 * (heights - 1),
            centre + 0.5 * (widths - 1),
            centre + 0.5 * (heights - 1),
        ),
        dim=1,
    )


def generate_centered_anchors(sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1, 2)):
    """torchvision's cell anchors (float32 Tensor[len(aspect_ratios) * len(sizes), 4]), centred
    on (0, 0): round((-w / 2, -h / 2, w / 2, h / 2)) with w = size / sqrt(r), h = size * sqrt(r),
    ratio-major; computed in float32 as torchvision does, so halves round the same way."""
    scales = torch.tensor(sizes, dtype=torch.float32)
    ratios = torch.tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1.0 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return torch.round(torch.stack((-widths, -heights, widths, heights), dim=1) / 2)
