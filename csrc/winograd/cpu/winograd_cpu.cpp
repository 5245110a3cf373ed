// CPU kernels of the Winograd F(4x4, 3x3) tile transforms (schemas and tile layout: ../winograd.cpp).
//
// The transform matrices are Lavin & Gray's for F(4x4, 3x3) (interpolation points 0, +-1, +-2):
//   B^T (6x6) = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T (4x6) = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// written out as sums in winograd_kernels.h, so that no product with a zero coefficient is computed. Each kernel is
// at::parallel_for over tiles; within a tile it works on blocks of kBlock channels, the innermost
// loop running over channels (contiguous in the channels-last layout), which the compiler vectorises.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace maskrcnn {
namespace winograd {

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

}  // namespace winograd

// The kernels compiled twice: for the build's baseline x86-64 (SSE2) and, where the compiler can,
// for AVX-512, picked at run time by the CPU (the transforms run about 20 % faster with AVX-512).
namespace winograd_baseline {
using namespace winograd;
#include "winograd/cpu/winograd_kernels.h"
}  // namespace winograd_baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MASKRCNN_WINOGRAD_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq")
namespace winograd_avx512 {
using namespace winograd;
#include "winograd/cpu/winograd_kernels.h"
}  // namespace winograd_avx512
#pragma GCC pop_options
#endif

namespace {

// MASKRCNN_WINOGRAD_BASELINE=1 in the environment forces the baseline kernels (the tests use it
// to check them on an AVX-512 machine).
bool use_avx512() {
#ifdef MASKRCNN_WINOGRAD_AVX512
  static const bool supported = [] {
    const char* forced = std::getenv("MASKRCNN_WINOGRAD_BASELINE");
    if (forced != nullptr && std::string(forced) == "1") return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  }();
  return supported;
#else
  return false;
#endif
}

// The kernel `name` of the instruction set this CPU runs best, called with the arguments.
#ifdef MASKRCNN_WINOGRAD_AVX512
#define WINOGRAD_CALL(name, ...) \
  (use_avx512() ? winograd_avx512::name(__VA_ARGS__) : winograd_baseline::name(__VA_ARGS__))
#else
#define WINOGRAD_CALL(name, ...) winograd_baseline::name(__VA_ARGS__)
#endif

using winograd::check_range;
using winograd::grid_of;
using winograd::kPatch;
using winograd::TileGrid;

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
    WINOGRAD_CALL(input_tiles_kernel<scalar_t>, x.data_ptr<scalar_t>(), grid_of(x), x.size(3), tile_begin, tiles.size(1),
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
    WINOGRAD_CALL(output_tiles_kernel<scalar_t>, tiles.data_ptr<scalar_t>(), b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                  grid_of(out), channels, tile_begin, tiles.size(1), out.data_ptr<scalar_t>());
  });
}

void winograd_output_tiles_backward_cpu(const at::Tensor& grad_out, int64_t tile_begin, at::Tensor tiles) {
  check_nhwc(grad_out, "winograd_output_tiles_backward", "grad_out");
  check_tiles(tiles, grad_out, tile_begin, "winograd_output_tiles_backward");
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "winograd_output_tiles_backward", [&] {
    WINOGRAD_CALL(output_tiles_backward_kernel<scalar_t>, grad_out.data_ptr<scalar_t>(), grid_of(grad_out), grad_out.size(3),
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
