"""ResNet / ResNeXt bodies (bottleneck and basic blocks) with maskrcnn-benchmark's names.

A body is a stem (7x7/2 conv, norm, ReLU, 3x3/2 max-pool: stride 4) followed by residual stages
`layer1` ... `layer4` (res2 ... res5; strides 4, 8, 16, 32). Module attribute names match
maskrcnn-benchmark's, so its checkpoints load as they are:
`stem.conv1.weight`, `stem.bn1.*`, `layer1.0.conv1.weight`, `layer1.0.bn1.*`,
`layer1.0.downsample.0.weight`, `layer1.0.downsample.1.*`, ...

Three ways to build one:

* explicitly: `ResNetBody(stage_specs=ResNet50FPNStagesTo5, transformation_module="BottleneckWithGN")`;
* from a config, as in maskrcnn-benchmark: `ResNet(cfg)` (MODEL.BACKBONE.CONV_BODY selects the
  stage specs; MODEL.RESNETS.* the stem, block, widths, strides, dilation and DCN stages);
* the res5 head of C4 models: `ResNetHead(block_module, stages, num_groups, width_per_group,
  stride_in_1x1, stride_init, res2_out_channels, dilation, dcn_config)`.

Stems, blocks ("transformation modules") and stage specs are looked up by name in the registries
below; user code adds its own with `register_stem_module`, `register_transformation_module` and
`register_stage_spec`.
"""
from collections import namedtuple

import torch.nn.functional as F
from torch import nn

from maskrcnn.layers import Conv2d, FrozenBatchNorm2d
from maskrcnn.modeling.make_layers import group_norm
from maskrcnn.utils.registry import Registry

# ---------------------------------------------------------------------------------------------
# Stage specifications
# ---------------------------------------------------------------------------------------------
StageSpec = namedtuple(
    "StageSpec",
    [
        "index",  # stage number: 1 (res2, stride 4) ... 4 (res5, stride 32)
        "block_count",  # residual blocks in the stage
        "return_features",  # True: the body returns this stage's last feature map
    ],
)


def _stage_specs(block_counts, returned):
    """One StageSpec per entry of `block_counts`; `returned` is the set of indices to return."""
    return tuple(
        StageSpec(index=index, block_count=count, return_features=index in returned)
        for index, count in enumerate(block_counts, 1)
    )


_ALL = {1, 2, 3, 4}
# Bottleneck ResNets (blocks of 1x1 -> 3x3 -> 1x1 convs, 4x channel expansion).
ResNet50StagesTo5 = _stage_specs((3, 4, 6, 3), {4})
ResNet50StagesTo4 = _stage_specs((3, 4, 6), {3})
ResNet101StagesTo5 = _stage_specs((3, 4, 23, 3), {4})
ResNet101StagesTo4 = _stage_specs((3, 4, 23), {3})
ResNet50FPNStagesTo5 = _stage_specs((3, 4, 6, 3), _ALL)
ResNet101FPNStagesTo5 = _stage_specs((3, 4, 23, 3), _ALL)
ResNet152FPNStagesTo5 = _stage_specs((3, 8, 36, 3), _ALL)
# Basic-block ResNets (two 3x3 convs per block, no expansion; channels 64/128/256/512 with
# MODEL.RESNETS.RES2_OUT_CHANNELS = 64).
ResNet18FPNStagesTo5 = _stage_specs((2, 2, 2, 2), _ALL)
ResNet34FPNStagesTo5 = _stage_specs((3, 4, 6, 3), _ALL)

BOTTLENECK = "bottleneck"
BASIC = "basic"


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def _kaiming_init(conv):
    nn.init.kaiming_uniform_(conv.weight, a=1)


