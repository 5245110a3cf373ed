"""ResNet / ResNeXt / FPN backbones: shapes, strides, names, freezing, norm variants, errors.

Parameter counts are checked against torchvision's published models (conv weights plus norm
affine parameters of resnet18/34/50/101/152 and resnext101_32x8d without the classifier), which
pins the architecture independently of this implementation.
"""
import math

import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as global_cfg
from maskrcnn.layers import FrozenBatchNorm2d
from maskrcnn.modeling import registry
from maskrcnn.modeling.backbone import build_backbone
from maskrcnn.modeling.backbone import fpn as fpn_module
from maskrcnn.modeling.backbone import resnet
from maskrcnn.modeling.backbone.resnet import ResNet, ResNetBody, ResNetHead, StageSpec

FPN_STRIDES = [4, 8, 16, 32, 64]
RETINANET_STRIDES = [8, 16, 32, 64, 128]
# name -> (number of output levels x channels, strides) for BACKBONE_OUT_CHANNELS = 256
EXPECTED = {
    "R-50-C4": ([1024], [16]),
    "R-50-C5": ([2048], [32]),
    "R-101-C4": ([1024], [16]),
    "R-101-C5": ([2048], [32]),
    **{name: ([256] * 5, FPN_STRIDES) for name in
       ("R-18-FPN", "R-34-FPN", "R-50-FPN", "R-101-FPN", "R-152-FPN")},
    **{name: ([256] * 5, RETINANET_STRIDES) for name in
       ("R-18-FPN-RETINANET", "R-34-FPN-RETINANET", "R-50-FPN-RETINANET", "R-101-FPN-RETINANET")},
}
HEAVY = {"R-101-C4", "R-101-C5", "R-101-FPN", "R-152-FPN", "R-101-FPN-RETINANET"}
BASIC_BLOCK_BODIES = {"R-18-FPN", "R-34-FPN", "R-18-FPN-RETINANET", "R-34-FPN-RETINANET"}

# torchvision: parameters of resnetX / resnext minus fc (and minus layer4 for the C4 bodies).
TORCHVISION_BODY_PARAMETERS = {
    "R-18-FPN": 11_176_512,
    "R-34-FPN": 21_284_672,
    "R-50-C4": 8_543_296,
    "R-50-FPN": 23_508_032,
    "R-101-FPN": 42_500_160,
    "R-152-FPN": 58_143_808,
}


def make_cfg(name, **resnets):
    """A config for backbone `name`, set up the way its YAML files would (FPN width 256;
    basic blocks and 64 res2 channels for R-18 / R-34)."""
    cfg = global_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = name
    if "FPN" in name:
        cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256
    if name in BASIC_BLOCK_BODIES:
        cfg.MODEL.RESNETS.TRANS_FUNC = "BasicBlockWithFixedBatchNorm"
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for key, value in resnets.items():
        setattr(cfg.MODEL.RESNETS, key, value)
    return cfg


def check_levels(outputs, batch, height, width, channels, strides):
    assert len(outputs) == len(channels)
    for output, c, s in zip(outputs, channels, strides):
        assert tuple(output.shape) == (batch, c, math.ceil(height / s), math.ceil(width / s))


def body_parameter_count(body):
    """Conv weights + norm weight/bias (FrozenBatchNorm2d keeps them as buffers)."""
    skipped = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in body.state_dict().items() if not k.endswith(skipped))


