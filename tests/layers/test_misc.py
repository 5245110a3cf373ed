import pytest
import torch
from torch.nn import functional as F

from maskrcnn.layers import BatchNorm2d, Conv2d, ConvTranspose2d, interpolate
from maskrcnn.layers.misc import _NewEmptyTensorOp


def _params_have_zero_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.count_nonzero(p.grad) == 0, name


@pytest.mark.parametrize(
    "kwargs, in_hw, out_hw",
    [
        (dict(kernel_size=3, padding=1), (7, 9), (7, 9)),
        (dict(kernel_size=3, stride=2, padding=1), (7, 9), (4, 5)),
        (dict(kernel_size=3, padding=2, dilation=2), (7, 9), (7, 9)),
        (dict(kernel_size=1), (0, 5), (0, 5)),
    ],
)
def test_conv2d_empty_batch_shape_and_grads(kwargs, in_hw, out_hw):
    conv = Conv2d(3, 5, **kwargs)
    x = torch.zeros(0, 3, *in_hw, requires_grad=True)
    y = conv(x)
    assert y.shape == (0, 5, *out_hw)
    y.sum().backward()
    _params_have_zero_grads(conv)
    assert x.grad.shape == x.shape


def test_conv2d_matches_torch_on_nonempty():
    torch.manual_seed(0)
    conv = Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert isinstance(conv, torch.nn.Conv2d)


def test_conv_transpose2d_empty_batch():
    deconv = ConvTranspose2d(4, 2, kernel_size=2, stride=2)
    x = torch.zeros(0, 4, 14, 14, requires_grad=True)
    y = deconv(x)
    assert y.shape == (0, 2, 28, 28)
    y.sum().backward()
    _params_have_zero_grads(deconv)
    deconv = ConvTranspose2d(4, 2, kernel_size=3, stride=2, padding=1, output_padding=1)
    assert deconv(torch.zeros(0, 4, 5, 5)).shape == (0, 2, 10, 10)


def test_batchnorm2d_empty_batch_keeps_running_stats():
    bn = BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
    bn.train()
    x = torch.zeros(0, 3, 4, 4, requires_grad=True)
    y = bn(x)
    assert y.shape == x.shape
    y.sum().backward()
    _params_have_zero_grads(bn)
    assert torch.equal(bn.running_mean, torch.full((3,), 0.5))
    assert torch.equal(bn.running_var, torch.full((3,), 2.0))
    assert bn.num_batches_tracked.item() == 0
    bn.eval()
    assert bn(torch.zeros(0, 3, 2, 2)).shape == (0, 3, 2, 2)


def test_batchnorm2d_nonempty_and_bad_rank():
    torch.manual_seed(0)
    bn = BatchNorm2d(3)
    x = torch.randn(4, 3, 2, 2)
    ref = torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    with pytest.raises(ValueError):
        bn(torch.zeros(0, 3))


@pytest.mark.parametrize(
    "kwargs, out_hw",
    [
        (dict(scale_factor=2), (10, 12)),
        (dict(size=(3, 4), mode="bilinear", align_corners=False), (3, 4)),
        (dict(scale_factor=0.5, mode="nearest"), (2, 3)),
    ],
)
def test_interpolate_empty_and_nonempty(kwargs, out_hw):
    x = torch.zeros(0, 2, 5, 6, requires_grad=True)
    y = interpolate(x, **kwargs)
    assert y.shape == (0, 2, *out_hw)
    y.sum().backward()
    assert x.grad.shape == x.shape
    x = torch.randn(1, 2, 5, 6)
    torch.testing.assert_close(interpolate(x, **kwargs), F.interpolate(x, **kwargs))


def test_interpolate_positional_order_matches_upstream():
    x = torch.randn(1, 1, 2, 2)
    y = interpolate(x, None, 2, "bilinear", False)
    torch.testing.assert_close(y, F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


def test_new_empty_tensor_op_shapes_and_backward():
    x = torch.zeros(0, 3, 4, 4, requires_grad=True)
    y = _NewEmptyTensorOp.apply(x, (0, 7, 2, 2))
    assert y.shape == (0, 7, 2, 2)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_conv2d_empty_spatial_size_and_groups():
    conv = Conv2d(4, 6, kernel_size=3, padding=1, groups=2)
    y = conv(torch.zeros(2, 4, 0, 3, requires_grad=True))
    assert y.shape == (2, 6, 0, 3)
    y.sum().backward()
    _params_have_zero_grads(conv)
    deconv = ConvTranspose2d(4, 2, kernel_size=2, stride=2, bias=False)
    y = deconv(torch.zeros(1, 4, 0, 3))
    assert y.shape == (1, 2, 0, 6)
