"""RoIPool (maskrcnn.layers.roi_pool / ROIPool) against a float64 reference written out here."""
import math

import pytest
import torch

from maskrcnn.layers import ROIPool, roi_pool

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _round_half_away(value):
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def reference_roi_pool(input, rois, output_size, spatial_scale):
    """Fast R-CNN max pooling in float64: returns (output [K, C, PH, PW], argmax [K, C, PH, PW], -1 if empty)."""
    _, channels, height, width = input.shape
    pooled_h, pooled_w = output_size
    out = torch.zeros(rois.shape[0], channels, pooled_h, pooled_w, dtype=torch.float64)
    argmax = torch.full(out.shape, -1, dtype=torch.int64)
    for k, (batch, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        x1, y1, x2, y2 = (_round_half_away(v * spatial_scale) for v in (x1, y1, x2, y2))
        bin_h = max(y2 - y1 + 1, 1) / pooled_h
        bin_w = max(x2 - x1 + 1, 1) / pooled_w
        for ph in range(pooled_h):
            h0 = min(max(math.floor(ph * bin_h) + y1, 0), height)
            h1 = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
            for pw in range(pooled_w):
                w0 = min(max(math.floor(pw * bin_w) + x1, 0), width)
                w1 = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                region = input[int(batch), :, h0:h1, w0:w1].double().reshape(channels, -1)
                values, flat = region.max(dim=1)  # first maximum, as the kernels' strict '>'
                out[k, :, ph, pw] = values
                argmax[k, :, ph, pw] = (h0 + flat // (w1 - w0)) * width + w0 + flat % (w1 - w0)
    return out, argmax


def make_case(dtype=torch.float64, batch_size=2, channels=3, height=9, width=11, scale=0.5, seed=0):
    """Distinct feature values (no ties) and RoIs incl. partly / fully outside, zero-size and reversed."""
    generator = torch.Generator().manual_seed(seed)
    numel = batch_size * channels * height * width
    input = (torch.randperm(numel, generator=generator).double() / numel).reshape(batch_size, channels, height, width)
    image_h, image_w = height / scale, width / scale
    x1 = torch.rand(8, generator=generator, dtype=torch.float64) * image_w * 0.8
    y1 = torch.rand(8, generator=generator, dtype=torch.float64) * image_h * 0.8
    sizes = torch.rand(8, 2, generator=generator, dtype=torch.float64) * torch.tensor([image_w, image_h]) * 0.6
    boxes = torch.cat([torch.stack([x1, y1], 1), torch.stack([x1, y1], 1) + sizes], dim=1)
    special = torch.tensor(
        [
            [-9.0, -7.0, image_w * 0.5, image_h * 0.5],
            [image_w * 0.6, image_h * 0.4, image_w + 9.0, image_h + 13.0],
            [image_w + 20.0, image_h + 20.0, image_w + 40.0, image_h + 35.0],
            [-50.0, -40.0, -20.0, -10.0],
            [5.2, 6.2, 5.2, 6.2],
            [9.2, 3.2, 4.2, 8.2],
        ],
        dtype=torch.float64,
    )
    boxes = torch.cat([boxes, special])
    batch = torch.randint(0, batch_size, (boxes.shape[0], 1), generator=generator).double()
    return input.to(dtype), torch.cat([batch, boxes], dim=1).to(dtype)


@pytest.mark.parametrize("output_size", [(2, 2), (3, 4), (5, 5)])
def test_matches_reference(output_size):
    input, rois = make_case()
    out, argmax = torch.ops.maskrcnn.roi_pool(input, rois, 0.5, *output_size)
    expected, expected_argmax = reference_roi_pool(input, rois, output_size, 0.5)
    assert argmax.dtype == torch.int32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.equal(argmax.long(), expected_argmax)
    assert (argmax == -1).any(), "the case should contain empty bins"
    torch.testing.assert_close(roi_pool(input, rois, output_size, 0.5), expected, rtol=0, atol=0)


def test_float32_matches_reference():
    input, rois = make_case(torch.float32, seed=1)
    expected, _ = reference_roi_pool(input, rois, (3, 3), 0.5)
    torch.testing.assert_close(roi_pool(input, rois, 3, 0.5), expected.float(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    input, rois = make_case(torch.float32, seed=2)
    out = roi_pool(input.to(dtype), rois.to(dtype), 3, 0.5)
    assert out.dtype == dtype
    expected, _ = reference_roi_pool(input.to(dtype), rois.to(dtype), (3, 3), 0.5)
    torch.testing.assert_close(out.double(), expected)


def test_backward_routes_gradient_to_argmax():
    input, rois = make_case(seed=3)
    grad_out = torch.randn(rois.shape[0], input.shape[1], 3, 3, dtype=torch.float64)
    x = input.clone().requires_grad_()
    roi_pool(x, rois, 3, 0.5).backward(grad_out)
    _, argmax = reference_roi_pool(input, rois, (3, 3), 0.5)
    expected = torch.zeros_like(input)
    for k in range(rois.shape[0]):
        plane = expected[int(rois[k, 0])].view(input.shape[1], -1)
        for c in range(input.shape[1]):
            hit = argmax[k, c].flatten() >= 0
            plane[c].index_add_(0, argmax[k, c].flatten()[hit], grad_out[k, c].flatten()[hit])
    torch.testing.assert_close(x.grad, expected)


def test_ties_pick_the_first_maximum():
    input = torch.ones(1, 1, 4, 4)
    out, argmax = torch.ops.maskrcnn.roi_pool(input, torch.tensor([[0.0, 0, 0, 3, 3]]), 1.0, 2, 2)
    assert torch.equal(out, torch.ones(1, 1, 2, 2))
    assert argmax.flatten().tolist() == [0, 2, 8, 10]


def test_gradcheck():
    input, rois = make_case(batch_size=2, channels=2, height=6, width=7, seed=4)
    input.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: roi_pool(x, rois, (2, 3), 0.5), (input,))


def test_thread_count_does_not_change_results():
    input, rois = make_case(torch.float32, channels=8, seed=5)
    grad_out = torch.randn(rois.shape[0], 8, 2, 2)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = input.clone().requires_grad_()
            out = roi_pool(x, rois, 2, 0.5)
            out.backward(grad_out)
            results.append((out, x.grad))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_empty_rois_give_empty_output_and_zero_grad():
    input = torch.randn(2, 3, 5, 6, requires_grad=True)
    out = roi_pool(input, torch.zeros(0, 5), (7, 7), 0.25)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert input.grad.shape == input.shape and not input.grad.any()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda: (torch.randn(3, 5, 5), torch.zeros(1, 5)), r"roi_pool: input must be a 4-D tensor \[N, C, H, W\], got \[3, 5, 5\]"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.zeros(3, 4)), r"roi_pool: rois must be a 2-D tensor of shape \[K, 5\].*got \[3, 4\]"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.zeros(2, 5, dtype=torch.float64)), r"roi_pool: rois dtype \(Double\) must match input dtype \(Float\)"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.tensor([[2.0, 0, 0, 2, 2]])), r"roi_pool: rois\[0, 0\] = 2 is not a batch index of the input \(batch size 1\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(make_args, message):
    input, rois = make_args()
    with pytest.raises(RuntimeError, match=message):
        roi_pool(input, rois, 2, 1.0)


