// The Winograd F(4x4, 3x3) tile-transform kernels, included by winograd_cpu.cpp once per
// instruction set (inside a namespace and, for AVX-512, a `#pragma GCC target` region), which is
// why it has no include guard and includes nothing itself. Layout and matrices: winograd_cpu.cpp.

// p[i] = base + i * stride for i < N: the rows a row transform reads or writes.
template <int N, typename P>
struct Rows {
  P p[N];
  Rows(P base, int64_t stride) {
    for (int i = 0; i < N; ++i) p[i] = base + i * stride;
  }
};

// out[a] = (B^T in)[a] for six rows in[0..5] of `len` values (strided by `in_stride`, written with
// `out_stride`).
template <typename T>
inline void input_rows(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const Rows<6, const T*> d(in, in_stride);
  const Rows<6, T*> o(out, out_stride);
  for (int64_t c = 0; c < len; ++c) {
    const T a = d.p[4][c] - 4 * d.p[2][c], b = d.p[3][c] - 4 * d.p[1][c];  // rows 1 and 2
    const T e = d.p[4][c] - d.p[2][c], f = 2 * (d.p[3][c] - d.p[1][c]);    // rows 3 and 4
    o.p[0][c] = 4 * d.p[0][c] - 5 * d.p[2][c] + d.p[4][c];
    o.p[1][c] = a + b;
    o.p[2][c] = a - b;
    o.p[3][c] = e + f;
    o.p[4][c] = e - f;
    o.p[5][c] = 4 * d.p[1][c] - 5 * d.p[3][c] + d.p[5][c];
  }
}

// out[r] = (A^T in)[r] for six rows in[0..5] -> four rows.
template <typename T>
inline void output_rows(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const Rows<6, const T*> m(in, in_stride);
  const Rows<4, T*> o(out, out_stride);
  for (int64_t c = 0; c < len; ++c) {
    const T s12 = m.p[1][c] + m.p[2][c], d12 = m.p[1][c] - m.p[2][c];
    const T s34 = m.p[3][c] + m.p[4][c], d34 = m.p[3][c] - m.p[4][c];
    o.p[0][c] = m.p[0][c] + s12 + s34;
    o.p[1][c] = d12 + 2 * d34;
    o.p[2][c] = s12 + 4 * s34;
    o.p[3][c] = d12 + 8 * d34 + m.p[5][c];
  }
}

// out[a] = (A in)[a] for four rows in[0..3] -> six rows (the adjoint of output_rows).
template <typename T>
inline void output_rows_adjoint(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t len) {
  const Rows<4, const T*> y(in, in_stride);
  const Rows<6, T*> o(out, out_stride);
  for (int64_t c = 0; c < len; ++c) {
    const T even1 = y.p[0][c] + y.p[2][c], odd1 = y.p[1][c] + y.p[3][c];
    const T even2 = y.p[0][c] + 4 * y.p[2][c], odd2 = 2 * y.p[1][c] + 8 * y.p[3][c];
    o.p[0][c] = y.p[0][c];
    o.p[1][c] = even1 + odd1;
    o.p[2][c] = even1 - odd1;
    o.p[3][c] = even2 + odd2;
    o.p[4][c] = even2 - odd2;
    o.p[5][c] = y.p[3][c];
  }
}

// body(t, image, row0, col0, c0, len) for each tile t of [0, tile_count) (tile_begin + t of the
// grid, its output starting at image row row0, column col0) and each block of channels
// [c0, c0 + len); at::parallel_for over the tiles.
template <typename Body>
inline void for_each_tile_block(const TileGrid& g, int64_t tile_begin, int64_t tile_count, int64_t channels,
                                const Body& body) {
  at::parallel_for(0, tile_count, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t image, row0, col0;
      g.locate(tile_begin + t, &image, &row0, &col0);
      for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
        body(t, image, row0, col0, c0, std::min(kBlock, channels - c0));
      }
    }
  });
}

