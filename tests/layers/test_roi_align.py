"""RoIAlign (maskrcnn.layers.roi_align / ROIAlign) against a float64 reference written out here."""
import math

import numpy as np
import pytest
import torch

from maskrcnn.layers import ROIAlign, roi_align

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _bilinear(planes, y, x):
    """planes: ndarray[C, H, W]; the bilinear sample at (y, x) per channel, with RoIAlign's border rules."""
    _, height, width = planes.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(planes.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * planes[:, y0, x0] + hy * lx * planes[:, y0, x1]
        + ly * hx * planes[:, y1, x0] + ly * lx * planes[:, y1, x1]
    )


def reference_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Loop-by-loop RoIAlign in float64: input [N, C, H, W], rois [K, 5] -> [K, C, PH, PW]."""
    features = input.detach().double().numpy()
    boxes = rois.detach().double().numpy()
    pooled_h, pooled_w = output_size
    out = np.zeros((boxes.shape[0], features.shape[1], pooled_h, pooled_w))
    offset = 0.5 if aligned else 0.0
    for k, (batch, x1, y1, x2, y2) in enumerate(boxes):
        start_x, start_y = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        roi_w = x2 * spatial_scale - offset - start_x
        roi_h = y2 * spatial_scale - offset - start_y
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / pooled_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pooled_w)
        count = max(grid_h * grid_w, 1)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                total = np.zeros(features.shape[1])
                for iy in range(grid_h):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total += _bilinear(features[int(batch)], y, x)
                out[k, :, ph, pw] = total / count
    return torch.from_numpy(out)


def make_rois(batch_size, image_h, image_w, generator):
    """Tensor[K, 5] (float64): random boxes plus boxes partly / fully outside, zero-size and reversed ones."""
    count = 8
    x1 = torch.rand(count, generator=generator, dtype=torch.float64) * image_w * 0.8
    y1 = torch.rand(count, generator=generator, dtype=torch.float64) * image_h * 0.8
    w = torch.rand(count, generator=generator, dtype=torch.float64) * image_w * 0.6 + 1
    h = torch.rand(count, generator=generator, dtype=torch.float64) * image_h * 0.6 + 1
    random_boxes = torch.stack([x1, y1, x1 + w, y1 + h], dim=1)
    special = torch.tensor(
        [
            [-10.0, -7.0, image_w * 0.5, image_h * 0.5],  # partly outside (top-left)
            [image_w * 0.6, image_h * 0.4, image_w + 9.0, image_h + 13.0],  # partly outside (bottom-right)
            [image_w + 20.0, image_h + 20.0, image_w + 40.0, image_h + 35.0],  # fully outside
            [-50.0, -40.0, -20.0, -10.0],  # fully outside, negative
            [5.0, 6.0, 5.0, 6.0],  # zero size
            [9.0, 3.0, 4.0, 8.0],  # reversed x
            [0.0, 0.0, image_w - 1.0, image_h - 1.0],  # whole image
        ],
        dtype=torch.float64,
    )
    boxes = torch.cat([random_boxes, special])
    batch = torch.randint(0, batch_size, (boxes.shape[0], 1), generator=generator).double()
    return torch.cat([batch, boxes], dim=1)


def make_case(dtype=torch.float64, batch_size=2, channels=3, height=9, width=11, scale=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input = torch.randn(batch_size, channels, height, width, generator=generator, dtype=torch.float64)
    rois = make_rois(batch_size, height / scale, width / scale, generator)
    return input.to(dtype), rois.to(dtype)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2, 3])
def test_matches_reference_float64(aligned, sampling_ratio):
    input, rois = make_case()
    out = roi_align(input, rois, (3, 4), 0.5, sampling_ratio, aligned)
    expected = reference_roi_align(input, rois, (3, 4), 0.5, sampling_ratio, aligned)
    assert out.shape == (rois.shape[0], 3, 3, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("aligned", [False, True])
def test_wide_and_narrow_rois_match_reference(aligned):
    """Wide RoIs with few samples take the kernel's direct path, narrow ones its two-pass path."""
    generator = torch.Generator().manual_seed(11)
    input = torch.randn(1, 2, 5, 90, generator=generator, dtype=torch.float64)
    rois = torch.tensor(
        [[0.0, 1.5, 0.5, 88.0, 4.0], [0.0, -3.0, 1.0, 95.0, 3.5], [0.0, 10.2, 0.2, 13.7, 3.9], [0.0, 40.0, 2.0, 41.0, 2.5]],
        dtype=torch.float64,
    )
    grad_out = torch.randn(4, 2, 2, 3, generator=generator, dtype=torch.float64)
    for sampling_ratio in (1, 0):
        x = input.clone().requires_grad_()
        out = roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned)
        expected = reference_roi_align(input, rois, (2, 3), 1.0, sampling_ratio, aligned)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        out.backward(grad_out)
        torch.testing.assert_close((expected * grad_out).sum(), (input * x.grad).sum())


