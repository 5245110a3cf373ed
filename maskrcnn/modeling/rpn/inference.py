"""Turns the RPN's outputs into proposals: per level, keep the best-scored anchors, apply their
regression, clip, drop small boxes, NMS; then merge the levels (FPN) and, in training, append the
ground-truth boxes."""
import torch

from maskrcnn.config.conventions import box_convention
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import cat_boxlist

from .utils import permute_and_flatten

__all__ = ["RPNPostProcessor", "make_rpn_postprocessor"]


def _rank_within_image(sorted_image_idx, counts):
    """For rows already grouped by image (ascending), their position inside their image's group."""
    starts = torch.cumsum(counts, dim=0) - counts
    positions = torch.arange(sorted_image_idx.numel(), device=sorted_image_idx.device)
    return positions - starts[sorted_image_idx]


def _counts_per_image(image_idx, num_images):
    """list[int]: how many rows belong to each image (image_idx: Tensor[R] in [0, num_images)).
    A single image needs no bincount (and torch.export no data-dependent output size)."""
    if num_images == 1:
        return [image_idx.numel()]
    return torch.bincount(image_idx, minlength=num_images).tolist()


def _top_n_per_image(scores, image_idx, num_images, top_n):
    """Indices of the ``top_n`` best-scored rows of each image, grouped by image (ascending) and in
    decreasing score order inside an image; the same rows as a per-image ``topk``."""
    by_score = torch.sort(scores, descending=True, stable=True).indices
    by_image = torch.sort(image_idx[by_score], stable=True).indices
    order = by_score[by_image]
    counts = torch.bincount(image_idx, minlength=num_images)
    rank = _rank_within_image(image_idx[order], counts)
    return order[rank < top_n]


