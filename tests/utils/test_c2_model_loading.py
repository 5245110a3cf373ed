import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.backbone import build_backbone
from maskrcnn.modeling.rpn.rpn import build_rpn
from maskrcnn.utils.c2_model_loading import (
    C2_FORMAT_LOADER,
    _C2_STAGE_NAMES,
    _rename_weights_for_resnet,
    load_c2_format,
)
from maskrcnn.utils.model_serialization import load_state_dict

# Detectron blob name -> our key, written out by hand (not derived from the code under test).
EXPECTED_PAIRS = {
    "conv1_w": "backbone.body.stem.conv1.weight",
    "res_conv1_bn_s": "backbone.body.stem.bn1.weight",
    "res_conv1_bn_b": "backbone.body.stem.bn1.bias",
    "res2_0_branch1_w": "backbone.body.layer1.0.downsample.0.weight",
    "res2_0_branch1_bn_s": "backbone.body.layer1.0.downsample.1.weight",
    "res2_0_branch1_bn_b": "backbone.body.layer1.0.downsample.1.bias",
    "res2_0_branch2a_w": "backbone.body.layer1.0.conv1.weight",
    "res2_0_branch2a_bn_s": "backbone.body.layer1.0.bn1.weight",
    "res2_0_branch2a_bn_b": "backbone.body.layer1.0.bn1.bias",
    "res2_2_branch2b_w": "backbone.body.layer1.2.conv2.weight",
    "res3_3_branch2c_w": "backbone.body.layer2.3.conv3.weight",
    "res3_3_branch2c_bn_s": "backbone.body.layer2.3.bn3.weight",
    "res4_5_branch2b_bn_b": "backbone.body.layer3.5.bn2.bias",
    "res5_0_branch1_w": "backbone.body.layer4.0.downsample.0.weight",
    "res5_2_branch2c_bn_s": "backbone.body.layer4.2.bn3.weight",
    "fpn_inner_res5_2_sum_w": "backbone.fpn.fpn_inner4.weight",
    "fpn_inner_res5_2_sum_b": "backbone.fpn.fpn_inner4.bias",
    "fpn_inner_res4_5_sum_lateral_w": "backbone.fpn.fpn_inner3.weight",
    "fpn_inner_res3_3_sum_lateral_b": "backbone.fpn.fpn_inner2.bias",
    "fpn_inner_res2_2_sum_lateral_w": "backbone.fpn.fpn_inner1.weight",
    "fpn_res5_2_sum_w": "backbone.fpn.fpn_layer4.weight",
    "fpn_res4_5_sum_b": "backbone.fpn.fpn_layer3.bias",
    "fpn_res3_3_sum_w": "backbone.fpn.fpn_layer2.weight",
    "fpn_res2_2_sum_w": "backbone.fpn.fpn_layer1.weight",
    "conv_rpn_fpn2_w": "rpn.head.conv.weight",
    "conv_rpn_fpn2_b": "rpn.head.conv.bias",
    "rpn_cls_logits_fpn2_w": "rpn.head.cls_logits.weight",
    "rpn_bbox_pred_fpn2_b": "rpn.head.bbox_pred.bias",
}
HEAD_PAIRS = {
    "fc6_w": "roi_heads.box.feature_extractor.fc6.weight",
    "fc7_b": "roi_heads.box.feature_extractor.fc7.bias",
    "cls_score_w": "roi_heads.box.predictor.cls_score.weight",
    "bbox_pred_b": "roi_heads.box.predictor.bbox_pred.bias",
    "_[mask]_fcn1_w": "roi_heads.mask.feature_extractor.mask_fcn1.weight",
    "_[mask]_fcn4_b": "roi_heads.mask.feature_extractor.mask_fcn4.bias",
    "conv5_mask_w": "roi_heads.mask.predictor.conv5_mask.weight",
    "mask_fcn_logits_b": "roi_heads.mask.predictor.mask_fcn_logits.bias",
    "conv_fcn1_w": "roi_heads.keypoint.feature_extractor.conv_fcn1.weight",
    "conv_fcn8_b": "roi_heads.keypoint.feature_extractor.conv_fcn8.bias",
    "kps_score_lowres_w": "roi_heads.keypoint.predictor.kps_score_lowres.weight",
    "fpn_6_w": "backbone.fpn.top_blocks.p6.weight",
    "fpn_7_b": "backbone.fpn.top_blocks.p7.bias",
}


