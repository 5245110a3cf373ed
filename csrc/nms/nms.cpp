// Non-maximum suppression: schemas of torch.ops.maskrcnn.nms and torch.ops.maskrcnn.batched_nms.
//
// Both return the indices (int64) of the kept boxes, by decreasing score; equal scores keep the
// lower index first. A kept box suppresses a later box when the two intersect and their IoU is
// strictly greater than iou_threshold. legacy_plus_one selects the Detectron "+1" pixel
// convention (width = x2 - x1 + 1) for areas and intersections. batched_nms only lets boxes with
// the same idx suppress each other (per-class NMS in one call).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold, bool legacy_plus_one=False) -> Tensor");
  m.def(
      "batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, "
      "bool legacy_plus_one=False) -> Tensor");
}
