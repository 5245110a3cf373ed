"""The one place that turns MODEL.BOX_CONVENTION_LEGACY into the arguments the parts take."""
from typing import NamedTuple

__all__ = ["BoxConvention", "box_convention"]


class BoxConvention(NamedTuple):
    """legacy_plus_one: width = x2 - x1 + 1 (True) or x2 - x1 (False);
    to_remove: the 1 or 0 added to widths/heights (maskrcnn-benchmark's TO_REMOVE);
    pooler_aligned: the `aligned` argument of RoIAlign: MODEL.ROI_HEADS.POOLER_ALIGNED when set,
        otherwise False in the legacy convention and True in the modern one."""

    legacy_plus_one: bool
    to_remove: int
    pooler_aligned: bool


def box_convention(cfg):
    """BoxConvention selected by cfg.MODEL.BOX_CONVENTION_LEGACY (and MODEL.ROI_HEADS.POOLER_ALIGNED,
    which overrides the RoIAlign alignment alone: torchvision's models use the modern boxes with
    aligned=False)."""
    legacy = bool(cfg.MODEL.BOX_CONVENTION_LEGACY)
    aligned = cfg.MODEL.ROI_HEADS.POOLER_ALIGNED
    if aligned is None:
        aligned = not legacy
    elif not isinstance(aligned, bool):
        raise ValueError(f"MODEL.ROI_HEADS.POOLER_ALIGNED must be None, True or False, got {aligned!r}")
    return BoxConvention(legacy_plus_one=legacy, to_remove=1 if legacy else 0, pooler_aligned=aligned)
