"""Operations on BoxLists: NMS, small-box removal, pairwise IoU, concatenation."""
import torch

from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import pixel_offset, resolve_legacy_plus_one


def boxlist_nms(boxlist, nms_thresh, max_proposals=-1, score_field="scores"):
    """Non-maximum suppression over a BoxList, ranked by the field ``score_field``.

    Arguments:
        boxlist (BoxList): with a Tensor[N] field ``score_field``.
        nms_thresh (float): IoU above which the lower-scored box is dropped; <= 0 keeps everything.
        max_proposals (int): when > 0, keep at most this many boxes (the highest scored).
    Returns:
        BoxList: the kept boxes in decreasing score order, in the input's mode.
    """
    if nms_thresh <= 0:
        return boxlist
    from maskrcnn.layers import nms as _box_nms  # compiled op; imported here so the rest works without it

    mode = boxlist.mode
    boxlist = boxlist.convert("xyxy")
    scores = boxlist.get_field(score_field)
    keep = _box_nms(boxlist.bbox, scores, nms_thresh, legacy_plus_one=boxlist.legacy_plus_one)
    if max_proposals > 0:
        keep = keep[:max_proposals]
    return boxlist[keep].convert(mode)


def remove_small_boxes(boxlist, min_size):
    """Keep only boxes whose width and height (in the BoxList's convention) are >= ``min_size``."""
    _, _, widths, heights = boxlist.convert("xywh").bbox.unbind(dim=1)
    keep = ((widths >= min_size) & (heights >= min_size)).nonzero().squeeze(1)
    return boxlist[keep]


def boxlist_iou(boxlist1, boxlist2):
    """Pairwise intersection over union.

    Arguments:
        boxlist1 (BoxList): N boxes; boxlist2 (BoxList): M boxes, same image size and convention.
    Returns:
        Tensor[N, M]: IoU, with widths x2 - x1 + 1 under the legacy convention (x2 - x1 modern).
    """
    if boxlist1.size != boxlist2.size:
        raise RuntimeError(
            f"boxlist_iou: boxlists should have the same image size, got {boxlist1.size} and {boxlist2.size}"
        )
    if boxlist1.legacy_plus_one != boxlist2.legacy_plus_one:
        raise ValueError(
            "boxlist_iou: boxlists use different box conventions "
            f"(legacy_plus_one={boxlist1.legacy_plus_one} and {boxlist2.legacy_plus_one})"
        )
    return pairwise_iou(
        boxlist1.convert("xyxy").bbox, boxlist2.convert("xyxy").bbox, legacy_plus_one=boxlist1.legacy_plus_one
    )


def pairwise_iou(boxes1, boxes2, legacy_plus_one=None):
    """Intersection over union of every box of ``boxes1`` with every box of ``boxes2``, broadcast
    over any leading (batch) dimensions.

    Arguments:
        boxes1: Tensor[..., N, 4] (x1, y1, x2, y2), e.g. [N, 4] or [B, G, 4].
        boxes2: Tensor[..., M, 4] (x1, y1, x2, y2), e.g. [M, 4] or [B, M, 4].
        legacy_plus_one (bool or None): widths x2 - x1 + 1 (legacy) or x2 - x1 (modern); None
            is the process-wide default (``resolve_legacy_plus_one``).
    Returns:
        Tensor[..., N, M]: IoU (the leading dimensions broadcast). Batched calls give, image by
        image, exactly the values of the unbatched ones (the same elementwise operations).
    """
    if boxes1.shape[-1:] != (4,) or boxes2.shape[-1:] != (4,) or boxes1.dim() < 2 or boxes2.dim() < 2:
        raise ValueError(
            f"pairwise_iou: boxes must be [..., N, 4], got {list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    offset = pixel_offset(resolve_legacy_plus_one(legacy_plus_one))
    area1 = (boxes1[..., 2] - boxes1[..., 0] + offset) * (boxes1[..., 3] - boxes1[..., 1] + offset)  # [..., N]
    area2 = (boxes2[..., 2] - boxes2[..., 0] + offset) * (boxes2[..., 3] - boxes2[..., 1] + offset)  # [..., M]
    top_left = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])  # [..., N, M, 2]
    bottom_right = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])  # [..., N, M, 2]
    overlap = (bottom_right - top_left + offset).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    return inter / (area1[..., :, None] + area2[..., None, :] - inter)


def _cat(tensors, dim=0):
    """torch.cat that returns a lone tensor without copying it."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"_cat expects a list or tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


def _cat_field(name, values):
    if all(isinstance(value, torch.Tensor) for value in values):
        return _cat(values, dim=0)
    kind = type(values[0])
    if all(type(value) is kind for value in values) and callable(getattr(kind, "cat", None)):
        return kind.cat(values)
    kinds = sorted({type(value).__name__ for value in values})
    raise TypeError(f"cat_boxlist: field {name!r} cannot be concatenated (types {kinds})")


def cat_boxlist(bboxes):
    """Concatenate BoxLists of the same image size, mode, convention and fields into one.

    Tensor fields are concatenated along dim 0; structure fields (SegmentationMask, Keypoints)
    through their ``cat`` class method.
    """
    if not isinstance(bboxes, (list, tuple)) or len(bboxes) == 0:
        raise ValueError("cat_boxlist: bboxes must be a non-empty list of BoxList")
    for position, bbox in enumerate(bboxes):
        if not isinstance(bbox, BoxList):
            raise TypeError(f"cat_boxlist: bboxes[{position}] is a {type(bbox).__name__}, not a BoxList")
    first = bboxes[0]
    fields = set(first.fields())
    for position, bbox in enumerate(bboxes[1:], start=1):
        if bbox.size != first.size:
            raise ValueError(f"cat_boxlist: image size {bbox.size} of bboxes[{position}] differs from {first.size}")
        if bbox.mode != first.mode:
            raise ValueError(f"cat_boxlist: mode {bbox.mode!r} of bboxes[{position}] differs from {first.mode!r}")
        if bbox.legacy_plus_one != first.legacy_plus_one:
            raise ValueError(f"cat_boxlist: bboxes[{position}] uses a different box convention")
        if set(bbox.fields()) != fields:
            raise ValueError(
                f"cat_boxlist: fields {sorted(bbox.fields())} of bboxes[{position}] differ from {sorted(fields)}"
            )
    result = BoxList(
        _cat([bbox.bbox for bbox in bboxes], dim=0), first.size, first.mode, legacy_plus_one=first.legacy_plus_one
    )
    for field in first.fields():
        result.add_field(field, _cat_field(field, [bbox.get_field(field) for bbox in bboxes]))
    return result
