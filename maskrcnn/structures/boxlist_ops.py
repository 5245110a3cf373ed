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


# pairwise_iou on the CPU works through [..., N, M] in blocks of about this many elements, so that its
# temporaries stay small: at RPN sizes (10 x 240k per image) allocating (page-faulting) fresh
# full-size temporaries cost more than the arithmetic (2.5x the time for 2 images)
_CPU_IOU_BLOCK = 1 << 18


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
    rows = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2]).numel() * boxes1.shape[-2]
    num = boxes2.shape[-2]
    needs_grad = torch.is_grad_enabled() and (boxes1.requires_grad or boxes2.requires_grad)
    if boxes2.device.type != "cpu" or needs_grad or rows * num <= 2 * _CPU_IOU_BLOCK:
        return _iou_block(boxes1, boxes2, offset)
    step = max(1, _CPU_IOU_BLOCK // max(rows, 1))
    first = _iou_block(boxes1, boxes2[..., :step, :], offset)
    result = first.new_empty(first.shape[:-1] + (num,))
    result[..., :step] = first
    for start in range(step, num, step):
        result[..., start:start + step] = _iou_block(boxes1, boxes2[..., start:start + step, :], offset)
    return result


def _iou_block(boxes1, boxes2, offset):
    """``pairwise_iou`` of Tensor[..., N, 4] and Tensor[..., M, 4] in one piece (autograd works)."""
    x1a, y1a, x2a, y2a = (c[..., :, None] for c in boxes1.unbind(-1))  # [..., N, 1] each
    x1b, y1b, x2b, y2b = (c.contiguous()[..., None, :] for c in boxes2.unbind(-1))  # [..., 1, M] each
    area1 = (x2a - x1a + offset) * (y2a - y1a + offset)  # [..., N, 1]
    area2 = (x2b - x1b + offset) * (y2b - y1b + offset)  # [..., 1, M]
    # in place on the [..., N, M] temporaries: fewer of them
    width = torch.min(x2a, x2b).sub_(torch.max(x1a, x1b)).add_(offset).clamp_(min=0)
    height = torch.min(y2a, y2b).sub_(torch.max(y1a, y1b)).add_(offset).clamp_(min=0)
    inter = width.mul_(height)
    return inter.div_((area1 + area2).sub_(inter))


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
