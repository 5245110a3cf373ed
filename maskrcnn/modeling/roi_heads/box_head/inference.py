"""Box-head post-processing: class scores and deltas of each RoI -> final detections.

For each RoI and foreground class: the softmax score; the (RoI, class) pairs scoring above
``score_thresh`` get their box decoded from the class's deltas and clipped to the image (only
those: decoding all R x C boxes costs more than the NMS), then go through NMS per (image, class) in
ONE ``batched_nms`` call for the whole batch (group = image * num_classes + class), and each image
keeps its ``detections_per_img`` best-scoring survivors. The result equals maskrcnn-benchmark's
per-class loop (up to the order of equal scores).
"""
import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn.config.conventions import box_convention
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.modeling.utils import cat
from maskrcnn.structures.bounding_box import BoxList

__all__ = ["PostProcessor", "make_roi_box_post_processor"]


def _clip_rows(boxes, sizes, offset):
    """boxes: Tensor[R, K * 4] xyxy; sizes: Tensor[R, 2] (width, height) of each row's image.
    Clamps x into [0, W - offset] and y into [0, H - offset] (offset 1 = legacy convention)."""
    num_rows, columns = boxes.shape
    boxes = boxes.reshape(num_rows, columns // 4, 2, 2)  # [R, K, corner, (x, y)]
    upper = (sizes.to(boxes.dtype) - offset)[:, None, None, :]
    boxes = torch.min(boxes.clamp(min=0), upper)
    return boxes.reshape(num_rows, columns)


class PostProcessor(nn.Module):
    """
    Arguments:
        score_thresh (float): candidates need a class score > score_thresh.
        nms (float): IoU threshold of the per-class NMS (<= 0: no NMS).
        detections_per_img (int): detections kept per image, best first (<= 0: all).
        box_coder (BoxCoder): decodes the deltas (default weights (10, 10, 5, 5)).
        cls_agnostic_bbox_reg (bool): box_regression has 2 classes; the object deltas
            (columns 4..7) serve every class.
        bbox_aug_enabled (bool): test-time augmentation mode: return, per image, every
            (RoI, class) box with its score, unfiltered (fields "scores"; the TTA merge filters
            later). Built models start with it off whatever TEST.BBOX_AUG.ENABLED says, so their
            plain forward gives normal detections; engine/bbox_aug.py switches it on for the
            duration of its views (``unfiltered_box_detections``).
        min_size (float): candidates whose clipped box has a side below it are dropped before
            the NMS (torchvision: 1e-2); 0 keeps them all (maskrcnn-benchmark).
    The box convention (clipping, NMS) is the proposals' ``legacy_plus_one``.
    """

    def __init__(self, score_thresh=0.05, nms=0.5, detections_per_img=100, box_coder=None,
                 cls_agnostic_bbox_reg=False, bbox_aug_enabled=False, min_size=0.0):
        super().__init__()
        self.min_size = min_size
        self.score_thresh = score_thresh
        self.nms = nms
        self.detections_per_img = detections_per_img
        self.box_coder = box_coder if box_coder is not None else BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self.bbox_aug_enabled = bbox_aug_enabled

    def forward(self, x, boxes):
        """
        Arguments:
            x: (class_logits Tensor[R, C], box_regression Tensor[R, 4 * C] or [R, 8] when
                class-agnostic), R = the RoIs of all images concatenated.
            boxes: list[BoxList], the RoIs of each image.
        Returns:
            list[BoxList], one per image (xyxy, the image's size): fields "scores" Tensor[D] and
            "labels" Tensor[D] int64 (classes 1..C-1), sorted by decreasing score.
        """
        class_logits, box_regression = x
        if len(boxes) == 0:
            return []
        boxes = [b.convert("xyxy") for b in boxes]
        boxes_per_image = [b.bbox.shape[0] for b in boxes]  # (symbolic under torch.export)
        num_rois = sum(boxes_per_image)
        if class_logits.shape[0] != num_rois or box_regression.shape[0] != num_rois:
            raise ValueError(
                f"box post-processor: {num_rois} RoIs but class_logits has {class_logits.shape[0]} rows "
                f"and box_regression {box_regression.shape[0]}"
            )
        legacy_plus_one = boxes[0].legacy_plus_one
        num_classes = class_logits.shape[1]
        device = class_logits.device

        # scores and coordinates in at least float32 (bfloat16 boxes step by several pixels)
        compute_dtype = torch.promote_types(box_regression.dtype, torch.float32)
        class_prob = F.softmax(class_logits.to(compute_dtype), -1)
        box_regression = box_regression.to(compute_dtype)
        if self.cls_agnostic_bbox_reg:
            box_regression = box_regression[:, -4:]
        concat_boxes = cat([b.bbox for b in boxes], dim=0)
        image_of_roi = torch.repeat_interleave(
            torch.arange(len(boxes), device=device), torch.tensor(boxes_per_image, device=device)
        )
        image_sizes = torch.tensor([b.size for b in boxes], device=device)  # [N, (w, h)]
        offset = 1 if legacy_plus_one else 0

        if self.bbox_aug_enabled:
            decoded = self.box_coder.decode(box_regression, concat_boxes)
            if self.cls_agnostic_bbox_reg:
                decoded = decoded.repeat(1, num_classes)
            decoded = _clip_rows(decoded, image_sizes[image_of_roi], offset)
            return self._unfiltered(boxes, decoded, class_prob, boxes_per_image)

        # only the (RoI, class) pairs above the threshold are decoded, clipped and NMSed
        candidates = class_prob[:, 1:] > self.score_thresh  # background column excluded
        roi_idx, class_idx = torch.nonzero(candidates, as_tuple=True)
        class_idx = class_idx + 1
        scores = class_prob[roi_idx, class_idx]
        deltas = box_regression.reshape(num_rois, box_regression.shape[1] // 4, 4)
        deltas = deltas[roi_idx, 0 if self.cls_agnostic_bbox_reg else class_idx]  # [M, 4]
        cand_images = image_of_roi[roi_idx]
        cand_boxes = self.box_coder.decode(deltas, concat_boxes[roi_idx])
        cand_boxes = _clip_rows(cand_boxes, image_sizes[cand_images], offset)
        if self.min_size > 0:
            sides = cand_boxes[:, 2:] - cand_boxes[:, :2] + offset
            large = torch.nonzero((sides >= self.min_size).all(dim=1)).squeeze(1)
            cand_boxes, scores, class_idx, cand_images = (
                t[large] for t in (cand_boxes, scores, class_idx, cand_images)
            )

        if self.nms > 0:  # (empty inputs are fine; torch.export cannot branch on the count)
            from maskrcnn.layers import batched_nms

            groups = cand_images * num_classes + class_idx
            keep = batched_nms(cand_boxes, scores, groups, self.nms, legacy_plus_one=legacy_plus_one)
        else:
            keep = torch.argsort(scores, descending=True)  # same order batched_nms returns

        kept_images = cand_images[keep]
        results = []
        for image_index, proposals in enumerate(boxes):
            keep_i = keep[kept_images == image_index]  # by decreasing score
            if self.detections_per_img > 0:
                keep_i = keep_i[: self.detections_per_img]
            boxlist = BoxList(cand_boxes[keep_i], proposals.size, mode="xyxy", legacy_plus_one=legacy_plus_one)
            boxlist.add_field("scores", scores[keep_i])
            boxlist.add_field("labels", class_idx[keep_i])
            results.append(boxlist)
        return results

    def _unfiltered(self, boxes, decoded, class_prob, boxes_per_image):
        """Per image: all R_i * C (RoI, class) boxes, with field "scores" (test-time augmentation)."""
        results = []
        for proposals, boxes_i, prob_i in zip(
            boxes, decoded.split(boxes_per_image, dim=0), class_prob.split(boxes_per_image, dim=0)
        ):
            boxlist = BoxList(boxes_i.reshape(-1, 4), proposals.size, mode="xyxy",
                              legacy_plus_one=proposals.legacy_plus_one)
            boxlist.add_field("scores", prob_i.reshape(-1))
            results.append(boxlist)
        return results


def make_roi_box_post_processor(cfg):
    """PostProcessor from MODEL.ROI_HEADS (SCORE_THRESH, NMS, DETECTIONS_PER_IMG,
    BBOX_REG_WEIGHTS, MIN_SIZE), MODEL.CLS_AGNOSTIC_BBOX_REG and the box convention.

    TEST.BBOX_AUG.ENABLED does not enter (unlike maskrcnn-benchmark, whose model then returned
    unfiltered boxes from every forward and its mask head ran on all of them): the TTA mode is
    switched on only while engine/bbox_aug.py runs its views."""
    heads = cfg.MODEL.ROI_HEADS
    box_coder = BoxCoder(weights=heads.BBOX_REG_WEIGHTS, legacy_plus_one=box_convention(cfg).legacy_plus_one)
    return PostProcessor(
        score_thresh=heads.SCORE_THRESH,
        nms=heads.NMS,
        detections_per_img=heads.DETECTIONS_PER_IMG,
        box_coder=box_coder,
        cls_agnostic_bbox_reg=cfg.MODEL.CLS_AGNOSTIC_BBOX_REG,
        min_size=heads.MIN_SIZE,
    )