def test_every_documented_body_is_registered():
    registered = {name for name in registry.BACKBONES if name.startswith("R-")}
    assert registered == set(EXPECTED)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(EXPECTED)],
)
def test_body_channels_and_strides(name):
    model = build_backbone(make_cfg(name)).eval()
    channels, strides = EXPECTED[name]
    assert model.out_channels == channels[-1]
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    check_levels(outputs, 1, 64, 96, channels, strides)
    assert all(torch.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("name", ["R-50-C4", "R-50-FPN", "R-18-FPN-RETINANET"])
def test_empty_batch(name):
    model = build_backbone(make_cfg(name))
    channels, strides = EXPECTED[name]
    outputs = model(torch.zeros(0, 3, 64, 96))
    check_levels(outputs, 0, 64, 96, channels, strides)


def test_empty_batch_with_trained_batch_norm_backward():
    model = build_backbone(
        make_cfg("R-18-FPN", TRANS_FUNC="BasicBlockWithBatchNorm", STEM_FUNC="StemWithBatchNorm")
    ).train()
    outputs = model(torch.zeros(0, 3, 32, 32))
    assert [o.shape[0] for o in outputs] == [0] * 5
    sum(o.sum() for o in outputs).backward()


def test_odd_input_sizes():
    model = build_backbone(make_cfg("R-18-FPN")).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 65, 97))
    # stem: 65 -> 33 -> 17; then /2 per stage, rounding up
    assert [tuple(o.shape[-2:]) for o in outputs] == [(17, 25), (9, 13), (5, 7), (3, 4), (2, 2)]


def _frozen(module):
    flags = {p.requires_grad for p in module.parameters()}
    assert len(flags) == 1, "a module is partly frozen"
    return not flags.pop()


@pytest.mark.parametrize("freeze_at", [-1, 0, 1, 2, 3])
def test_freeze_conv_body_at(freeze_at):
    cfg = make_cfg("R-18-FPN", TRANS_FUNC="BasicBlockWithBatchNorm", STEM_FUNC="StemWithBatchNorm")
    cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = freeze_at
    model = build_backbone(cfg)
    body = model.body
    assert _frozen(body.stem) == (freeze_at >= 1)
    for index in range(1, 5):
        assert _frozen(getattr(body, f"layer{index}")) == (freeze_at >= index + 1), index
    assert not _frozen(model.fpn)


def test_freeze_beyond_the_last_stage_is_an_error():
    cfg = make_cfg("R-50-C4")
    cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 5  # stem + layer1..4, but C4 has no layer4
    with pytest.raises(ValueError, match="FREEZE_CONV_BODY_AT"):
        build_backbone(cfg)


def _forward_backward(model, batch=2, size=(64, 96)):
    outputs = model(torch.randn(batch, 3, *size))
    sum(o.pow(2).mean() for o in outputs).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, parameter in trainable:
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    return outputs


@pytest.mark.parametrize(
    "stem, block, norm_type",
    [
        ("StemWithGN", "BasicBlockWithGN", nn.GroupNorm),
        ("StemWithBatchNorm", "BasicBlockWithBatchNorm", nn.BatchNorm2d),
        ("StemWithSyncBatchNorm", "BasicBlockWithSyncBatchNorm", nn.SyncBatchNorm),
    ],
)
def test_basic_block_norm_variants_forward_backward(stem, block, norm_type):
    cfg = make_cfg("R-18-FPN", STEM_FUNC=stem, TRANS_FUNC=block, BACKBONE_OUT_CHANNELS=64)
    cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 0
    cfg.MODEL.FPN.USE_GN = norm_type is nn.GroupNorm
    model = build_backbone(cfg).train()
    norms = [m for m in model.body.modules() if isinstance(m, norm_type)]
    assert len(norms) == 1 + 2 * 8 + 3  # stem, two per block, three downsample projections
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    before = norms[-1].running_mean.clone() if norm_type is not nn.GroupNorm else None
    outputs = _forward_backward(model, size=(32, 32))
    check_levels(outputs, 2, 32, 32, [64] * 5, FPN_STRIDES)
    if before is not None:  # trained statistics move
        assert not torch.equal(before, norms[-1].running_mean)
    if norm_type is nn.GroupNorm:  # FPN convs are conv + GN (bias-free conv)
        assert isinstance(model.fpn.fpn_inner1[1], nn.GroupNorm)
        assert model.fpn.fpn_inner1[0].bias is None


