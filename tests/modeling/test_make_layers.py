from types import SimpleNamespace

import pytest
import torch
from torch import nn

from maskrcnn.layers import Conv2d
from maskrcnn.modeling.make_layers import (
    conv_with_kaiming_uniform,
    get_group_gn,
    group_norm,
    make_conv3x3,
    make_fc,
)

GN = dict(dim_per_gp=-1, num_groups=32, eps=1e-5)


def _cfg(dim_per_gp=-1, num_groups=32, eps=1e-5):
    gn = SimpleNamespace(DIM_PER_GP=dim_per_gp, NUM_GROUPS=num_groups, EPSILON=eps)
    return SimpleNamespace(MODEL=SimpleNamespace(GROUP_NORM=gn))


def test_get_group_gn():
    assert get_group_gn(256, -1, 32) == 32
    assert get_group_gn(256, 16, -1) == 16
    with pytest.raises(ValueError, match="exactly one"):
        get_group_gn(256, 16, 32)
    with pytest.raises(ValueError, match="exactly one"):
        get_group_gn(256, -1, -1)
    with pytest.raises(ValueError, match="num_groups=32"):
        get_group_gn(100, -1, 32)
    with pytest.raises(ValueError, match="dim_per_gp=24"):
        get_group_gn(100, 24, -1)


def test_group_norm_explicit_and_divisor():
    gn = group_norm(256, **GN)
    assert isinstance(gn, nn.GroupNorm)
    assert (gn.num_groups, gn.num_channels, gn.eps, gn.affine) == (32, 256, 1e-5, True)
    gn = group_norm(256, affine=False, divisor=2, **GN)
    assert (gn.num_groups, gn.num_channels, gn.affine) == (16, 128, False)
    gn = group_norm(64, dim_per_gp=8, num_groups=-1, eps=1e-3, divisor=2)
    assert (gn.num_groups, gn.num_channels, gn.eps) == (8, 32, 1e-3)


def test_group_norm_reads_missing_settings_from_cfg():
    cfg = _cfg(dim_per_gp=16, num_groups=-1, eps=1e-6)
    gn = group_norm(64, cfg=cfg)
    assert (gn.num_groups, gn.eps) == (4, 1e-6)
    gn = group_norm(64, eps=0.1, cfg=cfg)  # explicit arguments win
    assert gn.eps == 0.1


@pytest.mark.parametrize("use_gn, use_relu", [(False, False), (False, True), (True, False), (True, True)])
def test_make_conv3x3_structure(use_gn, use_relu, monkeypatch):
    import maskrcnn.modeling.make_layers as ml

    monkeypatch.setattr(ml, "_group_norm_settings", lambda cfg: (-1, 4, 1e-5))
    torch.manual_seed(0)
    m = make_conv3x3(8, 16, dilation=2, stride=1, use_gn=use_gn, use_relu=use_relu)
    modules = list(m) if isinstance(m, nn.Sequential) else [m]
    conv = modules[0]
    assert isinstance(conv, Conv2d)
    assert conv.padding == (2, 2) and conv.dilation == (2, 2)
    assert (conv.bias is None) == use_gn
    if not use_gn:
        assert torch.count_nonzero(conv.bias) == 0
    assert isinstance(modules[-1], nn.ReLU) == use_relu
    assert any(isinstance(x, nn.GroupNorm) for x in modules) == use_gn
    if use_gn:
        assert modules[1].num_groups == 4
    assert m(torch.randn(1, 8, 5, 5)).shape == (1, 16, 5, 5)


def test_make_conv3x3_init_scales():
    torch.manual_seed(0)
    conv = make_conv3x3(64, 256)  # MSRAFill: std = sqrt(2 / fan_out), fan_out = 256 * 9
    assert abs(conv.weight.std().item() - (2 / (256 * 9)) ** 0.5) < 0.1 * (2 / (256 * 9)) ** 0.5
    conv = make_conv3x3(64, 256, kaiming_init=False)
    assert abs(conv.weight.std().item() - 0.01) < 0.001


def test_make_fc(monkeypatch):
    torch.manual_seed(0)
    fc = make_fc(1024, 512, use_gn=False)
    assert isinstance(fc, nn.Linear) and torch.count_nonzero(fc.bias) == 0
    bound = (3.0 / 1024) ** 0.5  # kaiming_uniform_(a=1): gain 1, bound sqrt(3 / fan_in)
    assert fc.weight.abs().max().item() <= bound
    assert fc.weight.abs().max().item() > 0.9 * bound
    import maskrcnn.modeling.make_layers as ml

    monkeypatch.setattr(ml, "_group_norm_settings", lambda cfg: (-1, 32, 1e-5))
    seq = make_fc(1024, 512, use_gn=True)
    assert isinstance(seq, nn.Sequential) and seq[0].bias is None
    assert isinstance(seq[1], nn.GroupNorm) and len(seq) == 2
    assert seq(torch.randn(3, 1024)).shape == (3, 512)


def test_conv_with_kaiming_uniform(monkeypatch):
    make_conv = conv_with_kaiming_uniform(use_gn=False, use_relu=True)
    m = make_conv(16, 32, kernel_size=3, stride=2, dilation=1)
    assert isinstance(m, nn.Sequential) and isinstance(m[0], Conv2d) and isinstance(m[1], nn.ReLU)
    assert m[0].padding == (1, 1) and m[0].stride == (2, 2)
    assert torch.count_nonzero(m[0].bias) == 0
    assert m(torch.randn(1, 16, 8, 8)).shape == (1, 32, 4, 4)
    conv = conv_with_kaiming_uniform()(16, 8, 1)
    assert isinstance(conv, Conv2d) and conv.padding == (0, 0)
    assert conv(torch.zeros(0, 16, 4, 4)).shape == (0, 8, 4, 4)
    import maskrcnn.modeling.make_layers as ml

    monkeypatch.setattr(ml, "_group_norm_settings", lambda cfg: (-1, 8, 1e-5))
    m = conv_with_kaiming_uniform(use_gn=True)(16, 32, 3, dilation=2)
    assert m[0].bias is None and m[0].padding == (2, 2) and m[1].num_groups == 8 and len(m) == 2
