// CPU kernels of the Winograd F(4x4, 3x3) tile transforms (schemas and tile layout: ../winograd.cpp).
//
// The transform matrices are Lavin & Gray's for F(4x4, 3x3) (interpolation points 0, +-1, +-2):
//   B^T (6x6) = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T (4x6) = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// written out below as sums, so that no product with a zero coefficient is computed. Each kernel is
// at::parallel_for over tiles; within a tile it works on blocks of kBlock channels, the innermost
// loop running over channels (contiguous in the channels-last layout), which the compiler vectorises.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

namespace maskrcnn {
namespace {

constexpr int64_t kBlock = 64;  // channels per block: 36 x 64 floats of patch stay in L1
constexpr int64_t kTile = 4;    // output rows / columns per tile
constexpr int64_t kPatch = 6;   // input rows / columns per tile

struct TileGrid {
  int64_t n, h, w, tiles_h, tiles_w;
  // first image row / column of the tile's output
  void locate(int64_t t, int64_t* image, int64_t* row, int64_t* col) const {
    *image = t / (tiles_h * tiles_w);
    const int64_t rest = t % (tiles_h * tiles_w);
    *row = (rest / tiles_w) * kTile;
    *col = (rest % tiles_w) * kTile;
  }
};

TileGrid grid_of(const at::Tensor& nhwc) {
  const int64_t h = nhwc.size(1), w = nhwc.size(2);
  return {nhwc.size(0), h, w, (h + kTile - 1) / kTile, (w + kTile - 1) / kTile};
}

void check_range(const TileGrid& g, int64_t tile_begin, int64_t tile_count, const char* op) {
  const int64_t total = g.n * g.tiles_h * g.tiles_w;
  TORCH_CHECK(tile_begin >= 0 && tile_count >= 0 && tile_begin + tile_count <= total, op,
              ": tiles [", tile_begin, ", ", tile_begin + tile_count, ") outside the ", total, " tiles");
}

// out[a] = (B^T in)[a] for six rows in[0..5] of `len` values (strided by `in_stride`, written with
// `out_stride`).
template <typename T>
inline void input_rows(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const T* d0 = in;
  const T* d1 = in + in_stride;
  const T* d2 = in + 2 * in_stride;
  const T* d3 = in + 3 * in_stride;
  const T* d4 = in + 4 * in_stride;
  const T* d5 = in + 5 * in_stride;
  T* o0 = out;
  T* o1 = out + out_stride;
  T* o2 = out + 2 * out_stride;
  T* o3 = out + 3 * out_stride;
  T* o4 = out + 4 * out_stride;
  T* o5 = out + 5 * out_stride;
  for (int64_t c = 0; c < len; ++c) {
    const T a = d4[c] - 4 * d2[c], b = d3[c] - 4 * d1[c];  // rows 1 and 2
    const T e = d4[c] - d2[c], f = 2 * (d3[c] - d1[c]);    // rows 3 and 4
    o0[c] = 4 * d0[c] - 5 * d2[c] + d4[c];
    o1[c] = a + b;
    o2[c] = a - b;
    o3[c] = e + f;
    o4[c] = e - f;
    o5[c] = 4 * d1[c] - 5 * d3[c] + d5[c];
  }
}

// out[r] = (A^T in)[r] for six rows in[0..5] -> four rows.
template <typename T>
inline void output_rows(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const T* m0 = in;
  const T* m1 = in + in_stride;
  const T* m2 = in + 2 * in_stride;
  const T* m3 = in + 3 * in_stride;
  const T* m4 = in + 4 * in_stride;
  const T* m5 = in + 5 * in_stride;
  for (int64_t c = 0; c < len; ++c) {
    const T s12 = m1[c] + m2[c], d12 = m1[c] - m2[c];
    const T s34 = m3[c] + m4[c], d34 = m3[c] - m4[c];
    out[c] = m0[c] + s12 + s34;
    out[out_stride + c] = d12 + 2 * d34;
    out[2 * out_stride + c] = s12 + 4 * s34;
    out[3 * out_stride + c] = d12 + 8 * d34 + m5[c];
  }
}

// out[a] = (A in)[a] for four rows in[0..3] -> six rows (the adjoint of output_rows).
template <typename T>
inline void output_rows_adjoint(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const T* y0 = in;
  const T* y1 = in + in_stride;
  const T* y2 = in + 2 * in_stride;
  const T* y3 = in + 3 * in_stride;
  for (int64_t c = 0; c < len; ++c) {
    const T even1 = y0[c] + y2[c], odd1 = y1[c] + y3[c];
    const T even2 = y0[c] + 4 * y2[c], odd2 = 2 * y1[c] + 8 * y3[c];
    out[c] = y0[c];
    out[out_stride + c] = even1 + odd1;
    out[2 * out_stride + c] = even1 - odd1;
    out[3 * out_stride + c] = even2 + odd2;
    out[4 * out_stride + c] = even2 - odd2;
    out[5 * out_stride + c] = y3[c];
  }
}

template <typename T>
void input_tiles_kernel(const T* x, const TileGrid& g, int64_t channels, int64_t tile_begin,
                        int64_t tile_count, T* v) {
  const int64_t plane = tile_count * channels;  // stride between the 36 outputs
  at::parallel_for(0, tile_count, 8, [&](int64_t begin, int64_t end) {
    T patch[kPatch * kPatch * kBlock];
    T rows[kPatch * kPatch * kBlock];
    T cols[kPatch * kBlock];
    for (int64_t t = begin; t < end; ++t) {
      int64_t image, row0, col0;
      g.locate(tile_begin + t, &image, &row0, &col0);
      row0 -= 1;  // the padding of 1
      col0 -= 1;
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t len = std::min(kBlock, channels - c0);
        // patch[r][s][c]: the 6 x 6 input window, zero outside the image
        for (int64_t r = 0; r < kPatch; ++r) {
          const int64_t y = row0 + r;
          for (int64_t s = 0; s < kPatch; ++s) {
            const int64_t xcol = col0 + s;
            T* dst = patch + (r * kPatch + s) * kBlock;
            if (y < 0 || y >= g.h || xcol < 0 || xcol >= g.w) {
              std::fill(dst, dst + len, T(0));
            } else {
              std::memcpy(dst, x + ((image * g.h + y) * g.w + xcol) * channels + c0, sizeof(T) * len);
            }
          }
        }
        // rows[a][s] = sum_r B^T[a][r] patch[r][s]
        for (int64_t s = 0; s < kPatch; ++s) {
          input_rows(patch + s * kBlock, kPatch * kBlock, rows + s * kBlock, kPatch * kBlock, len);
        }
        // v[a][b] = sum_s rows[a][s] B^T[b][s], written straight to V[6a + b][t][c0:]
        for (int64_t a = 0; a < kPatch; ++a) {
          input_rows(rows + a * kPatch * kBlock, kBlock, cols, kBlock, len);
          for (int64_t b = 0; b < kPatch; ++b) {
            std::memcpy(v + (a * kPatch + b) * plane + t * channels + c0, cols + b * kBlock, sizeof(T) * len);
          }
        }
      }
    }
  });
}

template <typename T>
void output_tiles_kernel(const T* m, const T* bias, const TileGrid& g, int64_t channels, int64_t tile_begin,
                         int64_t tile_count, T* out) {
  const int64_t plane = tile_count * channels;
  at::parallel_for(0, tile_count, 8, [&](int64_t begin, int64_t end) {
    T rows[kTile * kPatch * kBlock];
    T tile[kTile * kTile * kBlock];
    for (int64_t t = begin; t < end; ++t) {
      int64_t image, row0, col0;
      g.locate(tile_begin + t, &image, &row0, &col0);
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t len = std::min(kBlock, channels - c0);
        // rows[r][b] = sum_a A^T[r][a] m[a][b]
        for (int64_t b = 0; b < kPatch; ++b) {
          output_rows(m + b * plane + t * channels + c0, kPatch * plane, rows + b * kBlock, kPatch * kBlock, len);
        }
        // tile[r][s] = sum_b rows[r][b] A^T[s][b]
        for (int64_t r = 0; r < kTile; ++r) {
          output_rows(rows + r * kPatch * kBlock, kBlock, tile + r * kTile * kBlock, kBlock, len);
        }
        for (int64_t r = 0; r < kTile && row0 + r < g.h; ++r) {
          for (int64_t s = 0; s < kTile && col0 + s < g.w; ++s) {
            T* dst = out + ((image * g.h + row0 + r) * g.w + col0 + s) * channels + c0;
            const T* src = tile + (r * kTile + s) * kBlock;
            if (bias != nullptr) {
              for (int64_t c = 0; c < len; ++c) dst[c] = src[c] + bias[c0 + c];
            } else {
              std::memcpy(dst, src, sizeof(T) * len);
            }
          }
        }
      }
    }
  });
}

