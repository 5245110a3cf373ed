"""build_detection_model: the detector named by MODEL.META_ARCHITECTURE."""
from maskrcnn.config.conventions import box_convention
from maskrcnn.layers.winograd_conv import set_winograd
from maskrcnn.structures.box_convention import set_legacy_plus_one

from .generalized_rcnn import GeneralizedRCNN

__all__ = ["build_detection_model"]

_DETECTION_META_ARCHITECTURES = {"GeneralizedRCNN": GeneralizedRCNN}


def build_detection_model(cfg):
    """Build the detector of ``cfg``.

    Also makes MODEL.BOX_CONVENTION_LEGACY the process-wide default box convention (the one
    place it is applied: BoxLists built afterwards with ``legacy_plus_one=None``, e.g. by the data
    pipeline, follow the model's convention), and sets the model's convolutions' `winograd` flag
    from MODEL.WINOGRAD.
    """
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in _DETECTION_META_ARCHITECTURES:
        raise KeyError(
            f"MODEL.META_ARCHITECTURE: unknown meta-architecture {name!r}; "
            f"valid: {sorted(_DETECTION_META_ARCHITECTURES)}"
        )
    set_legacy_plus_one(box_convention(cfg).legacy_plus_one)
    return set_winograd(_DETECTION_META_ARCHITECTURES[name](cfg), cfg.MODEL.WINOGRAD)
