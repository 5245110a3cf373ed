"""The region proposal network: a small conv head over each feature map scoring and refining the
anchors of every location, its loss in training and the proposals it hands to the RoI heads."""
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.config.conventions import box_convention
from maskrcnn.layers import Conv2d
from maskrcnn.modeling import registry
from maskrcnn.modeling.box_coder import BoxCoder

from .anchor_generator import make_anchor_generator
from .inference import make_rpn_postprocessor
from .loss import make_rpn_loss_evaluator

__all__ = ["RPNHeadConvRegressor", "RPNHeadFeatureSingleConv", "RPNHead", "RPNModule", "build_rpn"]


def _init_normal(layers, std=0.01):
    for layer in layers:
        nn.init.normal_(layer.weight, std=std)
        nn.init.constant_(layer.bias, 0)


def _check_feature_list(x, name):
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"{name} expects a list or tuple of feature maps, got {type(x).__name__}")


# The convs are maskrcnn.layers.Conv2d (nn.Conv2d that also accepts empty feature maps, e.g. an
# FPN level smaller than its stride); the state dict is the same as nn.Conv2d's.


# The convs are maskrcnn.layers.Conv2d (nn.Conv2d that also accepts empty feature maps, e.g. an
# FPN level smaller than its stride); the state dict is the same as nn.Conv2d's.


class RPNHeadConvRegressor(nn.Module):
    """The two 1x1 prediction convs alone: ``cls_logits`` (A objectness logits per location) and
    ``bbox_pred`` (A * 4 deltas), for features already processed (e.g. by
    RPNHeadFeatureSingleConv or FBNet's RPN blocks)."""

    def __init__(self, cfg, in_channels, num_anchors):
        super().__init__()
        self.cls_logits = Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        _init_normal([self.cls_logits, self.bbox_pred])

    def forward(self, x):
        """x: list of Tensor[N, C, H_l, W_l] -> (list of Tensor[N, A, H_l, W_l],
        list of Tensor[N, A * 4, H_l, W_l])."""
        _check_feature_list(x, "RPNHeadConvRegressor")
        logits = [self.cls_logits(y) for y in x]
        bbox_reg = [self.bbox_pred(y) for y in x]
        return logits, bbox_reg


class RPNHeadFeatureSingleConv(nn.Module):
    """A shared 3x3 conv + ReLU applied to every feature map (``out_channels`` = in_channels)."""

    def __init__(self, cfg, in_channels):
        super().__init__()
        self.conv = Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        _init_normal([self.conv])
        self.out_channels = in_channels

    def forward(self, x):
        _check_feature_list(x, "RPNHeadFeatureSingleConv")
        return [F.relu_(self.conv(z)) for z in x]


@registry.RPN_HEADS.register("SingleConvRPNHead")
class RPNHead(nn.Module):
    """The Faster R-CNN RPN head: a 3x3 conv + ReLU shared by all levels, then 1x1 convs for the
    objectness logits (``cls_logits``, A channels) and the box deltas (``bbox_pred``, A * 4
    channels, (dx, dy, dw, dh) for each anchor in turn). Weights ~ N(0, 0.01), biases 0.

    Arguments:
        cfg: the config (unused; kept for the RPN_HEADS builder signature).
        in_channels (int): channels of the feature maps.
        num_anchors (int): anchors per location A.
    """

    def __init__(self, cfg, in_channels, num_anchors):
        super().__init__()
        self.conv = Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        self.cls_logits = Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        _init_normal([self.conv, self.cls_logits, self.bbox_pred])

    def forward(self, x):
        """x: list of Tensor[N, C, H_l, W_l] -> (list of Tensor[N, A, H_l, W_l],
        list of Tensor[N, A * 4, H_l, W_l])."""
        _check_feature_list(x, "RPNHead")
        logits = []
        bbox_reg = []
        for feature in x:
            t = F.relu_(self.conv(feature))
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


class RPNModule(torch.nn.Module):
    """RPN over one (C4) or several (FPN) feature maps: head (MODEL.RPN.RPN_HEAD), anchors, loss
    and proposal selection, in the box convention of MODEL.BOX_CONVENTION_LEGACY.

    Attributes (state-dict names as maskrcnn-benchmark): ``anchor_generator``
    (``cell_anchors.<level>`` buffers) and ``head``.
    """

    def __init__(self, cfg, in_channels):
        super().__init__()
        self.cfg = cfg.clone()
        convention = box_convention(cfg)

        anchor_generator = make_anchor_generator(cfg)
        rpn_head = registry.RPN_HEADS[cfg.MODEL.RPN.RPN_HEAD]
        head = rpn_head(cfg, in_channels, anchor_generator.num_anchors_per_location()[0])

        rpn_box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0), legacy_plus_one=convention.legacy_plus_one)
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_selector_train = make_rpn_postprocessor(cfg, rpn_box_coder, is_train=True)
        self.box_selector_test = make_rpn_postprocessor(cfg, rpn_box_coder, is_train=False)
        self.loss_evaluator = make_rpn_loss_evaluator(cfg, rpn_box_coder)

    def forward(self, images, features, targets=None):
        """
        Arguments:
            images (ImageList): the batch (its image sizes set the anchors' visibility and clipping).
            features: list of Tensor[N, C, H_l, W_l], one per level.
            targets: list of BoxList, the ground truth per image (needed in training; may be empty).
        Returns:
            (boxes, losses): boxes is a list (images) of BoxList proposals with field ``objectness``
            (in training with MODEL.RPN_ONLY: the anchors, list (images) of list (levels) of
            BoxList, since no box head consumes proposals); losses is
            {"loss_objectness", "loss_rpn_box_reg"} in training, {} in eval.
        """
        objectness, rpn_box_regression = self.head(features)
        anchors = self.anchor_generator(images, features)
        if self.training:
            if targets is None:
                raise ValueError("RPNModule: targets must be given in training mode")
            return self._forward_train(anchors, objectness, rpn_box_regression, targets)
        return self._forward_test(anchors, objectness, rpn_box_regression)

    def _forward_train(self, anchors, objectness, rpn_box_regression, targets):
        if self.cfg.MODEL.RPN_ONLY:
            # nothing downstream consumes proposals: skip decoding and NMS
            boxes = anchors
        else:
            with torch.no_grad():
                boxes = self.box_selector_train(anchors, objectness, rpn_box_regression, targets)
        loss_objectness, loss_rpn_box_reg = self.loss_evaluator(anchors, objectness, rpn_box_regression, targets)
        losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses

    def _forward_test(self, anchors, objectness, rpn_box_regression):
        boxes = self.box_selector_test(anchors, objectness, rpn_box_regression)
        if self.cfg.MODEL.RPN_ONLY:
            # the proposals are the model's output: best first
            boxes = [box[box.get_field("objectness").sort(descending=True).indices] for box in boxes]
        return boxes, {}


def build_rpn(cfg, in_channels):
    """RetinaNet's head when MODEL.RETINANET_ON, else an RPNModule."""
    if cfg.MODEL.RETINANET_ON:
        from maskrcnn.modeling.rpn.retinanet.retinanet import build_retinanet

        return build_retinanet(cfg, in_channels)
    return RPNModule(cfg, in_channels)