@pytest.mark.parametrize(
    "stem, block",
    [("StemWithGN", "BottleneckWithGN"), ("StemWithBatchNorm", "BottleneckWithBatchNorm")],
)
def test_bottleneck_norm_variants_forward_backward(stem, block):
    one_block_per_stage = tuple(StageSpec(index, 1, True) for index in range(1, 5))
    body = ResNetBody(
        stage_specs=one_block_per_stage,
        stem_module=stem,
        transformation_module=block,
        width_per_group=32,  # GroupNorm's default 32 groups need multiples of 32 channels
        stem_out_channels=32,
        res2_out_channels=64,
    ).train()
    outputs = _forward_backward(body, size=(32, 48))
    check_levels(outputs, 2, 32, 48, [64, 128, 256, 512], [4, 8, 16, 32])
    assert body.feature_channels == [64, 128, 256, 512]
    assert body.feature_strides == [4, 8, 16, 32]


def test_fixed_batch_norm_body_trains_only_convolutions():
    body = ResNetBody(stage_specs="R-18-FPN", transformation_module="BasicBlockWithFixedBatchNorm",
                      res2_out_channels=64)
    assert all(name.endswith("weight") and parameter.dim() == 4
               for name, parameter in body.named_parameters())
    _forward_backward(body, batch=1, size=(32, 32))


def test_r50_fpn_state_dict_keys_match_maskrcnn_benchmark():
    keys = set(build_backbone(make_cfg("R-50-FPN")).state_dict())
    expected = {
        "body.stem.conv1.weight",
        "body.stem.bn1.weight",
        "body.stem.bn1.bias",
        "body.stem.bn1.running_mean",
        "body.stem.bn1.running_var",
        "body.layer1.0.downsample.0.weight",
        "body.layer1.0.downsample.1.weight",
        "body.layer1.0.conv1.weight",
        "body.layer1.2.bn3.bias",
        "body.layer3.5.conv2.weight",
        "body.layer4.2.conv3.weight",
        "fpn.fpn_inner1.weight",
        "fpn.fpn_inner1.bias",
        "fpn.fpn_layer1.weight",
        "fpn.fpn_inner4.weight",
        "fpn.fpn_layer4.bias",
    }
    assert expected <= keys
    assert "body.layer1.1.downsample.0.weight" not in keys  # only first blocks project
    assert "body.layer3.6.conv1.weight" not in keys  # res4 of R-50 has 6 blocks
    assert not any("top_blocks" in k for k in keys)  # LastLevelMaxPool has no parameters


def test_retinanet_state_dict_keys():
    model = build_backbone(make_cfg("R-18-FPN-RETINANET"))
    keys = set(model.state_dict())
    assert {"fpn.fpn_inner2.weight", "fpn.fpn_layer4.weight", "fpn.top_blocks.p6.weight",
            "fpn.top_blocks.p6.bias", "fpn.top_blocks.p7.weight", "fpn.top_blocks.p7.bias"} <= keys
    assert "fpn.fpn_inner1.weight" not in keys  # C2 is not used
    assert model.fpn.fpn_inner2.weight.shape[1] == 128  # fpn_inner2 takes C3
    # USE_C5 (default): P6 from C5 (512 channels for R-18)
    assert model.fpn.top_blocks.p6.weight.shape[1] == 512
    assert not model.fpn.top_blocks.use_P5


def test_retinanet_p6_from_p5():
    cfg = make_cfg("R-18-FPN-RETINANET")
    cfg.MODEL.RETINANET.USE_C5 = False
    model = build_backbone(cfg).eval()
    assert model.fpn.top_blocks.use_P5 and model.fpn.top_blocks.p6.weight.shape[1] == 256
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    check_levels(outputs, 1, 64, 96, [256] * 5, RETINANET_STRIDES)


def test_c4_body_has_no_res5():
    keys = set(build_backbone(make_cfg("R-50-C4")).state_dict())
    assert "body.layer3.5.bn3.weight" in keys
    assert not any(k.startswith("body.layer4") for k in keys)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
     for n in sorted(TORCHVISION_BODY_PARAMETERS)],
)
def test_parameter_counts_match_torchvision(name):
    body = resnet.ResNet(make_cfg(name))
    assert body_parameter_count(body) == TORCHVISION_BODY_PARAMETERS[name]


