"""RetinaNet's losses: sigmoid focal loss over every labelled anchor and smooth-L1 box regression
over the positive ones."""
import torch

from maskrcnn.layers import SigmoidFocalLoss, smooth_l1_loss
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.structures.boxlist_ops import cat_boxlist

from ..loss import RPNLossComputation
from ..utils import concat_box_prediction_layers

__all__ = ["RetinaNetLossComputation", "generate_retinanet_labels", "make_retinanet_loss_evaluator"]


class RetinaNetLossComputation(RPNLossComputation):
    """Computes RetinaNet's classification and box-regression losses.

    Arguments:
        proposal_matcher (Matcher): anchors to ground truth by IoU (RetinaNet: 0.5 / 0.4 with
            low-quality matches).
        box_coder (BoxCoder): matched ground truth -> regression targets (weights 10, 10, 5, 5).
        generate_labels_func: BoxList of matched targets -> Tensor[M] class labels (the matched
            ground truth's ``labels``).
        sigmoid_focal_loss: (logits Tensor[K, C], targets Tensor[K] int64 in 0..C) -> summed loss,
            e.g. maskrcnn.layers.SigmoidFocalLoss(gamma, alpha).
        bbox_reg_beta (float): smooth-L1 beta of the box loss.
        regress_norm (float): the box loss is divided by max(1, num_positives * regress_norm)
            (MODEL.RETINANET.BBOX_REG_WEIGHT; so a larger value weighs the box loss *less*,
            exactly as in maskrcnn-benchmark).

    Labels per anchor: the matched ground truth's class (IoU >= FG threshold, or its best anchor),
    0 (background, IoU < BG threshold) or ignored (in between). Anchors crossing the image border
    are not ignored (as in maskrcnn-benchmark's RetinaNet). The classification loss sums the focal
    loss over all non-ignored anchors and all classes and divides it by (num_positives +
    num_images), so that an image without ground truth gives a finite loss.
    """

    def __init__(self, proposal_matcher, box_coder, generate_labels_func, sigmoid_focal_loss,
                 bbox_reg_beta=0.11, regress_norm=1.0):
        super().__init__(proposal_matcher, None, box_coder, generate_labels_func)
        self.box_cls_loss_func = sigmoid_focal_loss
        self.bbox_reg_beta = bbox_reg_beta
        self.regress_norm = regress_norm
        self.copied_fields = ["labels"]
        self.discard_cases = ["between_thresholds"]

    def __call__(self, anchors, box_cls, box_regression, targets):
        """
        Arguments:
            anchors: list (images) of list (levels) of BoxList.
            box_cls: list (levels) of Tensor[N, A * C, H_l, W_l].
            box_regression: list (levels) of Tensor[N, A * 4, H_l, W_l].
            targets: list (images) of BoxList with field ``labels`` (int, 1..C); may be empty.
        Returns:
            (retinanet_cls_loss, retinanet_regression_loss): scalar float32 tensors, connected to
            the predictions (zero when there is nothing to learn from).
        """
        if len(targets) != len(anchors):
            raise ValueError(f"RetinaNet loss: got {len(targets)} targets for {len(anchors)} images")
        for i, target in enumerate(targets):
            if not target.has_field("labels"):
                raise KeyError(f"RetinaNet loss: targets[{i}] has no 'labels' field (its fields: {target.fields()})")
        num_images = len(anchors)
        # the losses are computed in float32 whatever the head's dtype (e.g. under autocast)
        box_cls_flat, box_regression_flat = concat_box_prediction_layers(box_cls, box_regression)
        box_cls_flat = box_cls_flat.float()
        box_regression_flat = box_regression_flat.float()
        if num_images == 0 or box_cls_flat.numel() == 0:
            zero = box_cls_flat.sum() * 0 + box_regression_flat.sum() * 0
            return zero, zero.clone()

        anchors = [cat_boxlist(anchors_per_image) for anchors_per_image in anchors]
        labels, regression_targets, _ = self._prepare_targets_all(anchors, targets)

        pos_inds = torch.nonzero(labels > 0).squeeze(1)
        num_pos = pos_inds.numel()
        regression_loss = smooth_l1_loss(
            box_regression_flat[pos_inds],
            regression_targets[pos_inds].to(box_regression_flat.dtype),
            beta=self.bbox_reg_beta,
            size_average=False,
        ) / max(1.0, num_pos * self.regress_norm)

        valid_inds = torch.nonzero(labels >= 0).squeeze(1)
        cls_loss = self.box_cls_loss_func(box_cls_flat[valid_inds], labels[valid_inds].to(torch.int64))
        cls_loss = cls_loss / (num_pos + num_images)
        return cls_loss, regression_loss


def generate_retinanet_labels(matched_targets):
    """Tensor[M]: the class label of the ground truth each anchor was matched to."""
    return matched_targets.get_field("labels")


def make_retinanet_loss_evaluator(cfg, box_coder):
    """RetinaNetLossComputation from MODEL.RETINANET.{FG_IOU_THRESHOLD, BG_IOU_THRESHOLD,
    LOSS_GAMMA, LOSS_ALPHA, BBOX_REG_BETA, BBOX_REG_WEIGHT}."""
    retina = cfg.MODEL.RETINANET
    matcher = Matcher(retina.FG_IOU_THRESHOLD, retina.BG_IOU_THRESHOLD, allow_low_quality_matches=True)
    return RetinaNetLossComputation(
        matcher,
        box_coder,
        generate_retinanet_labels,
        SigmoidFocalLoss(retina.LOSS_GAMMA, retina.LOSS_ALPHA),
        bbox_reg_beta=retina.BBOX_REG_BETA,
        regress_norm=retina.BBOX_REG_WEIGHT,
    )
