"""Tests of torch.ops.maskrcnn.deform_conv2d (DCN v1 / modulated v2) and the modules in maskrcnn.layers.dcn."""
import math

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.layers import DeformConv, DFConv2d, ModulatedDeformConv, ModulatedDeformConvPack
from maskrcnn.layers import deform_conv, modulated_deform_conv
from maskrcnn.layers.dcn import deform_conv2d

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# ----------------------------------------------------------------------------------------------
# float64 reference: explicit bilinear sampling of every shifted tap
# ----------------------------------------------------------------------------------------------
def _bilinear(planes, y, x):
    """planes: Tensor[C, H, W]; bilinear sample at (y, x), zero outside the image -> Tensor[C]."""
    height, width = planes.shape[-2:]
    value = planes.new_zeros(planes.shape[0])
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return value
    y0, x0 = math.floor(y), math.floor(x)
    for row, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for col, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= row < height and 0 <= col < width:
                value = value + wy * wx * planes[:, row, col]
    return value


def reference_deform_conv(input, offset, weight, bias=None, mask=None, stride=(1, 1), padding=(0, 0),
                          dilation=(1, 1), groups=1, offset_groups=1):
    n, channels, height, width = input.shape
    out_channels, _, kh, kw = weight.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    per_group = channels // offset_groups
    columns = input.new_zeros(n, channels, kh, kw, out_h, out_w)
    for b in range(n):
        for g in range(offset_groups):
            planes = input[b, g * per_group:(g + 1) * per_group]
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oh in range(out_h):
                        for ow in range(out_w):
                            dy = offset[b, 2 * (g * kh * kw + k), oh, ow].item()
                            dx = offset[b, 2 * (g * kh * kw + k) + 1, oh, ow].item()
                            y = oh * stride[0] - padding[0] + i * dilation[0] + dy
                            x = ow * stride[1] - padding[1] + j * dilation[1] + dx
                            value = _bilinear(planes, y, x)
                            if mask is not None:
                                value = value * mask[b, g * kh * kw + k, oh, ow]
                            columns[b, g * per_group:(g + 1) * per_group, i, j, oh, ow] = value
    in_per_group, out_per_group = channels // groups, out_channels // groups
    outputs = []
    for g in range(groups):
        cols = columns[:, g * in_per_group:(g + 1) * in_per_group]
        w = weight[g * out_per_group:(g + 1) * out_per_group]
        outputs.append(torch.einsum("ocij,ncijhw->nohw", w, cols))
    out = torch.cat(outputs, dim=1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_inputs(n=2, channels=4, out_channels=6, size=(7, 8), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                dilation=(1, 1), groups=1, offset_groups=1, offset_scale=2.0, with_mask=True, with_bias=True,
                dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out_h = _out_size(size[0], kernel[0], stride[0], padding[0], dilation[0])
    out_w = _out_size(size[1], kernel[1], stride[1], padding[1], dilation[1])
    taps = offset_groups * kernel[0] * kernel[1]
    input = torch.randn(n, channels, *size, generator=gen, dtype=dtype)
    weight = torch.randn(out_channels, channels // groups, *kernel, generator=gen, dtype=dtype)
    offset = (torch.rand(n, 2 * taps, out_h, out_w, generator=gen, dtype=dtype) * 2 - 1) * offset_scale
    mask = torch.rand(n, taps, out_h, out_w, generator=gen, dtype=dtype) if with_mask else None
    bias = torch.randn(out_channels, generator=gen, dtype=dtype) if with_bias else None
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, deformable_groups=offset_groups)
    return input, offset, weight, bias, mask, params


CONFIGS = [
    dict(),
    dict(stride=(2, 1), padding=(0, 2)),
    dict(dilation=(2, 1), padding=(2, 1), size=(9, 6)),
    dict(groups=2, offset_groups=2, out_channels=4),
    dict(kernel=(1, 3), offset_groups=4, padding=(0, 1), n=1),
    dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), channels=6, groups=3, offset_groups=3, out_channels=3),
]