@pytest.mark.slow
def test_resnext_101_32x8d():
    cfg = make_cfg("R-101-FPN", NUM_GROUPS=32, WIDTH_PER_GROUP=8, STRIDE_IN_1X1=False)
    model = build_backbone(cfg).eval()
    conv2 = model.body.layer1[0].conv2
    assert conv2.groups == 32 and tuple(conv2.weight.shape) == (256, 8, 3, 3)
    assert tuple(model.body.layer4[0].conv2.weight.shape) == (2048, 64, 3, 3)
    assert body_parameter_count(model.body) == 86_742_336  # torchvision resnext101_32x8d - fc
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 32, 32))
    check_levels(outputs, 1, 32, 32, [256] * 5, FPN_STRIDES)


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_in_1x1(stride_in_1x1):
    body = resnet.ResNet(make_cfg("R-50-C4", STRIDE_IN_1X1=stride_in_1x1))
    block = body.layer2[0]
    assert block.conv1.stride == ((2, 2) if stride_in_1x1 else (1, 1))
    assert block.conv2.stride == ((1, 1) if stride_in_1x1 else (2, 2))
    assert block.downsample[0].stride == (2, 2)
    assert body.layer2[1].conv1.stride == (1, 1) and body.layer2[1].conv2.stride == (1, 1)


def test_res5_dilation_keeps_stride_16():
    body = resnet.ResNet(make_cfg("R-18-FPN", RES5_DILATION=2)).eval()
    assert body.feature_strides == [4, 8, 16, 16]
    assert body.layer4[0].conv1.dilation == (2, 2) and body.layer4[0].conv1.stride == (1, 1)
    assert body.layer4[0].downsample[0].stride == (1, 1)
    assert body.layer3[0].conv1.dilation == (1, 1)
    with torch.no_grad():
        outputs = body(torch.randn(1, 3, 64, 96))
    check_levels(outputs, 1, 64, 96, [64, 128, 256, 512], [4, 8, 16, 16])
    # FPN upsamples to the lateral's size, so a dilated res5 works under it too
    model = build_backbone(make_cfg("R-18-FPN", RES5_DILATION=2)).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    check_levels(outputs, 1, 64, 96, [256] * 5, [4, 8, 16, 16, 32])