class RPNPostProcessor(torch.nn.Module):
    """Selects proposals from the RPN's objectness and box regression.

    Arguments:
        pre_nms_top_n (int): anchors kept per image and level, by objectness, before NMS.
        post_nms_top_n (int): proposals kept per image and level after NMS.
        nms_thresh (float): NMS IoU threshold (<= 0: no NMS and no post_nms_top_n cap).
        min_size (float): proposals with a side below it are dropped.
        box_coder (BoxCoder): decodes the regression (default: weights (1, 1, 1, 1), legacy).
        fpn_post_nms_top_n (int): with several levels, proposals kept after merging them
            (default: post_nms_top_n).
        fpn_post_nms_per_batch (bool): in training, apply fpn_post_nms_top_n to the whole batch
            (Detectron's behaviour, the default) instead of to each image; in eval it is always
            per image.

    The convention of the output BoxLists (clipping, small boxes, NMS) is the anchors' one.
    All images of a level go through one batched NMS (image index as the class). Subclasses
    (RetinaNet's) may override ``forward_for_single_feature_map`` and ``select_over_all_levels``,
    which take and return per-image BoxLists as in maskrcnn-benchmark.
    """

    def __init__(
        self,
        pre_nms_top_n,
        post_nms_top_n,
        nms_thresh,
        min_size,
        box_coder=None,
        fpn_post_nms_top_n=None,
        fpn_post_nms_per_batch=True,
    ):
        super().__init__()
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        if box_coder is None:
            box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.box_coder = box_coder
        if fpn_post_nms_top_n is None:
            fpn_post_nms_top_n = post_nms_top_n
        self.fpn_post_nms_top_n = fpn_post_nms_top_n
        self.fpn_post_nms_per_batch = fpn_post_nms_per_batch

    def add_gt_proposals(self, proposals, targets):
        """Append each image's ground-truth boxes (objectness 1) to its proposals."""
        gt_boxes = [target.copy_with_fields([]) for target in targets]
        for gt_box, proposal in zip(gt_boxes, proposals):
            gt_box.add_field("objectness", torch.ones(len(gt_box), dtype=proposal.bbox.dtype, device=proposal.bbox.device))
        return [
            cat_boxlist((proposal, gt_box.convert(proposal.mode).to(proposal.bbox.device)))
            for proposal, gt_box in zip(proposals, gt_boxes)
        ]

    def forward_for_single_feature_map(self, anchors, objectness, box_regression):
        """One level, all images at once (one batched NMS, image index as the class).

        Arguments:
            anchors: list (images) of BoxList, this level's anchors.
            objectness: Tensor[N, A, H, W]; box_regression: Tensor[N, A * 4, H, W].
        Returns:
            list (images) of BoxList with field ``objectness``, in decreasing score order.
        """
        device = objectness.device
        N, A, H, W = objectness.shape
        legacy_plus_one = anchors[0].legacy_plus_one
        offset = 1 if legacy_plus_one else 0

        # scores and boxes in at least float32: under autocast the head's outputs are half /
        # bfloat16, too coarse for pixel coordinates (bfloat16 steps by 4 px at x = 1000)
        compute_dtype = torch.promote_types(objectness.dtype, torch.float32)
        objectness = permute_and_flatten(objectness, N, A, 1, H, W).view(N, -1).to(compute_dtype).sigmoid()
        num_anchors = A * H * W
        pre_nms_top_n = min(self.pre_nms_top_n, num_anchors)
        scores, topk_idx = objectness.topk(pre_nms_top_n, dim=1, sorted=True)  # [N, k]

        batch_idx = torch.arange(N, device=device)[:, None]
        # gather the deltas of the selected anchors only: row (y * W + x) * A + a of the flattened
        # layout (permute_and_flatten) is channel block a at location y * W + x
        anchor_idx = topk_idx % A
        location_idx = topk_idx // A
        box_regression = box_regression.reshape(N, A, 4, H * W)[batch_idx, anchor_idx, :, location_idx]  # [N, k, 4]
        box_regression = box_regression.to(compute_dtype)
        first = anchors[0].bbox
        if all(a.bbox is first for a in anchors):  # AnchorGenerator shares one grid between images
            all_anchors = first[topk_idx]  # [N, k, 4]
        else:
            all_anchors = torch.stack([a.bbox for a in anchors], dim=0)[batch_idx, topk_idx]
        boxes = self.box_coder.decode(box_regression.reshape(-1, 4), all_anchors.reshape(-1, 4)).view(N, -1, 4)

        # clip to each image ([0, W - 1] legacy, [0, W] modern), as BoxList.clip_to_image
        sizes = torch.tensor([a.size for a in anchors], dtype=boxes.dtype, device=device)  # [N, 2] (W, H)
        upper = (sizes - offset).repeat(1, 2)[:, None, :]  # [N, 1, 4]
        boxes = torch.minimum(boxes.clamp(min=0), upper)

        image_idx = batch_idx.expand(N, pre_nms_top_n).reshape(-1)
        boxes = boxes.reshape(-1, 4)
        scores = scores.reshape(-1)

        # remove_small_boxes
        widths = boxes[:, 2] - boxes[:, 0] + offset
        heights = boxes[:, 3] - boxes[:, 1] + offset
        keep = torch.nonzero((widths >= self.min_size) & (heights >= self.min_size)).squeeze(1)
        # boxlist_nms: NMS, then the post_nms_top_n best of each image (both skipped when
        # nms_thresh <= 0; the rows are then already grouped by image and sorted by score). No
        # test on keep's size: the ops take empty inputs, and torch.export cannot branch on it.
        if self.nms_thresh > 0:
            from maskrcnn.layers import batched_nms

            kept = batched_nms(boxes[keep], scores[keep], image_idx[keep], self.nms_thresh, legacy_plus_one=legacy_plus_one)
            keep = keep[kept]
            keep = keep[_top_n_per_image(scores[keep], image_idx[keep], N, self.post_nms_top_n)]
        counts = _counts_per_image(image_idx[keep], N)
        result = []
        for image_boxes, image_scores, image_anchors in zip(boxes[keep].split(counts), scores[keep].split(counts), anchors):
            boxlist = BoxList(image_boxes, image_anchors.size, mode="xyxy", legacy_plus_one=legacy_plus_one)
            boxlist.add_field("objectness", image_scores)
            result.append(boxlist)
        return result

    def forward(self, anchors, objectness, box_regression, targets=None):
        """
        Arguments:
            anchors: list (images) of list (levels) of BoxList.
            objectness: list (levels) of Tensor[N, A, H, W].
            box_regression: list (levels) of Tensor[N, A * 4, H, W].
            targets: list (images) of BoxList; appended to the proposals in training.
        Returns:
            list (images) of BoxList (xyxy) with field ``objectness`` (sigmoid scores): per image
            the levels one after the other, then select_over_all_levels when there are several.
        """
        if len(anchors) == 0:
            return []
        num_levels = len(objectness)
        anchors_per_level = list(zip(*anchors))
        sampled_boxes = [
            self.forward_for_single_feature_map(list(a), o, b)
            for a, o, b in zip(anchors_per_level, objectness, box_regression)
        ]
        boxlists = [cat_boxlist(list(per_image)) for per_image in zip(*sampled_boxes)]
        if num_levels > 1:
            boxlists = self.select_over_all_levels(boxlists)
        if self.training and targets is not None:
            boxlists = self.add_gt_proposals(boxlists, targets)
        return boxlists

    def select_over_all_levels(self, boxlists):
        """Keep the fpn_post_nms_top_n best proposals after merging the levels.

        Per batch (training with fpn_post_nms_per_batch): the best of the whole batch, each image
        keeping its proposals in their original order. Otherwise the best of each image, in
        decreasing score order. Vectorised over the batch.
        """
        num_images = len(boxlists)
        objectness = torch.cat([boxlist.get_field("objectness") for boxlist in boxlists], dim=0)
        box_sizes = [boxlist.bbox.shape[0] for boxlist in boxlists]  # (symbolic under torch.export)
        if self.training and self.fpn_post_nms_per_batch:
            post_nms_top_n = min(self.fpn_post_nms_top_n, objectness.numel())
            best = torch.topk(objectness, post_nms_top_n, dim=0, sorted=True).indices
            mask = torch.zeros_like(objectness, dtype=torch.bool)
            mask[best] = True
            return [boxlist[image_mask] for boxlist, image_mask in zip(boxlists, mask.split(box_sizes))]
        sizes = torch.tensor(box_sizes, device=objectness.device)
        image_idx = torch.repeat_interleave(torch.arange(num_images, device=objectness.device), sizes)
        keep = _top_n_per_image(objectness, image_idx, num_images, self.fpn_post_nms_top_n)
        starts = torch.cumsum(sizes, dim=0) - sizes
        local = keep - starts[image_idx[keep]]
        counts = _counts_per_image(image_idx[keep], num_images)
        return [boxlist[idx] for boxlist, idx in zip(boxlists, local.split(counts))]


