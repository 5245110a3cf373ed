"""RetinaNet's head and the module that ties it to its anchors, loss and post-processing.

Selected by MODEL.RETINANET_ON (``maskrcnn.modeling.rpn.rpn.build_rpn`` then builds this module in
place of the RPN); it runs on every level of an FPN with P6/P7 (``R-*-FPN-RETINANET`` backbones).
Module names (``head.cls_tower.0.weight``, ``head.cls_logits.bias``, ``anchor_generator...``)
are maskrcnn-benchmark's, so its RetinaNet checkpoints load as they are.
"""
import math

import torch
from torch import nn

from maskrcnn.config.conventions import box_convention
from maskrcnn.layers import Conv2d
from maskrcnn.modeling.box_coder import BoxCoder

from ..anchor_generator import make_anchor_generator_retinanet
from .inference import RETINANET_BOX_CODER_WEIGHTS, make_retinanet_postprocessor
from .loss import make_retinanet_loss_evaluator

__all__ = ["RetinaNetHead", "RetinaNetModule", "build_retinanet"]

def _conv3x3(in_channels, out_channels):
    return Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


class RetinaNetHead(nn.Module):
    """Two towers of ``num_convs`` 3x3 conv + ReLU shared by all levels, then ``cls_logits``
    (A * C sigmoid logits per location, C = foreground classes) and ``bbox_pred`` (A * 4 deltas).

    Arguments:
        cfg: a config to read the values not given explicitly from (may be None when all are):
            num_classes = MODEL.RETINANET.NUM_CLASSES - 1 (background has no logit),
            num_anchors = len(MODEL.RETINANET.ASPECT_RATIOS) * MODEL.RETINANET.SCALES_PER_OCTAVE,
            num_convs = MODEL.RETINANET.NUM_CONVS, prior_prob = MODEL.RETINANET.PRIOR_PROB.
        in_channels (int): channels of every feature map (the FPN's OUT_CHANNELS).

    Every conv starts with weights ~ N(0, 0.01) and zero bias, except ``cls_logits``' bias,
    -log((1 - prior_prob) / prior_prob), so that every anchor starts with foreground probability
    ``prior_prob`` (keeps the focal loss of the many easy negatives small at the start).
    """

    def __init__(self, cfg, in_channels, num_classes=None, num_anchors=None, num_convs=None, prior_prob=None):
        super().__init__()
        if cfg is not None:
            retina = cfg.MODEL.RETINANET
            num_classes = retina.NUM_CLASSES - 1 if num_classes is None else num_classes
            if num_anchors is None:
                num_anchors = len(retina.ASPECT_RATIOS) * retina.SCALES_PER_OCTAVE
            num_convs = retina.NUM_CONVS if num_convs is None else num_convs
            prior_prob = retina.PRIOR_PROB if prior_prob is None else prior_prob
        missing = [n for n, v in (("num_classes", num_classes), ("num_anchors", num_anchors),
                                  ("num_convs", num_convs), ("prior_prob", prior_prob)) if v is None]
        if missing:
            raise ValueError(f"RetinaNetHead: without a cfg, {', '.join(missing)} must be given")
        if num_classes < 1:
            raise ValueError(f"RetinaNetHead: needs at least one foreground class (MODEL.RETINANET.NUM_CLASSES >= 2), "
                             f"got num_classes={num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"RetinaNetHead: prior_prob (MODEL.RETINANET.PRIOR_PROB) must lie in (0, 1), got {prior_prob}")
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)

        cls_tower = []
        bbox_tower = []
        for _ in range(num_convs):
            cls_tower += [_conv3x3(in_channels, in_channels), nn.ReLU()]
            bbox_tower += [_conv3x3(in_channels, in_channels), nn.ReLU()]
        self.cls_tower = nn.Sequential(*cls_tower)
        self.bbox_tower = nn.Sequential(*bbox_tower)
        self.cls_logits = _conv3x3(in_channels, self.num_anchors * self.num_classes)
        self.bbox_pred = _conv3x3(in_channels, self.num_anchors * 4)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, x):
        """x: list (levels) of Tensor[N, in_channels, H_l, W_l] -> (list of Tensor[N, A * C, H_l, W_l],
        list of Tensor[N, A * 4, H_l, W_l])."""
        if not isinstance(x, (list, tuple)):
            raise TypeError(f"RetinaNetHead expects a list or tuple of feature maps, got {type(x).__name__}")
        logits = [self.cls_logits(self.cls_tower(feature)) for feature in x]
        bbox_reg = [self.bbox_pred(self.bbox_tower(feature)) for feature in x]
        return logits, bbox_reg