# ----------------------------------------------------------------------------------------------
# forward values
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_zero_offsets_equal_conv2d(config, with_mask):
    input, offset, weight, bias, mask, p = make_inputs(**config, with_mask=with_mask)
    offset = torch.zeros_like(offset)
    if mask is not None:
        mask = torch.ones_like(mask)
    out = deform_conv2d(input, offset, weight, bias, mask, p["stride"], p["padding"], p["dilation"], p["groups"],
                        p["deformable_groups"])
    expected = F.conv2d(input, weight, bias, p["stride"], p["padding"], p["dilation"], p["groups"])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_random_offsets_match_reference(config, with_mask):
    # Offsets up to +-2.5 pixels push many taps partly or fully outside the image.
    input, offset, weight, bias, mask, p = make_inputs(**config, with_mask=with_mask, offset_scale=2.5)
    # Integer-valued offsets put taps exactly on pixels and on the image border (-1 and H).
    offset[:, :, 0, :] = offset[:, :, 0, :].round()
    out = deform_conv2d(input, offset, weight, bias, mask, p["stride"], p["padding"], p["dilation"], p["groups"],
                        p["deformable_groups"])
    expected = reference_deform_conv(input, offset, weight, bias, mask, p["stride"], p["padding"], p["dilation"],
                                     p["groups"], p["deformable_groups"])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_far_out_of_image_taps_read_zero():
    input, offset, weight, _, _, p = make_inputs(with_mask=False, with_bias=False)
    out = deform_conv2d(input, torch.full_like(offset, 100.0), weight, **p)
    assert out.abs().max() == 0


def test_maskrcnn_benchmark_function_signatures():
    input, offset, weight, bias, mask, p = make_inputs(offset_groups=2, groups=2)
    v1 = deform_conv(input, offset, weight, p["stride"], p["padding"], p["dilation"], 2, 2)
    v2 = modulated_deform_conv(input, offset, mask, weight, bias, p["stride"], p["padding"], p["dilation"], 2, 2)
    torch.testing.assert_close(v1, deform_conv2d(input, offset, weight, None, None, **p))
    torch.testing.assert_close(v2, deform_conv2d(input, offset, weight, bias, mask, **p))


def test_several_batch_chunks_match_per_image_results():
    # 8 images of 32 x 9 x 4096 column entries exceed the CPU kernel's 2^24-entry chunk, so the batch is
    # processed in two chunks (6 + 2); each image must come out as if processed alone.
    input, offset, weight, bias, mask, p = make_inputs(n=8, channels=32, out_channels=4, size=(64, 64),
                                                       dtype=torch.float32, offset_groups=2)
    tensors = [t.requires_grad_() for t in (input, offset, weight, bias, mask)]
    out = deform_conv2d(input, offset, weight, bias, mask, **p)
    grads = torch.autograd.grad(out.square().sum(), tensors)
    for b in (0, 5, 6, 7):
        single = deform_conv2d(input[b:b + 1], offset[b:b + 1], weight, bias, mask[b:b + 1], **p)
        torch.testing.assert_close(out[b:b + 1], single, rtol=1e-5, atol=1e-5)
        single_grads = torch.autograd.grad(single.square().sum(), (input, offset, mask))
        for whole, alone in zip((grads[0], grads[1], grads[4]), single_grads):
            torch.testing.assert_close(whole[b], alone[b], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [
    dict(),
    dict(stride=(2, 1), dilation=(1, 2), padding=(1, 2), groups=2, offset_groups=2, out_channels=4),
])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("fast_mode", [True, False])
def test_gradcheck(config, with_mask, fast_mode):
    input, offset, weight, bias, mask, p = make_inputs(n=2, channels=4, out_channels=config.pop("out_channels", 2),
                                                       size=(4, 5), with_mask=with_mask, offset_scale=1.5, **config)
    tensors = [t.requires_grad_() for t in (input, offset, weight, bias, mask) if t is not None]

    def fn(*args):
        x, o, w, b = args[:4]
        m = args[4] if with_mask else None
        return deform_conv2d(x, o, w, b, m, **p)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast_mode)