template <typename T>
void output_tiles_backward_kernel(const T* dy, const TileGrid& g, int64_t channels, int64_t tile_begin,
                                  int64_t tile_count, T* dm) {
  const int64_t plane = tile_count * channels;
  at::parallel_for(0, tile_count, 8, [&](int64_t begin, int64_t end) {
    T tile[kTile * kTile * kBlock];
    T rows[kPatch * kTile * kBlock];
    T cols[kPatch * kBlock];
    for (int64_t t = begin; t < end; ++t) {
      int64_t image, row0, col0;
      g.locate(tile_begin + t, &image, &row0, &col0);
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        const int64_t len = std::min(kBlock, channels - c0);
        for (int64_t r = 0; r < kTile; ++r) {
          for (int64_t s = 0; s < kTile; ++s) {
            T* dst = tile + (r * kTile + s) * kBlock;
            if (row0 + r >= g.h || col0 + s >= g.w) {
              std::fill(dst, dst + len, T(0));
            } else {
              std::memcpy(dst, dy + ((image * g.h + row0 + r) * g.w + col0 + s) * channels + c0, sizeof(T) * len);
            }
          }
        }
        // rows[a][s] = sum_r A[a][r] tile[r][s]
        for (int64_t s = 0; s < kTile; ++s) {
          output_rows_adjoint(tile + s * kBlock, kTile * kBlock, rows + s * kBlock, kTile * kBlock, len);
        }
        // dm[a][b] = sum_s rows[a][s] A[b][s]
        for (int64_t a = 0; a < kPatch; ++a) {
          output_rows_adjoint(rows + a * kTile * kBlock, kBlock, cols, kBlock, len);
          for (int64_t b = 0; b < kPatch; ++b) {
            std::memcpy(dm + (a * kPatch + b) * plane + t * channels + c0, cols + b * kBlock, sizeof(T) * len);
          }
        }
      }
    }
  });
}

