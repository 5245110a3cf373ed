import json

import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling import registry
from maskrcnn.modeling.backbone import fbnet
from maskrcnn.modeling.backbone import fbnet_builder as fb
from maskrcnn.modeling.backbone.fbnet_modeldef import MODEL_ARCH
from maskrcnn.structures.bounding_box import BoxList


def _trainable_grads_are_set(module):
    params = [p for p in module.parameters() if p.requires_grad]
    return all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


# ------------------------------------------------------------------------------ primitives

# ops whose kernel is 1 have no depthwise conv and so, as in the original, ignore the stride
_NO_SPATIAL_STRIDE = {"ir_k1"}


@pytest.mark.parametrize("name", sorted(fb.PRIMITIVES))
@pytest.mark.parametrize("stride, c_out", [(1, 8), (2, 16)])
def test_primitive_forward_backward(name, stride, c_out):
    torch.manual_seed(0)
    block = fb.PRIMITIVES[name](8, c_out, expansion=2, stride=stride, bn_type="bn",
                                width_divisor=1, dw_skip_bn=False, dw_skip_relu=False)
    assert block.output_depth == c_out
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    y = block(x)
    side = 8 if (stride == 1 or name in _NO_SPATIAL_STRIDE) else 4
    assert y.shape == (2, c_out, side, side)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert _trainable_grads_are_set(block)


@pytest.mark.parametrize("name", sorted(fb.PRIMITIVES))
def test_primitive_on_empty_batch(name):
    block = fb.PRIMITIVES[name](8, 16, expansion=2, stride=2, bn_type="bn", width_divisor=1,
                                dw_skip_bn=False, dw_skip_relu=False)
    x = torch.zeros(0, 8, 8, 8, requires_grad=True)
    y = block(x)
    side = 8 if name in _NO_SPATIAL_STRIDE else 4
    assert y.shape == (0, 16, side, side)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["ir_k3", "ir_k5_e6", "ir_k33_e3", "ir_k3_s4", "shift_5x5",
                                  "basic_block"])
def test_residual_blocks_reduce_to_identity_when_the_branch_is_zero(name):
    block = fb.PRIMITIVES[name](16, 16, expansion=3, stride=1, bn_type="bn", width_divisor=1,
                                dw_skip_bn=False, dw_skip_relu=False).eval()
    last_bn = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(block(x), x)


def test_irf_block_structure_follows_the_options():
    plain = fb.IRFBlock(8, 16, expansion=6, stride=2, kernel=5)
    assert plain.pw.conv.out_channels == 48
    assert plain.dw.conv.kernel_size == (5, 5) and plain.dw.conv.groups == 48
    assert plain.dw.conv.stride == (2, 2)
    assert not plain.use_res_connect and isinstance(plain.se4, nn.Sequential)

    cascaded = fb.PRIMITIVES["ir_k33_e1"](8, 8, expansion=6, stride=1)
    assert set(dict(cascaded.dw.named_children())) == {"dw1", "dw2"}
    assert cascaded.pw.conv.out_channels == 8  # expansion fixed to 1 by the op name

    shuffled = fb.PRIMITIVES["ir_k3_s4_se"](8, 16, expansion=1, stride=1)
    assert shuffled.pw.conv.groups == 4 and shuffled.pwl.conv.groups == 4
    assert shuffled.shuffle.groups == 4 and isinstance(shuffled.se4, fb.SEModule)

    skipped = fb.IRFBlock(8, 8, expansion=2, stride=1, dw_skip_bn=True, dw_skip_relu=True)
    assert set(dict(skipped.dw.named_children())) == {"conv"}

    dilated = fb.IRFBlock(8, 8, expansion=2, stride=1, dil=2)
    assert dilated.dw.conv.dilation == (2, 2) and dilated.dw.conv.padding == (2, 2)
    assert dilated(torch.randn(1, 8, 9, 9)).shape == (1, 8, 9, 9)

    rounded = fb.IRFBlock(8, 8, expansion=2.5, stride=1, width_divisor=8)
    assert rounded.pw.conv.out_channels == 24  # 20 rounds (half away from zero) to 24