def test_backward_is_identical_on_one_and_two_threads():
    # The CPU backward partitions its writes so threads never share an element: results must not
    # depend on the number of threads (a race would make them differ or vary).
    # Large enough (2 x 8 channels x 9 taps x 24 x 24 samples) for the kernels to split into tasks.
    input, offset, weight, bias, mask, p = make_inputs(n=2, channels=8, out_channels=4, size=(24, 24),
                                                       groups=2, offset_groups=2)
    tensors = [t.requires_grad_() for t in (input, offset, weight, bias, mask)]
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = deform_conv2d(input, offset, weight, bias, mask, **p)
            results.append([out] + list(torch.autograd.grad(out.sin().sum(), tensors)))
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_gradients_without_mask_and_bias_are_none():
    input, offset, weight, _, _, p = make_inputs(with_mask=False, with_bias=False)
    tensors = [t.requires_grad_() for t in (input, offset, weight)]
    out = deform_conv2d(input, offset, weight, None, None, **p)
    grads = torch.autograd.grad(out.sum(), tensors)
    assert all(g is not None and g.shape == t.shape for g, t in zip(grads, tensors))


# ----------------------------------------------------------------------------------------------
# empty and bad inputs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_mask", [False, True])
def test_empty_batch(with_mask):
    input, offset, weight, bias, mask, p = make_inputs(n=0, with_mask=with_mask)
    tensors = [t.requires_grad_() for t in (input, offset, weight, bias) + ((mask,) if with_mask else ())]
    out = deform_conv2d(input, offset, weight, bias, mask, **p)
    assert out.shape == (0, 6, 7, 8)
    grads = torch.autograd.grad(out.sum(), tensors)
    for g, t in zip(grads, tensors):
        assert g.shape == t.shape and (g == 0).all()


def _call(input, offset, weight, bias=None, mask=None, **overrides):
    params = dict(stride=1, padding=1, dilation=1, groups=1, deformable_groups=1)
    params.update(overrides)
    return deform_conv2d(input, offset, weight, bias, mask, **params)


def test_bad_inputs_raise_clear_errors():
    input, offset, weight, bias, mask, _ = make_inputs()
    with pytest.raises(RuntimeError, match=r"offset must have shape \[N, 2 \* offset_groups \* kh \* kw, Ho, Wo\]"):
        _call(input, offset[:, :10], weight)
    with pytest.raises(RuntimeError, match="offset must have shape .* = \\[2, 36, 7, 8\\]"):
        _call(input, offset, weight, deformable_groups=2)
    with pytest.raises(RuntimeError, match=r"input must be a 4-D tensor \[N, C, H, W\], got \[4, 7, 8\]"):
        _call(input[0], offset, weight)
    with pytest.raises(RuntimeError, match="weight must be a 4-D tensor"):
        _call(input, offset, weight[0])
    with pytest.raises(RuntimeError, match=r"offset must have the dtype of input \(Double\), got Float"):
        _call(input, offset.float(), weight)
    with pytest.raises(RuntimeError, match="mask must have the dtype of input"):
        _call(input, offset, weight, mask=mask.float())
    with pytest.raises(RuntimeError, match=r"mask must have shape \[N, offset_groups \* kh \* kw, Ho, Wo\]"):
        _call(input, offset, weight, mask=mask[:, :4])
    with pytest.raises(RuntimeError, match=r"bias must be a 1-D tensor \[Cout\] = \[6\]"):
        _call(input, offset, weight, bias=bias[:5])
    with pytest.raises(RuntimeError, match="input channels \\(4\\) must be divisible by groups \\(3\\)"):
        _call(input, offset, weight, groups=3)
    with pytest.raises(RuntimeError, match="weight must have C / groups"):
        _call(input, offset, weight, groups=2)
    with pytest.raises(RuntimeError, match="stride must be positive"):
        _call(input, offset, weight, stride=0)
    with pytest.raises(RuntimeError, match="is too small"):
        _call(input[:, :, :1, :1], offset, weight, padding=0)


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
def test_module_state_dict_keys_match_maskrcnn_benchmark():
    def keys(module):
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    assert keys(DeformConv(8, 16, 3, padding=1)) == {"weight": (16, 8, 3, 3)}
    assert keys(ModulatedDeformConv(8, 16, 3, padding=1)) == {"weight": (16, 8, 3, 3), "bias": (16,)}
    assert keys(ModulatedDeformConvPack(8, 16, 3, padding=1, deformable_groups=2)) == {
        "weight": (16, 8, 3, 3), "bias": (16,),
        "conv_offset_mask.weight": (54, 8, 3, 3), "conv_offset_mask.bias": (54,),
    }
    assert keys(DFConv2d(8, 16)) == {"offset.weight": (27, 8, 3, 3), "offset.bias": (27,), "conv.weight": (16, 8, 3, 3)}
    assert keys(DFConv2d(8, 16, with_modulated_dcn=False, deformable_groups=2, bias=True)) == {
        "offset.weight": (36, 8, 3, 3), "offset.bias": (36,), "conv.weight": (16, 8, 3, 3), "conv.bias": (16,),
    }


