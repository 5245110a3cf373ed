"""Small layer factories shared by the heads and backbones (maskrcnn-benchmark's make_layers.py).

Initialisation follows Detectron/Caffe2: "XavierFill" there is `kaiming_uniform_(w, a=1)` here,
"MSRAFill" is `kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`, biases start at 0.

GroupNorm settings: `group_norm` takes them as explicit arguments; any left as None come from a
config's MODEL.GROUP_NORM (DIM_PER_GP, NUM_GROUPS, EPSILON) — the `cfg` passed in, else the global
`maskrcnn.config.cfg` that tools merge YAML files into, exactly as maskrcnn-benchmark read them.
"""
from torch import nn

from maskrcnn.layers.misc import Conv2d

__all__ = [
    "get_group_gn",
    "group_norm",
    "make_conv3x3",
    "make_fc",
    "conv_with_kaiming_uniform",
]


def get_group_gn(dim, dim_per_gp, num_groups):
    """Number of GroupNorm groups for `dim` channels.

    Exactly one of `dim_per_gp` (channels per group) and `num_groups` must be positive, the other -1.
    """
    if (dim_per_gp > 0) == (num_groups > 0):
        raise ValueError(
            "GroupNorm: set exactly one of dim_per_gp (channels per group) and num_groups, "
            f"the other to -1; got dim_per_gp={dim_per_gp}, num_groups={num_groups}"
        )
    if dim_per_gp > 0:
        if dim % dim_per_gp != 0:
            raise ValueError(f"GroupNorm: dim={dim} is not divisible by dim_per_gp={dim_per_gp}")
        return dim // dim_per_gp
    if dim % num_groups != 0:
        raise ValueError(f"GroupNorm: dim={dim} is not divisible by num_groups={num_groups}")
    return num_groups


def _group_norm_settings(cfg):
    if cfg is None:
        from maskrcnn.config import cfg  # the global config, read at call time like upstream
    gn = cfg.MODEL.GROUP_NORM
    return gn.DIM_PER_GP, gn.NUM_GROUPS, gn.EPSILON


def group_norm(out_channels, affine=True, divisor=1, dim_per_gp=None, num_groups=None, eps=None,
               cfg=None):
    """nn.GroupNorm over `out_channels // divisor` channels.

    `dim_per_gp` and `num_groups` are divided by `divisor` too (a value of -1 stays negative, i.e.
    unset). Arguments left as None are taken from `cfg.MODEL.GROUP_NORM` (see module docstring);
    maskrcnn-benchmark's defaults there are DIM_PER_GP=-1, NUM_GROUPS=32, EPSILON=1e-5.
    """
    if dim_per_gp is None or num_groups is None or eps is None:
        cfg_dim_per_gp, cfg_num_groups, cfg_eps = _group_norm_settings(cfg)
        dim_per_gp = cfg_dim_per_gp if dim_per_gp is None else dim_per_gp
        num_groups = cfg_num_groups if num_groups is None else num_groups
        eps = cfg_eps if eps is None else eps
    out_channels = out_channels // divisor
    dim_per_gp = dim_per_gp // divisor
    num_groups = num_groups // divisor
    return nn.GroupNorm(get_group_gn(out_channels, dim_per_gp, num_groups), out_channels, eps, affine)


def _with_norm_and_relu(layer, out_channels, use_gn, use_relu):
    modules = [layer]
    if use_gn:
        modules.append(group_norm(out_channels))
    if use_relu:
        modules.append(nn.ReLU(inplace=True))
    return layer if len(modules) == 1 else nn.Sequential(*modules)


def make_conv3x3(in_channels, out_channels, dilation=1, stride=1, use_gn=False, use_relu=False,
                 kaiming_init=True):
    """3x3 Conv2d with padding = dilation (spatial size kept at stride 1), optionally followed by
    GroupNorm and ReLU (then an nn.Sequential: conv at index 0, norm at 1, relu last).

    Weight init: MSRAFill if `kaiming_init`, else normal(std=0.01). The conv has a bias (zero) only
    without GroupNorm.
    """
    conv = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation,
                  dilation=dilation, bias=not use_gn)
    if kaiming_init:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    else:
        nn.init.normal_(conv.weight, std=0.01)
    if not use_gn:
        nn.init.constant_(conv.bias, 0)
    return _with_norm_and_relu(conv, out_channels, use_gn, use_relu)


def make_fc(dim_in, hidden_dim, use_gn=False):
    """nn.Linear(dim_in, hidden_dim) with XavierFill weights and zero bias; with `use_gn`, a
    bias-free Linear followed by GroupNorm (nn.Sequential)."""
    fc = nn.Linear(dim_in, hidden_dim, bias=not use_gn)
    nn.init.kaiming_uniform_(fc.weight, a=1)
    if not use_gn:
        nn.init.constant_(fc.bias, 0)
    return _with_norm_and_relu(fc, hidden_dim, use_gn, use_relu=False)


def conv_with_kaiming_uniform(use_gn=False, use_relu=False):
    """Returns make_conv(in_channels, out_channels, kernel_size, stride=1, dilation=1): a Conv2d
    with "same" padding dilation * (kernel_size - 1) // 2, XavierFill weights, a zero bias unless
    GroupNorm follows, then optional GroupNorm and ReLU. Used by the FPN builders."""

    def make_conv(in_channels, out_channels, kernel_size, stride=1, dilation=1):
        conv = Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                      padding=dilation * (kernel_size - 1) // 2, dilation=dilation, bias=not use_gn)
        nn.init.kaiming_uniform_(conv.weight, a=1)
        if not use_gn:
            nn.init.constant_(conv.bias, 0)
        return _with_norm_and_relu(conv, out_channels, use_gn, use_relu)

    return make_conv