void check_nhwc(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be Tensor[N, H, W, C], got ", t.dim(), " dimensions");
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (channels innermost)");
}

// tiles: a contiguous Tensor[36, tile_count, channels] of image's dtype, its range inside the grid
void check_tiles(const at::Tensor& tiles, const at::Tensor& image, int64_t tile_begin, const char* op) {
  const int64_t channels = image.size(3);
  TORCH_CHECK(tiles.dim() == 3 && tiles.size(0) == kPatch * kPatch && tiles.size(2) == channels &&
                  tiles.is_contiguous(),
              op, ": tiles must be a contiguous Tensor[36, tiles, ", channels, "], got ", tiles.sizes());
  TORCH_CHECK(tiles.scalar_type() == image.scalar_type(), op, ": the tiles and the image differ in dtype");
  check_range(grid_of(image), tile_begin, tiles.size(1), op);
}

void winograd_input_tiles_cpu(const at::Tensor& x, int64_t tile_begin, at::Tensor tiles) {
  check_nhwc(x, "winograd_input_tiles", "x");
  check_tiles(tiles, x, tile_begin, "winograd_input_tiles");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "winograd_input_tiles", [&] {
    input_tiles_kernel<scalar_t>(x.data_ptr<scalar_t>(), grid_of(x), x.size(3), tile_begin, tiles.size(1),
                                 tiles.data_ptr<scalar_t>());
  });
}

void winograd_output_tiles_cpu(const at::Tensor& tiles, const std::optional<at::Tensor>& bias,
                               int64_t tile_begin, at::Tensor out) {
  check_nhwc(out, "winograd_output_tiles", "out");
  check_tiles(tiles, out, tile_begin, "winograd_output_tiles");
  const int64_t channels = out.size(3);
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->contiguous();
    TORCH_CHECK(b.dim() == 1 && b.size(0) == channels && b.scalar_type() == out.scalar_type(),
                "winograd_output_tiles: bias must be Tensor[", channels, "] of the output's dtype");
  }
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "winograd_output_tiles", [&] {
    output_tiles_kernel<scalar_t>(tiles.data_ptr<scalar_t>(), b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                  grid_of(out), channels, tile_begin, tiles.size(1), out.data_ptr<scalar_t>());
  });
}

void winograd_output_tiles_backward_cpu(const at::Tensor& grad_out, int64_t tile_begin, at::Tensor tiles) {
  check_nhwc(grad_out, "winograd_output_tiles_backward", "grad_out");
  check_tiles(tiles, grad_out, tile_begin, "winograd_output_tiles_backward");
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "winograd_output_tiles_backward", [&] {
    output_tiles_backward_kernel<scalar_t>(grad_out.data_ptr<scalar_t>(), grid_of(grad_out), grad_out.size(3),
                                           tile_begin, tiles.size(1), tiles.data_ptr<scalar_t>());
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(maskrcnn, CPU, m) {
  m.impl("winograd_input_tiles", &winograd_input_tiles_cpu);
  m.impl("winograd_output_tiles", &winograd_output_tiles_cpu);
  m.impl("winograd_output_tiles_backward", &winograd_output_tiles_backward_cpu);
}

}  // namespace maskrcnn