def test_irf_block_negative_stride_upsamples():
    block = fb.IRFBlock(8, 4, expansion=2, stride=-2)
    assert isinstance(block.upscale, fb.Upsample)
    assert block(torch.randn(1, 8, 5, 7)).shape == (1, 4, 10, 14)
    assert fb.IRFBlock(8, 4, 1, stride=(-2, -4))(torch.randn(1, 8, 3, 3)).shape == (1, 4, 6, 12)
    assert fb.IRFBlock(8, 4, 1, stride=-2)(torch.zeros(0, 8, 3, 3)).shape == (0, 4, 6, 6)


def test_conv_bn_relu_norm_types():
    assert isinstance(fb.ConvBNRelu(4, 8, 3, 1, 1, 1, "relu", "bn").bn, nn.BatchNorm2d)
    frozen = fb.ConvBNRelu(4, 8, 3, 1, 1, 1, "relu", "af").bn
    assert not isinstance(frozen, nn.BatchNorm2d) and not list(frozen.parameters())
    gn = fb.ConvBNRelu(4, 8, 3, 1, 1, 1, None, ("gn", 2))
    assert isinstance(gn.bn, nn.GroupNorm) and gn.bn.num_groups == 2 and not hasattr(gn, "relu")
    none = fb.ConvBNRelu(4, 8, 3, 1, 1, 0, None, None)
    assert list(dict(none.named_children())) == ["conv"] and none.conv.bias is not None
    with pytest.raises(ValueError, match="bn_type"):
        fb.ConvBNRelu(4, 8, 3, 1, 1, 1, "relu", "batchnorm")
    with pytest.raises(ValueError, match="stride"):
        fb.ConvBNRelu(4, 8, 3, 3, 1, 1, "relu", "bn")


def test_channel_shuffle_permutation():
    x = torch.arange(6.0).view(1, 6, 1, 1).expand(2, 6, 3, 3)
    y = fb.ChannelShuffle(2)(x)
    assert y[1, :, 2, 2].tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert fb.ChannelShuffle(3)(x)[0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="groups"):
        fb.ChannelShuffle(4)(x)


def test_shift_moves_each_channel_group_by_its_offset():
    torch.manual_seed(0)
    channels = 2 * 25 + 3  # two channels per offset, three extra at the centre
    shift = fb.Shift(channels, 5, stride=1, padding=2)
    assert not shift.kernel.requires_grad
    assert torch.equal(shift.kernel.sum(dim=(1, 2, 3)), torch.ones(channels))
    x = torch.randn(1, channels, 7, 7)
    y = shift(x)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for c in range(channels):
        i, j = (shift.kernel[c, 0] == 1).nonzero()[0].tolist()
        torch.testing.assert_close(y[0, c], padded[0, c, i:i + 7, j:j + 7])
    centre = [c for c in range(channels) if shift.kernel[c, 0, 2, 2] == 1]
    assert len(centre) == 5
    assert fb.Shift(channels, 5, stride=2, padding=2)(x).shape == (1, channels, 4, 4)


def test_se_module_scales_channels():
    se = fb.SEModule(32)
    assert se.op[1].out_channels == 8
    assert fb.SEModule(16).op[1].out_channels == 8  # at least 8
    x = torch.rand(2, 32, 5, 5)
    gates = se.op(x)
    assert gates.shape == (2, 32, 1, 1) and ((gates > 0) & (gates < 1)).all()
    torch.testing.assert_close(se(x), x * gates)


def test_get_divisible_by():
    assert fb._get_divisible_by(30, 8, 8) == 32
    assert fb._get_divisible_by(20, 8, 8) == 24   # 2.5 rounds away from zero
    assert fb._get_divisible_by(12, 8, 8) == 16   # 1.5 -> 2
    assert fb._get_divisible_by(16, 8, 8) == 16
    assert fb._get_divisible_by(3, 8, 8) == 64    # rounds to 0 -> min_val multiples
    assert fb._get_divisible_by(7.0, 1, 1) == 7
    assert fb._get_divisible_by(7, 0, 0) == 7