def _make_conv3x3(in_channels, out_channels, stride, dilation, groups, dcn_config):
    """A bias-free 3x3 conv keeping the spatial size (up to `stride`), deformable if asked.

    dcn_config: dict with "stage_with_dcn" (bool), "with_modulated_dcn" (bool), "deformable_groups"
    (int), as maskrcnn-benchmark passes it; None or {} means a plain convolution.
    """
    dcn_config = dcn_config or {}
    if dcn_config.get("stage_with_dcn", False):
        from maskrcnn.layers import DFConv2d  # the compiled deformable-conv op, only when used

        return DFConv2d(
            in_channels,
            out_channels,
            with_modulated_dcn=dcn_config.get("with_modulated_dcn", False),
            kernel_size=3,
            stride=stride,
            groups=groups,
            dilation=dilation,
            deformable_groups=dcn_config.get("deformable_groups", 1),
            bias=False,
        )
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        groups=groups,
        bias=False,
    )
    _kaiming_init(conv)
    return conv


def _make_downsample(in_channels, out_channels, stride, norm_func):
    """The projection shortcut `downsample`: 1x1 conv (index 0) then norm (index 1)."""
    conv = Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
    _kaiming_init(conv)
    return nn.Sequential(conv, norm_func(out_channels))


def _check_block_arguments(name, stride, dilation, num_groups):
    if stride not in (1, 2):
        raise ValueError(f"{name}: stride must be 1 or 2, got {stride}")
    if dilation < 1:
        raise ValueError(f"{name}: dilation must be >= 1, got {dilation}")
    if num_groups < 1:
        raise ValueError(f"{name}: num_groups must be >= 1, got {num_groups}")


class _ResidualBlock(nn.Module):
    """What Bottleneck and BasicBlock share: the argument checks, the default norm, the stride
    rule of dilated stages and the projection shortcut."""

    default_norm_func = staticmethod(FrozenBatchNorm2d)

    def _init_shortcut(self, in_channels, out_channels, stride, dilation, num_groups, norm_func):
        """Checks the arguments and sets ``self.downsample`` (None, or 1x1 conv + norm when the
        shape changes). Returns (norm_func, stride) for the block's own convolutions."""
        _check_block_arguments(type(self).__name__, stride, dilation, num_groups)
        norm_func = norm_func or self.default_norm_func
        if dilation > 1:
            stride = 1  # dilated stages keep the resolution of the previous stage
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = _make_downsample(in_channels, out_channels, stride, norm_func)
        return norm_func, stride

    def _shortcut(self, x):
        """x, or its projection when the shape changes."""
        return x if self.downsample is None else self.downsample(x)