@pytest.mark.parametrize("aligned", [False, True])
def test_matches_reference_float32(aligned):
    input, rois = make_case(torch.float32, seed=1)
    out = roi_align(input, rois, 5, 0.5, 2, aligned)
    expected = reference_roi_align(input, rois, (5, 5), 0.5, 2, aligned)
    torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_follow_float32(dtype):
    input, rois = make_case(torch.float32, seed=2)
    input, rois = input.to(dtype), rois.to(dtype)
    out = roi_align(input, rois, 3, 0.5, 2, False)
    expected = roi_align(input.float(), rois.float(), 3, 0.5, 2, False)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    x = input.clone().requires_grad_()
    roi_align(x, rois, 3, 0.5, 2, False).sum().backward()
    x_float = input.float().requires_grad_()
    roi_align(x_float, rois.float(), 3, 0.5, 2, False).sum().backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.float(), x_float.grad, rtol=2e-2, atol=2e-2)


def test_linear_ramp_gives_sample_positions():
    """On a feature map whose value is its x coordinate, every bin averages its samples' x."""
    width = 20
    input = torch.arange(width, dtype=torch.float64).expand(1, 1, 10, width).contiguous()
    rois = torch.tensor([[0.0, 4.0, 2.0, 24.0, 12.0]], dtype=torch.float64)
    for aligned in (False, True):
        out = roi_align(input, rois, (2, 4), 0.5, 2, aligned)
        start = 2.0 - (0.5 if aligned else 0.0)
        bin_w = (12.0 - 2.0) / 4
        expected = torch.tensor([start + (pw + 0.5) * bin_w for pw in range(4)], dtype=torch.float64)
        torch.testing.assert_close(out[0, 0], expected.expand(2, 4))


def test_legacy_and_aligned_modes_differ_and_legacy_clamps_small_rois():
    input, _ = make_case()
    tiny = torch.tensor([[0.0, 6.0, 6.0, 6.2, 6.2]], dtype=torch.float64)
    legacy = roi_align(input, tiny, 2, 0.5, 2, False)
    aligned = roi_align(input, tiny, 2, 0.5, 2, True)
    assert not torch.allclose(legacy, aligned)
    # legacy: the 0.1-pixel RoI is widened to one feature pixel, so its bins read different points
    assert not torch.allclose(legacy[..., 0, 0], legacy[..., 1, 1])


def test_thread_count_does_not_change_results():
    input, rois = make_case(torch.float32, batch_size=2, channels=8, seed=3)
    grad_out = torch.randn(rois.shape[0], 8, 4, 4)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = input.clone().requires_grad_()
            out = roi_align(x, rois, 4, 0.5, 0, True)
            out.backward(grad_out)
            results.append((out, x.grad))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck(aligned, sampling_ratio):
    input, rois = make_case(batch_size=2, channels=2, height=6, width=7, scale=0.5, seed=4)
    input.requires_grad_()
    fn = lambda x: roi_align(x, rois, (2, 3), 0.5, sampling_ratio, aligned)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (input,))
    assert torch.autograd.gradgradcheck(fn, (input,))