def test_explicit_body_matches_cfg_body():
    from_cfg = resnet.ResNet(make_cfg("R-18-FPN", STRIDE_IN_1X1=False))
    explicit = ResNetBody(
        stage_specs=resnet.ResNet18FPNStagesTo5,
        stem_module=resnet.StemWithFixedBatchNorm,
        transformation_module=resnet.BasicBlockWithFixedBatchNorm,
        res2_out_channels=64,
        stride_in_1x1=False,
        freeze_at=2,
    )
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(from_cfg) == shapes(explicit)
    explicit.load_state_dict(from_cfg.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(from_cfg(x), explicit(x)):
            torch.testing.assert_close(a, b)


def test_resnet_head_as_the_c4_box_head_builds_it():
    head = ResNetHead(
        block_module="BottleneckWithFixedBatchNorm",
        stages=(StageSpec(index=4, block_count=3, return_features=False),),
        num_groups=1,
        width_per_group=64,
        stride_in_1x1=True,
        stride_init=None,
        res2_out_channels=256,
        dilation=1,
    ).eval()
    assert head.out_channels == 2048
    keys = set(head.state_dict())
    assert {"layer4.0.downsample.0.weight", "layer4.0.conv1.weight",
            "layer4.2.bn3.running_var"} <= keys
    with torch.no_grad():
        assert tuple(head(torch.randn(2, 1024, 14, 14)).shape) == (2, 2048, 7, 7)
        assert tuple(head(torch.zeros(0, 1024, 14, 14)).shape) == (0, 2048, 7, 7)


def test_resnet_head_dilation_and_basic_blocks():
    dilated = ResNetHead("BasicBlockWithFixedBatchNorm", (StageSpec(4, 2, False),),
                         res2_out_channels=64, dilation=2)
    assert dilated.out_channels == 512
    assert tuple(dilated(torch.randn(3, 256, 14, 14)).shape) == (3, 512, 14, 14)
    strided = ResNetHead(resnet.BasicBlockWithGN, (StageSpec(4, 2, False),), res2_out_channels=64,
                         stride_init=2)
    assert tuple(strided(torch.randn(1, 256, 14, 14)).shape) == (1, 512, 7, 7)


def test_unknown_backbone_name_lists_valid_names():
    with pytest.raises(KeyError, match=r"CONV_BODY.*'R-51-FPN'.*R-50-FPN"):
        build_backbone(make_cfg("R-51-FPN"))


def test_unknown_stem_and_block_names():
    with pytest.raises(KeyError, match=r"MODEL.RESNETS.TRANS_FUNC.*'Bottleneck'.*BottleneckWithGN"):
        build_backbone(make_cfg("R-50-C4", TRANS_FUNC="Bottleneck"))
    with pytest.raises(KeyError, match=r"MODEL.RESNETS.STEM_FUNC.*'Stem'.*StemWithGN"):
        build_backbone(make_cfg("R-50-C4", STEM_FUNC="Stem"))


def test_block_kind_must_match_the_body():
    with pytest.raises(ValueError, match=r"'R-18-FPN' is made of basic blocks.*RES2_OUT_CHANNELS"):
        build_backbone(make_cfg("R-18-FPN", TRANS_FUNC="BottleneckWithFixedBatchNorm"))
    with pytest.raises(ValueError, match=r"'R-50-FPN' is made of bottleneck blocks"):
        build_backbone(make_cfg("R-50-FPN", TRANS_FUNC="BasicBlockWithGN"))


def test_bad_block_arguments():
    with pytest.raises(ValueError, match="num_groups=1"):
        resnet.BasicBlockWithFixedBatchNorm(64, 64, 64, num_groups=32)
    with pytest.raises(ValueError, match="divisible by num_groups"):
        resnet.BottleneckWithFixedBatchNorm(64, 30, 256, num_groups=32)
    with pytest.raises(ValueError, match="res5_dilation"):
        ResNetBody(stage_specs="R-50-C5", res5_dilation=4)


def test_fpn_alone_with_skipped_levels_and_top_blocks():
    def conv_block(in_channels, out_channels, kernel_size, stride=1):
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)

    fpn = fpn_module.FPN([0, 8, 16], 4, conv_block, top_blocks=fpn_module.LastLevelMaxPool())
    assert fpn.inner_blocks == ["fpn_inner2", "fpn_inner3"]
    c2, c3, c4 = torch.randn(1, 2, 20, 20), torch.randn(1, 8, 10, 10), torch.randn(1, 16, 5, 5)
    full, used = fpn([c2, c3, c4]), fpn([c3, c4])
    assert [tuple(o.shape) for o in full] == [(1, 4, 10, 10), (1, 4, 5, 5), (1, 4, 3, 3)]
    for a, b in zip(full, used):
        torch.testing.assert_close(a, b)
    # the top-down sum is what reaches P3: P3 = layer(inner(C3) + up(inner(C4)))
    top = fpn.fpn_inner3(c4).repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(full[0], fpn.fpn_layer2(fpn.fpn_inner2(c3) + top))
    with pytest.raises(ValueError, match="expected 3"):
        fpn([c4])
    with pytest.raises(ValueError, match="only leading levels"):
        fpn_module.FPN([8, 0, 16], 4, conv_block)


def test_last_level_p6p7_source():
    from_c5 = fpn_module.LastLevelP6P7(16, 8)
    from_p5 = fpn_module.LastLevelP6P7(8, 8)
    c5, p5 = torch.randn(1, 16, 9, 9), torch.randn(1, 8, 9, 9)
    p6, p7 = from_c5(c5, p5)
    assert tuple(p6.shape) == (1, 8, 5, 5) and tuple(p7.shape) == (1, 8, 3, 3)
    torch.testing.assert_close(p6, from_c5.p6(c5))
    torch.testing.assert_close(p7, from_c5.p7(torch.relu(p6)))
    torch.testing.assert_close(from_p5(c5, p5)[0], from_p5.p6(p5))
    assert torch.count_nonzero(from_c5.p6.bias) == 0



