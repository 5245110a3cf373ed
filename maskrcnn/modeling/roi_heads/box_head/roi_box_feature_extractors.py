"""Box-head feature extractors: pooled RoI features -> one feature per RoI.

Registered in ``ROI_BOX_FEATURE_EXTRACTORS`` under maskrcnn-benchmark's names, each with the
``(cfg, in_channels)`` signature the registry builds with:

* ``ResNet50Conv5ROIFeatureExtractor`` (C4 models): RoIAlign on C4, then the res5 stage
  (``head.layer4``) -> Tensor[K, 2048, R / 2, R / 2] for a ResNet-50.
* ``FPN2MLPFeatureExtractor``: RoIAlign over the pyramid, then fc6 and fc7 (+ReLU) -> Tensor[K, D].
* ``FPNXconv1fcFeatureExtractor``: RoIAlign, NUM_STACKED_CONVS 3x3 convs (optional GroupNorm),
  then fc6 (+ReLU) -> Tensor[K, D].

The explicit-argument classes (``PooledHeadFeatureExtractor``, ``MLPFeatureExtractor``,
``ConvFCFeatureExtractor``) build the same modules without a config.
RoIAlign's ``aligned`` flag and the level mapping follow MODEL.BOX_CONVENTION_LEGACY through
``make_pooler``.
"""
from torch import nn
from torch.nn import functional as F

from maskrcnn.modeling import registry
from maskrcnn.modeling.make_layers import group_norm, make_fc
from maskrcnn.modeling.poolers import make_pooler

__all__ = [
    "PooledHeadFeatureExtractor",
    "MLPFeatureExtractor",
    "ConvFCFeatureExtractor",
    "ResNet50Conv5ROIFeatureExtractor",
    "FPN2MLPFeatureExtractor",
    "FPNXconv1fcFeatureExtractor",
    "make_roi_box_feature_extractor",
]


class PooledHeadFeatureExtractor(nn.Module):
    """``head(pooler(features, proposals))``; ``out_channels`` is the head's.

    pooler: a Pooler (features list, list[BoxList]) -> Tensor[K, C, R, R].
    head: a module with ``out_channels`` (e.g. a ResNetHead) applied to the pooled features.
    """

    def __init__(self, pooler, head):
        super().__init__()
        self.pooler = pooler
        self.head = head
        self.out_channels = head.out_channels

    def forward(self, x, proposals):
        """x: list[Tensor[N, C, H_l, W_l]], proposals: list[BoxList] -> Tensor[K, out, h, w]."""
        return self.head(self.pooler(x, proposals))


class MLPFeatureExtractor(nn.Module):
    """Pooled features flattened, then ``fc6`` and ``fc7`` with ReLU (the "2mlp" head).

    pooler: Pooler producing Tensor[K, in_channels, resolution, resolution].
    representation_size: width D of fc6 / fc7; ``out_channels`` = D.
    use_gn: GroupNorm after each fc (bias-free fcs).
    """

    def __init__(self, pooler, in_channels, resolution, representation_size, use_gn=False):
        super().__init__()
        self.pooler = pooler
        self.fc6 = make_fc(in_channels * resolution ** 2, representation_size, use_gn)
        self.fc7 = make_fc(representation_size, representation_size, use_gn)
        self.out_channels = representation_size

    def forward(self, x, proposals):
        """x: list[Tensor[N, C, H_l, W_l]], proposals: list[BoxList] -> Tensor[K, D]."""
        x = self.pooler(x, proposals)
        x = x.flatten(start_dim=1)
        x = F.relu_(self.fc6(x))
        return F.relu_(self.fc7(x))


