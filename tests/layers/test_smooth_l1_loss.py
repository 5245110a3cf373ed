import pytest
import torch

from maskrcnn.layers import smooth_l1_loss


def _reference(x, y, beta):
    out = []
    for a, b in zip(x.flatten().tolist(), y.flatten().tolist()):
        d = abs(a - b)
        out.append(0.5 * d * d / beta if d < beta else d - 0.5 * beta)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("beta", [1.0 / 9, 1.0, 0.5])
def test_matches_reference(beta):
    torch.manual_seed(0)
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randn(7, 4, dtype=torch.float64)
    ref = _reference(x, y, beta)
    torch.testing.assert_close(smooth_l1_loss(x, y, beta=beta), ref.mean())
    torch.testing.assert_close(smooth_l1_loss(x, y, beta=beta, size_average=False), ref.sum())


def test_default_beta_and_torch_agreement():
    torch.manual_seed(1)
    x, y = torch.randn(10), torch.randn(10)
    expected = torch.nn.functional.smooth_l1_loss(x, y, beta=1.0 / 9)
    torch.testing.assert_close(smooth_l1_loss(x, y), expected)


def test_beta_zero_is_l1_and_gradients_finite():
    x = torch.tensor([0.0, 1.0, -2.0], requires_grad=True)
    y = torch.zeros(3)
    loss = smooth_l1_loss(x, y, beta=0.0, size_average=False)
    assert loss.item() == 3.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(torch.zeros(2), torch.zeros(2), beta=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        smooth_l1_loss(torch.zeros(2), torch.zeros(3))
