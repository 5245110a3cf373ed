"""Building blocks and the network builder of FBNet (mobile backbones found by architecture search).

An architecture definition ("arch def", see fbnet_modeldef.py) names a block type from
`PRIMITIVES` and a `[t, c, n, s]` entry (expansion, output channels, repeats, stride) for each
group of blocks. `unify_arch_def` flattens it into one dict per block, and `FBNetBuilder` turns
selected blocks into modules, tracking the channel count from one block to the next.

Module attribute names (`pw`, `dw`, `pwl`, `se4`, `xif<stage>_<block>`, ...) follow
maskrcnn-benchmark so that its checkpoints load unchanged.
"""
import copy
import logging
import math
from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F

from maskrcnn.layers import BatchNorm2d, Conv2d, FrozenBatchNorm2d, interpolate

logger = logging.getLogger(__name__)


def _round_half_away_from_zero(x):
    """Python 2 style rounding (2.5 -> 3, -2.5 -> -3), which the published widths rely on."""
    return math.floor(x + 0.5) if x >= 0.0 else math.ceil(x - 0.5)


def _get_divisible_by(num, divisible_by, min_val):
    """`num` rounded to the nearest multiple of `divisible_by`; a rounding to zero multiples
    gives `min_val` multiples instead. `divisible_by <= 0` or a `num` that already divides
    leaves `num` (as int) unchanged.
    """
    if divisible_by <= 0 or num % divisible_by == 0:
        return int(num)
    multiple = _round_half_away_from_zero(num / divisible_by) or min_val
    return int(multiple * divisible_by)


def _check_bn_type(bn_type):
    """Split a normalization spec into (kind, group count): "bn", "af", None, or ("gn", groups)."""
    if isinstance(bn_type, (list, tuple)):
        if len(bn_type) != 2 or bn_type[0] != "gn":
            raise ValueError(
                f"bn_type: a list/tuple must be ('gn', num_groups), got {bn_type!r}"
            )
        return "gn", int(bn_type[1])
    if bn_type not in ("bn", "af", "gn", None):
        raise ValueError(
            f"bn_type must be one of 'bn', 'af' (frozen), ('gn', groups) or None, got {bn_type!r}"
        )
    if bn_type == "gn":
        raise ValueError("bn_type 'gn' needs a group count: pass ('gn', num_groups)")
    return bn_type, None


class ConvBNRelu(nn.Sequential):
    """Conv2d, then an optional normalization (`bn`) and an optional ReLU (`relu`).

    Arguments:
        input_depth, output_depth (int): channels in and out.
        kernel, stride, pad (int): convolution geometry; stride in {1, 2, 4}.
        no_bias (bool): leave out the convolution bias.
        use_relu ("relu" or None)
        bn_type: "bn" (BatchNorm2d), "af" (FrozenBatchNorm2d, an affine transform),
            ("gn", num_groups) (GroupNorm) or None (no normalization).
        group (int): convolution groups. Further keyword arguments (e.g. dilation) go to Conv2d.
    Input Tensor[N, input_depth, H, W] -> Tensor[N, output_depth, H', W'].
    """

    def __init__(self, input_depth, output_depth, kernel, stride, pad, no_bias, use_relu,
                 bn_type, group=1, **conv_kwargs):
        super().__init__()
        if use_relu not in ("relu", None):
            raise ValueError(f"use_relu must be 'relu' or None, got {use_relu!r}")
        if stride not in (1, 2, 4):
            raise ValueError(f"stride must be 1, 2 or 4, got {stride!r}")
        norm_kind, gn_groups = _check_bn_type(bn_type)

        conv = Conv2d(input_depth, output_depth, kernel_size=kernel, stride=stride,
                      padding=pad, bias=not no_bias, groups=group, **conv_kwargs)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        self.add_module("conv", conv)

        if norm_kind == "bn":
            self.add_module("bn", BatchNorm2d(output_depth))
        elif norm_kind == "af":
            self.add_module("bn", FrozenBatchNorm2d(output_depth))
        elif norm_kind == "gn":
            self.add_module("bn", nn.GroupNorm(num_groups=gn_groups, num_channels=output_depth))

        if use_relu == "relu":
            self.add_module("relu", nn.ReLU(inplace=True))