def make_rpn_postprocessor(config, rpn_box_coder, is_train):
    """RPNPostProcessor from MODEL.RPN.* (the _TRAIN or _TEST top-N values by ``is_train``)."""
    rpn = config.MODEL.RPN
    if is_train:
        pre_nms_top_n, post_nms_top_n = rpn.PRE_NMS_TOP_N_TRAIN, rpn.POST_NMS_TOP_N_TRAIN
        fpn_post_nms_top_n = rpn.FPN_POST_NMS_TOP_N_TRAIN
    else:
        pre_nms_top_n, post_nms_top_n = rpn.PRE_NMS_TOP_N_TEST, rpn.POST_NMS_TOP_N_TEST
        fpn_post_nms_top_n = rpn.FPN_POST_NMS_TOP_N_TEST
    if rpn_box_coder is None:
        rpn_box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0), legacy_plus_one=box_convention(config).legacy_plus_one)
    return RPNPostProcessor(
        pre_nms_top_n=pre_nms_top_n,
        post_nms_top_n=post_nms_top_n,
        nms_thresh=rpn.NMS_THRESH,
        min_size=rpn.MIN_SIZE,
        box_coder=rpn_box_coder,
        fpn_post_nms_top_n=fpn_post_nms_top_n,
        fpn_post_nms_per_batch=rpn.FPN_POST_NMS_PER_BATCH,
    )