class Bottleneck(_ResidualBlock):
    """Residual bottleneck: 1x1 (conv1/bn1) -> 3x3 (conv2/bn2, grouped for ResNeXt) -> 1x1 (conv3/bn3).

    x: Tensor[N, in_channels, H, W] -> Tensor[N, out_channels, H / stride, W / stride]
    (no spatial reduction when dilation > 1: the stride is traded for dilation, as in
    maskrcnn-benchmark). The shortcut is a projection `downsample` (1x1 conv + norm) when the
    shape changes.

    stride_in_1x1: put the stride on conv1 (MSRA / Caffe2 ResNet) rather than on conv2
        (fb.torch / ResNeXt).
    norm_func: callable(num_channels) -> nn.Module; subclasses set `default_norm_func`.
    dcn_config: makes conv2 a deformable conv (see `_make_conv3x3`).
    """

    block_kind = BOTTLENECK

    def __init__(
        self,
        in_channels,
        bottleneck_channels,
        out_channels,
        num_groups=1,
        stride_in_1x1=True,
        stride=1,
        dilation=1,
        norm_func=None,
        dcn_config=None,
    ):
        super().__init__()
        if bottleneck_channels % num_groups != 0:
            raise ValueError(
                f"{type(self).__name__}: bottleneck_channels ({bottleneck_channels}) must be "
                f"divisible by num_groups ({num_groups})"
            )
        norm_func, stride = self._init_shortcut(in_channels, out_channels, stride, dilation, num_groups, norm_func)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False)
        self.bn1 = norm_func(bottleneck_channels)
        self.conv2 = _make_conv3x3(
            bottleneck_channels, bottleneck_channels, stride_3x3, dilation, num_groups, dcn_config
        )
        self.bn2 = norm_func(bottleneck_channels)
        self.conv3 = Conv2d(bottleneck_channels, out_channels, 1, bias=False)
        self.bn3 = norm_func(out_channels)
        for conv in (self.conv1, self.conv3):
            _kaiming_init(conv)

    def forward(self, x):
        # the shortcut first: computing it after the branch gave other losses from iteration
        # ~60 on (rounding) and another `make train` AP (box 0.599 instead of 0.613)
        identity = self._shortcut(x)
        out = F.relu_(self.bn1(self.conv1(x)))
        out = F.relu_(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place: no new full-size tensor per block (eval and train)
        return F.relu_(out)


class BasicBlock(_ResidualBlock):
    """Residual basic block (ResNet-18/34): 3x3 (conv1/bn1, strided) -> 3x3 (conv2/bn2).

    x: Tensor[N, in_channels, H, W] -> Tensor[N, out_channels, H / stride, W / stride].
    Takes the same arguments as `Bottleneck` so that stages and heads can build either;
    `bottleneck_channels` and `stride_in_1x1` have no meaning here and are ignored, and
    `num_groups` must be 1. With dcn_config the second 3x3 conv is deformable.
    """

    block_kind = BASIC

    def __init__(
        self,
        in_channels,
        bottleneck_channels,
        out_channels,
        num_groups=1,
        stride_in_1x1=True,
        stride=1,
        dilation=1,
        norm_func=None,
        dcn_config=None,
    ):
        super().__init__()
        if num_groups != 1:
            raise ValueError(
                f"{type(self).__name__}: basic blocks support num_groups=1 only "
                f"(MODEL.RESNETS.NUM_GROUPS), got {num_groups}"
            )
        norm_func, stride = self._init_shortcut(in_channels, out_channels, stride, dilation, num_groups, norm_func)
        self.conv1 = _make_conv3x3(in_channels, out_channels, stride, dilation, 1, None)
        self.bn1 = norm_func(out_channels)
        self.conv2 = _make_conv3x3(out_channels, out_channels, 1, dilation, 1, dcn_config)
        self.bn2 = norm_func(out_channels)

    def forward(self, x):
        identity = self._shortcut(x)
        out = F.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return F.relu_(out)


def _stem_out_channels(cfg_or_channels):
    """maskrcnn-benchmark's stems take the cfg; ours also take the channel count directly."""
    if isinstance(cfg_or_channels, int):
        return cfg_or_channels
    return cfg_or_channels.MODEL.RESNETS.STEM_OUT_CHANNELS


class BaseStem(nn.Module):
    """conv1 (7x7/2, bias-free) -> bn1 -> ReLU -> 3x3/2 max-pool: Tensor[N, 3, H, W] ->
    Tensor[N, out_channels, ceil(H / 4), ceil(W / 4)].

    cfg: a config (reads MODEL.RESNETS.STEM_OUT_CHANNELS, as in maskrcnn-benchmark) or the
        number of output channels as an int.
    """

    default_norm_func = staticmethod(FrozenBatchNorm2d)

    def __init__(self, cfg=64, norm_func=None, in_channels=3):
        super().__init__()
        out_channels = _stem_out_channels(cfg)
        norm_func = norm_func or self.default_norm_func
        self.out_channels = out_channels
        self.conv1 = Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_func(out_channels)
        _kaiming_init(self.conv1)

    def forward(self, x):
        x = F.relu_(self.bn1(self.conv1(x)))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


# Normalisation variants. FixedBatchNorm (frozen statistics and affine) is the default for
# ImageNet-initialised detection training; GN reads MODEL.GROUP_NORM.* from the global config;
# BatchNorm / SyncBatchNorm train their statistics (SyncBatchNorm across processes).
def _batch_norm(num_channels):
    return nn.BatchNorm2d(num_channels)


def _sync_batch_norm(num_channels):
    return nn.SyncBatchNorm(num_channels)


class BottleneckWithFixedBatchNorm(Bottleneck):
    default_norm_func = staticmethod(FrozenBatchNorm2d)


class BottleneckWithGN(Bottleneck):
    default_norm_func = staticmethod(group_norm)


class BottleneckWithBatchNorm(Bottleneck):
    default_norm_func = staticmethod(_batch_norm)


class BottleneckWithSyncBatchNorm(Bottleneck):
    default_norm_func = staticmethod(_sync_batch_norm)


class BasicBlockWithFixedBatchNorm(BasicBlock):
    default_norm_func = staticmethod(FrozenBatchNorm2d)


class BasicBlockWithGN(BasicBlock):
    default_norm_func = staticmethod(group_norm)


class BasicBlockWithBatchNorm(BasicBlock):
    default_norm_func = staticmethod(_batch_norm)


class BasicBlockWithSyncBatchNorm(BasicBlock):
    default_norm_func = staticmethod(_sync_batch_norm)


class StemWithFixedBatchNorm(BaseStem):
    default_norm_func = staticmethod(FrozenBatchNorm2d)


class StemWithGN(BaseStem):
    default_norm_func = staticmethod(group_norm)


class StemWithBatchNorm(BaseStem):
    default_norm_func = staticmethod(_batch_norm)


class StemWithSyncBatchNorm(BaseStem):
    default_norm_func = staticmethod(_sync_batch_norm)


_TRANSFORMATION_MODULES = Registry(
    {
        cls.__name__: cls
        for cls in (
            BottleneckWithFixedBatchNorm,
            BottleneckWithGN,
            BottleneckWithBatchNorm,
            BottleneckWithSyncBatchNorm,
            BasicBlockWithFixedBatchNorm,
            BasicBlockWithGN,
            BasicBlockWithBatchNorm,
            BasicBlockWithSyncBatchNorm,
        )
    }
)

_STEM_MODULES = Registry(
    {
        cls.__name__: cls
        for cls in (StemWithFixedBatchNorm, StemWithGN, StemWithBatchNorm, StemWithSyncBatchNorm)
    }
)

_STAGE_SPECS = Registry(
    {
        "R-50-C4": ResNet50StagesTo4,
        "R-50-C5": ResNet50StagesTo5,
        "R-101-C4": ResNet101StagesTo4,
        "R-101-C5": ResNet101StagesTo5,
        "R-50-FPN": ResNet50FPNStagesTo5,
        "R-50-FPN-RETINANET": ResNet50FPNStagesTo5,
        "R-101-FPN": ResNet101FPNStagesTo5,
        "R-101-FPN-RETINANET": ResNet101FPNStagesTo5,
        "R-152-FPN": ResNet152FPNStagesTo5,
        "R-18-FPN": ResNet18FPNStagesTo5,
        "R-18-FPN-RETINANET": ResNet18FPNStagesTo5,
        "R-34-FPN": ResNet34FPNStagesTo5,
        "R-34-FPN-RETINANET": ResNet34FPNStagesTo5,
    }
)

# Which kind of block each named body is made of; ResNet(cfg) refuses a TRANS_FUNC of the other
# kind (an "R-18" of bottlenecks, an "R-50" of basic blocks) instead of building a misnamed net.
_STAGE_SPEC_BLOCK_KINDS = {name: BOTTLENECK for name in _STAGE_SPECS}
_STAGE_SPEC_BLOCK_KINDS.update(
    {name: BASIC for name in ("R-18-FPN", "R-18-FPN-RETINANET", "R-34-FPN", "R-34-FPN-RETINANET")}
)


def _lookup(registry, name, what):
    """registry[name], or a KeyError that names `what` and lists the registered names."""
    if not isinstance(name, str):
        return name  # already a module class / stage-spec tuple
    if name not in registry:
        raise KeyError(f"{what}: unknown name {name!r}; registered: {sorted(registry)}")
    return registry[name]


# ---------------------------------------------------------------------------------------------
# Stages, bodies and heads
# ---------------------------------------------------------------------------------------------
def _make_stage(
    transformation_module,
    in_channels,
    bottleneck_channels,
    out_channels,
    block_count,
    num_groups,
    stride_in_1x1,
    first_stride,
    dilation=1,
    dcn_config=None,
):
    """nn.Sequential of `block_count` blocks (children "0", "1", ...); only the first is strided
    and changes the channel count."""
    blocks = []
    stride = first_stride
    for _ in range(block_count):
        blocks.append(
            transformation_module(
                in_channels,
                bottleneck_channels,
                out_channels,
                num_groups,
                stride_in_1x1,
                stride,
                dilation=dilation,
                dcn_config=dcn_config,
            )
        )
        stride = 1
        in_channels = out_channels
    return nn.Sequential(*blocks)


def _stage_widths(index, num_groups, width_per_group, res2_out_channels):
    """(bottleneck_channels, out_channels) of stage `index` (1 = res2): doubled at each stage."""
    factor = 2 ** (index - 1)
    return num_groups * width_per_group * factor, res2_out_channels * factor


class ResNetBody(nn.Module):
    """ResNet / ResNeXt body from explicit arguments.

    forward(x: Tensor[N, 3, H, W]) -> list of Tensor[N, C_i, H / s_i, W / s_i], one per stage
    with `return_features`, in stage order; `feature_channels` and `feature_strides` list C_i
    and s_i (strides assume a stem that reduces by 4, as every registered stem does).

    stage_specs: sequence of StageSpec (consecutive indices starting at 1), or a registered
        name ("R-50-FPN", ...).
    stem_module: a class or registered name (called with stem_out_channels), or a built stem
        module producing stem_out_channels channels at stride 4.
    transformation_module: a block class or registered name, called as
        (in_channels, bottleneck_channels, out_channels, num_groups, stride_in_1x1, stride,
        dilation=, dcn_config=).
    num_groups, width_per_group: ResNeXt cardinality and width of res2's 3x3 conv
        (bottleneck channels of res2 = num_groups * width_per_group, doubled per stage).
    stride_in_1x1: stride on the first 1x1 conv of bottlenecks (MSRA) instead of the 3x3.
    stem_out_channels, res2_out_channels: channels out of the stem and out of res2.
    res5_dilation: 1 or 2; with 2, res5 (stage 4) keeps res4's resolution (stride 16).
    stage_with_dcn: per stage (res2 ... res5), whether the 3x3 convs are deformable
        (needs maskrcnn.layers.DFConv2d); with_modulated_dcn, deformable_groups: its options.
    freeze_at: freeze (requires_grad=False) the stem (1) and res2 ... (2, 3, ...); 0 or a
        negative value freezes nothing.
    """

    def __init__(
        self,
        stage_specs,
        stem_module=StemWithFixedBatchNorm,
        transformation_module=BottleneckWithFixedBatchNorm,
        num_groups=1,
        width_per_group=64,
        stride_in_1x1=True,
        stem_out_channels=64,
        res2_out_channels=256,
        res5_dilation=1,
        stage_with_dcn=(False, False, False, False),
        with_modulated_dcn=False,
        deformable_groups=1,
        freeze_at=0,
    ):
        super().__init__()
        stage_specs = _lookup(_STAGE_SPECS, stage_specs, "stage_specs")
        stem_module = _lookup(_STEM_MODULES, stem_module, "stem_module")
        transformation_module = _lookup(
            _TRANSFORMATION_MODULES, transformation_module, "transformation_module"
        )
        indices = [spec.index for spec in stage_specs]
        if indices != list(range(1, len(indices) + 1)) or len(indices) > 4:
            raise ValueError(
                f"stage_specs: stage indices must be 1, 2, ... (at most 4), got {indices}"
            )
        if len(stage_with_dcn) < len(indices):
            raise ValueError(
                f"stage_with_dcn: needs one flag per stage ({len(indices)}), got {stage_with_dcn}"
            )
        if res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation}")

        # A built stem is used as given (ResNet(cfg) builds maskrcnn-benchmark-style stems, which
        # take the cfg); a class is called with the channel count.
        if not isinstance(stem_module, nn.Module):
            stem_module = stem_module(stem_out_channels)
        self.stem = stem_module
        self.stages = []
        self.return_features = {}
        self.feature_channels = []
        self.feature_strides = []
        in_channels, stride = stem_out_channels, 4
        for spec in stage_specs:
            name = "layer" + str(spec.index)
            bottleneck_channels, out_channels = _stage_widths(
                spec.index, num_groups, width_per_group, res2_out_channels
            )
            dilation = res5_dilation if spec.index == 4 else 1
            first_stride = 2 if spec.index > 1 else 1
            module = _make_stage(
                transformation_module,
                in_channels,
                bottleneck_channels,
                out_channels,
                spec.block_count,
                num_groups,
                stride_in_1x1,
                first_stride=first_stride,
                dilation=dilation,
                dcn_config={
                    "stage_with_dcn": bool(stage_with_dcn[spec.index - 1]),
                    "with_modulated_dcn": with_modulated_dcn,
                    "deformable_groups": deformable_groups,
                },
            )
            self.add_module(name, module)
            self.stages.append(name)
            self.return_features[name] = spec.return_features
            in_channels = out_channels
            stride *= first_stride if dilation == 1 else 1
            if spec.return_features:
                self.feature_channels.append(out_channels)
                self.feature_strides.append(stride)
        self._freeze_backbone(freeze_at)

    def _freeze_backbone(self, freeze_at):
        """requires_grad=False for the stem (freeze_at >= 1) and layer1 ... layer{freeze_at - 1}."""
        if freeze_at <= 0:
            return
        if freeze_at > len(self.stages) + 1:
            raise ValueError(
                f"freeze_at (MODEL.BACKBONE.FREEZE_CONV_BODY_AT) = {freeze_at}, but the body has "
                f"only the stem and {len(self.stages)} stages (at most {len(self.stages) + 1})"
            )
        for stage_index in range(freeze_at):
            module = self.stem if stage_index == 0 else getattr(self, "layer" + str(stage_index))
            for parameter in module.parameters():
                parameter.requires_grad = False

    def forward(self, x):
        outputs = []
        x = self.stem(x)
        for stage_name in self.stages:
            x = getattr(self, stage_name)(x)
            if self.return_features[stage_name]:
                outputs.append(x)
        return outputs