# ------------------------------------------------------------------------------ arch defs

_TINY_ARCH = {
    "block_op_type": [["ir_k3"], ["ir_k5", "skip", "ir_k3_e1"], ["shift_5x5"]],
    "block_cfg": {
        "first": [8, 2],
        "stages": [[[1, 8, 1, 1]], [[2, 16, 2, 2], [3, 24, 1, 1]], [[2, 8, 1, -2]]],
        "last": [32, 0.0],
        "backbone": [0, 1],
        "bbox": [2],
    },
}


def test_unify_arch_def_flattens_blocks():
    unified = fb.unify_arch_def(_TINY_ARCH)
    assert "block_cfg" not in unified and "block_op_type" not in unified
    assert unified["first"] == [8, 2] and unified["backbone"] == [0, 1]
    flat = [(b["stage_idx"], b["block_idx"], b["block"], b["block_op_type"])
            for b in unified["stages"]]
    assert flat == [
        (0, 0, [1, 8, 1, 1], "ir_k3"),
        (1, 0, [2, 16, 1, 2], "ir_k5"),
        (1, 1, [2, 16, 1, 1], "skip"),   # repeats after the first keep stride 1
        (1, 2, [3, 24, 1, 1], "ir_k3_e1"),
        (2, 0, [2, 8, 1, -2], "shift_5x5"),
    ]
    assert fb.get_num_stages(unified) == 3
    assert _TINY_ARCH["block_cfg"]["stages"][1][0] == [2, 16, 2, 2]  # input left untouched

    selected = fb.get_blocks(unified, stage_indices=[1], block_indices=[0, 2])
    assert [(b["stage_idx"], b["block_idx"]) for b in selected["stages"]] == [(1, 0), (1, 2)]
    assert len(fb.get_blocks(unified)["stages"]) == 5


def test_unify_arch_def_rejects_mismatched_op_lists():
    bad = json.loads(json.dumps(_TINY_ARCH))
    bad["block_op_type"][1] = ["ir_k5"]
    with pytest.raises(ValueError, match="block_op_type"):
        fb.unify_arch_def(bad)
    with pytest.raises(ValueError, match="block_cfg"):
        fb.unify_arch_def({"block_op_type": []})


def test_builder_widths_and_last_layer():
    unified = fb.unify_arch_def(_TINY_ARCH)
    builder = fb.FBNetBuilder(width_ratio=2.0, width_divisor=8)
    first = builder.add_first(unified["first"])
    assert first.conv.out_channels == 16 and builder.last_depth == 16
    blocks = builder.add_blocks(fb.get_blocks(unified, stage_indices=[0, 1])["stages"])
    assert list(dict(blocks.named_children())) == ["xif0_0", "xif1_0", "xif1_1", "xif1_2"]
    assert builder.last_depth == 48
    assert isinstance(blocks.xif1_1, fb.Identity) and blocks.xif1_1.conv is None

    assert isinstance(builder.add_last([32, 0.0]), nn.Sequential)
    assert builder.last_depth == 48
    last = builder.add_last([32, 0.5])  # 32 * width_ratio 2 * 0.5
    assert last.conv.out_channels == 32 and builder.last_depth == 32
    assert builder.add_last([0, -1.5]).conv.out_channels == 48  # 1.5 x the current depth

    pool = builder.add_final_pool()
    assert pool(torch.randn(2, 4, 5, 5)).shape == (2, 4, 1, 1)
    assert builder.add_final_pool(3)(torch.randn(2, 4, 5, 5)).shape == (2, 4, 3, 3)

    with pytest.raises(KeyError, match="not_an_op"):
        builder.add_ir_block([1, 8, 1, 1], ["not_an_op"])


# trunk output channels of each built-in arch (all have a total stride of 16)
_ARCH_OUT_CHANNELS = {
    "default": 96,
    "mobilenet_v2": 96,
    "xirb16d_dsmask": 128,
    "cham_v1a": 88,
    "cham_v2": 56,
    "fbnet_a": 112,
    "fbnet_b": 112,
    "fbnet_c": 112,
}