class Identity(nn.Module):
    """The "skip" op: passes the input through, or a 1x1 ConvBNRelu when the shape must change."""

    def __init__(self, C_in, C_out, stride):
        super().__init__()
        needs_projection = C_in != C_out or stride != 1
        self.conv = (
            ConvBNRelu(C_in, C_out, kernel=1, stride=stride, pad=0, no_bias=1,
                       use_relu="relu", bn_type="bn")
            if needs_projection else None
        )
        self.output_depth = C_out

    def forward(self, x):
        return x if self.conv is None else self.conv(x)


class _ResidualSequential(nn.Sequential):
    """A Sequential whose output gets the input added when stride is 1 and channels match."""

    def __init__(self, ops, C_in, C_out, stride):
        super().__init__(*ops)
        self.res_connect = stride == 1 and C_in == C_out
        self.output_depth = C_out

    def forward(self, x):
        y = super().forward(x)
        return y + x if self.res_connect else y


class CascadeConv3x3(_ResidualSequential):
    """The "basic_block" op: two 3x3 conv + BN (ReLU between), residual when shapes allow."""

    def __init__(self, C_in, C_out, stride):
        if stride not in (1, 2):
            raise ValueError(f"CascadeConv3x3: stride must be 1 or 2, got {stride!r}")
        ops = [
            Conv2d(C_in, C_in, 3, stride, 1, bias=False),
            BatchNorm2d(C_in),
            nn.ReLU(inplace=True),
            Conv2d(C_in, C_out, 3, 1, 1, bias=False),
            BatchNorm2d(C_out),
        ]
        super().__init__(ops, C_in, C_out, stride)


class Shift(nn.Module):
    """Zero-FLOP spatial shift: each channel group is moved by one offset of a k x k window.

    Implemented as a fixed (non-trainable) depthwise convolution whose kernel holds a single 1 per
    channel; the channels left over by `C // k**2` stay unshifted (centre tap).
    Input Tensor[N, C, H, W] -> Tensor[N, C, H', W'] (H' = (H + 2 * padding - k) // stride + 1).
    """

    def __init__(self, C, kernel_size, stride, padding):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"Shift: stride must be 1 or 2, got {stride!r}")
        self.C = C
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = 1

        kernel = torch.zeros((C, 1, kernel_size, kernel_size), dtype=torch.float32)
        centre = kernel_size // 2
        per_offset = C // (kernel_size * kernel_size)
        first = 0
        for i in range(kernel_size):
            for j in range(kernel_size):
                count = per_offset
                if i == centre and j == centre:
                    count += C % (kernel_size * kernel_size)
                kernel[first:first + count, 0, i, j] = 1.0
                first += count
        self.register_parameter("bias", None)
        self.kernel = nn.Parameter(kernel, requires_grad=False)

    def forward(self, x):
        return F.conv2d(x, self.kernel.to(x.dtype), self.bias, self.stride, self.padding,
                        self.dilation, self.C)


