// CPU kernel of maskrcnn::paste_masks (geometry: paste_masks_common.h).
//
// at::parallel_for over detections; each detection zero-fills its own output plane and computes only
// its window: first the horizontal interpolation of every padded-mask row onto the window's columns
// (P x Ww values), then each output row blends two of those rows (the order of F.interpolate's
// bilinear kernel: width first, then height), thresholded or stored as values.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "paste_masks/paste_masks_common.h"

namespace maskrcnn {
namespace {

using paste_masks::Axis;
using paste_masks::Tap;

template <typename scalar_t, typename out_t>
void paste_one(const scalar_t* mask, const at::opmath_type<scalar_t>* box, out_t* out, int64_t mask_h,
               int64_t mask_w, int64_t height, int64_t width, int64_t padding, bool legacy, bool binary,
               at::opmath_type<scalar_t> threshold) {
  using T = at::opmath_type<scalar_t>;
  std::memset(out, 0, sizeof(out_t) * height * width);
  const int64_t cells_h = mask_h + 2 * padding, cells_w = mask_w + 2 * padding;
  const T enlarge_w = static_cast<T>((mask_w + 2.0 * padding) / mask_w);
  const T enlarge_h = static_cast<T>((mask_h + 2.0 * padding) / mask_h);
  const Axis<T> ax = paste_masks::make_axis<T>(box[0], box[2], enlarge_w, cells_w, width, legacy);
  const Axis<T> ay = paste_masks::make_axis<T>(box[1], box[3], enlarge_h, cells_h, height, legacy);
  const int64_t window_w = ax.hi - ax.lo, window_h = ay.hi - ay.lo;
  if (window_w <= 0 || window_h <= 0) return;

  std::vector<Tap<T>> cols(window_w);
  for (int64_t j = 0; j < window_w; ++j) cols[j] = paste_masks::make_tap(ax, ax.lo + j, cells_w, legacy);
  // rows[r] = padded-mask row r interpolated onto the window's columns
  std::vector<T> rows(cells_h * window_w, T(0));
  for (int64_t r = padding; r < padding + mask_h; ++r) {
    T* row = rows.data() + r * window_w;
    for (int64_t j = 0; j < window_w; ++j) {
      const Tap<T>& t = cols[j];
      const T v0 = paste_masks::padded_cell<scalar_t, T>(mask, r, t.i0, padding, mask_h, mask_w);
      const T v1 = paste_masks::padded_cell<scalar_t, T>(mask, r, t.i1, padding, mask_h, mask_w);
      row[j] = v0 * t.w0 + v1 * t.w1;
    }
  }
  for (int64_t i = 0; i < window_h; ++i) {
    const Tap<T> t = paste_masks::make_tap(ay, ay.lo + i, cells_h, legacy);
    const T* row0 = rows.data() + t.i0 * window_w;
    const T* row1 = rows.data() + t.i1 * window_w;
    out_t* dst = out + (ay.lo + i) * width + ax.lo;
    if (binary) {
      for (int64_t j = 0; j < window_w; ++j) {
        const T value = row0[j] * t.w0 + row1[j] * t.w1;
        dst[j] = static_cast<out_t>(value > threshold);
      }
    } else {
      for (int64_t j = 0; j < window_w; ++j) dst[j] = static_cast<out_t>(row0[j] * t.w0 + row1[j] * t.w1);
    }
  }
}

at::Tensor paste_masks_cpu(const at::Tensor& masks_in, const at::Tensor& boxes_in, int64_t image_height,
                           int64_t image_width, double threshold, int64_t padding, bool legacy_plus_one) {
  paste_masks::check_args(masks_in, boxes_in, image_height, image_width, padding);
  TORCH_CHECK(masks_in.device().is_cpu(), "paste_masks: masks must be a CPU tensor here, got ", masks_in.device());
  const bool binary = threshold >= 0;
  const int64_t num = masks_in.size(0);
  at::Tensor output = at::empty({num, 1, image_height, image_width},
                                masks_in.options().dtype(binary ? at::kByte : masks_in.scalar_type()));
  if (output.numel() == 0) return output;
  const at::Tensor masks = masks_in.contiguous();
  const int64_t mask_h = masks.size(2), mask_w = masks.size(3);
  const int64_t plane = image_height * image_width;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, masks.scalar_type(), "paste_masks_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const at::Tensor boxes = boxes_in.to(c10::CppTypeToScalarType<T>::value).contiguous();
    const scalar_t* mask_data = masks.const_data_ptr<scalar_t>();
    const T* box_data = boxes.const_data_ptr<T>();
    const T thr = static_cast<T>(threshold);
    at::parallel_for(0, num, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* mask = mask_data + n * mask_h * mask_w;
        if (binary) {
          paste_one<scalar_t, uint8_t>(mask, box_data + 4 * n, output.mutable_data_ptr<uint8_t>() + n * plane,
                                       mask_h, mask_w, image_height, image_width, padding, legacy_plus_one,
                                       true, thr);
        } else {
          paste_one<scalar_t, scalar_t>(mask, box_data + 4 * n, output.mutable_data_ptr<scalar_t>() + n * plane,
                                        mask_h, mask_w, image_height, image_width, padding, legacy_plus_one,
                                        false, thr);
        }
      }
    });
  });
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("paste_masks", TORCH_FN(paste_masks_cpu));
}

}  // namespace maskrcnn
