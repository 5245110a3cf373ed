// The Winograd F(4x4, 3x3) tile-transform kernels, included by winograd_cpu.cpp once per
// instruction set (inside a namespace and, for AVX-512, a `#pragma GCC target` region), which is
// why it has no include guard and includes nothing itself. Layout and matrices: winograd_cpu.cpp.

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
