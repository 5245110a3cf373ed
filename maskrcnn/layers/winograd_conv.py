"""3x3 convolutions (stride 1, padding 1) on the CPU by Winograd's F(4x4, 3x3) algorithm.

A direct 3x3 convolution spends 9 multiply-adds per output value and input channel; F(4x4, 3x3)
computes each 4x4 output tile from a 6x6 input patch with 36, i.e. 2.25 per output, a quarter of the
arithmetic. The work becomes (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks"):

    V = B^T d B  per input patch d        (torch.ops.maskrcnn.winograd_input_tiles)
    U = G g G^T  per 3x3 filter g         (weight_tiles, here: one small matrix product)
    M[k] = V[k] @ U[k], k = 0..35         (36 matrix products, torch.bmm)
    y = A^T M A + bias  per output tile   (torch.ops.maskrcnn.winograd_output_tiles)

The backward pass reuses the same pieces: the input gradient is the same convolution of the output
gradient with the filters flipped and their in / out channels swapped; the weight gradient is
G^T (sum over tiles of V^T dM) G with dM = A dY A^T (torch.ops.maskrcnn.winograd_output_tiles_backward).

On the 2-core AVX-512 machine the detector's 256-channel 3x3 convolutions (FPN outputs, RPN head,
mask head) run about twice as fast as oneDNN's direct kernels, forward and backward
(benchmarks/winograd.py). The results differ from a direct convolution by rounding only (relative
error about 1e-5 in float32, against about 2e-6 for the direct kernel; both measured against float64).

`Conv2d` (layers/misc.py) routes here when its `winograd` flag is set (MODEL.WINOGRAD, through
`set_winograd`) and `winograd_applies` holds: a CPU float32 input in channels-last layout, no
autocast, not inside torch.export or TorchScript tracing (an exported or ONNX graph holds the
ordinary convolution). torch.compile (TEST.COMPILE) traces through it: the transforms are custom
ops with fake kernels.
"""
import torch
from torch.autograd.function import once_differentiable

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["winograd_conv3x3", "winograd_applies", "set_winograd"]

# Lavin & Gray's F(4x4, 3x3) filter transform (interpolation points 0, +-1, +-2, infinity); the input
# and output transforms are written out in csrc/winograd/cpu/winograd_kernels.h.
_G = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)
TILE = 4
# Where winograd_conv3x3 is the faster kernel (benchmarks/winograd.py, forward + backward): at least
# MIN_CHANNELS in and out, at least MIN_TILES 4x4 output tiles and MIN_WORK = tiles x C_in x C_out;
# below that the fixed costs (the filter transform, 36 small products) outweigh the saving.
MIN_CHANNELS = 64
MIN_TILES = 128
MIN_WORK = 2**21
# transformed values held at once, per buffer (V and M): bounds the extra memory to ~2 x 16 MB; a
# buffer under glibc's 32 MB mmap threshold is reused from the heap instead of faulted in afresh
_CHUNK_VALUES = 4 * 1024 * 1024


def _filter_transform(like):
    """Tensor[36, 9]: row 6a + b maps a 3x3 filter (flattened, 3p + q) to (G g G^T)[a, b]; the
    Kronecker product of G with itself, so the whole filter transform is one matrix product."""
    g = torch.tensor(_G, dtype=like.dtype, device=like.device)
    return torch.kron(g, g)


def weight_tiles(weight, transposed=False):
    """weight: Tensor[K, C, 3, 3] -> U: Tensor[36, C, K], U[6a + b] = (G g G^T)[a, b].

    transposed=True gives instead the tiles of the transposed convolution's filters (in / out
    channels swapped, each filter rotated by 180 degrees): Tensor[36, K, C], what the input
    gradient is computed with."""
    out_channels, in_channels = weight.shape[:2]
    transform = _filter_transform(weight)
    flat = weight.reshape(out_channels, in_channels, 9)
    if transposed:
        # rotating a 3x3 filter by 180 degrees reverses its 9 flattened taps
        transform, flat, shape = transform.flip(1), flat.permute(2, 0, 1), (36, out_channels, in_channels)
    else:
        flat, shape = flat.permute(2, 1, 0), (36, in_channels, out_channels)
    return (transform @ flat.reshape(9, -1)).view(shape)


def weight_tiles_backward(grad_tiles, out_channels, in_channels):
    """grad_tiles: Tensor[36, C, K] (gradient w.r.t. U) -> Tensor[K, C, 3, 3] (w.r.t. the filters)."""
    taps = _filter_transform(grad_tiles).t() @ grad_tiles.reshape(36, -1)
    return taps.view(3, 3, in_channels, out_channels).permute(3, 2, 0, 1).contiguous()