def _cfg(conv_body):
    """The real block structure and key names, at 1/8 of the width (keeps the tests fast)."""
    cfg = default_cfg.clone()
    cfg.merge_from_list([
        "MODEL.BACKBONE.CONV_BODY", conv_body,
        "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
        "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
        "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 32,
        "MODEL.RPN.USE_FPN", True,
        "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    ])
    return cfg


@pytest.fixture(scope="module")
def r50_fpn():
    cfg = _cfg("R-50-FPN")
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    model.rpn = build_rpn(cfg, model.backbone.out_channels)
    return cfg, model


def _blob_name(key, stage_names):
    """Our key -> Detectron blob name: an inverse written independently of the code under test."""
    last = {int(s.split(".")[0]): s.split(".")[1] for s in stage_names}
    param = {"weight": "w", "bias": "b"}
    norm = {"weight": "s", "bias": "b"}
    m = re.fullmatch(r"backbone\.body\.stem\.conv1\.weight", key)
    if m:
        return "conv1_w"
    m = re.fullmatch(r"backbone\.body\.stem\.bn1\.(weight|bias)", key)
    if m:
        return "res_conv1_bn_" + norm[m.group(1)]
    m = re.fullmatch(r"backbone\.body\.layer(\d)\.(\d+)\.(conv[123]|downsample\.0)\.weight", key)
    if m:
        branch = {"conv1": "2a", "conv2": "2b", "conv3": "2c", "downsample.0": "1"}[m.group(3)]
        return f"res{int(m.group(1)) + 1}_{m.group(2)}_branch{branch}_w"
    m = re.fullmatch(r"backbone\.body\.layer(\d)\.(\d+)\.(bn[123]|downsample\.1)\.(weight|bias)", key)
    if m:
        branch = {"bn1": "2a", "bn2": "2b", "bn3": "2c", "downsample.1": "1"}[m.group(3)]
        return f"res{int(m.group(1)) + 1}_{m.group(2)}_branch{branch}_bn_{norm[m.group(4)]}"
    m = re.fullmatch(r"backbone\.fpn\.fpn_(inner|layer)(\d)\.(weight|bias)", key)
    if m:
        level = int(m.group(2))
        tap = f"res{level + 1}_{last[level]}_sum"
        if m.group(1) == "layer":
            return f"fpn_{tap}_{param[m.group(3)]}"
        lateral = "" if level == 4 else "_lateral"
        return f"fpn_inner_{tap}{lateral}_{param[m.group(3)]}"
    m = re.fullmatch(r"rpn\.head\.(conv|cls_logits|bbox_pred)\.(weight|bias)", key)
    if m:
        name = {"conv": "conv_rpn", "cls_logits": "rpn_cls_logits", "bbox_pred": "rpn_bbox_pred"}[m.group(1)]
        return f"{name}_fpn2_{param[m.group(2)]}"
    return None  # running statistics: Detectron's AffineChannel has none


def test_hand_written_pairs_r50_fpn(r50_fpn):
    _, model = r50_fpn
    blobs = {name: np.zeros(1, dtype=np.float32) for name in list(EXPECTED_PAIRS) + list(HEAD_PAIRS)}
    converted = _rename_weights_for_resnet(blobs, _C2_STAGE_NAMES["R-50"])
    for blob, key in {**EXPECTED_PAIRS, **HEAD_PAIRS}.items():
        assert key in converted, (blob, key)
    model_keys = set(model.state_dict())
    assert set(EXPECTED_PAIRS.values()) <= model_keys
    # AffineChannel layers get identity statistics.
    torch.testing.assert_close(converted["backbone.body.stem.bn1.running_var"], torch.ones(1))
    torch.testing.assert_close(converted["backbone.body.layer1.0.downsample.1.running_mean"], torch.zeros(1))
    assert "backbone.body.layer1.0.bn2.running_mean" not in converted  # no res2_0_branch2b_bn_s blob


def test_inverse_map_agrees_with_hand_written_pairs():
    for blob, key in EXPECTED_PAIRS.items():
        assert _blob_name(key, _C2_STAGE_NAMES["R-50"]) == blob


def _write_pickle(path, blobs, wrap):
    data = {"blobs": blobs} if wrap else blobs
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return str(path)


@pytest.mark.parametrize("wrap", [True, False])
def test_round_trip_pickle_loads_r50_fpn_without_missing_keys(r50_fpn, tmp_path, wrap):
    cfg, _ = r50_fpn
    rng = np.random.default_rng(0)
    model_sd = r50_fpn[1].state_dict()
    blobs, expected = {}, {}
    for key, value in model_sd.items():
        blob = _blob_name(key, _C2_STAGE_NAMES["R-50"])
        if blob is None:
            assert key.endswith(("running_mean", "running_var")) or ".anchor_generator." in key, key
            continue
        array = rng.standard_normal(tuple(value.shape)).astype(np.float32)
        blobs[blob] = array
        expected[key] = torch.from_numpy(array)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, dtype=np.float32)  # optimiser state: skipped
    blobs["pred_w"] = np.zeros((1000, 2048), dtype=np.float32)  # ImageNet classifier: unused
    blobs["lr"] = 0.02  # not an array: skipped
    path = _write_pickle(tmp_path / "model.pkl", blobs, wrap)

    loaded = load_c2_format(cfg, path)["model"]
    assert "pred_w" in loaded and not any(k.endswith("_momentum") for k in loaded) and "lr" not in loaded

    model = nn.Module()
    model.backbone = build_backbone(cfg)
    model.rpn = build_rpn(cfg, model.backbone.out_channels)
    for name, buf in model.named_buffers():
        if name.endswith("running_var"):
            buf.fill_(5.0)  # stale statistics must be overwritten by the identity ones
    result = load_state_dict(model, loaded)
    # Only the anchor buffers (computed from the config, not weights) are not in a Detectron file.
    assert result.missing == [k for k in model.state_dict() if k.startswith("rpn.anchor_generator.")]
    assert result.missing  # the filter above is not vacuous
    assert result.unused == ["pred_w"]
    assert result.dropped == []
    sd = model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(sd[key], value, rtol=0, atol=0, msg=key)
    for key, value in sd.items():
        if key.endswith("running_var"):
            torch.testing.assert_close(value, torch.ones_like(value), msg=key)


def test_stage_names_by_depth():
    assert _C2_STAGE_NAMES["R-101"][2] == "3.22" and _C2_STAGE_NAMES["R-152"][1:3] == ["2.7", "3.35"]
    blobs = {
        "fpn_inner_res4_22_sum_lateral_w": np.zeros(1, np.float32),
        "fpn_res3_7_sum_b": np.zeros(1, np.float32),
    }
    converted = _rename_weights_for_resnet(blobs, _C2_STAGE_NAMES["R-152"][:1] + ["2.7", "3.22", "4.2"])
    assert set(converted) == {"backbone.fpn.fpn_inner3.weight", "backbone.fpn.fpn_layer2.bias"}
    with pytest.raises(ValueError, match="fpn_inner_res4_22_sum_lateral_w"):
        _rename_weights_for_resnet(blobs, _C2_STAGE_NAMES["R-50"])


def test_c4_res5_is_the_box_head():
    blobs = {"res5_0_branch2a_w": np.zeros(1, np.float32), "res4_0_branch2a_w": np.zeros(1, np.float32)}
    converted = _rename_weights_for_resnet(blobs, _C2_STAGE_NAMES["R-50"], res5_in_box_head=True)
    assert set(converted) == {
        "roi_heads.box.feature_extractor.head.layer4.0.conv1.weight",
        "backbone.body.layer3.0.conv1.weight",
    }


def test_load_c2_format_errors(tmp_path):
    assert {"R-50-FPN", "R-101-C4", "R-152-FPN", "R-50-FPN-RETINANET"} <= set(C2_FORMAT_LOADER)
    with pytest.raises(KeyError, match="R-18-FPN"):
        load_c2_format(_cfg("R-18-FPN"), str(tmp_path / "x.pkl"))
    path = tmp_path / "list.pkl"
    with open(path, "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="expected a dict of blobs"):
        load_c2_format(_cfg("R-101-FPN"), str(path))
