"""Keypoint R-CNN loss: softmax cross-entropy over the M x M heatmap cells, one term per
labelled keypoint inside its RoI.

Training RoIs are re-sampled from the box head's RoIs (``subsample``): each is matched to the
ground truth (IoU, Matcher); those matched to a ground truth with no labelled keypoint inside
its box are ignored, and the sampler keeps up to BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION
positives per image (the keypoint loss uses positives only). Targets are the heatmap cells of
``keypoints_to_heat_map``.
"""
import torch
from torch.nn import functional as F

from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.batched_matching import match_boxlists
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.utils import cat
from maskrcnn.structures.keypoint import Keypoints, keypoints_to_heat_map

__all__ = [
    "project_keypoints_to_heatmap",
    "KeypointRCNNLossComputation",
    "make_roi_keypoint_loss_evaluator",
]


def project_keypoints_to_heatmap(keypoints, proposals, discretization_size):
    """keypoints: Keypoints of N instances; proposals: BoxList of N RoIs -> (heatmaps, valid),
    both Tensor[N, K] int64 (flat cell index y * M + x, and 1 where the target is valid)."""
    proposals = proposals.convert("xyxy")
    return keypoints_to_heat_map(keypoints.keypoints, proposals.bbox, discretization_size)


def _within_box(points, boxes):
    """points: Tensor[N, K, 2+]; boxes: Tensor[N, 4] -> Tensor[N, K] bool, point k inside box n
    (edges included)."""
    x_within = (points[..., 0] >= boxes[:, 0, None]) & (points[..., 0] <= boxes[:, 2, None])
    y_within = (points[..., 1] >= boxes[:, 1, None]) & (points[..., 1] <= boxes[:, 3, None])
    return x_within & y_within


def _zero_keypoints_like(target, count):
    """``count`` unlabelled keypoint sets of the target's keypoint class (for images without ground truth)."""
    if target.has_field("keypoints"):
        reference = target.get_field("keypoints")
        data = reference.keypoints.new_zeros((count,) + tuple(reference.keypoints.shape[1:]))
        return type(reference)(data, reference.size, reference.mode, legacy_plus_one=reference.legacy_plus_one)
    data = target.bbox.new_zeros((count, 0, 3))
    return Keypoints(data, target.size, legacy_plus_one=target.legacy_plus_one)