def _cfg(arch="default", **fbnet_keys):
    cfg = default_cfg.clone()
    cfg.MODEL.FBNET.ARCH = arch
    for key, value in fbnet_keys.items():
        cfg.MODEL.FBNET[key] = value
    return cfg


def test_every_named_arch_is_covered():
    assert set(_ARCH_OUT_CHANNELS) <= set(MODEL_ARCH)


@pytest.mark.parametrize("arch", sorted(_ARCH_OUT_CHANNELS))
def test_named_arch_trunk(arch):
    torch.manual_seed(0)
    model = registry.BACKBONES["FBNet"](_cfg(arch))
    assert model.out_channels == _ARCH_OUT_CHANNELS[arch]
    assert isinstance(model.body, fbnet.FBNetTrunk)
    model.eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 64))
    assert isinstance(features, list) and len(features) == 1
    assert features[0].shape == (1, _ARCH_OUT_CHANNELS[arch], 4, 4)


def test_trunk_state_dict_names_and_training_step():
    model = fbnet.add_conv_body(_cfg("default"))
    keys = set(model.state_dict())
    assert "body.first.conv.weight" in keys and "body.first.bn.running_mean" in keys
    assert "body.stages.xif0_0.pw.conv.weight" in keys
    assert "body.stages.xif3_6.pwl.bn.weight" in keys
    assert not any(k.startswith("body.stages.xif4") for k in keys)  # heads are not in the trunk
    # DW_CONV_SKIP_BN / _RELU (True by default): the depthwise conv has no BN
    assert "body.stages.xif1_0.dw.conv.weight" in keys
    assert "body.stages.xif1_0.dw.bn.weight" not in keys
    x = torch.randn(2, 3, 32, 32)
    model(x)[0].sum().backward()
    assert _trainable_grads_are_set(model)


def test_scale_factor_width_divisor_and_norm_options():
    cfg = _cfg("default", SCALE_FACTOR=0.5, WIDTH_DIVISOR=8, BN_TYPE="af",
               DW_CONV_SKIP_BN=False)
    model = fbnet.add_conv_body(cfg)
    assert model.out_channels == 48
    assert model.body.first.conv.out_channels == 16
    assert all(c % 8 == 0 for c in [m.out_channels for m in model.modules()
                                    if isinstance(m, nn.Conv2d)])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert hasattr(model.body.stages.xif1_0.dw, "bn")

    gn_cfg = _cfg("default", BN_TYPE="gn")
    gn_cfg.MODEL.GROUP_NORM.NUM_GROUPS = 4
    gn_model = fbnet.add_conv_body(gn_cfg)
    assert isinstance(gn_model.body.first.bn, nn.GroupNorm) and gn_model.body.first.bn.num_groups == 4


def test_custom_arch_def_from_json():
    cfg = _cfg("my_tiny", ARCH_DEF=json.dumps(_TINY_ARCH))
    model = fbnet.add_conv_body(cfg)
    assert model.out_channels == 24
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 24, 8, 8)

    with pytest.raises(ValueError, match="ARCH_DEF"):
        fbnet.create_builder(_cfg("default", ARCH_DEF=json.dumps(_TINY_ARCH)))
    with pytest.raises(KeyError, match="not_an_arch"):
        fbnet.create_builder(_cfg("not_an_arch"))


# ------------------------------------------------------------------------------ heads

def test_registered_names():
    assert registry.BACKBONES["FBNet"] is fbnet.add_conv_body
    assert registry.RPN_HEADS["FBNet.rpn_head"] is fbnet.add_rpn_head
    assert registry.ROI_BOX_FEATURE_EXTRACTORS["FBNet.roi_head"] is fbnet.add_roi_head
    assert (registry.ROI_KEYPOINT_FEATURE_EXTRACTORS["FBNet.roi_head_keypoints"]
            is fbnet.add_roi_head_keypoints)
    assert registry.ROI_MASK_FEATURE_EXTRACTORS["FBNet.roi_head_mask"] is fbnet.add_roi_head_mask