class ShiftBlock5x5(_ResidualSequential):
    """The "shift_5x5" op: 1x1 expansion, 5x5 Shift, 1x1 projection (BN after each conv)."""

    def __init__(self, C_in, C_out, expansion, stride):
        if stride not in (1, 2):
            raise ValueError(f"ShiftBlock5x5: stride must be 1 or 2, got {stride!r}")
        C_mid = _get_divisible_by(C_in * expansion, 8, 8)
        ops = [
            Conv2d(C_in, C_mid, 1, 1, 0, bias=False),
            BatchNorm2d(C_mid),
            nn.ReLU(inplace=True),
            Shift(C_mid, 5, stride, 2),
            Conv2d(C_mid, C_out, 1, 1, 0, bias=False),
            BatchNorm2d(C_out),
        ]
        super().__init__(ops, C_in, C_out, stride)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: [N, g*m, H, W] viewed as [N, g, m, H, W], transposed to m x g."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        N, C, H, W = x.shape
        g = self.groups
        if C % g != 0:
            raise ValueError(f"ChannelShuffle: {C} input channels do not split into {g} groups")
        return x.view(N, g, C // g, H, W).transpose(1, 2).reshape(N, C, H, W)


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(conv(relu(conv(avgpool(x))))), mid = max(C // 4, 8)."""

    reduction = 4

    def __init__(self, C):
        super().__init__()
        mid = max(C // self.reduction, 8)
        self.op = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            Conv2d(C, mid, 1, 1, 0),
            nn.ReLU(inplace=True),
            Conv2d(mid, C, 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.op(x)


class Upsample(nn.Module):
    """Nearest/bilinear upsampling by `scale_factor` (a number or one per spatial dim)."""

    def __init__(self, scale_factor, mode, align_corners=None):
        super().__init__()
        self.scale = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x):
        return interpolate(x, scale_factor=self.scale, mode=self.mode,
                           align_corners=self.align_corners)


def _get_upsample_op(stride):
    """Negative strides mean upsampling: returns (Upsample or None, the stride for the conv).

    `stride` is one of 1, 2, 4 (no upsampling), -1, -2, -4 (upsample by -stride, conv stride 1)
    or a tuple of negative strides (one per spatial dim).
    """
    if isinstance(stride, (tuple, list)):
        if not all(s in (-1, -2, -4) for s in stride):
            raise ValueError(f"a per-dimension stride must hold -1, -2 or -4, got {stride!r}")
        return Upsample(scale_factor=[-s for s in stride], mode="nearest"), 1
    if stride in (1, 2, 4):
        return None, stride
    if stride in (-1, -2, -4):
        return Upsample(scale_factor=-stride, mode="nearest"), 1
    raise ValueError(f"stride must be 1, 2, 4 or -1, -2, -4 (upsampling), got {stride!r}")


class IRFBlock(nn.Module):
    """Inverted residual block (MobileNetV2 style) with FBNet's options.

    1x1 group conv `pw` (C_in -> C_in * expansion, ReLU), optional channel shuffle, optional
    nearest upsampling (negative stride), depthwise `dw` (k x k, stride, dilation `dil`; two
    stacked depthwise convs `dw1`/`dw2` when `cdw`; none when kernel is 1), 1x1 group conv `pwl`
    (no ReLU), the residual when stride is 1 and channels match, then optional SE (`se4`).

    Arguments:
        input_depth, output_depth (int), expansion (float), stride (int or tuple, see
        `_get_upsample_op`), bn_type (see ConvBNRelu), kernel (1, 3, 5 or 7),
        width_divisor (int): the expanded width is rounded to a multiple of it,
        shuffle_type (None or "mid"), pw_group (int): groups of both 1x1 convs,
        se (bool), cdw (bool), dw_skip_bn / dw_skip_relu (bool): leave BN / ReLU out of the
        (last) depthwise conv, dil (int): depthwise dilation.
    Input Tensor[N, input_depth, H, W] -> Tensor[N, output_depth, H / stride, W / stride].
    """

    def __init__(self, input_depth, output_depth, expansion, stride, bn_type="bn", kernel=3,
                 width_divisor=1, shuffle_type=None, pw_group=1, se=False, cdw=False,
                 dw_skip_bn=False, dw_skip_relu=False, dil=1):
        super().__init__()
        if kernel not in (1, 3, 5, 7):
            raise ValueError(f"IRFBlock: kernel must be 1, 3, 5 or 7, got {kernel!r}")
        if shuffle_type not in (None, "mid"):
            raise ValueError(f"IRFBlock: shuffle_type must be None or 'mid', got {shuffle_type!r}")

        self.use_res_connect = stride == 1 and input_depth == output_depth
        self.output_depth = output_depth

        mid_depth = _get_divisible_by(int(input_depth * expansion), width_divisor, width_divisor)

        self.pw = ConvBNRelu(input_depth, mid_depth, kernel=1, stride=1, pad=0, no_bias=1,
                             use_relu="relu", bn_type=bn_type, group=pw_group)

        self.upscale, stride = _get_upsample_op(stride)

        last_dw_relu = None if dw_skip_relu else "relu"
        last_dw_bn = None if dw_skip_bn else bn_type
        dw_args = dict(kernel=kernel, pad=dil * (kernel // 2), group=mid_depth, no_bias=1,
                       dilation=dil)
        if kernel == 1:
            self.dw = nn.Sequential()
        elif cdw:
            self.dw = nn.Sequential(OrderedDict([
                ("dw1", ConvBNRelu(mid_depth, mid_depth, stride=stride, use_relu="relu",
                                   bn_type=bn_type, **dw_args)),
                ("dw2", ConvBNRelu(mid_depth, mid_depth, stride=1, use_relu=last_dw_relu,
                                   bn_type=last_dw_bn, **dw_args)),
            ]))
        else:
            self.dw = ConvBNRelu(mid_depth, mid_depth, stride=stride, use_relu=last_dw_relu,
                                 bn_type=last_dw_bn, **dw_args)

        self.pwl = ConvBNRelu(mid_depth, output_depth, kernel=1, stride=1, pad=0, no_bias=1,
                              use_relu=None, bn_type=bn_type, group=pw_group)

        self.shuffle_type = shuffle_type
        if shuffle_type is not None:
            self.shuffle = ChannelShuffle(pw_group)

        self.se4 = SEModule(output_depth) if se else nn.Sequential()

    def forward(self, x):
        y = self.pw(x)
        if self.shuffle_type == "mid":
            y = self.shuffle(y)
        if self.upscale is not None:
            y = self.upscale(y)
        y = self.dw(y)
        y = self.pwl(y)
        if self.use_res_connect:
            y = y + x
        return self.se4(y)


def _irf(kernel=3, fixed_expansion=None, **fixed):
    """A PRIMITIVES entry building an IRFBlock; a fixed_expansion overrides the arch def's t."""

    def build(C_in, C_out, expansion, stride, **kwargs):
        if fixed_expansion is not None:
            expansion = fixed_expansion
        return IRFBlock(C_in, C_out, expansion, stride, kernel=kernel, **fixed, **kwargs)

    return build


# op name -> callable(C_in, C_out, expansion, stride, **block_kwargs) -> module with .output_depth
PRIMITIVES = {
    "skip": lambda C_in, C_out, expansion, stride, **kwargs: Identity(C_in, C_out, stride),
    "ir_k3": _irf(3),
    "ir_k5": _irf(5),
    "ir_k7": _irf(7),
    "ir_k1": _irf(1),
    "shuffle": _irf(3, shuffle_type="mid", pw_group=4),
    "basic_block": lambda C_in, C_out, expansion, stride, **kwargs: CascadeConv3x3(
        C_in, C_out, stride),
    "shift_5x5": lambda C_in, C_out, expansion, stride, **kwargs: ShiftBlock5x5(
        C_in, C_out, expansion, stride),
    # layer search 2: fixed expansions, shuffled group convs
    "ir_k3_e1": _irf(3, 1),
    "ir_k3_e3": _irf(3, 3),
    "ir_k3_e6": _irf(3, 6),
    "ir_k3_s4": _irf(3, 4, shuffle_type="mid", pw_group=4),
    "ir_k5_e1": _irf(5, 1),
    "ir_k5_e3": _irf(5, 3),
    "ir_k5_e6": _irf(5, 6),
    "ir_k5_s4": _irf(5, 4, shuffle_type="mid", pw_group=4),
    # the same with squeeze-and-excitation
    "ir_k3_e1_se": _irf(3, 1, se=True),
    "ir_k3_e3_se": _irf(3, 3, se=True),
    "ir_k3_e6_se": _irf(3, 6, se=True),
    "ir_k3_s4_se": _irf(3, 4, shuffle_type="mid", pw_group=4, se=True),
    "ir_k5_e1_se": _irf(5, 1, se=True),
    "ir_k5_e3_se": _irf(5, 3, se=True),
    "ir_k5_e6_se": _irf(5, 6, se=True),
    "ir_k5_s4_se": _irf(5, 4, shuffle_type="mid", pw_group=4, se=True),
    # layer search 3: two shuffle groups, expansion 1
    "ir_k3_s2": _irf(3, 1, shuffle_type="mid", pw_group=2),
    "ir_k5_s2": _irf(5, 1, shuffle_type="mid", pw_group=2),
    "ir_k3_s2_se": _irf(3, 1, shuffle_type="mid", pw_group=2, se=True),
    "ir_k5_s2_se": _irf(5, 1, shuffle_type="mid", pw_group=2, se=True),
    # layer search 4: cascaded depthwise convs
    "ir_k3_sep": _irf(3, cdw=True),
    "ir_k33_e1": _irf(3, 1, cdw=True),
    "ir_k33_e3": _irf(3, 3, cdw=True),
    "ir_k33_e6": _irf(3, 6, cdw=True),
    # layer search 5: 7x7 kernels
    "ir_k7_e1": _irf(7, 1),
    "ir_k7_e3": _irf(7, 3),
    "ir_k7_e6": _irf(7, 6),
    "ir_k7_sep": _irf(7, cdw=True),
    "ir_k7_sep_e1": _irf(7, 1, cdw=True),
    "ir_k7_sep_e3": _irf(7, 3, cdw=True),
    "ir_k7_sep_e6": _irf(7, 6, cdw=True),
}


# ----------------------------------------------------------------------------------------------
# Architecture definitions
# ----------------------------------------------------------------------------------------------

def _expand_block_cfg(block_cfg):
    """[t, c, n, s] -> n copies of [t, c, 1, s'] where only the first keeps the stride s."""
    if not isinstance(block_cfg, list) or len(block_cfg) < 4:
        raise ValueError(f"a block config must be a list [t, c, n, s, ...], got {block_cfg!r}")
    expanded = []
    for idx in range(block_cfg[2]):
        block = copy.deepcopy(block_cfg)
        block[2] = 1
        if idx > 0:
            block[3] = 1
        expanded.append(block)
    return expanded


def expand_stage_cfg(stage_cfg):
    """One stage: a list of [t, c, n, s] -> a list of single blocks [t, c, 1, s]."""
    if not isinstance(stage_cfg, list):
        raise ValueError(f"a stage config must be a list of [t, c, n, s], got {stage_cfg!r}")
    return [block for entry in stage_cfg for block in _expand_block_cfg(entry)]


def expand_stages_cfg(stage_cfgs):
    """A list of stages -> a list of expanded stages (see expand_stage_cfg)."""
    if not isinstance(stage_cfgs, list):
        raise ValueError(f"stages must be a list of stage configs, got {stage_cfgs!r}")
    return [expand_stage_cfg(stage) for stage in stage_cfgs]


def _block_cfgs_to_list(stage_cfgs):
    """Stages -> flat [{"stage_idx": i, "block_idx": j, "block": [t, c, 1, s]}, ...]."""
    return [
        {"stage_idx": stage_idx, "block_idx": block_idx, "block": block}
        for stage_idx, stage in enumerate(expand_stages_cfg(stage_cfgs))
        for block_idx, block in enumerate(stage)
    ]


def _add_to_arch(arch, info, name):
    """Store info[stage][block] as arch[k][name] for the k-th flat block (indices must agree)."""
    flat = [
        (stage_idx, block_idx, value)
        for stage_idx, stage in enumerate(info)
        for block_idx, value in enumerate(stage)
    ]
    if len(flat) != len(arch):
        raise ValueError(
            f"'{name}' lists {len(flat)} blocks but the stages expand to {len(arch)} blocks"
        )
    for block, (stage_idx, block_idx, value) in zip(arch, flat):
        if (block["stage_idx"], block["block_idx"]) != (stage_idx, block_idx):
            raise ValueError(
                f"'{name}' entry ({stage_idx}, {block_idx}) does not line up with block {block}"
            )
        if name in block:
            raise ValueError(f"block {block} already has a '{name}'")
        block[name] = value


def unify_arch_def(arch_def):
    """Flatten an arch def into one dict per block.

    Input: {"block_op_type": [[op, ...] per stage], "block_cfg": {"first": [c, s],
    "stages": [[[t, c, n, s], ...] per stage], "last": [c, scale], "backbone": [...], ...}}.
    Output: the keys of block_cfg moved to the top level, with "stages" replaced by
    [{"stage_idx", "block_idx", "block": [t, c, 1, s], "block_op_type": op}, ...].
    """
    if "block_cfg" not in arch_def or "stages" not in arch_def["block_cfg"]:
        raise ValueError("arch_def needs a 'block_cfg' dict with a 'stages' entry")
    if "block_op_type" not in arch_def:
        raise ValueError("arch_def needs a 'block_op_type' entry (op names per stage)")
    if "stages" in arch_def:
        raise ValueError("arch_def must not have a top-level 'stages' (it belongs in block_cfg)")
    unified = copy.deepcopy(arch_def)
    block_cfg = unified.pop("block_cfg")
    unified.update(block_cfg)
    unified["stages"] = _block_cfgs_to_list(block_cfg["stages"])
    _add_to_arch(unified["stages"], unified.pop("block_op_type"), "block_op_type")
    return unified


def get_num_stages(arch_def):
    """Number of stages in a unified arch def (1 + the largest stage index)."""
    return max(block["stage_idx"] for block in arch_def["stages"]) + 1


def get_blocks(arch_def, stage_indices=None, block_indices=None):
    """A copy of a unified arch def keeping the blocks whose stage / block index is selected.

    None or [] selects everything along that axis.
    """
    selected = copy.deepcopy(arch_def)
    selected["stages"] = [
        block for block in arch_def["stages"]
        if (not stage_indices or block["stage_idx"] in stage_indices)
        and (not block_indices or block["block_idx"] in block_indices)
    ]
    return selected


class FBNetBuilder:
    """Turns parts of a unified arch def into modules, tracking channels in `last_depth`.

    Arguments:
        width_ratio (float): every channel count of the arch def is multiplied by it.
        bn_type: normalization of every block (see ConvBNRelu).
        width_divisor (int): channel counts are rounded to multiples of it.
        dw_skip_bn, dw_skip_relu (bool): see IRFBlock.
    """

    def __init__(self, width_ratio, bn_type="bn", width_divisor=1, dw_skip_bn=False,
                 dw_skip_relu=False):
        self.width_ratio = width_ratio
        self.last_depth = -1
        self.bn_type = bn_type
        self.width_divisor = width_divisor
        self.dw_skip_bn = dw_skip_bn
        self.dw_skip_relu = dw_skip_relu

    def _get_divisible_width(self, width):
        return _get_divisible_by(int(width), self.width_divisor, self.width_divisor)

    def add_first(self, stage_info, dim_in=3, pad=True):
        """The stem: ConvBNRelu(dim_in -> c * width_ratio, kernel k, stride s) from [c, s(, k)]."""
        if len(stage_info) < 2:
            raise ValueError(f"'first' must be [channels, stride(, kernel)], got {stage_info!r}")
        channels, stride = stage_info[0], stage_info[1]
        kernel = stage_info[2] if len(stage_info) > 2 else 3
        out_depth = self._get_divisible_width(int(channels * self.width_ratio))
        stem = ConvBNRelu(dim_in, out_depth, kernel=kernel, stride=stride,
                          pad=kernel // 2 if pad else 0, no_bias=1, use_relu="relu",
                          bn_type=self.bn_type)
        self.last_depth = out_depth
        return stem

    def add_blocks(self, blocks):
        """nn.Sequential of the given unified blocks, named "xif<stage_idx>_<block_idx>"."""
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise ValueError(f"blocks must be a list of unified block dicts, got {blocks!r}")
        modules = OrderedDict()
        for block in blocks:
            name = "xif{}_{}".format(block["stage_idx"], block["block_idx"])
            if name in modules:
                raise ValueError(f"block {name} appears twice")
            modules[name] = self.add_ir_block(block["block"], [block["block_op_type"]])
        return nn.Sequential(modules)

    def add_last(self, stage_info):
        """The final 1x1 ConvBNRelu from [channels, channel_scale].

        channel_scale == 0: no layer (an empty Sequential); > 0: channels (times width_ratio
        when that is above 1) times channel_scale; < 0: the current depth times -channel_scale.
        """
        if len(stage_info) != 2:
            raise ValueError(f"'last' must be [channels, channel_scale], got {stage_info!r}")
        channels, channel_scale = stage_info
        if channel_scale == 0.0:
            return nn.Sequential()
        if channel_scale > 0:
            base = int(channels * self.width_ratio) if self.width_ratio > 1.0 else channels
            last_channel = int(base * channel_scale)
        else:
            last_channel = int(self.last_depth * (-channel_scale))
        last_channel = self._get_divisible_width(last_channel)
        if last_channel == 0:
            return nn.Sequential()
        last = ConvBNRelu(self.last_depth, last_channel, kernel=1, stride=1, pad=0, no_bias=1,
                          use_relu="relu", bn_type=self.bn_type)
        self.last_depth = last_channel
        return last

    def add_final_pool(self, kernel_size=None):
        """Average pooling after the last layer: global when kernel_size is None, else k x k."""
        if kernel_size is None:
            return nn.AdaptiveAvgPool2d(1)
        return nn.AvgPool2d(kernel_size, stride=1)

    def _add_ir_block(self, dim_in, dim_out, stride, expand_ratio, block_op_type, **kwargs):
        if block_op_type not in PRIMITIVES:
            raise KeyError(
                f"unknown FBNet block op {block_op_type!r}; known: {sorted(PRIMITIVES)}"
            )
        module = PRIMITIVES[block_op_type](
            dim_in, dim_out, expansion=expand_ratio, stride=stride, bn_type=self.bn_type,
            width_divisor=self.width_divisor, dw_skip_bn=self.dw_skip_bn,
            dw_skip_relu=self.dw_skip_relu, **kwargs,
        )
        return module, module.output_depth

    def add_ir_block(self, tcns, block_op_types, **kwargs):
        """One block from [t, c, 1, s] and [op name], starting at the current depth."""
        t, c, n, s = tcns[:4]
        if n != 1:
            raise ValueError(f"add_ir_block takes a single block (n == 1), got {tcns!r}")
        out_depth = self._get_divisible_width(int(c * self.width_ratio))
        module, self.last_depth = self._add_ir_block(
            self.last_depth, out_depth, stride=s, expand_ratio=t,
            block_op_type=block_op_types[0], **kwargs,
        )
        return module
