"""Registered backbones: `build_backbone(cfg)` returns the one named by MODEL.BACKBONE.CONV_BODY.

Each is `nn.Sequential(OrderedDict(body=..., fpn=...))` (no "fpn" for C4/C5 bodies) with an
`out_channels` attribute (channels of every output level), so state-dict keys read
`body.stem.conv1.weight`, `fpn.fpn_inner1.weight`, ... as in maskrcnn-benchmark. Outputs
(input Tensor[N, 3, H, W]):

* R-50-C4, R-101-C4: [C4] (stride 16, 4 * RES2_OUT_CHANNELS channels)
* R-50-C5, R-101-C5: [C5] (stride 32, 8 * RES2_OUT_CHANNELS channels)
* R-{18,34,50,101,152}-FPN: (P2, P3, P4, P5, P6), strides 4 ... 64, BACKBONE_OUT_CHANNELS each
* R-{18,34,50,101}-FPN-RETINANET: (P3, P4, P5, P6, P7), strides 8 ... 128

R-18 / R-34 are basic-block bodies: they need MODEL.RESNETS.TRANS_FUNC "BasicBlockWith..." and
RES2_OUT_CHANNELS 64. ResNeXt (X-101-32x8d) is R-101-* with MODEL.RESNETS.NUM_GROUPS 32,
WIDTH_PER_GROUP 8 and STRIDE_IN_1X1 False.
"""
from collections import OrderedDict

from torch import nn

from maskrcnn.modeling import registry
from maskrcnn.modeling.make_layers import conv_with_kaiming_uniform

from . import fpn as fpn_module
from . import resnet


@registry.BACKBONES.register("R-50-C4")
@registry.BACKBONES.register("R-50-C5")
@registry.BACKBONES.register("R-101-C4")
@registry.BACKBONES.register("R-101-C5")
def build_resnet_backbone(cfg):
    body = resnet.ResNet(cfg)
    model = nn.Sequential(OrderedDict([("body", body)]))
    # The channels the body really returns (maskrcnn-benchmark copies BACKBONE_OUT_CHANNELS,
    # 1024 by default, which is right for C4 only).
    model.out_channels = body.feature_channels[-1]
    return model


def _fpn_conv_block(cfg):
    return conv_with_kaiming_uniform(cfg.MODEL.FPN.USE_GN, cfg.MODEL.FPN.USE_RELU)


@registry.BACKBONES.register("R-18-FPN")
@registry.BACKBONES.register("R-34-FPN")
@registry.BACKBONES.register("R-50-FPN")
@registry.BACKBONES.register("R-101-FPN")
@registry.BACKBONES.register("R-152-FPN")
def build_resnet_fpn_backbone(cfg):
    body = resnet.ResNet(cfg)
    out_channels = cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
    fpn = fpn_module.FPN(
        in_channels_list=list(body.feature_channels),  # C2..C5
        out_channels=out_channels,
        conv_block=_fpn_conv_block(cfg),
        top_blocks=fpn_module.LastLevelMaxPool(),
    )
    model = nn.Sequential(OrderedDict([("body", body), ("fpn", fpn)]))
    model.out_channels = out_channels
    return model


@registry.BACKBONES.register("R-18-FPN-RETINANET")
@registry.BACKBONES.register("R-34-FPN-RETINANET")
@registry.BACKBONES.register("R-50-FPN-RETINANET")
@registry.BACKBONES.register("R-101-FPN-RETINANET")
def build_resnet_fpn_p3p7_backbone(cfg):
    body = resnet.ResNet(cfg)
    out_channels = cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
    c5_channels = body.feature_channels[-1]
    in_channels_p6p7 = c5_channels if cfg.MODEL.RETINANET.USE_C5 else out_channels
    fpn = fpn_module.FPN(
        in_channels_list=[0] + list(body.feature_channels[1:]),  # C3..C5; C2 unused
        out_channels=out_channels,
        conv_block=_fpn_conv_block(cfg),
        top_blocks=fpn_module.LastLevelP6P7(in_channels_p6p7, out_channels),
    )
    model = nn.Sequential(OrderedDict([("body", body), ("fpn", fpn)]))
    model.out_channels = out_channels
    return model


def build_backbone(cfg):
    """The backbone registered under cfg.MODEL.BACKBONE.CONV_BODY."""
    name = cfg.MODEL.BACKBONE.CONV_BODY
    if name not in registry.BACKBONES:
        raise KeyError(
            f"MODEL.BACKBONE.CONV_BODY: {name!r} is not a registered backbone; "
            f"registered: {sorted(registry.BACKBONES)}"
        )
    return registry.BACKBONES[name](cfg)