class KeypointRCNNLossComputation(object):
    """
    Arguments:
        proposal_matcher (Matcher): RoI -> ground-truth assignment by IoU.
        fg_bg_sampler (BalancedPositiveNegativeSampler): per-image RoI sampling.
        discretization_size (int): side M of the predicted heatmaps.
    """

    def __init__(self, proposal_matcher, fg_bg_sampler, discretization_size):
        self.proposal_matcher = proposal_matcher
        self.fg_bg_sampler = fg_bg_sampler
        self.discretization_size = discretization_size

    def match_targets_to_proposals(self, proposal, target):
        """Returns (matched_idxs Tensor[M] int64, target BoxList with "labels" and "keypoints"
        indexed by the clamped matches, or None when the image has no ground truth)."""
        match = match_boxlists(self.proposal_matcher, [target], [proposal])
        return match.matched_idxs, self._matched_targets(target, match.matched_idxs)

    @staticmethod
    def _matched_targets(target, matched_idxs):
        """The target BoxList (fields "labels", "keypoints") indexed by the clamped matches
        Tensor[M]; None for an image without ground truth."""
        if len(target) == 0:
            return None
        target = target.convert("xyxy").copy_with_fields(["labels", "keypoints"])
        return target[matched_idxs.clamp(min=0)]

    def prepare_targets(self, proposals, targets):
        """Per image: labels Tensor[M] int64 (>0 foreground, 0 background, -1 ignored) and the
        matched Keypoints (M instances)."""
        match = match_boxlists(self.proposal_matcher, targets, proposals)
        labels = match.gather_field(targets, "labels", fill=0, dtype=torch.int64)  # [P], all images
        labels[match.matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
        labels[match.matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
        labels = list(match.split(labels))
        keypoints = []
        # the matched Keypoints objects (a class per keypoint set, extra fields) stay per image
        for image, (proposals_per_image, targets_per_image, matched_idxs) in enumerate(
            zip(proposals, targets, match.per_image())
        ):
            matched_targets = self._matched_targets(targets_per_image, matched_idxs)
            device = proposals_per_image.bbox.device
            if matched_targets is None:
                keypoints.append(_zero_keypoints_like(targets_per_image, len(proposals_per_image)))
                continue
            keypoints_per_image = matched_targets.get_field("keypoints")
            points = keypoints_per_image.keypoints.to(device)
            within_box = _within_box(points, matched_targets.bbox.to(device))
            has_visible = (within_box & (points[..., 2] > 0)).any(dim=1)
            labels[image][~has_visible] = -1
            keypoints.append(keypoints_per_image)
        return labels, keypoints

    def subsample(self, proposals, targets):
        """The sampled positive RoIs of each image, with fields "labels" and "keypoints" (their
        matched ground truth). Also kept as ``self._proposals``."""
        labels, keypoints = self.prepare_targets(proposals, targets)
        sampled_pos_inds, _ = self.fg_bg_sampler(labels)
        sampled = []
        for labels_per_image, keypoints_per_image, proposals_per_image, positive in zip(
            labels, keypoints, proposals, sampled_pos_inds
        ):
            # a copy, so the caller's RoIs (the box head's) keep their own "labels"
            proposals_per_image = proposals_per_image.copy_with_fields(proposals_per_image.fields())
            proposals_per_image.add_field("labels", labels_per_image)
            proposals_per_image.add_field("keypoints", keypoints_per_image)
            sampled.append(proposals_per_image[torch.nonzero(positive).squeeze(1)])
        self._proposals = sampled
        return sampled

    def __call__(self, proposals, keypoint_logits):
        """
        Arguments:
            proposals: list[BoxList] from ``subsample`` (field "keypoints").
            keypoint_logits: Tensor[K, NK, M, M].
        Returns:
            0-d Tensor: mean cross-entropy over the valid keypoints; a zero that keeps the graph
            (keypoint_logits.sum() * 0) when there is none.
        """
        heatmaps, valid = [], []
        for proposals_per_image in proposals:
            heatmaps_per_image, valid_per_image = project_keypoints_to_heatmap(
                proposals_per_image.get_field("keypoints"), proposals_per_image, self.discretization_size
            )
            heatmaps.append(heatmaps_per_image.reshape(-1))
            valid.append(valid_per_image.reshape(-1))
        if not heatmaps:
            return keypoint_logits.sum() * 0
        keypoint_targets = cat(heatmaps, dim=0).to(keypoint_logits.device)
        valid = torch.nonzero(cat(valid, dim=0) > 0).squeeze(1).to(keypoint_logits.device)
        if keypoint_targets.numel() == 0 or valid.numel() == 0:
            return keypoint_logits.sum() * 0
        num, num_keypoints, height, width = keypoint_logits.shape
        if keypoint_targets.numel() != num * num_keypoints:
            raise ValueError(
                f"KeypointRCNNLossComputation: {keypoint_targets.numel()} keypoint targets for logits of "
                f"shape {list(keypoint_logits.shape)}; MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES must equal the "
                "number of keypoints per instance"
            )
        keypoint_logits = keypoint_logits.reshape(num * num_keypoints, height * width)
        return F.cross_entropy(keypoint_logits[valid], keypoint_targets[valid])


def make_roi_keypoint_loss_evaluator(cfg):
    """KeypointRCNNLossComputation from MODEL.ROI_HEADS (IoU thresholds, BATCH_SIZE_PER_IMAGE,
    POSITIVE_FRACTION) and MODEL.ROI_KEYPOINT_HEAD.RESOLUTION."""
    matcher = Matcher(
        cfg.MODEL.ROI_HEADS.FG_IOU_THRESHOLD,
        cfg.MODEL.ROI_HEADS.BG_IOU_THRESHOLD,
        allow_low_quality_matches=False,
    )
    sampler = BalancedPositiveNegativeSampler(
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE, cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION
    )
    return KeypointRCNNLossComputation(matcher, sampler, cfg.MODEL.ROI_KEYPOINT_HEAD.RESOLUTION)