// window[r][s][0:len] = src[image][row0 + r][col0 + s][c0:c0 + len] for r, s < size (rows of
// kBlock values), zero outside the image.
template <typename T>
inline void load_window(const T* src, const TileGrid& g, int64_t channels, int64_t image, int64_t row0,
                        int64_t col0, int64_t size, int64_t c0, int64_t len, T* window) {
  for (int64_t r = 0; r < size; ++r) {
    const int64_t y = row0 + r;
    for (int64_t s = 0; s < size; ++s) {
      const int64_t x = col0 + s;
      T* dst = window + (r * size + s) * kBlock;
      if (y < 0 || y >= g.h || x < 0 || x >= g.w) {
        std::fill(dst, dst + len, T(0));
      } else {
        std::memcpy(dst, src + ((image * g.h + y) * g.w + x) * channels + c0, sizeof(T) * len);
      }
    }
  }
}

// The separable transform of a size x size window into 6 x 6 values, row_transform applied down
// the columns and then along the rows, written to planes[6a + b][t][c0:c0 + len] (`plane` values
// apart, `offset` = t * channels + c0 into each).
template <typename T, void (*row_transform)(const T*, int64_t, T*, int64_t, int64_t)>
inline void window_to_planes(const T* window, int64_t size, int64_t len, T* planes, int64_t plane,
                             int64_t offset) {
  T rows[kPatch * kPatch * kBlock];
  T cols[kPatch * kBlock];
  // rows[a][s] = sum_r M[a][r] window[r][s]
  for (int64_t s = 0; s < size; ++s) {
    row_transform(window + s * kBlock, size * kBlock, rows + s * kBlock, size * kBlock, len);
  }
  // out[a][b] = sum_s rows[a][s] M[b][s]
  for (int64_t a = 0; a < kPatch; ++a) {
    row_transform(rows + a * size * kBlock, kBlock, cols, kBlock, len);
    for (int64_t b = 0; b < kPatch; ++b) {
      std::memcpy(planes + (a * kPatch + b) * plane + offset, cols + b * kBlock, sizeof(T) * len);
    }
  }
}

template <typename T>
void input_tiles_kernel(const T* x, const TileGrid& g, int64_t channels, int64_t tile_begin,
                        int64_t tile_count, T* v) {
  const int64_t plane = tile_count * channels;  // stride between the 36 outputs
  for_each_tile_block(g, tile_begin, tile_count, channels,
                      [&](int64_t t, int64_t image, int64_t row0, int64_t col0, int64_t c0, int64_t len) {
    T patch[kPatch * kPatch * kBlock];
    // the 6 x 6 input window, one row and column before the tile's output (the padding of 1)
    load_window(x, g, channels, image, row0 - 1, col0 - 1, kPatch, c0, len, patch);
    window_to_planes<T, input_rows<T>>(patch, kPatch, len, v, plane, t * channels + c0);
  });
}

template <typename T>
void output_tiles_kernel(const T* m, const T* bias, const TileGrid& g, int64_t channels, int64_t tile_begin,
                         int64_t tile_count, T* out) {
  const int64_t plane = tile_count * channels;
  for_each_tile_block(g, tile_begin, tile_count, channels,
                      [&](int64_t t, int64_t image, int64_t row0, int64_t col0, int64_t c0, int64_t len) {
    T rows[kTile * kPatch * kBlock];
    T tile[kTile * kTile * kBlock];
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
  });
}

template <typename T>
void output_tiles_backward_kernel(const T* dy, const TileGrid& g, int64_t channels, int64_t tile_begin,
                                  int64_t tile_count, T* dm) {
  const int64_t plane = tile_count * channels;
  for_each_tile_block(g, tile_begin, tile_count, channels,
                      [&](int64_t t, int64_t image, int64_t row0, int64_t col0, int64_t c0, int64_t len) {
    T tile[kTile * kTile * kBlock];
    load_window(dy, g, channels, image, row0, col0, kTile, c0, len, tile);
    window_to_planes<T, output_rows_adjoint<T>>(tile, kTile, len, dm, plane, t * channels + c0);
  });
}