class RetinaNetModule(nn.Module):
    """RetinaNet on a list of feature maps: anchors, head, and the focal / smooth-L1 losses in
    training or the post-processed detections in eval.

    Attributes: ``anchor_generator`` (octave-scale anchors, make_anchor_generator_retinanet),
    ``head`` (RetinaNetHead), ``box_selector_test`` (RetinaNetPostProcessor), ``loss_evaluator``
    (RetinaNetLossComputation). The box coder (weights 10, 10, 5, 5) and all of them follow
    MODEL.BOX_CONVENTION_LEGACY.
    """

    def __init__(self, cfg, in_channels):
        super().__init__()
        legacy_plus_one = box_convention(cfg).legacy_plus_one
        box_coder = BoxCoder(weights=RETINANET_BOX_CODER_WEIGHTS, legacy_plus_one=legacy_plus_one)
        self.anchor_generator = make_anchor_generator_retinanet(cfg)
        self.head = RetinaNetHead(cfg, in_channels)
        if self.head.num_anchors != self.anchor_generator.num_anchors_per_location()[0]:
            raise ValueError(
                f"RetinaNet: the head predicts {self.head.num_anchors} anchors per location but the anchor "
                f"generator makes {self.anchor_generator.num_anchors_per_location()[0]}"
            )
        self.box_selector_test = make_retinanet_postprocessor(cfg, box_coder, is_train=False)
        self.loss_evaluator = make_retinanet_loss_evaluator(cfg, box_coder)

    def forward(self, images, features, targets=None):
        """
        Arguments:
            images (ImageList): the batch (its image sizes bound the anchors and detections).
            features: list (levels) of Tensor[N, C, H_l, W_l], one per anchor stride.
            targets: list (images) of BoxList with field ``labels`` (int64, 1..NUM_CLASSES - 1);
                required in training.
        Returns:
            (boxes, losses). Training: boxes are the anchors (list (images) of list (levels) of
            BoxList) and losses {"loss_retina_cls", "loss_retina_reg"}. Eval: boxes are the
            detections (list (images) of BoxList with fields ``scores`` and ``labels``), losses {}.
        """
        box_cls, box_regression = self.head(features)
        anchors = self.anchor_generator(images, features)
        if self.training:
            if targets is None:
                raise ValueError("RetinaNet: targets (one BoxList with 'labels' per image) are required in training")
            return self._forward_train(anchors, box_cls, box_regression, targets)
        return self._forward_test(anchors, box_cls, box_regression)

    def _forward_train(self, anchors, box_cls, box_regression, targets):
        loss_box_cls, loss_box_reg = self.loss_evaluator(anchors, box_cls, box_regression, targets)
        return anchors, {"loss_retina_cls": loss_box_cls, "loss_retina_reg": loss_box_reg}

    def _forward_test(self, anchors, box_cls, box_regression):
        return self.box_selector_test(anchors, box_cls, box_regression), {}


def build_retinanet(cfg, in_channels):
    """RetinaNetModule(cfg, in_channels): what build_rpn returns when MODEL.RETINANET_ON."""
    return RetinaNetModule(cfg, in_channels)