@pytest.mark.parametrize("modulated", [False, True])
def test_dfconv2d_starts_as_a_plain_convolution(modulated):
    torch.manual_seed(0)
    layer = DFConv2d(4, 6, with_modulated_dcn=modulated, stride=2, dilation=2, groups=2, deformable_groups=2)
    x = torch.randn(2, 4, 11, 9)
    expected = F.conv2d(x, layer.conv.weight, None, stride=2, padding=2, dilation=2, groups=2)
    # The zero-initialised offset conv gives zero offsets and (modulated) mask sigmoid(0) = 1/2.
    torch.testing.assert_close(layer(x), expected * (0.5 if modulated else 1.0), rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0 and layer.conv.weight.grad.abs().sum() > 0
    assert layer(x[:0]).shape == (0, *expected.shape[1:])


def test_dfconv2d_splits_offsets_and_mask_like_maskrcnn_benchmark():
    torch.manual_seed(0)
    layer = DFConv2d(4, 3, with_modulated_dcn=True)
    torch.nn.init.normal_(layer.offset.weight, std=0.3)
    x = torch.randn(1, 4, 6, 7)
    prediction = layer.offset(x)
    expected = modulated_deform_conv(x, prediction[:, :18], prediction[:, -9:].sigmoid(), layer.conv.weight, None,
                                     1, 1, 1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_modulated_deform_conv_pack_matches_functional():
    torch.manual_seed(0)
    layer = ModulatedDeformConvPack(4, 5, 3, stride=1, padding=1)
    assert (layer.conv_offset_mask.weight == 0).all() and (layer.conv_offset_mask.bias == 0).all()
    torch.nn.init.normal_(layer.conv_offset_mask.weight, std=0.3)
    x = torch.randn(2, 4, 6, 5)
    o1, o2, m = torch.chunk(layer.conv_offset_mask(x), 3, dim=1)
    expected = modulated_deform_conv(x, torch.cat((o1, o2), 1), m.sigmoid(), layer.weight, layer.bias, 1, 1)
    torch.testing.assert_close(layer(x), expected)
    assert layer(x[:0]).shape == (0, 5, 6, 5)


def test_deform_conv_module_matches_functional():
    torch.manual_seed(0)
    layer = DeformConv(4, 6, (3, 1), stride=(1, 2), padding=(1, 0), deformable_groups=2)
    x = torch.randn(1, 4, 5, 6)
    offset = torch.randn(1, 2 * 2 * 3, 5, 3)
    torch.testing.assert_close(layer(x, offset), deform_conv(x, offset, layer.weight, (1, 2), (1, 0), 1, 1, 2))
    assert "deformable_groups=2" in repr(layer)


# ----------------------------------------------------------------------------------------------
# compile, export, autocast, reduced precision
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_mask_and_bias", [False, True])
def test_opcheck_schema_fake_and_autograd_registration(with_mask_and_bias):
    input, offset, weight, bias, mask, _ = make_inputs(n=1, size=(4, 5), stride=(2, 1), padding=(1, 2),
                                                       dilation=(1, 2), with_mask=with_mask_and_bias,
                                                       with_bias=with_mask_and_bias)
    tensors = [t.requires_grad_() if t is not None else None for t in (input, weight, offset, mask, bias)]
    params = (2, 1, 1, 2, 1, 2, 1, 1)
    torch.library.opcheck(torch.ops.maskrcnn.deform_conv2d.default, (*tensors, *params))
    grad = torch.randn(1, 6, *offset.shape[2:], dtype=torch.float64)
    detached = [t.detach() if t is not None else None for t in tensors]
    torch.library.opcheck(torch.ops.maskrcnn._deform_conv2d_backward.default, (grad, *detached, *params))


def test_torch_compile_fullgraph_forward_and_backward():
    input, offset, weight, bias, mask, p = make_inputs(dtype=torch.float32)

    def fn(x, o, w, b, m):
        return deform_conv2d(x, o, w, b, m, **p).relu()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (input, offset, weight, bias, mask)]
    eager_leaves = [t.clone().requires_grad_() for t in (input, offset, weight, bias, mask)]
    out = compiled(*leaves)
    expected = fn(*eager_leaves)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    for got, want in zip(leaves, eager_leaves):
        torch.testing.assert_close(got.grad, want.grad)


def test_torch_export_of_dfconv2d():
    torch.manual_seed(0)
    layer = DFConv2d(4, 6).eval()
    torch.nn.init.normal_(layer.offset.weight, std=0.2)
    x = torch.randn(1, 4, 9, 8)
    exported = torch.export.export(layer, (x,))
    assert any("deform_conv2d" in str(node.target) for node in exported.graph.nodes)
    other = torch.randn(1, 4, 9, 8)
    torch.testing.assert_close(exported.module()(other), layer(other))


def test_autocast_cpu_bfloat16_runs_in_float32():
    torch.manual_seed(0)
    layer = DFConv2d(4, 6)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)  # the offset conv runs in bfloat16, the deformable conv in float32
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad.shape == x.shape and layer.offset.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_lower_precision_cpu_close_to_float64(dtype):
    input, offset, weight, bias, mask, p = make_inputs()
    expected = deform_conv2d(input, offset, weight, bias, mask, **p)
    args = [t.to(dtype).requires_grad_() for t in (input, offset, weight, bias, mask)]
    out = deform_conv2d(args[0], args[1], args[2], args[3], args[4], **p)
    assert out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 0.15
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol * 5)
    out.float().sum().backward()
    assert all(a.grad is not None and a.grad.dtype == dtype for a in args)