def test_rpn_head_returns_objectness_and_box_deltas():
    cfg = _cfg("default")
    head = registry.RPN_HEADS["FBNet.rpn_head"](cfg, 96, 15)
    rpn_feature, regressor = head[0], head[1]
    assert rpn_feature.out_channels == 96
    assert list(dict(rpn_feature.head.named_children())) == ["xif5_0", "xif5_1", "xif5_2"]
    features = [torch.randn(2, 96, 6, 5), torch.randn(2, 96, 3, 3)]
    objectness, deltas = head(features)
    assert [o.shape for o in objectness] == [(2, 15, 6, 5), (2, 15, 3, 3)]
    assert [d.shape for d in deltas] == [(2, 60, 6, 5), (2, 60, 3, 3)]
    assert "1.cls_logits.weight" in head.state_dict() and "1.bbox_pred.bias" in head.state_dict()

    last_one = fbnet.add_rpn_head(_cfg("default", RPN_HEAD_BLOCKS=1, RPN_BN_TYPE="af"), 96, 3)
    assert list(dict(last_one[0].head.named_children())) == ["xif5_2"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in last_one.modules())
    gn_cfg = _cfg("default", RPN_BN_TYPE="gn")
    gn_cfg.MODEL.GROUP_NORM.NUM_GROUPS = 8
    gn_head = fbnet.add_rpn_head(gn_cfg, 96, 3)
    assert gn_head[0].head.xif5_0.pw.bn.num_groups == 8
    with pytest.raises(ValueError, match="RPN_HEAD_BLOCKS"):
        fbnet.add_rpn_head(_cfg("default", RPN_HEAD_BLOCKS=4), 96, 3)


def _pooled_cfg(arch, resolution, **fbnet_keys):
    cfg = _cfg(arch, **fbnet_keys)
    for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD"):
        cfg.MODEL[head].POOLER_RESOLUTION = resolution
        cfg.MODEL[head].POOLER_SCALES = (1.0 / 16,)
        cfg.MODEL[head].POOLER_SAMPLING_RATIO = 1
    return cfg


def _proposals():
    return [BoxList(torch.tensor([[0.0, 0.0, 40.0, 50.0], [16.0, 8.0, 60.0, 60.0]]), (64, 64)),
            BoxList(torch.tensor([[4.0, 4.0, 30.0, 20.0]]), (64, 64))]


def test_box_head_runs_on_pooled_features():
    torch.manual_seed(0)
    cfg = _pooled_cfg("default", 6)
    head = registry.ROI_BOX_FEATURE_EXTRACTORS["FBNet.roi_head"](cfg, 96)
    assert head.out_channels == 240  # last [0, ...] adds no layer
    assert list(dict(head.head.blocks.named_children())) == ["xif4_0", "xif4_1", "xif4_2",
                                                             "xif4_3"]
    keys = set(head.state_dict())
    assert "head.blocks.xif4_0.pw.conv.weight" in keys and "head.blocks.xif4_3.pwl.bn.bias" in keys
    assert not any(k.startswith("pooler") for k in keys)
    features = [torch.randn(2, 96, 4, 4, requires_grad=True)]
    out = head(features, _proposals())
    assert out.shape == (3, 240, 3, 3)  # first block has stride 2
    out.sum().backward()
    assert features[0].grad.abs().sum() > 0

    options = _pooled_cfg("default", 6, DET_HEAD_BLOCKS=[0, 1], DET_HEAD_STRIDE=1)
    small = fbnet.add_roi_head(options, 96)
    assert list(dict(small.head.blocks.named_children())) == ["xif4_0", "xif4_1"]
    assert small(features, _proposals()).shape == (3, 160, 6, 6)

    empty = [BoxList(torch.zeros(0, 4), (64, 64)), BoxList(torch.zeros(0, 4), (64, 64))]
    assert head.eval()(features, empty).shape == (0, 240, 3, 3)