def test_module_matches_function_and_repr():
    input, rois = make_case(torch.float32, seed=6)
    module = ROIPool((3, 2), 0.5)
    torch.testing.assert_close(module(input, rois), roi_pool(input, rois, (3, 2), 0.5))
    assert repr(module) == "ROIPool(output_size=(3, 2), spatial_scale=0.5)"


def test_torch_compile_fullgraph_forward_and_backward():
    input, rois = make_case(torch.float32, seed=7)

    def step(x, r):
        return roi_pool(x, r, (3, 3), 0.5).square().sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x_eager = input.clone().requires_grad_()
    x_compiled = input.clone().requires_grad_()
    step(x_eager, rois).backward()
    compiled(x_compiled, rois).backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)


def test_torch_export():
    input, rois = make_case(torch.float32, seed=8)
    module = ROIPool((2, 2), 0.5)
    exported = torch.export.export(module, (input, rois))
    assert any("maskrcnn.roi_pool" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(input, rois), module(input, rois))


def test_cpu_autocast_bfloat16_runs_in_float32():
    input, rois = make_case(torch.float32, seed=9)
    x = input.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = torch.nn.functional.conv2d(x, torch.ones(2, 3, 1, 1))
        assert features.dtype == torch.bfloat16
        out = roi_pool(features, rois, 2, 0.5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, roi_pool(features.detach().float(), rois, 2, 0.5))
    out.sum().backward()
    assert x.grad is not None and x.grad.any()


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    input, rois = make_case(torch.float32, seed=10)
    grad_out = torch.randn(rois.shape[0], input.shape[1], 3, 3)
    results = []
    for device in ("cpu", "cuda"):
        x = input.to(device, dtype).requires_grad_()
        out, argmax = torch.ops.maskrcnn.roi_pool(x, rois.to(device, dtype), 0.5, 3, 3)
        out.backward(grad_out.to(device, dtype))
        results.append((out.cpu(), argmax.cpu(), x.grad.cpu()))
    assert torch.equal(results[1][0], results[0][0]) and torch.equal(results[1][1], results[0][1])
    torch.testing.assert_close(results[1][2], results[0][2], rtol=1e-2, atol=1e-2)
