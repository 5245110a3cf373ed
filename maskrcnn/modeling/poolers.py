"""RoI feature pooling over one or several feature levels (FPN), with RoIAlign.

`Pooler` turns a list of feature maps and a list of per-image `BoxList`s into a
Tensor[K, C, output_h, output_w] holding one pooled feature per box (boxes of all images
concatenated in order). With several levels, each box is pooled from the level chosen by
`LevelMapper` (equation 1 of the FPN paper).
"""
import math

import torch
from torch import nn

from maskrcnn.config.conventions import box_convention
from maskrcnn.layers import ROIAlign


def _xyxy_boxes(boxlist):
    """Tensor[N, 4] (x1, y1, x2, y2) of a BoxList (converting from xywh if needed)."""
    if getattr(boxlist, "mode", "xyxy") != "xyxy":
        boxlist = boxlist.convert("xyxy")
    return boxlist.bbox


class LevelMapper:
    """Assigns each box to a feature level by its scale (FPN paper, equation 1).

    level = floor(canonical_level + log2(sqrt(area) / canonical_scale + eps)) (legacy convention,
    maskrcnn-benchmark's) or floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)
    (modern convention, torchvision's MultiScaleRoIAlign), clamped to [k_min, k_max] and returned
    relative to k_min (0 = the finest level).

    Arguments:
        k_min, k_max (int): the finest and coarsest levels (e.g. 2 and 5 for P2-P5).
        canonical_scale (float), canonical_level (int): a box of side canonical_scale maps to
            canonical_level.
        eps (float): guards log2(0).
        legacy_plus_one (bool): area uses the legacy "+1" widths, (x2 - x1 + 1) * (y2 - y1 + 1),
            and eps inside the log; False uses (x2 - x1) * (y2 - y1) and eps outside it.
    """

    def __init__(self, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6,
                 legacy_plus_one=True):
        if k_min > k_max:
            raise ValueError(f"LevelMapper: k_min ({k_min}) must not exceed k_max ({k_max})")
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps
        self.legacy_plus_one = legacy_plus_one

    def levels_of_boxes(self, boxes):
        """boxes: Tensor[K, 4] (x1, y1, x2, y2) -> Tensor[K] int64 level index in [0, k_max - k_min]."""
        plus = 1.0 if self.legacy_plus_one else 0.0
        widths = boxes[:, 2] - boxes[:, 0] + plus
        heights = boxes[:, 3] - boxes[:, 1] + plus
        scales = torch.sqrt(widths * heights)
        if self.legacy_plus_one:
            levels = torch.floor(self.lvl0 + torch.log2(scales / self.s0 + self.eps))
        else:
            levels = torch.floor(self.lvl0 + torch.log2(scales / self.s0) + self.eps)
        levels = torch.clamp(levels, min=self.k_min, max=self.k_max)
        return levels.to(torch.int64) - self.k_min

    def __call__(self, boxlists):
        """boxlists: list[BoxList] -> Tensor[sum of lengths] int64 level indices (boxes in order)."""
        boxes = torch.cat([_xyxy_boxes(b) for b in boxlists], dim=0)
        return self.levels_of_boxes(boxes)


def _level_of_scale(scale):
    """The pyramid level of a feature map with spatial scale 1 / 2**level."""
    level = -math.log2(scale)
    if abs(level - round(level)) > 1e-6:
        raise ValueError(
            f"Pooler: with several levels every scale must be a power of 2 (1/4, 1/8, ...), "
            f"got {scale}"
        )
    return int(round(level))


