"""Mask R-CNN mask loss: per-pixel binary cross-entropy on the ground-truth class's channel.

Targets: each positive RoI's matched ground-truth mask, cropped to the RoI and resampled to the
M x M grid of the predicted masks (``project_masks_on_boxes``). As in maskrcnn-benchmark and
Detectron, the RoI (x1, y1, x2, y2) is treated as the continuous window [x1, x2] x [y1, y2]
(width x2 - x1) in either box convention, and output cell (i, j) stands for the point at its
centre, x1 + (j + 0.5) * (x2 - x1) / M.

* Polygons are moved into the RoI's frame and scaled to M x M for all RoIs at once, then
  rasterised by pycocotools in one call (the union of each RoI's polygons): exactly
  ``SegmentationMask.crop(box).resize((M, M))``, without building per-RoI polygon objects.
* Binary masks are sampled bilinearly at the cell centres for all RoIs at once (pixel p of a mask
  covers [p, p + 1), so its centre p + 0.5 holds its value; outside the image is 0) and
  thresholded at 0.5: a RoIAlign with one sample per bin and half-pixel alignment. For an
  integer RoI no smaller than M this equals ``crop(box).resize((M, M))`` of the bitmap.
"""
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.nn import functional as F

from maskrcnn.modeling.batched_matching import match_boxlists
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.structures.segmentation_mask import PolygonList, SegmentationMask

__all__ = [
    "project_masks_on_boxes",
    "sample_bitmaps_in_boxes",
    "rasterize_polygons_in_boxes",
    "MaskRCNNLossComputation",
    "make_roi_mask_loss_evaluator",
]


def sample_bitmaps_in_boxes(masks, boxes, size, mask_indices=None):
    """Bilinear samples of binary masks at the cell centres of an M x M grid over each box.

    Arguments:
        masks: Tensor[G, H, W] (any dtype; 0 = background).
        boxes: Tensor[N, 4] (x1, y1, x2, y2), continuous image coordinates.
        size (int): M.
        mask_indices: Tensor[N] int64, the mask each box samples (None: mask i for box i, G = N).
    Returns:
        Tensor[N, M, M] float32 in [0, 1]: bilinear interpolation of the mask values, zero outside
        the image. Only the 4 N M^2 values sampled are read (no per-box copy of a mask).
    """
    num_masks, height, width = masks.shape
    device = masks.device
    if mask_indices is None:
        if boxes.shape[0] != num_masks:
            raise ValueError(f"sample_bitmaps_in_boxes: {num_masks} masks for {boxes.shape[0]} boxes")
        mask_indices = torch.arange(num_masks, device=device)
    num = boxes.shape[0]
    if num == 0:
        return torch.zeros((0, size, size), dtype=torch.float32, device=device)
    boxes = boxes.to(device=device, dtype=torch.float32)
    cells = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    # sample positions in pixel-index coordinates (pixel p's centre is p + 0.5)
    xs = boxes[:, 0:1] + cells * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5  # [N, M]
    ys = boxes[:, 1:2] + cells * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5  # [N, M]

    def taps(positions, extent):
        """Both neighbours of each position: (index clamped into the image, weight zeroed outside)."""
        low = positions.floor()
        frac = positions - low
        result = []
        for index, weight in ((low, 1 - frac), (low + 1, frac)):
            inside = (index >= 0) & (index <= extent - 1)
            result.append((index.clamp(0, extent - 1).long(), weight * inside))
        return result

    flat = masks.reshape(-1)
    base = mask_indices.to(device).long()[:, None, None] * (height * width)
    sampled = torch.zeros((num, size, size), dtype=torch.float32, device=device)
    for rows, row_weight in taps(ys, height):
        for cols, col_weight in taps(xs, width):
            values = flat[base + rows[:, :, None] * width + cols[:, None, :]].to(torch.float32)
            sampled += values * row_weight[:, :, None] * col_weight[:, None, :]
    return sampled


