// Schemas of the Winograd F(4x4, 3x3) tile transforms behind maskrcnn.layers.winograd_conv (a 3x3,
// stride-1, padding-1 convolution as 36 matrix products). Kernels: cpu/winograd_cpu.cpp. There are
// no CUDA kernels: on a GPU the convolution stays cuDNN's, which picks its own Winograd kernels.
//
// Tiles: an output of H x W is cut into th x tw tiles of 4 x 4 (th = ceil(H / 4), tw = ceil(W / 4));
// tile t = (n * th + i) * tw + j reads the 6 x 6 input patch at rows 4i - 1 .. 4i + 4 and columns
// 4j - 1 .. 4j + 4 (zero outside the image: the padding of 1). A call handles the tiles
// [tile_begin, tile_begin + tile_count), tile_count = the size of dimension 1 of its tile buffer,
// so a caller can bound its buffers and reuse them from one range to the next (fresh memory costs
// page faults that take longer than the transforms themselves).
//
// winograd_input_tiles: x Tensor[N, H, W, C] (channels innermost) -> writes V Tensor[36, tile_count, C],
//   V[6a + b] = (B^T d B)[a, b] for each tile's patch d.
// winograd_output_tiles: M Tensor[36, tile_count, K] -> writes out Tensor[N, H, W, K] at the tiles'
//   positions: (A^T m A) + bias, cropped to the image.
// winograd_output_tiles_backward: dY Tensor[N, H, W, K] -> writes dM Tensor[36, tile_count, K], the
//   adjoint of the output transform (A dY A^T per tile; zero outside the image).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(maskrcnn, m) {
  m.def("winograd_input_tiles(Tensor x, int tile_begin, Tensor(a!) tiles) -> ()");
  m.def("winograd_output_tiles(Tensor tiles, Tensor? bias, int tile_begin, Tensor(a!) out) -> ()");
  m.def("winograd_output_tiles_backward(Tensor grad_out, int tile_begin, Tensor(a!) tiles) -> ()");
}
