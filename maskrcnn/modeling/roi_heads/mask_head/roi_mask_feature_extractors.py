"""Mask-head feature extractors: pooled RoI features -> Tensor[K, C, R, R].

Registered in ``ROI_MASK_FEATURE_EXTRACTORS`` under maskrcnn-benchmark's names, with the
``(cfg, in_channels)`` signature the registry builds with:

* ``MaskRCNNFPNFeatureExtractor``: RoIAlign over the pyramid, then the 3x3 convs ``mask_fcn1`` ..
  ``mask_fcnN`` (MODEL.ROI_MASK_HEAD.CONV_LAYERS channels, optional GroupNorm and dilation), each
  followed by ReLU.
* ``ResNet50Conv5ROIFeatureExtractor``: the C4 box head's extractor (RoIAlign on C4 + res5),
  registered here too so C4 Mask R-CNN configs resolve it; with SHARE_BOX_FEATURE_EXTRACTOR the
  module itself is the box head's.

``PooledConvStackFeatureExtractor`` builds the conv stack without a config (the keypoint head's
``conv_fcn`` stack is the same module with another layer-name prefix).
"""
from torch import nn
from torch.nn import functional as F

from maskrcnn.modeling import registry
from maskrcnn.modeling.make_layers import make_conv3x3
from maskrcnn.modeling.poolers import make_pooler
from maskrcnn.modeling.roi_heads.box_head.roi_box_feature_extractors import (
    ResNet50Conv5ROIFeatureExtractor,
)

__all__ = [
    "PooledConvStackFeatureExtractor",
    "MaskRCNNFPNFeatureExtractor",
    "ResNet50Conv5ROIFeatureExtractor",
    "make_roi_mask_feature_extractor",
]

registry.ROI_MASK_FEATURE_EXTRACTORS.register(
    "ResNet50Conv5ROIFeatureExtractor", ResNet50Conv5ROIFeatureExtractor
)


class PooledConvStackFeatureExtractor(nn.Module):
    """``pooler`` then a stack of 3x3 convs (stride 1, padding = dilation), each + ReLU.

    Arguments:
        pooler: module (features list, list[BoxList]) -> Tensor[K, in_channels, R, R].
        in_channels (int): channels of the pooled features.
        conv_layers (sequence of int): output channels of each conv (at least one).
        layer_name_format (str): attribute name of conv i (1-based), e.g. "mask_fcn{}", so the
            state-dict keys are maskrcnn-benchmark's (``mask_fcn1.weight``; with GroupNorm
            ``mask_fcn1.0.weight`` / ``mask_fcn1.1.weight``).
        dilation (int): dilation of every conv.
        use_gn (bool): GroupNorm after each conv (then bias-free convs).
    Weights: MSRAFill (kaiming_normal_, fan_out), zero biases. ``out_channels`` = conv_layers[-1].
    """

    def __init__(self, pooler, in_channels, conv_layers, layer_name_format, dilation=1, use_gn=False):
        super().__init__()
        conv_layers = list(conv_layers)
        if not conv_layers:
            raise ValueError(f"{type(self).__name__}: conv_layers (CONV_LAYERS) must list at least one conv")
        self.pooler = pooler
        self.blocks = []
        channels = in_channels
        for index, out_channels in enumerate(conv_layers, 1):
            name = layer_name_format.format(index)
            self.add_module(name, make_conv3x3(channels, out_channels, dilation=dilation, stride=1,
                                               use_gn=use_gn))
            self.blocks.append(name)
            channels = out_channels
        self.out_channels = channels

    def forward(self, x, proposals):
        """x: list[Tensor[N, C, H_l, W_l]], proposals: list[BoxList] -> Tensor[K, out_channels, R, R]."""
        x = self.pooler(x, proposals)
        for name in self.blocks:
            x = F.relu_(getattr(self, name)(x))
        return x


@registry.ROI_MASK_FEATURE_EXTRACTORS.register("MaskRCNNFPNFeatureExtractor")
class MaskRCNNFPNFeatureExtractor(PooledConvStackFeatureExtractor):
    """PooledConvStackFeatureExtractor from MODEL.ROI_MASK_HEAD (POOLER_*, CONV_LAYERS, DILATION,
    USE_GN); convs named ``mask_fcn1`` .. ``mask_fcnN``."""

    def __init__(self, cfg, in_channels):
        head = cfg.MODEL.ROI_MASK_HEAD
        super().__init__(
            make_pooler(cfg, "ROI_MASK_HEAD"),
            in_channels,
            head.CONV_LAYERS,
            "mask_fcn{}",
            dilation=head.DILATION,
            use_gn=head.USE_GN,
        )


def make_roi_mask_feature_extractor(cfg, in_channels):
    """The extractor registered as MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR
    if name not in registry.ROI_MASK_FEATURE_EXTRACTORS:
        raise KeyError(
            f"MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_MASK_FEATURE_EXTRACTORS)}"
        )
    return registry.ROI_MASK_FEATURE_EXTRACTORS[name](cfg, in_channels)
