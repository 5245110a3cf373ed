"""Fast R-CNN box-head losses: RoI sampling, per-RoI targets, classification and box regression.

Training goes in two steps, as in maskrcnn-benchmark:

1. ``subsample(proposals, targets)``: match each proposal to the ground truth (IoU, Matcher),
   label it (class of its match, 0 = background below BG_IOU_THRESHOLD, ignored in between),
   encode its regression target, and keep a class-balanced sample per image (the RoIs the head
   then runs on). Images without ground truth are all background.
2. ``__call__(class_logits, box_regression)`` on the head's outputs for those RoIs:
   ``loss_classifier`` = cross entropy over all sampled RoIs; ``loss_box_reg`` = smooth L1
   (beta = 1) over the foreground RoIs' deltas of their own class, summed and divided by the
   number of sampled RoIs.
"""
import torch
from torch.nn import functional as F

from maskrcnn.config.conventions import box_convention
from maskrcnn.layers import smooth_l1_loss
from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.batched_matching import match_boxlists
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.utils import cat

__all__ = ["FastRCNNLossComputation", "make_roi_box_loss_evaluator"]


class FastRCNNLossComputation(object):
    """
    Arguments:
        proposal_matcher (Matcher): proposal -> ground-truth assignment (IoU thresholds).
        fg_bg_sampler (BalancedPositiveNegativeSampler): RoIs kept per image.
        box_coder (BoxCoder): regression-target encoding (weights (10, 10, 5, 5) by default).
        cls_agnostic_bbox_reg (bool): the regressor has 2 classes (background, object); the
            foreground deltas are its columns 4..7.
    """

    def __init__(self, proposal_matcher, fg_bg_sampler, box_coder, cls_agnostic_bbox_reg=False):
        self.proposal_matcher = proposal_matcher
        self.fg_bg_sampler = fg_bg_sampler
        self.box_coder = box_coder
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self._proposals = None

    def match_targets_to_proposals(self, proposal, target):
        """Per proposal: the index of its ground truth (or Matcher's negative codes) and the
        matched boxes and labels (zeros where there is no ground truth at all).

        Returns (matched_idxs Tensor[M] int64, matched_boxes Tensor[M, 4], matched_labels Tensor[M] int64).
        """
        match, matched_boxes, matched_labels = self._match_all([proposal], [target])
        return match.matched_idxs, matched_boxes, matched_labels

    def _match_all(self, proposals, targets):
        """``match_targets_to_proposals`` of all images at once (one IoU, one Matcher call),
        concatenated: (BatchedMatch, matched_boxes Tensor[P, 4], matched_labels Tensor[P] int64)."""
        match = match_boxlists(self.proposal_matcher, targets, proposals)
        matched_boxes = match.gather([target.convert("xyxy").bbox for target in targets], fill=0)
        matched_labels = match.gather_field(targets, "labels", fill=0, dtype=torch.int64)
        return match, matched_boxes, matched_labels

    def prepare_targets(self, proposals, targets):
        """Per image: labels Tensor[M] int64 (class, 0 = background, -1 = ignored) and
        regression targets Tensor[M, 4] (zeros for RoIs that are not foreground of a real match)."""
        labels, regression_targets, match = self._prepare_targets_all(proposals, targets)
        return list(match.split(labels)), list(match.split(regression_targets))

    def _prepare_targets_all(self, proposals, targets):
        """``prepare_targets`` concatenated over the images: (labels Tensor[P] int64, regression
        targets Tensor[P, 4], BatchedMatch), P = sum M_i."""
        if len(proposals) != len(targets):
            raise ValueError(
                f"box head loss: got {len(proposals)} proposal lists but {len(targets)} targets"
            )
        proposals = [proposals_per_image.convert("xyxy") for proposals_per_image in proposals]
        match, matched_boxes, labels = self._match_all(proposals, targets)
        matched_idxs = match.matched_idxs
        labels[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
        labels[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
        proposal_boxes = torch.cat([proposals_per_image.bbox for proposals_per_image in proposals], dim=0)
        regression_targets = self.box_coder.encode(matched_boxes, proposal_boxes)
        if not match.all_have_gt:
            # images without ground truth: zero targets (their matched "boxes" are zeros)
            regression_targets = torch.where(match.has_gt[:, None], regression_targets, 0)
        return labels, regression_targets, match

    def subsample(self, proposals, targets):
        """Sample RoIs for the head.

        proposals: list[BoxList] per image; targets: list[BoxList] with field "labels".
        Returns list[BoxList]: the sampled proposals of each image with fields "labels" and
        "regression_targets" (kept for ``__call__``).
        """
        labels, regression_targets, match = self._prepare_targets_all(proposals, targets)
        # sampled image by image: its per-image randperm is the random stream training depends on
        sampled_pos_inds, sampled_neg_inds = self.fg_bg_sampler(list(match.split(labels)))

        keep = torch.nonzero(torch.cat(sampled_pos_inds) | torch.cat(sampled_neg_inds)).squeeze(1)  # [K]
        local_keep, kept_counts = match.split_rows(keep)
        sampled = []
        for proposals_per_image, keep_i, labels_i, targets_i in zip(
            proposals,
            local_keep,
            torch.split(labels[keep], kept_counts),
            torch.split(regression_targets[keep], kept_counts),
        ):
            sampled_per_image = proposals_per_image.convert("xyxy")[keep_i]
            sampled_per_image.add_field("labels", labels_i)
            sampled_per_image.add_field("regression_targets", targets_i)
            sampled.append(sampled_per_image)
        self._proposals = sampled
        return sampled

    def __call__(self, class_logits, box_regression):
        """
        Arguments:
            class_logits: list of Tensor[K_i, num_classes] (or one tensor), for the RoIs
                returned by the last ``subsample`` (all images concatenated).
            box_regression: list of Tensor[K_i, 4 * B] (or one tensor), likewise.
        Returns:
            (loss_classifier, loss_box_reg): scalar tensors.
        """
        if self._proposals is None:
            raise RuntimeError("FastRCNNLossComputation: call subsample() before computing the loss")
        if isinstance(class_logits, torch.Tensor):
            class_logits = [class_logits]
        if isinstance(box_regression, torch.Tensor):
            box_regression = [box_regression]
        class_logits = cat(list(class_logits), dim=0)
        box_regression = cat(list(box_regression), dim=0)
        labels = cat([p.get_field("labels") for p in self._proposals], dim=0)
        regression_targets = cat([p.get_field("regression_targets") for p in self._proposals], dim=0)
        if class_logits.shape[0] != labels.shape[0] or box_regression.shape[0] != labels.shape[0]:
            raise ValueError(
                f"box head loss: {labels.shape[0]} sampled RoIs but class_logits has {class_logits.shape[0]} "
                f"rows and box_regression {box_regression.shape[0]}"
            )
        if labels.numel() == 0:
            # no RoI at all: zero losses that still depend on the head's outputs
            zero = class_logits.sum() * 0 + box_regression.sum() * 0
            return zero, zero.clone()

        classification_loss = F.cross_entropy(class_logits, labels)

        positive = torch.nonzero(labels > 0).squeeze(1)
        labels_pos = labels[positive]
        columns = torch.arange(4, device=labels.device)
        if self.cls_agnostic_bbox_reg:
            map_inds = (4 + columns).expand(positive.numel(), 4)
        else:
            map_inds = 4 * labels_pos[:, None] + columns
        compute_dtype = torch.promote_types(box_regression.dtype, torch.float32)
        box_loss = smooth_l1_loss(
            box_regression[positive[:, None], map_inds].to(compute_dtype),
            regression_targets[positive].to(compute_dtype),
            beta=1,
            size_average=False,
        )
        box_loss = box_loss / labels.numel()
        return classification_loss, box_loss


def make_roi_box_loss_evaluator(cfg):
    """FastRCNNLossComputation from MODEL.ROI_HEADS (FG/BG_IOU_THRESHOLD, BBOX_REG_WEIGHTS,
    BATCH_SIZE_PER_IMAGE, POSITIVE_FRACTION), MODEL.CLS_AGNOSTIC_BBOX_REG and the box convention."""
    heads = cfg.MODEL.ROI_HEADS
    matcher = Matcher(heads.FG_IOU_THRESHOLD, heads.BG_IOU_THRESHOLD, allow_low_quality_matches=False)
    box_coder = BoxCoder(weights=heads.BBOX_REG_WEIGHTS, legacy_plus_one=box_convention(cfg).legacy_plus_one)
    sampler = BalancedPositiveNegativeSampler(heads.BATCH_SIZE_PER_IMAGE, heads.POSITIVE_FRACTION)
    return FastRCNNLossComputation(matcher, sampler, box_coder, cfg.MODEL.CLS_AGNOSTIC_BBOX_REG)
