// Schema of torch.ops.maskrcnn.heatmaps_to_keypoints. Kernels: cpu/heatmaps_to_keypoints_cpu.cpp,
// cuda/heatmaps_to_keypoints_cuda.cu; the geometry and weights they share are in
// heatmaps_to_keypoints_common.h.
//
// heatmaps_to_keypoints: maps Tensor[N, K, H, W] (heatmap logits), rois Tensor[N, 4] (x1, y1, x2, y2)
// -> (xy Tensor[N, K, 3] of (x, y, 1), scores Tensor[N, K]), float64 for float64 maps and float32
// otherwise. Keypoint k of detection n is the arg-max of its heatmap resized bicubically
// (F.interpolate, align_corners=False) to the box's ceil(h) x ceil(w) pixels (w = max(x2 - x1, 1),
// h = max(y2 - y1, 1)), mapped to the image at the centre of that pixel,
// x = x1 + (column + 0.5) * w / ceil(w); its score is the resized value there. The resized map is
// never stored: each value is computed from precomputed separable weights, and only one buffer of
// H x ceil(w) values (the heatmap's rows resized horizontally) lives per task. The arg-max is the
// first maximum in row-major order (NaN counts as the maximum), as torch.argmax.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def("heatmaps_to_keypoints(Tensor maps, Tensor rois) -> (Tensor, Tensor)");
}
