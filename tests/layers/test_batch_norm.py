import pytest
import torch

from maskrcnn.layers import FrozenBatchNorm2d


def _random_frozen(n, eps=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = FrozenBatchNorm2d(n, eps=eps)
    bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
    bn.bias.copy_(torch.randn(n, generator=g))
    bn.running_mean.copy_(torch.randn(n, generator=g))
    bn.running_var.copy_(torch.rand(n, generator=g) + 0.1)
    return bn


def test_buffers_not_parameters_and_state_dict_keys():
    bn = FrozenBatchNorm2d(4)
    assert list(bn.parameters()) == []
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    assert bn.eps == 0.0


@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_matches_eval_batchnorm(eps):
    bn = _random_frozen(5, eps=eps)
    ref = torch.nn.BatchNorm2d(5, eps=eps).eval()
    ref.load_state_dict(bn.state_dict(), strict=False)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    expected = (x - bn.running_mean.double()[None, :, None, None]) / torch.sqrt(
        bn.running_var.double()[None, :, None, None] + eps
    ) * bn.weight.double()[None, :, None, None] + bn.bias.double()[None, :, None, None]
    torch.testing.assert_close(bn(x.float()), expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn(x.float()), ref(x.float()), rtol=1e-5, atol=1e-5)
    bn.train()  # training mode changes nothing: statistics are frozen
    torch.testing.assert_close(bn(x.float()), expected.float(), rtol=1e-5, atol=1e-5)


def test_default_eps_is_zero_not_torch_default():
    bn = FrozenBatchNorm2d(1)
    bn.running_var.fill_(1e-4)
    y = bn(torch.ones(1, 1, 1, 1))
    torch.testing.assert_close(y, torch.full((1, 1, 1, 1), 100.0))


def test_gradient_flows_to_input_only():
    bn = _random_frozen(3)
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    bn(x).sum().backward()
    scale = bn.weight * bn.running_var.rsqrt()
    torch.testing.assert_close(x.grad, scale[None, :, None, None].expand_as(x))


def test_loads_checkpoint_without_running_stats():
    bn = _random_frozen(3)
    state = {"weight": torch.full((3,), 2.0), "bias": torch.full((3,), -1.0)}
    result = bn.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(bn.running_mean, torch.zeros(3))
    assert torch.equal(bn.running_var, torch.ones(3))
    torch.testing.assert_close(bn(torch.ones(1, 3, 1, 1)), torch.ones(1, 3, 1, 1))


def test_loads_torch_batchnorm_state_dict():
    ref = torch.nn.BatchNorm2d(3)
    ref.running_mean.fill_(0.25)
    bn = FrozenBatchNorm2d(3)
    result = bn.load_state_dict(ref.state_dict())  # has num_batches_tracked
    assert result.unexpected_keys == []
    assert torch.equal(bn.running_mean, ref.running_mean)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_keeps_dtype(dtype):
    bn = _random_frozen(4)
    x = torch.randn(2, 4, 3, 3)
    y = bn(x.to(dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), bn(x), rtol=2e-2, atol=5e-2)
    bn_half = _random_frozen(4).to(dtype)  # buffers in half precision too
    assert bn_half(x.to(dtype)).dtype == dtype


def test_empty_batch_and_bad_channels():
    bn = _random_frozen(3)
    assert bn(torch.zeros(0, 3, 5, 5)).shape == (0, 3, 5, 5)
    with pytest.raises(ValueError, match="Tensor\\[N, 3"):
        bn(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="n"):
        FrozenBatchNorm2d(0)


def test_convert_frozen_batchnorm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Sequential(torch.nn.BatchNorm2d(4)))
    model[1][0].running_mean.uniform_()
    model.eval()
    x = torch.randn(1, 3, 2, 2)
    expected = model(x)
    converted = FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    assert isinstance(converted[1][0], FrozenBatchNorm2d)
    assert converted[1][0].eps == 1e-5
    torch.testing.assert_close(converted(x), expected)


def test_repr():
    assert "FrozenBatchNorm2d(7, eps=0.0)" == repr(FrozenBatchNorm2d(7))
