"""The RPN loss: objectness (binary cross-entropy) and box regression (smooth L1) over a balanced
sample of anchors per image."""
import torch
from torch.nn import functional as F

from maskrcnn.layers import smooth_l1_loss
from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.batched_matching import match_boxlists
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.utils import cat
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import cat_boxlist

from .utils import concat_box_prediction_layers

__all__ = ["RPNLossComputation", "generate_rpn_labels", "make_rpn_loss_evaluator"]


class RPNLossComputation(object):
    """Computes the RPN's two losses.

    Arguments:
        proposal_matcher (Matcher): anchors to ground truth by IoU.
        fg_bg_sampler (BalancedPositiveNegativeSampler): which labelled anchors enter the loss.
        box_coder (BoxCoder): turns matched ground truth into regression targets.
        generate_labels_func: BoxList of matched targets (with field ``matched_idxs``) ->
            Tensor[M] of labels (1 / True = object); background and ignored anchors are set
            afterwards from the match.

    Anchors are ignored (label -1) when they are not visible (outside the straddle threshold,
    see AnchorGenerator) or when their best IoU lies between the matcher's thresholds. An image
    without ground truth contributes negatives only.
    """

    def __init__(self, proposal_matcher, fg_bg_sampler, box_coder, generate_labels_func):
        self.proposal_matcher = proposal_matcher
        self.fg_bg_sampler = fg_bg_sampler
        self.box_coder = box_coder
        self.copied_fields = []
        self.generate_labels_func = generate_labels_func
        self.discard_cases = ["not_visibility", "between_thresholds"]

    def match_targets_to_anchors(self, anchor, target, copied_fields=()):
        """BoxList (one row per anchor) of the ground truth each anchor is matched to, with field
        ``matched_idxs`` (Tensor[M], the Matcher's output). Unmatched anchors carry the box of
        ground truth 0, or their own box when the image has no ground truth."""
        return self._match_all([anchor], [target], copied_fields)[0]

    def _match_all(self, anchors, targets, copied_fields):
        """All images at once (one IoU, one Matcher call): ``match_targets_to_anchors`` of every
        image, concatenated. Returns (BoxList of P = sum M_i rows in the first image's size,
        BatchedMatch, the anchors' boxes Tensor[P, 4])."""
        match = match_boxlists(self.proposal_matcher, targets, anchors)
        anchor_boxes = torch.cat([anchor.convert("xyxy").bbox for anchor in anchors], dim=0)  # [P, 4]
        # no ground truth: the anchor's "matched" box is itself (zero regression target) and
        # copied tensor fields (e.g. RetinaNet's labels) are zeros
        boxes = match.gather([target.convert("xyxy").bbox for target in targets], fill=anchor_boxes)
        matched_targets = BoxList(boxes, anchors[0].size, mode="xyxy", legacy_plus_one=anchors[0].legacy_plus_one)
        for name in copied_fields:
            matched_targets.add_field(name, match.gather_field(targets, name, fill=0))
        matched_targets.add_field("matched_idxs", match.matched_idxs)
        return matched_targets, match, anchor_boxes

    def prepare_targets(self, anchors, targets):
        """Per image: labels Tensor[M] (1 object, 0 background, -1 ignored, float32) and
        regression targets Tensor[M, 4]."""
        labels, regression_targets, match = self._prepare_targets_all(anchors, targets)
        return list(match.split(labels)), list(match.split(regression_targets))

    def _prepare_targets_all(self, anchors, targets):
        """``prepare_targets`` concatenated over the images: (labels Tensor[P], regression targets
        Tensor[P, 4], BatchedMatch), P = sum M_i."""
        matched_targets, match, anchor_boxes = self._match_all(anchors, targets, self.copied_fields)
        matched_idxs = match.matched_idxs
        labels = self.generate_labels_func(matched_targets).to(dtype=torch.float32)

        labels[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
        if "not_visibility" in self.discard_cases:
            visibility = torch.cat([anchor.get_field("visibility") for anchor in anchors], dim=0)
            labels[~visibility.bool()] = -1
        if "between_thresholds" in self.discard_cases:
            labels[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1

        regression_targets = self.box_coder.encode(matched_targets.bbox, anchor_boxes)
        return labels, regression_targets, match

    def __call__(self, anchors, objectness, box_regression, targets):
        """
        Arguments:
            anchors: list (images) of list (levels) of BoxList.
            objectness: list (levels) of Tensor[N, A, H, W].
            box_regression: list (levels) of Tensor[N, A * 4, H, W].
            targets: list (images) of BoxList, the ground truth (may be empty).
        Returns:
            (objectness_loss, box_loss): scalar tensors. The box loss is summed over the sampled
            positives and divided by the number of sampled anchors; with no sampled anchor at
            all both are zeros that still depend on the predictions.
        """
        if len(targets) != len(anchors):
            raise ValueError(f"RPN loss: got {len(targets)} targets for {len(anchors)} images")
        objectness_flat, box_regression_flat = concat_box_prediction_layers(objectness, box_regression)
        objectness_flat = objectness_flat.reshape(-1)
        if len(anchors) == 0 or objectness_flat.numel() == 0:
            return objectness_flat.sum() * 0, box_regression_flat.sum() * 0

        anchors = [cat_boxlist(anchors_per_image) for anchors_per_image in anchors]
        labels, regression_targets, match = self._prepare_targets_all(anchors, targets)
        # sampled image by image: its per-image randperm is the random stream training depends on
        sampled_pos_masks, sampled_neg_masks = self.fg_bg_sampler(list(match.split(labels)))
        sampled_pos_inds = torch.nonzero(cat(sampled_pos_masks, dim=0)).squeeze(1)
        sampled_neg_inds = torch.nonzero(cat(sampled_neg_masks, dim=0)).squeeze(1)
        sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)
        if sampled_inds.numel() == 0:
            return objectness_flat.sum() * 0, box_regression_flat.sum() * 0

        box_loss = smooth_l1_loss(
            box_regression_flat[sampled_pos_inds],
            regression_targets[sampled_pos_inds],
            beta=1.0 / 9,
            size_average=False,
        ) / sampled_inds.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness_flat[sampled_inds], labels[sampled_inds].to(objectness_flat.dtype)
        )
        return objectness_loss, box_loss


def generate_rpn_labels(matched_targets):
    """Tensor[M] bool: anchors matched to some ground truth (matched_idxs >= 0)."""
    matched_idxs = matched_targets.get_field("matched_idxs")
    return matched_idxs >= 0


def make_rpn_loss_evaluator(cfg, box_coder):
    """RPNLossComputation from MODEL.RPN.{FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, BATCH_SIZE_PER_IMAGE,
    POSITIVE_FRACTION}, with low-quality matches allowed (every ground truth gets an anchor)."""
    matcher = Matcher(
        cfg.MODEL.RPN.FG_IOU_THRESHOLD,
        cfg.MODEL.RPN.BG_IOU_THRESHOLD,
        allow_low_quality_matches=True,
    )
    fg_bg_sampler = BalancedPositiveNegativeSampler(cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE, cfg.MODEL.RPN.POSITIVE_FRACTION)
    return RPNLossComputation(matcher, fg_bg_sampler, box_coder, generate_rpn_labels)