class Pooler(nn.Module):
    """RoIAlign pooling from one feature map, or from an FPN pyramid with per-box levels.

    Arguments:
        output_size (int or (int, int)): pooled height and width.
        scales (list[float]): spatial scale of each feature level, finest first
            (e.g. [1/4, 1/8, 1/16, 1/32]); consecutive levels must differ by a factor of 2.
        sampling_ratio (int): RoIAlign samples per bin side (0 = adaptive).
        aligned (bool): RoIAlign's half-pixel correction (False = legacy, True = "ROIAlignV2").
        canonical_level, canonical_scale: see LevelMapper.
        legacy_plus_one (bool): box-area convention of the level mapping (see LevelMapper).
    Attributes `poolers` (one ROIAlign per level), `output_size`, `map_levels`.
    """

    def __init__(self, output_size, scales, sampling_ratio, aligned=False, canonical_level=4,
                 canonical_scale=224, legacy_plus_one=True):
        super().__init__()
        scales = list(scales)
        if not scales:
            raise ValueError("Pooler: scales must list at least one feature level")
        self.poolers = nn.ModuleList(
            ROIAlign(output_size, spatial_scale=scale, sampling_ratio=sampling_ratio,
                     aligned=aligned)
            for scale in scales
        )
        self.output_size = output_size
        self.map_levels = None
        if len(scales) > 1:
            k_min, k_max = _level_of_scale(scales[0]), _level_of_scale(scales[-1])
            if [_level_of_scale(s) for s in scales] != list(range(k_min, k_max + 1)):
                raise ValueError(
                    f"Pooler: scales must halve from one level to the next, got {scales}"
                )
            self.map_levels = LevelMapper(k_min, k_max, canonical_scale=canonical_scale,
                                          canonical_level=canonical_level,
                                          legacy_plus_one=legacy_plus_one)

    def convert_to_roi_format(self, boxes):
        """list[BoxList] -> rois Tensor[K, 5] (batch index, x1, y1, x2, y2)."""
        per_image = [_xyxy_boxes(b) for b in boxes]
        concat = torch.cat(per_image, dim=0)
        image_ids = torch.cat([
            torch.full((b.shape[0], 1), i, dtype=concat.dtype, device=concat.device)
            for i, b in enumerate(per_image)
        ], dim=0)
        return torch.cat([image_ids, concat], dim=1)

    def forward(self, x, boxes):
        """
        Arguments:
            x (list[Tensor[N, C, H_l, W_l]]): one feature map per level, finest first; maps
                beyond the pooler's scales are ignored, as in maskrcnn-benchmark (an FPN body
                hands P2-P6 to a box head pooling from P2-P5).
            boxes (list[BoxList]): N BoxLists in image coordinates.
        Returns:
            Tensor[K, C, output_h, output_w], K = total number of boxes, in the order of
            `boxes` (image by image).
        """
        if len(x) < len(self.poolers):
            raise ValueError(
                f"Pooler: got {len(x)} feature maps but was built for {len(self.poolers)} scales"
            )
        if len(boxes) == 0:
            raise ValueError("Pooler: boxes must hold one BoxList per image, got an empty list")
        rois = self.convert_to_roi_format(boxes)
        if self.map_levels is None:
            return self.poolers[0](x[0], rois)

        levels = self.map_levels.levels_of_boxes(rois[:, 1:])
        indices, pooled = [], []
        for level, (feature, pooler) in enumerate(zip(x, self.poolers)):
            in_level = torch.nonzero(levels == level).squeeze(1)
            indices.append(in_level)
            pooled.append(pooler(feature, rois[in_level]))
        pooled = torch.cat(pooled, dim=0)
        # every box is in exactly one level (stated for torch.export, where the per-level counts
        # are data-dependent sizes it cannot add up)
        torch._check(pooled.shape[0] == rois.shape[0])
        # scatter the level-sorted results back to the order of the boxes
        # (zeros_like keeps a channels-last layout of the pooled features)
        return torch.zeros_like(pooled).index_copy(0, torch.cat(indices), pooled)


def make_pooler(cfg, head_name):
    """Pooler for cfg.MODEL.<head_name> (e.g. "ROI_BOX_HEAD"): POOLER_RESOLUTION, POOLER_SCALES,
    POOLER_SAMPLING_RATIO; RoIAlign alignment and the box-area convention of the level mapping
    follow MODEL.BOX_CONVENTION_LEGACY (legacy: aligned=False, "+1" areas)."""
    if head_name not in cfg.MODEL:
        raise KeyError(f"make_pooler: the config has no MODEL.{head_name}")
    head_cfg = cfg.MODEL[head_name]
    convention = box_convention(cfg)
    resolution = head_cfg.POOLER_RESOLUTION
    return Pooler(
        output_size=(resolution, resolution),
        scales=head_cfg.POOLER_SCALES,
        sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
        aligned=convention.pooler_aligned,
        legacy_plus_one=convention.legacy_plus_one,
    )