def test_user_registered_stem_and_stage_spec_build_from_cfg():
    class CfgStem(nn.Module):  # maskrcnn-benchmark style: stems take the cfg
        def __init__(self, cfg):
            super().__init__()
            self.conv1 = nn.Conv2d(3, cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, 4, stride=4)

        def forward(self, x):
            return self.conv1(x)

    resnet.register_stem_module("CfgStem", CfgStem)
    resnet.register_stage_spec("R-2-TEST", (StageSpec(1, 1, False), StageSpec(2, 1, True)))
    try:
        body = ResNet(make_cfg("R-2-TEST", STEM_FUNC="CfgStem", STEM_OUT_CHANNELS=16)).eval()
        assert isinstance(body.stem, CfgStem) and body.stem.conv1.out_channels == 16
        with torch.no_grad():
            (c3,) = body(torch.randn(1, 3, 32, 32))
        assert tuple(c3.shape) == (1, 512, 4, 4) and body.feature_strides == [8]
        with pytest.raises(KeyError, match="already registered"):
            resnet.register_stem_module("CfgStem", CfgStem)
    finally:
        del resnet._STEM_MODULES["CfgStem"], resnet._STAGE_SPECS["R-2-TEST"]
        del resnet._STAGE_SPEC_BLOCK_KINDS["R-2-TEST"]


@pytest.mark.slow
def test_fpn_backbone_exports_with_dynamic_image_size():
    model = build_backbone(make_cfg("R-18-FPN", BACKBONE_OUT_CHANNELS=64)).eval()
    height = torch.export.Dim("height", min=128, max=2048)
    width = torch.export.Dim("width", min=128, max=2048)
    exported = torch.export.export(model, (torch.randn(1, 3, 256, 320),),
                                   dynamic_shapes=({2: height, 3: width},))
    image = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        for a, b in zip(exported.module()(image), model(image)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("modulated", [False, True])
def test_dcn_stages(modulated):
    from maskrcnn.layers import DFConv2d

    one_block_per_stage = tuple(StageSpec(index, 1, True) for index in range(1, 5))
    arguments = dict(stage_specs=one_block_per_stage, width_per_group=8, stem_out_channels=16,
                     res2_out_channels=32)
    body = ResNetBody(**arguments, stage_with_dcn=(False, True, False, True),
                      with_modulated_dcn=modulated, deformable_groups=2)
    assert not isinstance(body.layer1[0].conv2, DFConv2d)
    assert not isinstance(body.layer3[0].conv2, DFConv2d)
    dcn = body.layer2[0].conv2
    assert isinstance(dcn, DFConv2d) and isinstance(body.layer4[0].conv2, DFConv2d)
    keys = set(body.state_dict())
    assert {"layer2.0.conv2.offset.weight", "layer2.0.conv2.conv.weight",
            "layer4.0.conv2.offset.bias"} <= keys
    assert dcn.offset.weight.shape[0] == 2 * (27 if modulated else 18)  # per deformable group
    outputs = _forward_backward(body, size=(32, 48))
    check_levels(outputs, 2, 32, 48, [32, 64, 128, 256], [4, 8, 16, 32])
    assert body.layer2[0].conv2.offset.weight.grad.abs().sum() > 0

    if not modulated:  # offsets start at zero: DCNv1 then computes the plain convolution
        plain = ResNetBody(**arguments)
        state = {k.replace("conv2.conv.", "conv2."): v for k, v in body.state_dict().items()
                 if ".conv2.offset." not in k}
        plain.load_state_dict(state)
        x = torch.randn(1, 3, 32, 48)
        with torch.no_grad():
            for a, b in zip(body(x), plain(x)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_dcn_from_config_and_in_basic_blocks():
    cfg = make_cfg("R-18-FPN", STAGE_WITH_DCN=(False, False, True, True), WITH_MODULATED_DCN=True)
    body = resnet.ResNet(cfg)
    keys = set(body.state_dict())
    assert {"layer3.0.conv2.offset.weight", "layer4.1.conv2.conv.weight"} <= keys
    assert "layer2.0.conv2.weight" in keys and "layer3.0.conv1.weight" in keys
    with torch.no_grad():
        outputs = body.eval()(torch.randn(1, 3, 32, 32))
    check_levels(outputs, 1, 32, 32, [64, 128, 256, 512], [4, 8, 16, 32])
