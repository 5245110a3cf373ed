"""Keypoint-head feature extractors: pooled RoI features -> Tensor[K, C, R, R].

``KeypointRCNNFeatureExtractor`` (registered in ``ROI_KEYPOINT_FEATURE_EXTRACTORS``): RoIAlign
over the pyramid, then the 3x3 convs ``conv_fcn1`` .. ``conv_fcnN`` with
MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS channels (eight 512-channel convs by default), each + ReLU.
"""
from maskrcnn.modeling import registry
from maskrcnn.modeling.poolers import make_pooler
from maskrcnn.modeling.roi_heads.mask_head.roi_mask_feature_extractors import (
    PooledConvStackFeatureExtractor,
)

__all__ = ["KeypointRCNNFeatureExtractor", "make_roi_keypoint_feature_extractor"]


@registry.ROI_KEYPOINT_FEATURE_EXTRACTORS.register("KeypointRCNNFeatureExtractor")
class KeypointRCNNFeatureExtractor(PooledConvStackFeatureExtractor):
    """PooledConvStackFeatureExtractor from MODEL.ROI_KEYPOINT_HEAD (POOLER_*, CONV_LAYERS);
    convs named ``conv_fcn1`` .. ``conv_fcnN`` (with bias, MSRAFill, no norm, no dilation)."""

    def __init__(self, cfg, in_channels):
        super().__init__(
            make_pooler(cfg, "ROI_KEYPOINT_HEAD"),
            in_channels,
            cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS,
            "conv_fcn{}",
        )


def make_roi_keypoint_feature_extractor(cfg, in_channels):
    """The extractor registered as MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR
    if name not in registry.ROI_KEYPOINT_FEATURE_EXTRACTORS:
        raise KeyError(
            f"MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_KEYPOINT_FEATURE_EXTRACTORS)}"
        )
    return registry.ROI_KEYPOINT_FEATURE_EXTRACTORS[name](cfg, in_channels)
