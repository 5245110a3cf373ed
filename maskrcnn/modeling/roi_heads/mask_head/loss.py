"""Mask R-CNN mask loss: per-pixel binary cross-entropy on the ground-truth class's channel.

Targets: each positive RoI's matched ground-truth mask, cropped to the RoI and resampled to the
M x M grid of the predicted masks (``project_masks_on_boxes``). As in maskrcnn-benchmark and
Detectron, the RoI (x1, y1, x2, y2) is treated as the continuous window [x1, x2] x [y1, y2]
(width x2 - x1) in either box convention, and output cell (i, j) stands for the point at its
centre, x1 + (j + 0.5) * (x2 - x1) / M.

* Polygons are moved into the RoI's frame, scaled to M x M and rasterised per RoI (pycocotools),
  exactly as ``SegmentationMask.crop(box).resize((M, M))``.
* Binary masks are sampled bilinearly at the cell centres for all RoIs at once (pixel p of a mask
  covers [p, p + 1), so its centre p + 0.5 holds its value; outside the image is 0) and
  thresholded at 0.5: a RoIAlign with one sample per bin and half-pixel alignment. For an
  integer RoI no smaller than M this equals ``crop(box).resize((M, M))`` of the bitmap.
"""
import torch
from torch.nn import functional as F

from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.utils import cat
from maskrcnn.structures.boxlist_ops import boxlist_iou
from maskrcnn.structures.segmentation_mask import SegmentationMask

__all__ = [
    "project_masks_on_boxes",
    "sample_bitmaps_in_boxes",
    "MaskRCNNLossComputation",
    "make_roi_mask_loss_evaluator",
]


def sample_bitmaps_in_boxes(masks, boxes, size):
    """Bilinear samples of binary masks at the cell centres of an M x M grid over each box.

    Arguments:
        masks: Tensor[N, H, W] (any dtype; 0 = background), mask i belonging to box i.
        boxes: Tensor[N, 4] (x1, y1, x2, y2), continuous image coordinates.
        size (int): M.
    Returns:
        Tensor[N, M, M] float32 in [0, 1] (bilinear interpolation of the mask values, with zeros
        outside the image).
    """
    num, height, width = masks.shape
    device = masks.device
    if num == 0:
        return torch.zeros((0, size, size), dtype=torch.float32, device=device)
    boxes = boxes.to(device=device, dtype=torch.float32)
    cells = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    # sample positions in pixel-index coordinates (pixel p's centre is p + 0.5)
    xs = boxes[:, 0:1] + cells * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5  # [N, M]
    ys = boxes[:, 1:2] + cells * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5  # [N, M]
    # pad one zero pixel all round, so any position outside the image reads zeros
    padded = F.pad(masks.to(torch.float32), (1, 1, 1, 1)).reshape(num, -1)
    xs = xs.clamp(-1.0, float(width)) + 1.0
    ys = ys.clamp(-1.0, float(height)) + 1.0
    x0 = xs.floor().clamp(max=width)
    y0 = ys.floor().clamp(max=height)
    wx1 = xs - x0  # weight of column x0 + 1
    wy1 = ys - y0
    x0, y0 = x0.long(), y0.long()
    row_stride = width + 2

    def gather(rows, cols):
        index = rows[:, :, None] * row_stride + cols[:, None, :]  # [N, M, M]
        return padded.gather(1, index.reshape(num, -1)).reshape(num, size, size)

    x1, y1 = x0 + 1, y0 + 1
    top = gather(y0, x0) * (1 - wx1[:, None, :]) + gather(y0, x1) * wx1[:, None, :]
    bottom = gather(y1, x0) * (1 - wx1[:, None, :]) + gather(y1, x1) * wx1[:, None, :]
    return top * (1 - wy1[:, :, None]) + bottom * wy1[:, :, None]


