"""Non-maximum suppression (compiled ops `torch.ops.maskrcnn.nms` / `batched_nms`).

A kept box suppresses every lower-scored box that intersects it with IoU > the threshold. Boxes are
(x1, y1, x2, y2); `legacy_plus_one=True` (maskrcnn-benchmark's convention, the default here) measures
widths as x2 - x1 + 1, False as x2 - x1 (torchvision / Detectron2). Results are int64 indices into
the input, by decreasing score (equal scores: lower index first).
"""
import torch

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["nms", "batched_nms"]


def nms(boxes, scores, nms_thresh, legacy_plus_one=True):
    """Greedy NMS.

    boxes: Tensor[N, 4] (x1, y1, x2, y2), scores: Tensor[N], nms_thresh: IoU above which a box is
    suppressed. Returns Tensor[K] int64: the kept indices, by decreasing score.
    """
    return torch.ops.maskrcnn.nms(boxes, scores, float(nms_thresh), bool(legacy_plus_one))


def batched_nms(boxes, scores, idxs, iou_threshold, legacy_plus_one=True):
    """NMS per category in one call: boxes only suppress boxes with the same `idxs` value.

    boxes: Tensor[N, 4], scores: Tensor[N], idxs: Tensor[N] integer (e.g. class labels).
    Returns Tensor[K] int64: the kept indices, by decreasing score over all categories.
    """
    return torch.ops.maskrcnn.batched_nms(boxes, scores, idxs, float(iou_threshold), bool(legacy_plus_one))


def _check_fake_inputs(op, boxes, scores):
    torch._check(boxes.dim() == 2 and boxes.size(1) == 4,
                 lambda: f"{op}: boxes must be a 2-D tensor of shape [N, 4], got {list(boxes.shape)}")
    torch._check(scores.dim() == 1, lambda: f"{op}: scores must be a 1-D tensor of shape [N], got {list(scores.shape)}")
    torch._check(boxes.size(0) == scores.size(0),
                 lambda: f"{op}: boxes and scores must have the same number of rows")


def _kept_indices_like(boxes):
    # The number of kept boxes depends on the data: an unbacked size, at most N.
    num_kept = torch.library.get_ctx().new_dynamic_size()
    torch._check(num_kept <= boxes.size(0))
    return boxes.new_empty((num_kept,), dtype=torch.int64)


@torch.library.register_fake("maskrcnn::nms")
def _nms_fake(boxes, scores, iou_threshold, legacy_plus_one=False):
    _check_fake_inputs("nms", boxes, scores)
    return _kept_indices_like(boxes)


@torch.library.register_fake("maskrcnn::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold, legacy_plus_one=False):
    _check_fake_inputs("batched_nms", boxes, scores)
    torch._check(idxs.dim() == 1 and idxs.size(0) == boxes.size(0),
                 lambda: "batched_nms: idxs must be a 1-D tensor of shape [N] matching boxes")
    return _kept_indices_like(boxes)


# Under autocast, boxes and scores go to the kernels in float32 (reduced precision changes which
# boxes survive).
for _op in ("maskrcnn::nms", "maskrcnn::batched_nms"):
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast(_op, _device, torch.float32)