# ----------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("with_mask", [False, True])
def test_cuda_matches_cpu_forward_and_backward(with_mask):
    input, offset, weight, bias, mask, p = make_inputs(n=3, channels=8, out_channels=6, size=(11, 13), groups=2,
                                                       offset_groups=2, with_mask=with_mask, stride=(2, 1))
    cpu = [t.requires_grad_() for t in (input, offset, weight, bias, mask) if t is not None]
    gpu = [t.detach().cuda().requires_grad_() for t in cpu]

    def run(args):
        m = args[4] if with_mask else None
        out = deform_conv2d(args[0], args[1], args[2], args[3], m, **p)
        return [out] + list(torch.autograd.grad(out.sin().sum(), args))

    for want, got in zip(run(cpu), run(gpu)):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)


@needs_cuda
def test_cuda_gradcheck():
    input, offset, weight, bias, mask, p = make_inputs(n=2, channels=4, out_channels=2, size=(5, 6), offset_scale=1.5)
    tensors = [t.cuda().requires_grad_() for t in (input, offset, weight, bias, mask)]
    assert torch.autograd.gradcheck(lambda x, o, w, b, m: deform_conv2d(x, o, w, b, m, **p), tensors,
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_reduced_precision_close_to_float64(dtype):
    input, offset, weight, bias, mask, p = make_inputs(n=2, channels=16, out_channels=8, size=(10, 12))
    expected = deform_conv2d(input, offset, weight, bias, mask, **p)
    args = [t.cuda().to(dtype).requires_grad_() for t in (input, offset, weight, bias, mask)]
    out = deform_conv2d(*args[:3], args[3], args[4], **p)
    tol = 1e-4 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(out.double().cpu(), expected, rtol=tol, atol=tol * 10)
    out.float().sum().backward()
    assert all(a.grad is not None and torch.isfinite(a.grad.float()).all() for a in args)


@needs_cuda
def test_cuda_autocast_and_empty_batch():
    layer = DFConv2d(8, 8).cuda()
    x = torch.randn(2, 8, 16, 16, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = layer(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert layer(x[:0]).shape == (0, 8, 16, 16)