def resnet_arguments_from_cfg(cfg):
    """ResNetBody's keyword arguments from MODEL.BACKBONE.* and MODEL.RESNETS.*."""
    body_name = cfg.MODEL.BACKBONE.CONV_BODY
    resnets = cfg.MODEL.RESNETS
    stage_specs = _lookup(_STAGE_SPECS, body_name, "MODEL.BACKBONE.CONV_BODY")
    transformation_module = _lookup(
        _TRANSFORMATION_MODULES, resnets.TRANS_FUNC, "MODEL.RESNETS.TRANS_FUNC"
    )
    expected_kind = _STAGE_SPEC_BLOCK_KINDS.get(body_name)
    actual_kind = getattr(transformation_module, "block_kind", None)
    if expected_kind is not None and actual_kind is not None and expected_kind != actual_kind:
        choices = sorted(
            name
            for name, cls in _TRANSFORMATION_MODULES.items()
            if getattr(cls, "block_kind", None) == expected_kind
        )
        hint = " and MODEL.RESNETS.RES2_OUT_CHANNELS: 64" if expected_kind == BASIC else ""
        raise ValueError(
            f"MODEL.BACKBONE.CONV_BODY {body_name!r} is made of {expected_kind} blocks but "
            f"MODEL.RESNETS.TRANS_FUNC {resnets.TRANS_FUNC!r} is a {actual_kind} block; "
            f"set TRANS_FUNC to one of {choices}{hint}"
        )
    return dict(
        stage_specs=stage_specs,
        stem_module=_lookup(_STEM_MODULES, resnets.STEM_FUNC, "MODEL.RESNETS.STEM_FUNC"),
        transformation_module=transformation_module,
        num_groups=resnets.NUM_GROUPS,
        width_per_group=resnets.WIDTH_PER_GROUP,
        stride_in_1x1=resnets.STRIDE_IN_1X1,
        stem_out_channels=resnets.STEM_OUT_CHANNELS,
        res2_out_channels=resnets.RES2_OUT_CHANNELS,
        res5_dilation=resnets.RES5_DILATION,
        stage_with_dcn=tuple(resnets.STAGE_WITH_DCN),
        with_modulated_dcn=resnets.WITH_MODULATED_DCN,
        deformable_groups=resnets.DEFORMABLE_GROUPS,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT,
    )