def test_backward_is_adjoint_of_forward():
    input, rois = make_case(seed=5)
    grad_out = torch.randn(rois.shape[0], input.shape[1], 3, 3, dtype=torch.float64)
    x = input.clone().requires_grad_()
    roi_align(x, rois, 3, 0.5, 0, False).backward(grad_out)
    forward = reference_roi_align(input, rois, (3, 3), 0.5, 0, False)
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close((forward * grad_out).sum(), (input * x.grad).sum())


def test_empty_rois_give_empty_output_and_zero_grad():
    input = torch.randn(2, 3, 5, 6, requires_grad=True)
    rois = torch.zeros(0, 5)
    out = roi_align(input, rois, (7, 7), 0.25, 2)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert input.grad.shape == input.shape and not input.grad.any()


def test_rois_outside_the_map_give_zeros():
    input = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    rois = torch.tensor([[0.0, 30.0, 30.0, 40.0, 40.0], [0.0, -40.0, -40.0, -30.0, -30.0]], dtype=torch.float64)
    assert not roi_align(input, rois, 2, 1.0, 2, True).any()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda: (torch.randn(3, 5, 5), torch.zeros(1, 5)), r"roi_align: input must be a 4-D tensor \[N, C, H, W\], got \[3, 5, 5\]"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.zeros(3, 4)), r"roi_align: rois must be a 2-D tensor of shape \[K, 5\].*got \[3, 4\]"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.zeros(2, 5, dtype=torch.float64)), r"roi_align: rois dtype \(Double\) must match input dtype \(Float\)"),
        (lambda: (torch.randn(1, 3, 5, 5), torch.tensor([[1.0, 0, 0, 2, 2]])), r"roi_align: rois\[0, 0\] = 1 is not a batch index of the input \(batch size 1\)"),
        (lambda: (torch.randn(2, 3, 5, 5), torch.tensor([[0.0, 0, 0, 2, 2], [-1.0, 0, 0, 2, 2]])), r"rois\[1, 0\] = -1 is not a batch index"),
    ],
)
def test_bad_inputs_raise_clear_errors(make_args, message):
    input, rois = make_args()
    with pytest.raises(RuntimeError, match=message):
        roi_align(input, rois, 2, 1.0, 2)


def test_bad_output_size_and_scale():
    input, rois = torch.randn(1, 1, 4, 4), torch.zeros(1, 5)
    with pytest.raises(RuntimeError, match="roi_align: output size must be positive"):
        roi_align(input, rois, (0, 2), 1.0, 2)
    with pytest.raises(RuntimeError, match="roi_align: spatial_scale must be positive"):
        roi_align(input, rois, 2, 0.0, 2)


def test_module_matches_function_and_repr():
    input, rois = make_case(torch.float32, seed=6)
    module = ROIAlign((3, 2), 0.5, 2, aligned=True)
    torch.testing.assert_close(module(input, rois), roi_align(input, rois, (3, 2), 0.5, 2, True))
    assert repr(module) == "ROIAlign(output_size=(3, 2), spatial_scale=0.5, sampling_ratio=2, aligned=True)"
    assert ROIAlign(7, 0.25, 0).output_size == (7, 7)


def test_torch_compile_fullgraph_forward_and_backward():
    input, rois = make_case(torch.float32, seed=7)

    def step(x, r):
        return roi_align(x, r, (3, 3), 0.5, 2, False).square().sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x_eager = input.clone().requires_grad_()
    x_compiled = input.clone().requires_grad_()
    step(x_eager, rois).backward()
    compiled(x_compiled, rois).backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad)


def test_torch_export():
    input, rois = make_case(torch.float32, seed=8)
    module = ROIAlign((2, 2), 0.5, 0, aligned=False)
    exported = torch.export.export(module, (input, rois))
    assert any("maskrcnn.roi_align" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(input, rois), module(input, rois))


