"""The one place that turns MODEL.BOX_CONVENTION_LEGACY into the arguments the parts take."""
from typing import NamedTuple

__all__ = ["BoxConvention", "box_convention"]


class BoxConvention(NamedTuple):
    """legacy_plus_one: width = x2 - x1 + 1 (True) or x2 - x1 (False);
    to_remove: the 1 or 0 added to widths/heights (maskrcnn-benchmark's TO_REMOVE);
    pooler_aligned: the `aligned` argument of RoIAlign (False in the legacy convention)."""

    legacy_plus_one: bool
    to_remove: int
    pooler_aligned: bool


def box_convention(cfg):
    """BoxConvention selected by cfg.MODEL.BOX_CONVENTION_LEGACY."""
    legacy = bool(cfg.MODEL.BOX_CONVENTION_LEGACY)
    return BoxConvention(legacy_plus_one=legacy, to_remove=1 if legacy else 0, pooler_aligned=not legacy)
