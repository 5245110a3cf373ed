"""Winograd F(4x4, 3x3) convolutions (maskrcnn.layers.winograd_conv) against F.conv2d in float64,
gradients included, and the routing of maskrcnn.layers.Conv2d (MODEL.WINOGRAD)."""
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

import maskrcnn.layers.misc as misc
from maskrcnn.config import cfg as default_cfg
from maskrcnn.layers import Conv2d
from maskrcnn.layers import winograd_conv
from maskrcnn.layers.winograd_conv import set_winograd, winograd_applies, winograd_conv3x3
from maskrcnn.modeling.detector import build_detection_model

from tests.tiny_models import CPU_4_CLASSES


def channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def random_case(n, c, k, h, w, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = channels_last(torch.randn(n, c, h, w, generator=g, dtype=dtype))
    weight = torch.randn(k, c, 3, 3, generator=g, dtype=dtype) / (3 * c**0.5)
    b = torch.randn(k, generator=g, dtype=dtype) if bias else None
    return x, weight, b


# sizes that are and are not multiples of the 4x4 tile, a single pixel, one tile, C != K
SHAPES = [(2, 5, 7, 13, 9), (1, 3, 2, 1, 1), (1, 4, 4, 4, 4), (3, 8, 16, 6, 11), (1, 16, 8, 17, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_direct_convolution_float64(shape, bias):
    x, weight, b = random_case(*shape, bias=bias)
    out = winograd_conv3x3(x, weight, b)
    torch.testing.assert_close(out, F.conv2d(x, weight, b, padding=1), rtol=1e-10, atol=1e-10)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_direct_convolution_float64(shape):
    x, weight, b = random_case(*shape)
    tensors = [t.requires_grad_() for t in (x, weight, b)]
    grad_out = torch.randn(shape[0], shape[2], shape[3], shape[4], dtype=torch.float64)
    ours = torch.autograd.grad((winograd_conv3x3(*tensors) * grad_out).sum(), tensors)
    direct = torch.autograd.grad((F.conv2d(*tensors, padding=1) * grad_out).sum(), tensors)
    for a, e in zip(ours, direct):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    x, weight, b = random_case(1, 3, 2, 5, 6)
    assert torch.autograd.gradcheck(winograd_conv3x3, [t.requires_grad_() for t in (x, weight, b)])


def test_float32_error_is_rounding_only():
    """256 channels, as in the FPN: the float32 result is within a few 1e-5 of the float64 one."""
    x, weight, _ = random_case(1, 256, 256, 12, 10, dtype=torch.float32, bias=False)
    exact = F.conv2d(x.double(), weight.double(), padding=1)
    error = (winograd_conv3x3(x, weight) - exact).abs().max() / exact.abs().max()
    assert error < 5e-5


def test_tiles_processed_in_chunks_give_the_same_result(monkeypatch):
    """A chunk bound far below the tile count (7 x 5 x 2 tiles, 16 per chunk) changes nothing."""
    x, weight, b = random_case(2, 6, 5, 27, 18)
    tensors = [t.requires_grad_() for t in (x, weight, b)]
    whole = winograd_conv3x3(*tensors)
    whole_grads = torch.autograd.grad(whole.sum(), tensors)
    monkeypatch.setattr(winograd_conv, "_CHUNK_VALUES", 1)
    assert len(winograd_conv._chunks(x, 6)) > 1
    chunked = winograd_conv3x3(*tensors)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    for a, e in zip(torch.autograd.grad(chunked.sum(), tensors), whole_grads):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-11)


def test_only_requested_gradients_are_computed():
    x, weight, b = random_case(1, 4, 4, 8, 8)
    weight.requires_grad_()
    out = winograd_conv3x3(x, weight, b)
    (grad_weight,) = torch.autograd.grad(out.sum(), [weight])
    torch.testing.assert_close(grad_weight, torch.autograd.grad(F.conv2d(x, weight, b, padding=1).sum(), [weight])[0])
    assert x.grad is None and b.grad is None


def test_output_may_be_modified_in_place_under_autograd():
    x, weight, b = random_case(1, 4, 4, 8, 8)
    weight.requires_grad_()
    out = F.relu_(winograd_conv3x3(x, weight, b))
    out.sum().backward()
    expected = torch.autograd.grad(F.relu(F.conv2d(x, weight, b, padding=1)).sum(), [weight])[0]
    torch.testing.assert_close(weight.grad, expected)


def test_non_channels_last_input_is_accepted():
    x, weight, b = random_case(2, 5, 7, 13, 9)
    torch.testing.assert_close(winograd_conv3x3(x.contiguous(), weight, b), F.conv2d(x, weight, b, padding=1))


def test_bad_shapes_are_rejected_with_the_argument_named():
    x, weight, _ = random_case(1, 4, 4, 8, 8)
    with pytest.raises(ValueError, match="winograd_conv3x3: expected x .* weight"):
        winograd_conv3x3(x, weight[:, :, :2])
    with pytest.raises(RuntimeError, match="winograd_input_tiles: tiles must be"):
        torch.ops.maskrcnn.winograd_input_tiles(x.permute(0, 2, 3, 1), 0, torch.empty(36, 4, 3, dtype=x.dtype))
    with pytest.raises(RuntimeError, match=r"winograd_output_tiles_backward: tiles \[3, 7\) outside the 4 tiles"):
        torch.ops.maskrcnn.winograd_output_tiles_backward(x.permute(0, 2, 3, 1), 3, torch.empty(36, 4, 4, dtype=x.dtype))


_BASELINE_CHECK = """
import torch
from torch.nn import functional as F
from maskrcnn.layers.winograd_conv import winograd_conv3x3
torch.manual_seed(0)
x = torch.randn(2, 80, 13, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
w = torch.randn(72, 80, 3, 3, dtype=torch.float64, requires_grad=True)
out = winograd_conv3x3(x, w)
grads = torch.autograd.grad(out.square().sum(), [x, w])
ref = F.conv2d(x, w, padding=1)
expected = torch.autograd.grad(ref.square().sum(), [x, w])
torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
for a, e in zip(grads, expected):
    torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-9)
print("baseline ok")
"""


def test_baseline_kernels_match_when_forced():
    """The transforms are compiled twice (baseline x86-64 and AVX-512); the process picks one at
    start-up, so the baseline build is checked in a child process that forces it."""
    env = dict(os.environ, MASKRCNN_WINOGRAD_BASELINE="1")
    done = subprocess.run([sys.executable, "-c", _BASELINE_CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "baseline ok" in done.stdout


# ----------------------------------------------------------------------------- Conv2d routing
def eligible_conv_and_input(channels=64):
    conv = Conv2d(channels, channels, 3, padding=1)
    conv.winograd = True
    # 2 x 64 x 64 outputs: 2 x 16 x 16 = 512 tiles of 4x4, enough for 64 channels
    x = channels_last(torch.randn(2, channels, 64, 64))
    return conv, x


def test_conv2d_routes_eligible_convolutions(monkeypatch):
    calls = []

    def counting(x, weight, bias):
        calls.append(tuple(x.shape))
        return winograd_conv3x3(x, weight, bias)

    monkeypatch.setattr(misc, "winograd_conv3x3", counting)
    conv, x = eligible_conv_and_input()
    out = conv(x)
    assert calls == [tuple(x.shape)]
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-4, atol=1e-4)
    conv.winograd = False
    conv(x)
    assert len(calls) == 1


def test_winograd_applies_only_where_it_is_the_faster_kernel():
    conv, x = eligible_conv_and_input()
    assert winograd_applies(conv, x)
    assert not winograd_applies(conv, x.contiguous())  # NCHW: oneDNN without a layout change
    assert not winograd_applies(conv, x.double())
    assert not winograd_applies(conv, x[:1, :, :16, :16])  # 16 tiles: too few
    assert not winograd_applies(conv, channels_last(x[:, :, :40, :40]))  # 200 tiles: too few
    with torch.autocast("cpu", torch.bfloat16):
        assert not winograd_applies(conv, x)
    narrow, narrow_x = eligible_conv_and_input(channels=32)
    assert not winograd_applies(narrow, narrow_x)
    for other in (Conv2d(64, 64, 3, stride=2, padding=1), Conv2d(64, 64, 3, padding=2, dilation=2),
                  Conv2d(64, 64, 3, padding=1, groups=2), Conv2d(64, 64, 1)):
        assert not winograd_applies(other, x)


def test_conv2d_is_exported_as_the_ordinary_convolution():
    conv, x = eligible_conv_and_input()
    exported = torch.export.export(conv, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert not any("winograd" in t for t in targets)
    assert any("conv2d" in t or "convolution" in t for t in targets)


def tiny_cfg(winograd):
    cfg = default_cfg.clone()
    cfg.merge_from_list(CPU_4_CLASSES + ["MODEL.WINOGRAD", winograd])
    return cfg


@pytest.mark.parametrize("enabled", [True, False])
def test_model_winograd_sets_every_conv2d(enabled):
    model = build_detection_model(tiny_cfg(enabled))
    flags = [m.winograd for m in model.modules() if isinstance(m, Conv2d)]
    assert flags and all(f is enabled for f in flags)
    set_winograd(model, not enabled)
    assert all(m.winograd is (not enabled) for m in model.modules() if isinstance(m, Conv2d))


def test_conv2d_under_torch_compile_matches_direct_convolution_with_gradients():
    """torch.compile traces through the transforms (custom ops with fake kernels), training included."""
    conv, x = eligible_conv_and_input()
    x.requires_grad_()
    compiled = torch.compile(conv)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight])
    direct = F.conv2d(x, conv.weight, conv.bias, padding=1)
    expected = torch.autograd.grad(direct.square().sum(), [x, conv.weight])
    torch.testing.assert_close(out, direct, rtol=1e-4, atol=1e-4)
    for a, e in zip(grads, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-3 * e.abs().max().item())
