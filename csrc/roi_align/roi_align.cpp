// Schemas of RoIAlign. Kernels: cpu/roi_align_cpu.cpp, cuda/roi_align_cuda.cu.
//
// roi_align: input Tensor[N, C, H, W], rois Tensor[K, 5] (batch_index, x1, y1, x2, y2) in image
// coordinates -> Tensor[K, C, pooled_height, pooled_width]. Each output bin averages bilinear samples
// on a grid of sampling_ratio x sampling_ratio points (adaptive, ceil(roi_size / pooled_size), when
// sampling_ratio <= 0). aligned=false is maskrcnn-benchmark's RoIAlign, aligned=true Detectron2's
// ROIAlignV2 (half-pixel shift).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
      "int sampling_ratio, bool aligned) -> Tensor");
}
