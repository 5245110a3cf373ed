"""RetinaNet's post-processing: per level the best-scored (anchor, class) pairs over a threshold
are decoded into boxes; the levels are merged and a per-class NMS and a per-image cap follow."""
import math

import torch

from maskrcnn.config.conventions import box_convention
from maskrcnn.layers import batched_nms
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import cat_boxlist

from ..inference import RPNPostProcessor, _top_n_per_image

__all__ = ["RetinaNetPostProcessor", "make_retinanet_postprocessor", "RETINANET_BOX_CODER_WEIGHTS"]

# (wx, wy, ww, wh) of RetinaNet's box coder, as in maskrcnn-benchmark / Detectron
RETINANET_BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)

# how far below logit(threshold) logits still become candidates before the exact sigmoid test: more
# than the rounding of a bfloat16 / half comparison near |logit| <= 10 (spacing <= 2 ** -4)
_LOGIT_MARGIN = 0.1


def _split_by_image(image_idx, num_images, *tensors):
    """Split rows grouped by image (ascending ``image_idx``) into per-image chunks."""
    counts = torch.bincount(image_idx, minlength=num_images).tolist()
    return [t.split(counts) for t in tensors]


def _top_n_of_grouped(scores, image_idx, num_images, top_n):
    """Indices of the ``top_n`` best-scored rows of each image, grouped by image and in decreasing
    score order within it, for rows already grouped by image (ascending ``image_idx``, as
    ``nonzero`` returns them). One ``topk`` over an [images, largest group] padded copy: linear in
    the number of rows, where a full sort of many candidates (an untrained head) is not."""
    counts = torch.bincount(image_idx, minlength=num_images)
    largest = int(counts.max()) if image_idx.numel() > 0 else 0
    k = min(top_n, largest)
    if k == 0:
        return image_idx.new_zeros(0)
    starts = torch.cumsum(counts, dim=0) - counts
    rank = torch.arange(image_idx.numel(), device=scores.device) - starts[image_idx]
    padded = scores.new_full((num_images, largest), -math.inf)
    padded[image_idx, rank] = scores
    top_rank = padded.topk(k, dim=1, sorted=True).indices  # [num_images, k]
    valid = top_rank < counts[:, None]
    return (starts[:, None] + top_rank)[valid]


