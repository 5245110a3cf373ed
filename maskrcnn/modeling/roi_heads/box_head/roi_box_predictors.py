"""Box-head predictors: one feature per RoI -> class logits and box deltas.

Registered in ``ROI_BOX_PREDICTOR`` with the ``(cfg, in_channels)`` signature:

* ``FastRCNNPredictor`` (C4 models): global average pooling of Tensor[K, C, h, w], then the
  two linear layers.
* ``FPNPredictor``: the two linear layers on Tensor[K, C] (or Tensor[K, C, 1, 1]).

Both have ``cls_score`` (Linear C -> num_classes, weights N(0, 0.01)) and ``bbox_pred`` (Linear
C -> 4 * num_classes, or 4 * 2 with class-agnostic regression (MODEL.CLS_AGNOSTIC_BBOX_REG):
background and "any object"; weights N(0, 0.001)); biases start at zero.
"""
from torch import nn

from maskrcnn.modeling import registry

__all__ = ["BoxPredictor", "FastRCNNPredictor", "FPNPredictor", "make_roi_box_predictor"]


class BoxPredictor(nn.Module):
    """Linear classifier and box regressor over per-RoI features.

    Arguments:
        in_channels (int): feature width C.
        num_classes (int): classes including background.
        cls_agnostic_bbox_reg (bool): 2 box outputs (background, object) instead of num_classes.
        average_pool (bool): average-pool Tensor[K, C, h, w] inputs to Tensor[K, C] first
            (otherwise 4-D inputs must be 1x1 spatially).
    forward(x) -> (class_logits Tensor[K, num_classes], box_regression Tensor[K, 4 * B]).
    """

    def __init__(self, in_channels, num_classes, cls_agnostic_bbox_reg=False, average_pool=False):
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"box predictor: num_classes (MODEL.ROI_BOX_HEAD.NUM_CLASSES) counts the background "
                f"and must be >= 2, got {num_classes}"
            )
        self.avgpool = nn.AdaptiveAvgPool2d(1) if average_pool else None
        self.cls_score = nn.Linear(in_channels, num_classes)
        num_bbox_reg_classes = 2 if cls_agnostic_bbox_reg else num_classes
        self.bbox_pred = nn.Linear(in_channels, num_bbox_reg_classes * 4)
        nn.init.normal_(self.cls_score.weight, mean=0, std=0.01)
        nn.init.constant_(self.cls_score.bias, 0)
        nn.init.normal_(self.bbox_pred.weight, mean=0, std=0.001)
        nn.init.constant_(self.bbox_pred.bias, 0)

    def forward(self, x):
        if x.dim() == 4:
            if self.avgpool is not None:
                x = self.avgpool(x)
            elif tuple(x.shape[2:]) != (1, 1):
                raise ValueError(
                    f"{type(self).__name__}: 4-D input must be [K, C, 1, 1], got {list(x.shape)}"
                )
            x = x.flatten(start_dim=1)
        elif x.dim() != 2:
            raise ValueError(f"{type(self).__name__}: x must be [K, C] or [K, C, h, w], got {list(x.shape)}")
        return self.cls_score(x), self.bbox_pred(x)


@registry.ROI_BOX_PREDICTOR.register("FastRCNNPredictor")
class FastRCNNPredictor(BoxPredictor):
    """BoxPredictor with average pooling (C4 heads), from MODEL.ROI_BOX_HEAD.NUM_CLASSES and
    MODEL.CLS_AGNOSTIC_BBOX_REG."""

    def __init__(self, cfg, in_channels):
        super().__init__(
            in_channels,
            cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES,
            cls_agnostic_bbox_reg=cfg.MODEL.CLS_AGNOSTIC_BBOX_REG,
            average_pool=True,
        )


@registry.ROI_BOX_PREDICTOR.register("FPNPredictor")
class FPNPredictor(BoxPredictor):
    """BoxPredictor on flat features (FPN MLP heads), from MODEL.ROI_BOX_HEAD.NUM_CLASSES and
    MODEL.CLS_AGNOSTIC_BBOX_REG."""

    def __init__(self, cfg, in_channels):
        super().__init__(
            in_channels,
            cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES,
            cls_agnostic_bbox_reg=cfg.MODEL.CLS_AGNOSTIC_BBOX_REG,
            average_pool=False,
        )


def make_roi_box_predictor(cfg, in_channels):
    """The predictor registered as MODEL.ROI_BOX_HEAD.PREDICTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_BOX_HEAD.PREDICTOR
    if name not in registry.ROI_BOX_PREDICTOR:
        raise KeyError(
            f"MODEL.ROI_BOX_HEAD.PREDICTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_BOX_PREDICTOR)}"
        )
    return registry.ROI_BOX_PREDICTOR[name](cfg, in_channels)
