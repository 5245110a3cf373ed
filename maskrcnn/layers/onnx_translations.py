"""ONNX translations of the compiled ops, for ``torch.onnx.export(..., dynamo=True)``.

``onnx_translation_table()`` maps ``torch.ops.maskrcnn.{nms, batched_nms, roi_align}`` to standard
ONNX operators (written with onnxscript, traced: Python values such as the IoU threshold are
attributes); pass it as ``custom_translation_table``. Needs the ``onnxscript`` package (imported
here only, on demand).

* ``nms`` -> ``NonMaxSuppression`` with one batch and one class. Under the legacy "+1" convention
  x2 and y2 are shifted by one pixel first, which makes ONNX's IoU (widths x2 - x1) equal to the
  legacy one (widths x2 - x1 + 1). ONNX runtimes return the kept boxes of a class by decreasing
  score, like the op.
* ``batched_nms`` -> ``NonMaxSuppression`` with one ONNX class per group: the score of box i in
  class g is its score when ``idxs[i] == g`` and -inf otherwise (dropped by the score threshold), so
  boxes never suppress across groups and coordinates are not offset (no precision lost at large
  coordinates). The kept boxes come class by class; they are then sorted by decreasing score.
  Memory: a [groups, N] score matrix (e.g. 81 classes x a few thousand candidates).
* ``roi_align`` -> ``RoiAlign`` (opset 16), mode "avg": ``aligned=False`` (the legacy RoIAlign, RoI
  size clamped to at least one feature pixel) is ``coordinate_transformation_mode="output_half_pixel"``,
  ``aligned=True`` (ROIAlignV2) is "half_pixel"; ``sampling_ratio <= 0`` (adaptive,
  ceil(roi_size / output_size) samples per bin) is ONNX's 0. These definitions are the same as the
  op's; onnxruntime's CPU kernel agrees with it to float rounding.

It also translates ``aten.sort.stable`` (``torch.sort(..., stable=True)``, which onnxscript lacks) to a
full-length ``TopK``: ONNX's sorted TopK puts the lower index first among equal values, i.e. it is
stable.

Equal scores may come out in another order than the op's (which puts the lower index first).
"""

__all__ = ["onnx_translation_table"]

_INT64_MAX = 0x7FFFFFFFFFFFFFFF
_FLOAT32_LOWEST = -3.4028234663852886e38


def _legacy_shifted(op, boxes, legacy_plus_one):
    """boxes Tensor[N, 4] with x2, y2 moved one pixel out when ``legacy_plus_one``."""
    if not legacy_plus_one:
        return boxes
    shift = op.CastLike(op.Constant(value_floats=[0.0, 0.0, 1.0, 1.0]), boxes)
    return op.Add(boxes, shift)


def _kept_box_indices(op, selected):
    """Column 2 (box index) of NonMaxSuppression's [K, 3] output, as Tensor[K] int64."""
    return op.Reshape(op.Slice(selected, [2], [3], [1]), op.Constant(value_ints=[-1]))


def _make_table():
    import torch
    from onnxscript import opset18 as op

    def nms(boxes, scores, iou_threshold: float, legacy_plus_one: bool = False):
        boxes = op.Unsqueeze(_legacy_shifted(op, boxes, legacy_plus_one), [0])  # [1, N, 4]
        scores = op.Unsqueeze(scores, [0, 1])  # [1, 1, N]
        selected = op.NonMaxSuppression(
            boxes, scores, op.Constant(value_int=_INT64_MAX), op.Constant(value_float=float(iou_threshold))
        )
        return _kept_box_indices(op, selected)

    def batched_nms(boxes, scores, idxs, iou_threshold: float, legacy_plus_one: bool = False):
        idxs = op.Cast(idxs, to=7)  # int64
        # groups 0 .. max(idxs) (at least one group, also for N = 0)
        num_groups = op.Add(op.ReduceMax(op.Concat(idxs, op.Constant(value_ints=[0]), axis=0), keepdims=1),
                            op.Constant(value_ints=[1]))
        groups = op.Range(op.Constant(value_int=0), op.Squeeze(num_groups, [0]), op.Constant(value_int=1))
        in_group = op.Equal(op.Unsqueeze(groups, [1]), op.Unsqueeze(idxs, [0]))  # [G, N]
        minus_inf = op.CastLike(op.Constant(value_float=float("-inf")), scores)
        scores_by_group = op.Where(in_group, op.Unsqueeze(scores, [0]), minus_inf)  # [G, N]
        selected = op.NonMaxSuppression(
            op.Unsqueeze(_legacy_shifted(op, boxes, legacy_plus_one), [0]),
            op.Unsqueeze(scores_by_group, [0]),
            op.Constant(value_int=_INT64_MAX),
            op.Constant(value_float=float(iou_threshold)),
            op.Constant(value_float=_FLOAT32_LOWEST),
        )
        kept = _kept_box_indices(op, selected)
        # by decreasing score over all groups, as the op returns them
        order = op.TopK(op.Gather(scores, kept, axis=0), op.Shape(kept), axis=0, largest=1, sorted=1)[1]
        return op.Gather(kept, order, axis=0)

    def roi_align(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
                  sampling_ratio: int, aligned: bool):
        batch_indices = op.Cast(op.Reshape(op.Slice(rois, [0], [1], [1]), op.Constant(value_ints=[-1])), to=7)
        return op.RoiAlign(
            input,
            op.Slice(rois, [1], [5], [1]),
            batch_indices,
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
            mode="avg",
            output_height=int(pooled_height),
            output_width=int(pooled_width),
            sampling_ratio=max(int(sampling_ratio), 0),
            spatial_scale=float(spatial_scale),
        )

    def sort_stable(self, stable=None, dim: int = -1, descending: bool = False):
        length = op.Slice(op.Shape(self), [dim], [dim + 1 if dim != -1 else _INT64_MAX], [0])
        values, indices = op.TopK(self, length, axis=dim, largest=1 if descending else 0, sorted=1)
        return values, indices

    ops = torch.ops.maskrcnn
    return {
        ops.nms.default: nms,
        ops.batched_nms.default: batched_nms,
        ops.roi_align.default: roi_align,
        torch.ops.aten.sort.stable: sort_stable,
    }


def onnx_translation_table():
    """dict {torch.ops.maskrcnn.<op>.default: onnxscript translation} for
    ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``."""
    import maskrcnn.layers  # noqa: F401  (loads the compiled ops and their fake kernels)

    try:
        import onnxscript  # noqa: F401
    except ImportError as error:  # pragma: no cover - onnxscript is pinned in requirements.txt
        raise ImportError("ONNX export needs the onnxscript package (pip install onnxscript)") from error
    return _make_table()