def project_masks_on_boxes(segmentation_masks, proposals, discretization_size):
    """Mask targets of the RoIs: each ground-truth mask cropped to its RoI at M x M.

    Arguments:
        segmentation_masks (SegmentationMask): one instance per RoI (polygons or bitmaps).
        proposals (BoxList): the RoIs, same image size.
        discretization_size (int): M.
    Returns:
        Tensor[N, M, M] float32 of 0 / 1, on the proposals' device.
    """
    size = int(discretization_size)
    device = proposals.bbox.device
    if len(segmentation_masks) != len(proposals):
        raise ValueError(
            f"project_masks_on_boxes: {len(segmentation_masks)} masks for {len(proposals)} proposals"
        )
    if tuple(segmentation_masks.size) != tuple(proposals.size):
        raise ValueError(
            f"project_masks_on_boxes: masks of image size {segmentation_masks.size} do not match "
            f"proposals of image size {proposals.size}"
        )
    if len(proposals) == 0:
        return torch.zeros((0, size, size), dtype=torch.float32, device=device)
    boxes = proposals.convert("xyxy").bbox
    if isinstance(segmentation_masks, SegmentationMask) and segmentation_masks.mode == "mask":
        bitmaps = segmentation_masks.instances.masks
        sampled = sample_bitmaps_in_boxes(bitmaps.to(device), boxes, size)
        return (sampled >= 0.5).to(torch.float32)
    targets = []
    for instance, box in zip(segmentation_masks, boxes.detach().cpu()):
        resized = instance.crop(box).resize((size, size))
        targets.append(resized.get_mask_tensor().reshape(size, size))
    return torch.stack(targets).to(device=device, dtype=torch.float32)


class MaskRCNNLossComputation(object):
    """Matches the positive RoIs to ground truth and computes the mask loss.

    Arguments:
        proposal_matcher (Matcher): RoI -> ground-truth assignment by IoU.
        discretization_size (int): side M of the predicted masks.
    """

    def __init__(self, proposal_matcher, discretization_size):
        self.proposal_matcher = proposal_matcher
        self.discretization_size = discretization_size

    def match_targets_to_proposals(self, proposal, target):
        """Returns (matched_idxs Tensor[M] int64, target BoxList with "labels" and "masks" indexed
        by the clamped matches, or None when the image has no ground truth)."""
        match_quality_matrix = boxlist_iou(target, proposal)
        matched_idxs = self.proposal_matcher(match_quality_matrix)
        if len(target) == 0:
            return matched_idxs, None
        target = target.copy_with_fields(["labels", "masks"])
        return matched_idxs, target[matched_idxs.clamp(min=0)]

    def prepare_targets(self, proposals, targets):
        """Per image: labels Tensor[M] int64 (0 = background) and mask targets Tensor[P, M, M] of
        the P RoIs with labels > 0."""
        labels, masks = [], []
        size = self.discretization_size
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            matched_idxs, matched_targets = self.match_targets_to_proposals(
                proposals_per_image, targets_per_image
            )
            device = proposals_per_image.bbox.device
            if matched_targets is None:
                labels.append(torch.zeros(len(proposals_per_image), dtype=torch.int64, device=device))
                masks.append(torch.zeros((0, size, size), dtype=torch.float32, device=device))
                continue
            labels_per_image = matched_targets.get_field("labels").to(dtype=torch.int64, device=device)
            labels_per_image[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
            positive = torch.nonzero(labels_per_image > 0).squeeze(1)
            masks.append(project_masks_on_boxes(
                matched_targets.get_field("masks")[positive], proposals_per_image[positive], size
            ))
            labels.append(labels_per_image)
        return labels, masks

    def __call__(self, proposals, mask_logits, targets):
        """
        Arguments:
            proposals: list[BoxList], the RoIs the logits were computed for.
            mask_logits: Tensor[K, num_classes, M, M].
            targets: list[BoxList] with fields "labels" and "masks".
        Returns:
            0-d Tensor: mean BCE-with-logits over the positives' gt-class channels; a zero that
            keeps the graph (mask_logits.sum() * 0) when there are no positives.
        """
        if len(proposals) == 0:
            return mask_logits.sum() * 0
        labels, mask_targets = self.prepare_targets(proposals, targets)
        labels = cat(labels, dim=0)
        mask_targets = cat(mask_targets, dim=0)
        positive = torch.nonzero(labels > 0).squeeze(1)
        if mask_targets.numel() == 0:
            return mask_logits.sum() * 0
        return F.binary_cross_entropy_with_logits(
            mask_logits[positive, labels[positive]], mask_targets.to(mask_logits.dtype)
        )


def make_roi_mask_loss_evaluator(cfg):
    """MaskRCNNLossComputation with MODEL.ROI_HEADS FG/BG_IOU_THRESHOLD and ROI_MASK_HEAD.RESOLUTION."""
    matcher = Matcher(
        cfg.MODEL.ROI_HEADS.FG_IOU_THRESHOLD,
        cfg.MODEL.ROI_HEADS.BG_IOU_THRESHOLD,
        allow_low_quality_matches=False,
    )
    return MaskRCNNLossComputation(matcher, cfg.MODEL.ROI_MASK_HEAD.RESOLUTION)