def _num_tiles(x):
    n, _, h, w = x.shape
    return n * ((h + TILE - 1) // TILE) * ((w + TILE - 1) // TILE)


def _chunks(x, channels):
    """(first tile, tile count) ranges covering all tiles of `x`, each holding at most
    _CHUNK_VALUES transformed values of `channels` channels."""
    total = _num_tiles(x)
    step = min(total, max(16, _CHUNK_VALUES // (36 * channels)))
    return [(begin, min(step, total - begin)) for begin in range(0, total, step)]


def _nhwc(x):
    """Tensor[N, C, H, W] in channels-last memory -> the Tensor[N, H, W, C] view of that memory."""
    return x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


def _tiles_view(buffer, count, channels):
    """The leading values of a flat buffer as a contiguous Tensor[36, count, channels]."""
    return buffer[: 36 * count * channels].view(36, count, channels)


def _tile_chunks(x, in_channels, out_channels):
    """Yields (first tile, Tensor[36, count, in_channels], Tensor[36, count, out_channels]) for
    each chunk of `_chunks`: views of two buffers allocated once for the largest chunk, so every
    chunk writes into memory the previous one already touched."""
    chunks = _chunks(x, max(in_channels, out_channels))
    largest = max(count for _, count in chunks)
    first, second = x.new_empty(36 * largest * in_channels), x.new_empty(36 * largest * out_channels)
    for begin, count in chunks:
        yield begin, _tiles_view(first, count, in_channels), _tiles_view(second, count, out_channels)


def _convolve(x, tiles, bias):
    """x: Tensor[N, C, H, W]; tiles: Tensor[36, C, K] (weight_tiles) -> Tensor[N, K, H, W],
    channels-last, the 3x3 convolution with padding 1 (+ bias: Tensor[K])."""
    n, in_channels, h, w = x.shape
    out_channels = tiles.shape[2]
    source = _nhwc(x)
    # allocated as [N, K, H, W] (not a view, so callers may modify it in place), written through
    # its [N, H, W, K] view
    out = torch.empty((n, out_channels, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    target = _nhwc(out)
    for begin, v, m in _tile_chunks(x, in_channels, out_channels):
        torch.ops.maskrcnn.winograd_input_tiles(source, begin, v)
        torch.bmm(v, tiles, out=m)
        torch.ops.maskrcnn.winograd_output_tiles(m, bias, begin, target)
    return out


def _weight_gradient(x, grad_out, out_channels):
    """dL/dweight: Tensor[K, C, 3, 3] from the input x: Tensor[N, C, H, W] and grad_out: Tensor[N, K, H, W].
    The input tiles are transformed again rather than kept from the forward pass (4x the
    activation's memory for as long as the graph lives)."""
    in_channels = x.shape[1]
    source, grad_source = _nhwc(x), _nhwc(grad_out)
    grad_tiles = x.new_zeros((36, in_channels, out_channels))
    for begin, v, dm in _tile_chunks(x, in_channels, out_channels):
        torch.ops.maskrcnn.winograd_input_tiles(source, begin, v)
        torch.ops.maskrcnn.winograd_output_tiles_backward(grad_source, begin, dm)
        grad_tiles.baddbmm_(v.transpose(1, 2), dm)
    return weight_tiles_backward(grad_tiles, out_channels, in_channels)


class _WinogradConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _convolve(x, weight_tiles(weight), bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # the transposed convolution = this convolution with flipped, channel-swapped filters
            grad_x = _convolve(grad_out, weight_tiles(weight, transposed=True), None)
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_gradient(x, grad_out, weight.shape[0])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias


def winograd_conv3x3(x, weight, bias=None):
    """F.conv2d(x, weight, bias, stride=1, padding=1) by Winograd F(4x4, 3x3), with autograd.

    x: Tensor[N, C, H, W] (float32 or float64, CPU; channels-last memory avoids a copy);
    weight: Tensor[K, C, 3, 3]; bias: Tensor[K] or None.
    Returns Tensor[N, K, H, W] in channels-last memory.
    """
    if x.dim() != 4 or weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"winograd_conv3x3: expected x [N, C, H, W] and weight [K, C, 3, 3], got x "
                         f"{list(x.shape)} and weight {list(weight.shape)}")
    return _WinogradConv3x3.apply(x, weight, bias)


def _exported():
    """Whether the call is being exported (torch.export, ONNX) or traced / scripted by TorchScript."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting()


def winograd_applies(conv, x):
    """Whether `conv` (an nn.Conv2d) on input `x` is a convolution winograd_conv3x3 computes faster:
    3x3, stride 1, padding 1, no dilation or groups, at least MIN_CHANNELS in and out, at least
    MIN_TILES output tiles and MIN_WORK, on a float32 CPU input in channels-last memory, with CPU
    autocast off and not exported."""
    return (
        conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
        and conv.in_channels >= MIN_CHANNELS and conv.out_channels >= MIN_CHANNELS
        and x.device.type == "cpu" and x.dtype == torch.float32 and conv.weight.dtype == torch.float32
        and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        and _num_tiles(x) >= MIN_TILES and _num_tiles(x) * conv.in_channels * conv.out_channels >= MIN_WORK
        and not torch.is_autocast_enabled("cpu") and not _exported()
    )


def set_winograd(model, enabled=True):
    """Sets the `winograd` flag of every maskrcnn.layers.Conv2d in `model` (see winograd_applies
    for where it takes effect); returns `model`."""
    from .misc import Conv2d

    for module in model.modules():
        if isinstance(module, Conv2d):
            module.winograd = bool(enabled)
    return model


@torch.library.register_fake("maskrcnn::winograd_input_tiles")
def _input_tiles_fake(x, tile_begin, tiles):
    return None


@torch.library.register_fake("maskrcnn::winograd_output_tiles")
def _output_tiles_fake(tiles, bias, tile_begin, out):
    return None


@torch.library.register_fake("maskrcnn::winograd_output_tiles_backward")
def _output_tiles_backward_fake(grad_out, tile_begin, tiles):
    return None
