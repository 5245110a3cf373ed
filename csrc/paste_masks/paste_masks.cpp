// Schema of torch.ops.maskrcnn.paste_masks. Kernels: cpu/paste_masks_cpu.cpp, cuda/paste_masks_cuda.cu;
// the geometry they share is in paste_masks_common.h.
//
// paste_masks: masks Tensor[N, 1, Mh, Mw] (probabilities), boxes Tensor[N, 4] (x1, y1, x2, y2) ->
// Tensor[N, 1, image_height, image_width]: each mask, padded by `padding` zero cells, resampled
// bilinearly into its box (enlarged by the padding) and zero elsewhere. threshold >= 0 gives uint8
// (value > threshold); threshold < 0 gives the values themselves in the masks' dtype.
// legacy_plus_one selects maskrcnn-benchmark's integer-box rule, false Detectron2's continuous one.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def(
      "paste_masks(Tensor masks, Tensor boxes, SymInt image_height, SymInt image_width, "
      "float threshold=0.5, int padding=1, bool legacy_plus_one=True) -> Tensor");
}