class RetinaNetPostProcessor(RPNPostProcessor):
    """Turns RetinaNet's class logits and box deltas into detections.

    Arguments:
        pre_nms_thresh (float): (anchor, class) pairs need a sigmoid score above it.
        pre_nms_top_n (int): per image and level, at most this many pairs (the best) are kept.
        nms_thresh (float): IoU of the per-class NMS (<= 0: no NMS).
        fpn_post_nms_top_n (int): detections kept per image after NMS, the best over all classes
            (TEST.DETECTIONS_PER_IMG; <= 0: no cap).
        min_size (float): boxes with a side below it are dropped (0 in maskrcnn-benchmark).
        num_classes (int): MODEL.RETINANET.NUM_CLASSES, background included (labels 1..C-1).
        box_coder (BoxCoder): decodes the deltas (default weights 10, 10, 5, 5, legacy).

    Everything is vectorised over the images: one pass per level, and one batched NMS for the
    whole batch (groups = (image, class) pairs, so no box suppresses one of another class or
    image). Scores and boxes are computed in at least float32 (bfloat16 heads under autocast).
    The box convention (clipping, sizes, NMS) is the anchors'.

    Returns per image a BoxList (xyxy) with fields ``scores`` (Tensor[D]) and ``labels``
    (Tensor[D] int64), in decreasing score order.
    """

    def __init__(self, pre_nms_thresh, pre_nms_top_n, nms_thresh, fpn_post_nms_top_n, min_size, num_classes,
                 box_coder=None):
        if box_coder is None:
            box_coder = BoxCoder(weights=RETINANET_BOX_CODER_WEIGHTS)
        super().__init__(pre_nms_top_n, 0, nms_thresh, min_size, box_coder=box_coder,
                         fpn_post_nms_top_n=fpn_post_nms_top_n)
        if num_classes < 2:
            raise ValueError(f"RetinaNetPostProcessor: num_classes counts the background and must be >= 2, got {num_classes}")
        self.pre_nms_thresh = pre_nms_thresh
        self.num_classes = num_classes

    def add_gt_proposals(self, proposals, targets):
        """Not used by RetinaNet: detections never include the ground truth."""
        return proposals

    def forward_for_single_feature_map(self, anchors, box_cls, box_regression):
        """One level, all images at once.

        Arguments:
            anchors: list (images) of BoxList, this level's anchors (H * W * A each).
            box_cls: Tensor[N, A * C, H, W] logits; box_regression: Tensor[N, A * 4, H, W].
        Returns:
            list (images) of BoxList with fields ``scores`` and ``labels`` (1..C), the at most
            pre_nms_top_n best pairs above pre_nms_thresh, clipped, small boxes removed.
        """
        N, _, H, W = box_cls.shape
        A = box_regression.shape[1] // 4
        C = box_cls.shape[1] // A
        legacy_plus_one = anchors[0].legacy_plus_one
        offset = 1 if legacy_plus_one else 0
        compute_dtype = torch.promote_types(box_cls.dtype, torch.float32)

        # Candidates straight from the logits in the head's layout (n, a, c, y, x): no sigmoid and
        # no permuted copy of the N * A * C * H * W scores. sigmoid(x) > t <=> x > logit(t); the
        # comparison keeps a margin (it may run in bfloat16) and the exact test follows on the few
        # candidates, in compute_dtype, as maskrcnn-benchmark's sigmoid-then-threshold.
        flat_logits = box_cls.reshape(N, A * C * H * W)
        candidates = self._candidate_mask(flat_logits)
        image_idx, position = candidates.nonzero().unbind(dim=1)
        candidate_scores = flat_logits[image_idx, position].to(compute_dtype).sigmoid()
        above = torch.nonzero(candidate_scores > self.pre_nms_thresh).squeeze(1)
        image_idx, position, candidate_scores = image_idx[above], position[above], candidate_scores[above]

        best = _top_n_of_grouped(candidate_scores, image_idx, N, self.pre_nms_top_n)
        image_idx, position, candidate_scores = image_idx[best], position[best], candidate_scores[best]
        location = position % (H * W)  # y * W + x
        class_idx = (position // (H * W)) % C
        anchor_idx = position // (H * W * C)
        anchor_row = location * A + anchor_idx  # the anchor's row, as permute_and_flatten orders them

        deltas = box_regression.reshape(N, A, 4, H * W)[image_idx, anchor_idx, :, location]  # [K, 4]
        first = anchors[0].bbox
        if all(a.bbox is first for a in anchors):  # AnchorGenerator shares one grid between images
            selected_anchors = first[anchor_row]
        else:
            selected_anchors = torch.stack([a.bbox for a in anchors], dim=0)[image_idx, anchor_row]
        boxes = self.box_coder.decode(deltas.to(compute_dtype), selected_anchors.reshape(-1, 4))

        # clip to each image ([0, W - 1] legacy, [0, W] modern) as BoxList.clip_to_image
        sizes = torch.tensor([a.size for a in anchors], dtype=boxes.dtype, device=boxes.device)  # [N, 2] (W, H)
        upper = (sizes - offset).repeat(1, 2)[image_idx]  # [K, 4]
        boxes = torch.minimum(boxes.clamp(min=0), upper)
        # remove_small_boxes
        widths = boxes[:, 2] - boxes[:, 0] + offset
        heights = boxes[:, 3] - boxes[:, 1] + offset
        keep = (widths >= self.min_size) & (heights >= self.min_size)

        per_image = _split_by_image(image_idx[keep], N, boxes[keep], candidate_scores[keep], class_idx[keep] + 1)
        results = []
        for image_boxes, image_scores, image_labels, image_anchors in zip(*per_image, anchors):
            boxlist = BoxList(image_boxes, image_anchors.size, mode="xyxy", legacy_plus_one=legacy_plus_one)
            boxlist.add_field("labels", image_labels)
            boxlist.add_field("scores", image_scores)
            results.append(boxlist)
        return results

    def _candidate_mask(self, logits):
        """Bool mask (same shape as ``logits``), a superset of sigmoid(logits) > pre_nms_thresh."""
        threshold = self.pre_nms_thresh
        if threshold < 0:
            return torch.ones_like(logits, dtype=torch.bool)
        if threshold >= 1:
            return torch.zeros_like(logits, dtype=torch.bool)
        logit = -math.inf if threshold == 0 else math.log(threshold / (1 - threshold))
        return logits > logit - _LOGIT_MARGIN

    def forward(self, anchors, box_cls, box_regression, targets=None):
        """
        Arguments:
            anchors: list (images) of list (levels) of BoxList.
            box_cls: list (levels) of Tensor[N, A * C, H_l, W_l].
            box_regression: list (levels) of Tensor[N, A * 4, H_l, W_l].
            targets: ignored (maskrcnn-benchmark's signature).
        Returns:
            list (images) of BoxList with fields ``scores`` and ``labels``.
        """
        if len(anchors) == 0:
            return []
        if len(box_cls) != len(box_regression) or len(box_cls) != len(anchors[0]):
            raise ValueError(
                f"RetinaNetPostProcessor: need as many box_cls ({len(box_cls)}) and box_regression "
                f"({len(box_regression)}) levels as anchor levels ({len(anchors[0])})"
            )
        sampled_boxes = [
            self.forward_for_single_feature_map(list(a), o, b)
            for a, o, b in zip(zip(*anchors), box_cls, box_regression)
        ]
        boxlists = [cat_boxlist(list(per_image)) for per_image in zip(*sampled_boxes)]
        return self.select_over_all_levels(boxlists)

    def select_over_all_levels(self, boxlists):
        """Per-class NMS and the per-image cap of fpn_post_nms_top_n detections.

        boxlists: list (images) of BoxList with fields ``scores`` and ``labels``. One batched NMS
        call covers the whole batch (group = image * num_classes + label).
        """
        num_images = len(boxlists)
        if num_images == 0:
            return []
        legacy_plus_one = boxlists[0].legacy_plus_one
        boxes = torch.cat([b.bbox for b in boxlists], dim=0)
        scores = torch.cat([b.get_field("scores") for b in boxlists], dim=0)
        labels = torch.cat([b.get_field("labels") for b in boxlists], dim=0)
        counts = torch.tensor([len(b) for b in boxlists], device=boxes.device)
        image_idx = torch.repeat_interleave(torch.arange(num_images, device=boxes.device), counts)

        if self.nms_thresh > 0 and boxes.numel() > 0:
            groups = image_idx * self.num_classes + labels
            keep = batched_nms(boxes, scores, groups, self.nms_thresh, legacy_plus_one=legacy_plus_one)
        else:
            keep = torch.arange(boxes.shape[0], device=boxes.device)
        # per image, by decreasing score, at most fpn_post_nms_top_n (all when <= 0)
        top_n = self.fpn_post_nms_top_n if self.fpn_post_nms_top_n > 0 else boxes.shape[0] + 1
        keep = keep[_top_n_per_image(scores[keep], image_idx[keep], num_images, top_n)]

        per_image = _split_by_image(image_idx[keep], num_images, boxes[keep], scores[keep], labels[keep])
        results = []
        for image_boxes, image_scores, image_labels, source in zip(*per_image, boxlists):
            result = BoxList(image_boxes, source.size, mode="xyxy", legacy_plus_one=legacy_plus_one)
            result.add_field("scores", image_scores)
            result.add_field("labels", image_labels)
            results.append(result)
        return results


def make_retinanet_postprocessor(config, rpn_box_coder, is_train):
    """RetinaNetPostProcessor from MODEL.RETINANET.{INFERENCE_TH, PRE_NMS_TOP_N, NMS_TH, NUM_CLASSES}
    and TEST.DETECTIONS_PER_IMG (min_size 0, as maskrcnn-benchmark). ``is_train`` is unused: RetinaNet
    only post-processes in eval."""
    retina = config.MODEL.RETINANET
    if rpn_box_coder is None:
        rpn_box_coder = BoxCoder(weights=RETINANET_BOX_CODER_WEIGHTS, legacy_plus_one=box_convention(config).legacy_plus_one)
    return RetinaNetPostProcessor(
        pre_nms_thresh=retina.INFERENCE_TH,
        pre_nms_top_n=retina.PRE_NMS_TOP_N,
        nms_thresh=retina.NMS_TH,
        fpn_post_nms_top_n=config.TEST.DETECTIONS_PER_IMG,
        min_size=0,
        num_classes=retina.NUM_CLASSES,
        box_coder=rpn_box_coder,
    )