def test_cpu_autocast_bfloat16_runs_in_float32():
    input, rois = make_case(torch.float32, seed=9)
    conv = torch.nn.Conv2d(3, 4, 1)
    x = input.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(x)
        assert features.dtype == torch.bfloat16
        out = roi_align(features, rois, 2, 0.5, 2, True)  # bfloat16 features, float32 rois
    assert out.dtype == torch.float32
    expected = roi_align(features.detach().float(), rois, 2, 0.5, 2, True)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.any()


def _channels_last(tensor):
    return tensor.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_channels_last_matches_reference_without_a_copy(aligned, sampling_ratio):
    # the NHWC path (its own loops over channels) must give what the reference gives
    input, rois = make_case(channels=5, seed=11)
    out = roi_align(_channels_last(input), rois, (3, 4), 0.5, sampling_ratio, aligned)
    expected = reference_roi_align(input, rois, (3, 4), 0.5, sampling_ratio, aligned)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_channels_last_forward_and_backward_follow_the_nchw_path(dtype):
    input, rois = make_case(dtype, batch_size=2, channels=37, height=12, width=10, seed=12)
    grad_out = torch.randn(rois.shape[0], 37, 7, 7).to(dtype)
    results = {}
    for layout, prepare in (("nchw", lambda t: t.contiguous()), ("nhwc", _channels_last)):
        x = prepare(input.clone()).requires_grad_()
        out = roi_align(x, rois, 7, 0.5, 2, False)
        out.backward(prepare(grad_out))
        results[layout] = (out, x.grad)
    (out_nchw, grad_nchw), (out_nhwc, grad_nhwc) = results["nchw"], results["nhwc"]
    assert grad_nhwc.is_contiguous(memory_format=torch.channels_last) and not grad_nhwc.is_contiguous()
    assert grad_nhwc.abs().sum() > 0
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(out_nhwc, out_nchw, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(grad_nhwc, grad_nchw, rtol=tolerance, atol=tolerance)


def test_channels_last_backward_takes_an_nchw_gradient_and_ignores_thread_count():
    # a box head flattens the pooled features, so its gradient arrives NCHW-contiguous
    input, rois = make_case(torch.float32, batch_size=2, channels=40, seed=13)
    grad_out = torch.randn(rois.shape[0], 40, 4, 4)
    grads = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = _channels_last(input.clone()).requires_grad_()
            roi_align(x, rois, 4, 0.5, 0, True).backward(grad_out)
            grads.append(x.grad)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(grads[0], grads[1])
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    x = input.clone().requires_grad_()
    roi_align(x, rois, 4, 0.5, 0, True).backward(grad_out)
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-5, atol=1e-5)


def test_channels_last_gradcheck():
    input, rois = make_case(batch_size=2, channels=3, height=6, width=7, scale=0.5, seed=14)
    x = _channels_last(input).requires_grad_()
    fn = lambda t: roi_align(t, rois, (2, 3), 0.5, 2, False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_channels_last_compiles_with_the_layout_of_the_kernel():
    # the fake kernel must promise the strides the CPU kernel returns
    input, rois = make_case(torch.float32, channels=4, seed=15)
    x = _channels_last(input)
    compiled = torch.compile(lambda t, r: roi_align(t, r, (3, 3), 0.5, 2, False) * 2, fullgraph=True,
                             backend="aot_eager")
    out = compiled(x, rois)
    torch.testing.assert_close(out, roi_align(input, rois, (3, 3), 0.5, 2, False) * 2)
    assert out.is_contiguous(memory_format=torch.channels_last)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("aligned", [False, True])
def test_cuda_matches_cpu(dtype, aligned):
    input, rois = make_case(torch.float32, seed=10)
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-10}.get(dtype, 2e-2)
    grad_out = torch.randn(rois.shape[0], input.shape[1], 3, 3)
    results = []
    for device in ("cpu", "cuda"):
        x = input.to(device, dtype).requires_grad_()
        out = roi_align(x, rois.to(device, dtype), 3, 0.5, 0, aligned)
        out.backward(grad_out.to(device, dtype))
        results.append((out.float().cpu(), x.grad.float().cpu()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=tolerance, atol=tolerance)