class ConvFCFeatureExtractor(nn.Module):
    """Pooled features through ``num_stacked_convs`` 3x3 convs (+GroupNorm) + ReLU, flattened,
    then ``fc6`` with ReLU (the "Xconv1fc" head).

    Convs: ``conv_head_dim`` channels, padding = dilation, weights N(0, 0.01), zero bias (no bias
    with GroupNorm). They form ``xconvs`` (an nn.Sequential: conv, [gn,] relu per stage).
    ``out_channels`` = representation_size.
    """

    def __init__(self, pooler, in_channels, resolution, conv_head_dim, num_stacked_convs,
                 representation_size, dilation=1, use_gn=False):
        super().__init__()
        if num_stacked_convs < 1:
            raise ValueError(
                f"FPNXconv1fcFeatureExtractor: num_stacked_convs (MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS) "
                f"must be >= 1, got {num_stacked_convs}"
            )
        self.pooler = pooler
        layers = []
        channels = in_channels
        for _ in range(num_stacked_convs):
            conv = nn.Conv2d(channels, conv_head_dim, kernel_size=3, stride=1, padding=dilation,
                             dilation=dilation, bias=not use_gn)
            nn.init.normal_(conv.weight, std=0.01)
            if not use_gn:
                nn.init.constant_(conv.bias, 0)
            layers.append(conv)
            if use_gn:
                layers.append(group_norm(conv_head_dim))
            layers.append(nn.ReLU(inplace=True))
            channels = conv_head_dim
        self.xconvs = nn.Sequential(*layers)
        self.fc6 = make_fc(conv_head_dim * resolution ** 2, representation_size, use_gn=False)
        self.out_channels = representation_size

    def forward(self, x, proposals):
        """x: list[Tensor[N, C, H_l, W_l]], proposals: list[BoxList] -> Tensor[K, D]."""
        x = self.pooler(x, proposals)
        x = self.xconvs(x)
        return F.relu_(self.fc6(x.flatten(start_dim=1)))


def _box_head_cfg(cfg):
    return cfg.MODEL.ROI_BOX_HEAD


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("ResNet50Conv5ROIFeatureExtractor")
class ResNet50Conv5ROIFeatureExtractor(PooledHeadFeatureExtractor):
    """C4 head: RoIAlign on the C4 map then res5 (3 blocks, ``head.layer4``) built from
    MODEL.RESNETS (TRANS_FUNC, NUM_GROUPS, WIDTH_PER_GROUP, STRIDE_IN_1X1, RES2_OUT_CHANNELS,
    RES5_DILATION, and STAGE_WITH_DCN[3] for a deformable res5)."""

    def __init__(self, cfg, in_channels):
        from maskrcnn.modeling.backbone import resnet

        resnets = cfg.MODEL.RESNETS
        stage = resnet.StageSpec(index=4, block_count=3, return_features=False)
        head = resnet.ResNetHead(
            block_module=resnets.TRANS_FUNC,
            stages=(stage,),
            num_groups=resnets.NUM_GROUPS,
            width_per_group=resnets.WIDTH_PER_GROUP,
            stride_in_1x1=resnets.STRIDE_IN_1X1,
            stride_init=None,
            res2_out_channels=resnets.RES2_OUT_CHANNELS,
            dilation=resnets.RES5_DILATION,
            dcn_config={
                "stage_with_dcn": bool(resnets.STAGE_WITH_DCN[3]),
                "with_modulated_dcn": resnets.WITH_MODULATED_DCN,
                "deformable_groups": resnets.DEFORMABLE_GROUPS,
            },
        )
        super().__init__(make_pooler(cfg, "ROI_BOX_HEAD"), head)


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FPN2MLPFeatureExtractor")
class FPN2MLPFeatureExtractor(MLPFeatureExtractor):
    """MLPFeatureExtractor from MODEL.ROI_BOX_HEAD (POOLER_*, MLP_HEAD_DIM, USE_GN)."""

    def __init__(self, cfg, in_channels):
        head = _box_head_cfg(cfg)
        super().__init__(
            make_pooler(cfg, "ROI_BOX_HEAD"),
            in_channels,
            head.POOLER_RESOLUTION,
            head.MLP_HEAD_DIM,
            use_gn=head.USE_GN,
        )


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FPNXconv1fcFeatureExtractor")
class FPNXconv1fcFeatureExtractor(ConvFCFeatureExtractor):
    """ConvFCFeatureExtractor from MODEL.ROI_BOX_HEAD (POOLER_*, CONV_HEAD_DIM,
    NUM_STACKED_CONVS, DILATION, USE_GN, MLP_HEAD_DIM)."""

    def __init__(self, cfg, in_channels):
        head = _box_head_cfg(cfg)
        super().__init__(
            make_pooler(cfg, "ROI_BOX_HEAD"),
            in_channels,
            head.POOLER_RESOLUTION,
            head.CONV_HEAD_DIM,
            head.NUM_STACKED_CONVS,
            head.MLP_HEAD_DIM,
            dilation=head.DILATION,
            use_gn=head.USE_GN,
        )


def make_roi_box_feature_extractor(cfg, in_channels):
    """The extractor registered as MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR
    if name not in registry.ROI_BOX_FEATURE_EXTRACTORS:
        raise KeyError(
            f"MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_BOX_FEATURE_EXTRACTORS)}"
        )
    return registry.ROI_BOX_FEATURE_EXTRACTORS[name](cfg, in_channels)