def rasterize_polygons_in_boxes(instances, boxes, size):
    """Polygon instance i cropped to box i and rasterised at size x size, all boxes at once.

    Arguments:
        instances: list of N PolygonInstance (one per box).
        boxes: Tensor[N, 4] (x1, y1, x2, y2); as in ``crop``, x2 < x1 + 1 counts as x1 + 1.
        size: M.
    Returns:
        Tensor[N, M, M] uint8 (CPU): the union of each instance's polygons, mapped by
        (x - x1) * M / (x2 - x1); equal to ``instance.crop(box).resize((M, M))`` rasterised.
    """
    num = len(instances)
    if boxes.shape[0] != num:
        raise ValueError(f"rasterize_polygons_in_boxes: {num} instances for {boxes.shape[0]} boxes")
    # numpy throughout: these arrays are small, and torch's thread pool costs more than the work
    boxes = boxes.detach().cpu().double().numpy().reshape(-1, 4)
    if num and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        raise ValueError("rasterize_polygons_in_boxes: boxes must have x2 >= x1 and y2 >= y1")
    polygons = [polygon.numpy() for instance in instances for polygon in instance.polygons]
    targets = np.zeros((num, size, size), dtype=np.uint8)
    if not polygons:
        return torch.from_numpy(targets)
    origin = boxes[:, 0:2]
    ratio = float(size) / (np.maximum(boxes[:, 2:4], origin + 1) - origin)  # [N, 2] (x, y), as crop + resize
    polygons_per_box = np.array([len(instance.polygons) for instance in instances])
    lengths = np.array([polygon.size for polygon in polygons])
    box_of_point = np.repeat(np.repeat(np.arange(num), polygons_per_box), lengths // 2)
    points = (np.concatenate(polygons).reshape(-1, 2) - origin[box_of_point]) * ratio[box_of_point]
    rles = mask_utils.frPyObjects(np.split(points.reshape(-1), np.cumsum(lengths)[:-1]), size, size)
    raster = mask_utils.decode(rles)  # [M, M, P], the polygons of each box consecutive
    has_polygons = polygons_per_box > 0
    first_polygon = (np.cumsum(polygons_per_box) - polygons_per_box)[has_polygons]
    targets[has_polygons] = np.maximum.reduceat(raster, first_polygon, axis=2).transpose(2, 0, 1)
    return torch.from_numpy(targets)


def _check_same_image_size(segmentation_masks, proposals):
    if tuple(segmentation_masks.size) != tuple(proposals.size):
        raise ValueError(
            f"project_masks_on_boxes: masks of image size {segmentation_masks.size} do not match "
            f"proposals of image size {proposals.size}"
        )


def _polygon_instances(segmentation_masks):
    """The list of PolygonInstance of polygon masks (a SegmentationMask in "poly" mode or a
    PolygonList); None for anything else (bitmaps, other iterables)."""
    polygons = segmentation_masks.instances if isinstance(segmentation_masks, SegmentationMask) else segmentation_masks
    return polygons.polygons if isinstance(polygons, PolygonList) else None


def project_masks_on_boxes(segmentation_masks, proposals, discretization_size, mask_indices=None):
    """Mask targets of the RoIs: each ground-truth mask cropped to its RoI at M x M.

    Arguments:
        segmentation_masks (SegmentationMask): polygons or bitmaps, one instance per RoI, or any
            number of instances with ``mask_indices``.
        proposals (BoxList): the N RoIs, same image size.
        discretization_size (int): M.
        mask_indices: optional Tensor[N] int64, the instance of each RoI (saves indexing the
            masks per RoI).
    Returns:
        Tensor[N, M, M] float32 of 0 / 1, on the proposals' device.
    """
    size = int(discretization_size)
    device = proposals.bbox.device
    if mask_indices is None and len(segmentation_masks) != len(proposals):
        raise ValueError(
            f"project_masks_on_boxes: {len(segmentation_masks)} masks for {len(proposals)} proposals"
        )
    if mask_indices is not None and len(mask_indices) != len(proposals):
        raise ValueError(
            f"project_masks_on_boxes: {len(mask_indices)} mask_indices for {len(proposals)} proposals"
        )
    _check_same_image_size(segmentation_masks, proposals)
    if len(proposals) == 0:
        return torch.zeros((0, size, size), dtype=torch.float32, device=device)
    boxes = proposals.convert("xyxy").bbox
    if isinstance(segmentation_masks, SegmentationMask) and segmentation_masks.mode == "mask":
        bitmaps = segmentation_masks.instances.masks.to(device)
        return (sample_bitmaps_in_boxes(bitmaps, boxes, size, mask_indices) >= 0.5).to(torch.float32)
    instances = _polygon_instances(segmentation_masks)
    if instances is not None:
        if mask_indices is not None:
            instances = [instances[i] for i in mask_indices.tolist()]
        targets = rasterize_polygons_in_boxes(instances, boxes, size)
        return targets.to(device=device, dtype=torch.float32)
    instances = list(segmentation_masks)
    if mask_indices is not None:
        instances = [instances[i] for i in mask_indices.tolist()]
    targets = []
    for instance, box in zip(instances, boxes.detach().cpu()):
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
        """Returns (matched_idxs Tensor[M] int64, the target BoxList with fields "labels" and
        "masks" only, or None when the image has no ground truth)."""
        matched_idxs = match_boxlists(self.proposal_matcher, [target], [proposal]).matched_idxs
        if len(target) == 0:
            return matched_idxs, None
        return matched_idxs, target.copy_with_fields(["labels", "masks"])

    def prepare_targets(self, proposals, targets):
        """Per image: labels Tensor[M] int64 (0 = background) and mask targets Tensor[P, M, M] of
        the P RoIs with labels > 0."""
        labels, masks, match, positive_counts = self._prepare_targets_all(proposals, targets)
        return list(match.split(labels)), list(torch.split(masks, positive_counts))

    def _prepare_targets_all(self, proposals, targets):
        """``prepare_targets`` concatenated over the images: (labels Tensor[R] int64 of all R RoIs,
        mask targets Tensor[K, M, M] float32 of the K positive ones in order, BatchedMatch,
        list of the positives per image)."""
        size = self.discretization_size
        match = match_boxlists(self.proposal_matcher, targets, proposals)
        labels = match.gather_field(targets, "labels", fill=0, dtype=torch.int64)
        labels[match.matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
        positive = torch.nonzero(labels > 0).squeeze(1)  # [K], rows of the concatenation
        local_positive, positive_counts = match.split_rows(positive)
        mask_indices = match.matched_idxs[positive].clamp(min=0)  # [K], ground truth within its image
        # images with ground truth must carry masks of their size (even without positives)
        masks = [target.get_field("masks") if count else None for target, count in zip(targets, match.gt_counts)]
        for image_masks, proposals_per_image in zip(masks, proposals):
            if image_masks is not None:
                _check_same_image_size(image_masks, proposals_per_image)
        polygons = [
            _polygon_instances(image_masks) if count else [] for image_masks, count in zip(masks, positive_counts)
        ]
        device = proposals[0].bbox.device
        if all(instances is not None for instances in polygons):
            # polygons everywhere: one rasterisation for the RoIs of all images
            boxes = torch.cat([proposals_per_image.convert("xyxy").bbox for proposals_per_image in proposals])[positive]
            image_of_positive = match.image_index[positive].tolist()
            instances = [polygons[image][index] for image, index in zip(image_of_positive, mask_indices.tolist())]
            mask_targets = rasterize_polygons_in_boxes(instances, boxes, size).to(device=device, dtype=torch.float32)
        else:
            # bitmaps of different image sizes (or other mask types): image by image
            mask_targets = torch.cat([
                project_masks_on_boxes(image_masks, proposals_per_image[rows], size, mask_indices=indices)
                if len(rows) else torch.zeros((0, size, size), dtype=torch.float32, device=device)
                for image_masks, proposals_per_image, rows, indices in zip(
                    masks, proposals, local_positive, torch.split(mask_indices, positive_counts)
                )
            ])
        return labels, mask_targets, match, positive_counts

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
        labels, mask_targets, _, _ = self._prepare_targets_all(proposals, targets)
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