def test_box_head_last_layer_scale():
    arch = json.loads(json.dumps(MODEL_ARCH["default"]))
    arch["block_cfg"]["last"] = [1280, 0.0]  # as in the earlier published "default"
    cfg = _pooled_cfg("with_last", 6, ARCH_DEF=json.dumps(arch), DET_HEAD_LAST_SCALE=0.25)
    head = fbnet.add_roi_head(cfg, 96)
    assert head.out_channels == 320
    assert head(
        [torch.randn(2, 96, 4, 4)], _proposals()).shape == (3, 320, 3, 3)


def test_mask_head_upsamples():
    cfg = _pooled_cfg("default", 6)
    head = registry.ROI_MASK_FEATURE_EXTRACTORS["FBNet.roi_head_mask"](cfg, 96)
    assert head.out_channels == 80
    assert head([torch.randn(2, 96, 4, 4)], _proposals()).shape == (3, 80, 12, 12)


def test_keypoint_head_uses_kpts_stage_or_head_fallback():
    arch = json.loads(json.dumps(MODEL_ARCH["default"]))
    arch["block_cfg"]["kpts"] = [6]
    cfg = _pooled_cfg("with_kpts", 6, ARCH_DEF=json.dumps(arch), KPTS_HEAD_STRIDE=2)
    head = registry.ROI_KEYPOINT_FEATURE_EXTRACTORS["FBNet.roi_head_keypoints"](cfg, 96)
    assert head.out_channels == 80
    # stride 2 on the first block, then the last block's 2x upsampling: 6 -> 3 -> 6
    assert head([torch.randn(2, 96, 4, 4)], _proposals()).shape == (3, 80, 6, 6)

    with pytest.raises(KeyError, match="head"):
        fbnet.add_roi_head_keypoints(_pooled_cfg("default", 6), 96)


def test_parts_of_the_upstream_xirb16d_dsmask_config():
    # the FBNet settings of maskrcnn-benchmark's e2e_mask_rcnn_fbnet_xirb16d_dsmask.yaml
    cfg = default_cfg.clone()
    cfg.merge_from_list([
        "MODEL.BACKBONE.CONV_BODY", "FBNet",
        "MODEL.FBNET.ARCH", "xirb16d_dsmask",
        "MODEL.FBNET.WIDTH_DIVISOR", 8,
        "MODEL.FBNET.DET_HEAD_LAST_SCALE", -1.0,
        "MODEL.RPN.ANCHOR_STRIDE", (16,),
        "MODEL.RPN.RPN_HEAD", "FBNet.rpn_head",
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 6,
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FBNet.roi_head",
        "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 6,
        "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", "FBNet.roi_head_mask",
    ])
    backbone = registry.BACKBONES[cfg.MODEL.BACKBONE.CONV_BODY](cfg)
    assert backbone.out_channels == 128
    features = backbone.eval()(torch.randn(2, 3, 64, 64))
    assert features[0].shape == (2, 128, 4, 4)

    rpn_head = registry.RPN_HEADS[cfg.MODEL.RPN.RPN_HEAD](cfg, backbone.out_channels, 15)
    objectness, deltas = rpn_head.eval()(features)
    assert objectness[0].shape == (2, 15, 4, 4) and deltas[0].shape == (2, 60, 4, 4)

    box_head = registry.ROI_BOX_FEATURE_EXTRACTORS[cfg.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR](
        cfg, backbone.out_channels)
    assert box_head.out_channels == 160  # -1.0: a last 1x1 conv keeping the depth
    assert box_head.head.last.conv.out_channels == 160
    assert box_head.eval()(features, _proposals()).shape == (3, 160, 3, 3)

    mask_head = registry.ROI_MASK_FEATURE_EXTRACTORS[cfg.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR](
        cfg, backbone.out_channels)
    assert mask_head.out_channels == 64
    # 6 -> stride 2 -> 3 -> two 2x upsamplings -> 12 (the yaml's mask RESOLUTION)
    assert mask_head.eval()(features, _proposals()).shape == (3, 64, 12, 12)
