"""Mask-head predictors: per-RoI features Tensor[K, C, R, R] -> mask logits Tensor[K, num_classes, M, M].

Registered in ``ROI_MASK_PREDICTOR`` under maskrcnn-benchmark's names:

* ``MaskRCNNC4Predictor``: ``conv5_mask`` (2x2 stride-2 transposed conv to CONV_LAYERS[-1]
  channels, ReLU), then ``mask_fcn_logits`` (1x1 conv to one channel per class); M = 2R.
* ``MaskRCNNConv1x1Predictor``: ``mask_fcn_logits`` alone; M = R.

The number of classes is MODEL.ROI_BOX_HEAD.NUM_CLASSES (background included). Weights are
MSRAFill (kaiming_normal_, fan_out), biases zero.
"""
from torch import nn
from torch.nn import functional as F

from maskrcnn.layers import Conv2d, ConvTranspose2d
from maskrcnn.modeling import registry

__all__ = ["MaskRCNNC4Predictor", "MaskRCNNConv1x1Predictor", "make_roi_mask_predictor"]


def _msra_init(module):
    for name, param in module.named_parameters():
        if name.endswith("bias"):
            nn.init.constant_(param, 0)
        else:
            nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskLogitsPredictor(nn.Module):
    """Optional ``conv5_mask`` upsampling (``dim_reduced`` > 0) then ``mask_fcn_logits``."""

    def __init__(self, in_channels, num_classes, dim_reduced=0):
        super().__init__()
        channels = in_channels
        if dim_reduced:
            self.conv5_mask = ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)
            channels = dim_reduced
        self.mask_fcn_logits = Conv2d(channels, num_classes, 1, 1, 0)
        _msra_init(self)

    def forward(self, x):
        """x: Tensor[K, C, R, R] -> Tensor[K, num_classes, M, M] logits."""
        if hasattr(self, "conv5_mask"):
            x = F.relu_(self.conv5_mask(x))
        return self.mask_fcn_logits(x)


@registry.ROI_MASK_PREDICTOR.register("MaskRCNNC4Predictor")
class MaskRCNNC4Predictor(MaskLogitsPredictor):
    """2x upsampling predictor; in_channels -> CONV_LAYERS[-1] -> NUM_CLASSES channels."""

    def __init__(self, cfg, in_channels):
        super().__init__(in_channels, cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES,
                         dim_reduced=cfg.MODEL.ROI_MASK_HEAD.CONV_LAYERS[-1])


@registry.ROI_MASK_PREDICTOR.register("MaskRCNNConv1x1Predictor")
class MaskRCNNConv1x1Predictor(MaskLogitsPredictor):
    """1x1-conv predictor at the pooled resolution; in_channels -> NUM_CLASSES channels."""

    def __init__(self, cfg, in_channels):
        super().__init__(in_channels, cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES)


def make_roi_mask_predictor(cfg, in_channels):
    """The predictor registered as MODEL.ROI_MASK_HEAD.PREDICTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_MASK_HEAD.PREDICTOR
    if name not in registry.ROI_MASK_PREDICTOR:
        raise KeyError(
            f"MODEL.ROI_MASK_HEAD.PREDICTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_MASK_PREDICTOR)}"
        )
    return registry.ROI_MASK_PREDICTOR[name](cfg, in_channels)
