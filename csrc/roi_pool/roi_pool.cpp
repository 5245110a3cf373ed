// Schemas of RoIPool (Fast R-CNN max pooling). Kernels: cpu/roi_pool_cpu.cpp, cuda/roi_pool_cuda.cu.
//
// roi_pool: input Tensor[N, C, H, W], rois Tensor[K, 5] (batch_index, x1, y1, x2, y2) in image
// coordinates -> (output Tensor[K, C, pooled_height, pooled_width], argmax int32 Tensor of the same
// shape: the index h * W + w in the input plane of each maximum, -1 for an empty bin whose output is 0).
// RoI corners are rounded to feature pixels and the extent counts both ends (+1).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
      "-> (Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor");
}