class ResNet(ResNetBody):
    """maskrcnn-benchmark's `ResNet(cfg)`: the body named by MODEL.BACKBONE.CONV_BODY."""

    def __init__(self, cfg):
        arguments = resnet_arguments_from_cfg(cfg)
        arguments["stem_module"] = arguments["stem_module"](cfg)
        super().__init__(**arguments)


class ResNetHead(nn.Module):
    """Residual stages applied to pooled RoI features (the res5 head of C4 models).

    x: Tensor[K, out_channels / 2, h, w] -> Tensor[K, out_channels, h / s, w / s], where
    out_channels = res2_out_channels * 2 ** (stages[0].index - 1) and s = stride_init (default 2
    for stages after res2; 1 when dilation > 1). Children are named "layer<index>", as in
    maskrcnn-benchmark (`roi_heads.box.feature_extractor.head.layer4.0.conv1.weight`).

    block_module: a registered transformation-module name (MODEL.RESNETS.TRANS_FUNC) or class.
    stages: sequence of StageSpec.
    """

    def __init__(
        self,
        block_module,
        stages,
        num_groups=1,
        width_per_group=64,
        stride_in_1x1=True,
        stride_init=None,
        res2_out_channels=256,
        dilation=1,
        dcn_config=None,
    ):
        super().__init__()
        if len(stages) == 0:
            raise ValueError("ResNetHead: stages must hold at least one StageSpec")
        block_module = _lookup(_TRANSFORMATION_MODULES, block_module, "block_module")
        bottleneck_channels, out_channels = _stage_widths(
            stages[0].index, num_groups, width_per_group, res2_out_channels
        )
        in_channels = out_channels // 2

        self.stages = []
        stride = stride_init
        for stage in stages:
            name = "layer" + str(stage.index)
            if not stride:
                stride = 2 if stage.index > 1 else 1
            module = _make_stage(
                block_module,
                in_channels,
                bottleneck_channels,
                out_channels,
                stage.block_count,
                num_groups,
                stride_in_1x1,
                first_stride=stride,
                dilation=dilation,
                dcn_config=dcn_config,
            )
            stride = None
            self.add_module(name, module)
            self.stages.append(name)
            in_channels = out_channels
        self.out_channels = out_channels

    def forward(self, x):
        for stage in self.stages:
            x = getattr(self, stage)(x)
        return x


# ---------------------------------------------------------------------------------------------
# Registration hooks for user code (maskrcnn-benchmark's names)
# ---------------------------------------------------------------------------------------------
def register_transformation_module(module_name, module):
    _register_generic(_TRANSFORMATION_MODULES, module_name, module)


def register_stem_module(module_name, module):
    _register_generic(_STEM_MODULES, module_name, module)


def register_stage_spec(stage_spec_name, stage_spec, block_kind=BOTTLENECK):
    """block_kind: BOTTLENECK, BASIC or None (any TRANS_FUNC accepted)."""
    _register_generic(_STAGE_SPECS, stage_spec_name, stage_spec)
    if block_kind is not None:
        _STAGE_SPEC_BLOCK_KINDS[stage_spec_name] = block_kind


def _register_generic(module_dict, module_name, module):
    if module_name in module_dict:
        raise KeyError(f"{module_name!r} is already registered")
    module_dict[module_name] = module
