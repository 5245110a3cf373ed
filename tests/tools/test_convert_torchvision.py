import json
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.backbone import build_backbone
from maskrcnn.modeling.rpn.rpn import build_rpn
from maskrcnn.utils.model_serialization import load_state_dict
from maskrcnn.utils.torchvision_conversion import convert_torchvision_state_dict
from tests.tool_modules import REPO_ROOT as ROOT
from tests.tool_modules import load_script

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "torchvision_detection_keys.json")


@pytest.fixture(scope="module")
def torchvision_keys():
    """{model name: [(key, shape)]} of torchvision 0.28 (tools/make_torchvision_fixture.py)."""
    with open(FIXTURE) as f:
        data = json.load(f)
    return {name: [(k, tuple(s)) for k, s in entries] for name, entries in data["models"].items()}


def _fake_state_dict(entries):
    """torchvision key names and shapes; values are arange-filled so a copy can be traced."""
    sd = OrderedDict()
    for i, (key, shape) in enumerate(entries):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
        else:
            sd[key] = torch.full(shape, float(i))
    return sd


def _ours(conv_body, **extra):
    cfg = default_cfg.clone()
    opts = [
        "MODEL.BACKBONE.CONV_BODY", conv_body,
        "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 256,
        "MODEL.RESNETS.STRIDE_IN_1X1", False,
        "MODEL.RPN.USE_FPN", True,
        "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    ]
    for key, value in extra.items():
        opts += [key, value]
    cfg.merge_from_list(opts)
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    if not conv_body.endswith("RETINANET"):
        model.rpn = build_rpn(cfg, model.backbone.out_channels)
    return model


@pytest.fixture(scope="module")
def ours_r50_fpn():
    return _ours("R-50-FPN")


def _shapes(sd, prefixes):
    return {k: tuple(v.shape) for k, v in sd.items() if k.startswith(prefixes)}


def _box_keys(num_classes=91):
    return {
        "roi_heads.box.feature_extractor.fc6.weight": (1024, 256 * 7 * 7),
        "roi_heads.box.feature_extractor.fc6.bias": (1024,),
        "roi_heads.box.feature_extractor.fc7.weight": (1024, 1024),
        "roi_heads.box.feature_extractor.fc7.bias": (1024,),
        "roi_heads.box.predictor.cls_score.weight": (num_classes, 1024),
        "roi_heads.box.predictor.cls_score.bias": (num_classes,),
        "roi_heads.box.predictor.bbox_pred.weight": (4 * num_classes, 1024),
        "roi_heads.box.predictor.bbox_pred.bias": (4 * num_classes,),
    }


def _backbone_rpn_keys(model):
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.startswith("rpn.anchor_generator.")  # computed from the config, in no checkpoint
    }


@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn"]
)
def test_backbone_and_rpn_convert_to_exactly_ours(torchvision_keys, ours_r50_fpn, name):
    converted = convert_torchvision_state_dict(_fake_state_dict(torchvision_keys[name]))
    assert _shapes(converted, ("backbone.", "rpn.")) == _backbone_rpn_keys(ours_r50_fpn)


def test_heads_convert_to_maskrcnn_benchmark_names(torchvision_keys):
    faster = convert_torchvision_state_dict(_fake_state_dict(torchvision_keys["fasterrcnn_resnet50_fpn"]))
    assert _shapes(faster, ("roi_heads.",)) == _box_keys()

    mask = convert_torchvision_state_dict(_fake_state_dict(torchvision_keys["maskrcnn_resnet50_fpn"]))
    expected = _box_keys()
    for i in range(1, 5):
        expected[f"roi_heads.mask.feature_extractor.mask_fcn{i}.weight"] = (256, 256, 3, 3)
        expected[f"roi_heads.mask.feature_extractor.mask_fcn{i}.bias"] = (256,)
    expected["roi_heads.mask.predictor.conv5_mask.weight"] = (256, 256, 2, 2)
    expected["roi_heads.mask.predictor.conv5_mask.bias"] = (256,)
    expected["roi_heads.mask.predictor.mask_fcn_logits.weight"] = (91, 256, 1, 1)
    expected["roi_heads.mask.predictor.mask_fcn_logits.bias"] = (91,)
    assert _shapes(mask, ("roi_heads.",)) == expected

    kp = convert_torchvision_state_dict(_fake_state_dict(torchvision_keys["keypointrcnn_resnet50_fpn"]))
    expected = _box_keys(num_classes=2)
    for i in range(1, 9):
        in_channels = 256 if i == 1 else 512
        expected[f"roi_heads.keypoint.feature_extractor.conv_fcn{i}.weight"] = (512, in_channels, 3, 3)
        expected[f"roi_heads.keypoint.feature_extractor.conv_fcn{i}.bias"] = (512,)
    expected["roi_heads.keypoint.predictor.kps_score_lowres.weight"] = (512, 17, 4, 4)
    expected["roi_heads.keypoint.predictor.kps_score_lowres.bias"] = (17,)
    assert _shapes(kp, ("roi_heads.",)) == expected


def test_retinanet_converts_to_ours(torchvision_keys):
    tv = _fake_state_dict(torchvision_keys["retinanet_resnet50_fpn"])
    converted = convert_torchvision_state_dict(tv)
    ours = _ours("R-50-FPN-RETINANET", **{"MODEL.RETINANET.USE_C5": False})
    assert _shapes(converted, ("backbone.",)) == _backbone_rpn_keys(ours)
    expected = {}
    for tower in ("cls_tower", "bbox_tower"):
        for i in (0, 2, 4, 6):
            expected[f"rpn.head.{tower}.{i}.weight"] = (256, 256, 3, 3)
            expected[f"rpn.head.{tower}.{i}.bias"] = (256,)
    expected["rpn.head.cls_logits.weight"] = (9 * 90, 256, 3, 3)  # background logit dropped
    expected["rpn.head.cls_logits.bias"] = (9 * 90,)
    expected["rpn.head.bbox_pred.weight"] = (36, 256, 3, 3)
    expected["rpn.head.bbox_pred.bias"] = (36,)
    assert _shapes(converted, ("rpn.",)) == expected
    # Per anchor, classes 1..90 of torchvision's 91 survive, in order.
    bias = torch.arange(9 * 91, dtype=torch.float32)
    small = convert_torchvision_state_dict({
        "head.classification_head.cls_logits.bias": bias,
        "head.regression_head.bbox_reg.weight": torch.zeros(36, 1, 3, 3),
    })
    out = small["rpn.head.cls_logits.bias"].reshape(9, 90)
    torch.testing.assert_close(out, bias.reshape(9, 91)[:, 1:])


def test_values_copied_and_bn_eps_folded(torchvision_keys):
    tv = _fake_state_dict(torchvision_keys["maskrcnn_resnet50_fpn"])
    converted = convert_torchvision_state_dict(tv)
    assert not any("num_batches_tracked" in k for k in converted)
    pairs = {
        "backbone.body.conv1.weight": "backbone.body.stem.conv1.weight",
        "backbone.body.layer3.4.conv2.weight": "backbone.body.layer3.4.conv2.weight",
        "backbone.fpn.inner_blocks.0.0.weight": "backbone.fpn.fpn_inner1.weight",
        "backbone.fpn.layer_blocks.3.0.bias": "backbone.fpn.fpn_layer4.bias",
        "rpn.head.conv.0.0.weight": "rpn.head.conv.weight",
        "roi_heads.mask_head.2.0.weight": "roi_heads.mask.feature_extractor.mask_fcn3.weight",
        "backbone.body.bn1.running_mean": "backbone.body.stem.bn1.running_mean",
    }
    for tv_key, our_key in pairs.items():
        torch.testing.assert_close(converted[our_key], tv[tv_key], rtol=0, atol=0, msg=tv_key)
    torch.testing.assert_close(
        converted["backbone.body.layer2.0.downsample.1.running_var"],
        tv["backbone.body.layer2.0.downsample.1.running_var"] + 1e-5,
    )
    unfolded = convert_torchvision_state_dict(tv, bn_eps=0.0)
    torch.testing.assert_close(
        unfolded["backbone.body.stem.bn1.running_var"], tv["backbone.body.bn1.running_var"]
    )


def test_folded_eps_reproduces_torchvision_frozen_batch_norm():
    from maskrcnn.layers import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(0)
    stats = {
        "weight": torch.rand(6, generator=g) + 0.5, "bias": torch.randn(6, generator=g),
        "running_mean": torch.randn(6, generator=g), "running_var": torch.rand(6, generator=g) * 1e-4,
    }
    x = torch.randn(2, 6, 3, 3, generator=g, dtype=torch.float64)
    shape = (1, -1, 1, 1)
    ref = (x - stats["running_mean"].double().reshape(shape)) / torch.sqrt(
        stats["running_var"].double().reshape(shape) + 1e-5
    ) * stats["weight"].double().reshape(shape) + stats["bias"].double().reshape(shape)
    tv = {f"backbone.body.bn1.{k}": v for k, v in stats.items()}
    converted = convert_torchvision_state_dict(tv)
    bn = FrozenBatchNorm2d(6)
    bn.load_state_dict({k.rsplit(".", 1)[1]: v for k, v in converted.items()})
    # float32 statistics: a few ulp; without the folded eps the error would be ~5%.
    torch.testing.assert_close(bn.double()(x), ref, rtol=1e-5, atol=1e-4)


def test_older_torchvision_layouts():
    z = torch.zeros(1)
    converted = convert_torchvision_state_dict({
        "backbone.fpn.inner_blocks.0.weight": z, "backbone.fpn.inner_blocks.1.weight": z,
        "backbone.fpn.inner_blocks.2.weight": z, "backbone.fpn.inner_blocks.3.weight": z,
        "backbone.fpn.layer_blocks.3.bias": z,
        "rpn.head.conv.weight": z,
        "roi_heads.mask_head.mask_fcn2.bias": z,
    })
    assert set(converted) == {
        "backbone.fpn.fpn_inner1.weight", "backbone.fpn.fpn_inner2.weight",
        "backbone.fpn.fpn_inner3.weight", "backbone.fpn.fpn_inner4.weight",
        "backbone.fpn.fpn_layer4.bias", "rpn.head.conv.weight",
        "roi_heads.mask.feature_extractor.mask_fcn2.bias",
    }


def test_unknown_keys_are_an_error_listing_them():
    with pytest.raises(KeyError) as info:
        convert_torchvision_state_dict({
            "backbone.body.conv1.weight": torch.zeros(1),
            "roi_heads.box_head.0.0.weight": torch.zeros(1),  # a v2 (conv + norm) box head
            "transform.foo": torch.zeros(1),
        })
    assert "roi_heads.box_head.0.0.weight" in str(info.value) and "transform.foo" in str(info.value)


def test_converted_backbone_and_rpn_load_into_ours(torchvision_keys, ours_r50_fpn):
    tv = _fake_state_dict(torchvision_keys["fasterrcnn_resnet50_fpn"])
    converted = convert_torchvision_state_dict(tv)
    result = load_state_dict(ours_r50_fpn, converted)
    assert result.missing == [k for k in ours_r50_fpn.state_dict() if k.startswith("rpn.anchor_generator.")]
    assert result.dropped == []
    assert sorted(result.unused) == sorted(_box_keys())  # no box head in this model
    torch.testing.assert_close(
        ours_r50_fpn.state_dict()["backbone.fpn.fpn_inner2.weight"], tv["backbone.fpn.inner_blocks.1.0.weight"]
    )


def _load_cli():
    return load_script("tools/convert_torchvision.py", "convert_torchvision")


def test_cli_round_trip(tmp_path, capsys):
    tv = OrderedDict([
        ("backbone.body.conv1.weight", torch.randn(4, 3, 7, 7)),
        ("backbone.body.bn1.running_mean", torch.randn(4)),
        ("backbone.body.bn1.running_var", torch.rand(4)),
        ("backbone.body.bn1.num_batches_tracked", torch.tensor(3)),
        ("roi_heads.box_predictor.cls_score.weight", torch.randn(3, 8)),
    ])
    src, dst = tmp_path / "tv.pth", tmp_path / "ours.pth"
    torch.save(tv, src)
    assert _load_cli().main(["--input", str(src), "--output", str(dst)]) == 0
    out = torch.load(dst, weights_only=True)["model"]
    assert list(out) == [
        "backbone.body.stem.conv1.weight", "backbone.body.stem.bn1.running_mean",
        "backbone.body.stem.bn1.running_var", "roi_heads.box.predictor.cls_score.weight",
    ]
    torch.testing.assert_close(out["backbone.body.stem.conv1.weight"], tv["backbone.body.conv1.weight"])
    torch.testing.assert_close(
        out["backbone.body.stem.bn1.running_var"], tv["backbone.body.bn1.running_var"] + 1e-5
    )
    assert "4 keys" in capsys.readouterr().out


def _load_fixture_tool():
    return load_script("tools/make_torchvision_fixture.py", "make_torchvision_fixture")  # torchvision only in main()


def test_outputs_match_torchvision_with_shared_seeded_weights(torchvision_keys, ours_r50_fpn):
    """FPN features and RPN head outputs equal torchvision 0.28's fasterrcnn_resnet50_fpn (fixture)."""
    tool = _load_fixture_tool()
    with open(os.path.join(ROOT, "tests", "fixtures", "torchvision_fasterrcnn_outputs.json")) as f:
        reference = json.load(f)
    tv = tool.seeded_weights(torchvision_keys["fasterrcnn_resnet50_fpn"])
    result = load_state_dict(ours_r50_fpn, convert_torchvision_state_dict(tv))
    assert result.missing == [k for k in ours_r50_fpn.state_dict() if k.startswith("rpn.anchor_generator.")]
    ours_r50_fpn.eval()
    with torch.no_grad():
        features = ours_r50_fpn.backbone(tool.seeded_image())
        objectness, deltas = ours_r50_fpn.rpn.head(list(features))
    for name, outputs in (("features", features), ("objectness", objectness), ("rpn_box_regression", deltas)):
        assert len(outputs) == len(reference[name]) == 5, name
        for level, (ours, ref) in enumerate(zip(outputs, reference[name])):
            got = tool.summarize(ours)
            assert got["shape"] == ref["shape"], (name, level)
            for field in ("channel_mean", "samples"):
                expected = torch.tensor(ref[field])
                scale = expected.abs().max().item()
                # Measured: 2.6e-6 * scale (float32 order of summation); converting without
                # folding the batch-norm eps gives 2e-4 * scale.
                torch.testing.assert_close(
                    torch.tensor(got[field]), expected, rtol=0, atol=2e-5 * scale,
                    msg=lambda m, name=name, level=level, field=field: f"{name}[{level}].{field}: {m}",
                )


def test_retinanet_regression_rescaled_to_our_box_coder_weights():
    """torchvision's RetinaNet decodes its deltas with weights (1, 1, 1, 1); after conversion our
    BoxCoder (10, 10, 5, 5) applied to the converted conv's output must give the same boxes."""
    from maskrcnn.modeling.box_coder import BoxCoder

    anchors_per_location, channels = 9, 8
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(anchors_per_location * 4, channels, 3, 3, generator=generator) * 0.1
    bias = torch.randn(anchors_per_location * 4, generator=generator) * 0.1
    features = torch.randn(1, channels, 5, 5, generator=generator)
    state = {"head.regression_head.bbox_reg.weight": weight, "head.regression_head.bbox_reg.bias": bias}
    converted = convert_torchvision_state_dict(state)
    ours_w, ours_b = converted["rpn.head.bbox_pred.weight"], converted["rpn.head.bbox_pred.bias"]

    theirs = torch.nn.functional.conv2d(features, weight, bias, padding=1)
    ours = torch.nn.functional.conv2d(features, ours_w, ours_b, padding=1)
    to_rows = lambda t: t.permute(0, 2, 3, 1).reshape(-1, 4)  # noqa: E731
    anchors = torch.tensor([[10.0, 20.0, 60.0, 90.0]]).repeat(to_rows(theirs).shape[0], 1)
    boxes_theirs = BoxCoder((1.0, 1.0, 1.0, 1.0), legacy_plus_one=False).decode(to_rows(theirs), anchors)
    boxes_ours = BoxCoder((10.0, 10.0, 5.0, 5.0), legacy_plus_one=False).decode(to_rows(ours), anchors)
    torch.testing.assert_close(boxes_ours, boxes_theirs, rtol=1e-5, atol=1e-4)


# torchvision keyword arguments of the detection fixtures -> our config keys
_KWARG_KEYS = {
    "rpn_pre_nms_top_n_test": ("MODEL.RPN.PRE_NMS_TOP_N_TEST",),
    "rpn_post_nms_top_n_test": ("MODEL.RPN.POST_NMS_TOP_N_TEST", "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST"),
    "box_detections_per_img": ("MODEL.ROI_HEADS.DETECTIONS_PER_IMG",),
}


def _torchvision_config_model(config_name, kwargs):
    from maskrcnn.modeling.detector import build_detection_model

    cfg = default_cfg.clone()
    cfg.merge_from_file(os.path.join(ROOT, "configs", "torchvision", config_name))
    opts = ["MODEL.DEVICE", "cpu"]
    for kwarg, value in kwargs.items():
        for key in _KWARG_KEYS[kwarg]:
            opts += [key, value]
    cfg.merge_from_list(opts)
    return build_detection_model(cfg).eval()


TORCHVISION_CONFIGS = [
    ("fasterrcnn_resnet50_fpn", "e2e_faster_rcnn_R_50_FPN_torchvision.yaml"),
    ("maskrcnn_resnet50_fpn", "e2e_mask_rcnn_R_50_FPN_torchvision.yaml"),
    ("keypointrcnn_resnet50_fpn", "e2e_keypoint_rcnn_R_50_FPN_torchvision.yaml"),
]


@pytest.mark.parametrize("name, config_name", TORCHVISION_CONFIGS)
def test_configs_hold_exactly_the_converted_torchvision_parameters(torchvision_keys, name, config_name):
    with torch.device("meta"):
        model = _torchvision_config_model(config_name, {})
        converted = convert_torchvision_state_dict(
            OrderedDict((k, torch.empty(s)) for k, s in torchvision_keys[name]))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("rpn.anchor_generator.")}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


@pytest.mark.slow
@pytest.mark.parametrize("name, config_name", TORCHVISION_CONFIGS)
def test_configs_reproduce_torchvision_detections(torchvision_keys, name, config_name):
    """configs/torchvision/ + converted weights give torchvision 0.28's detections (fixture): the
    same boxes (1e-3 px), labels and scores, mask probabilities and keypoints."""
    from maskrcnn.structures.image_list import to_image_list

    tool = _load_fixture_tool()
    with open(os.path.join(ROOT, "tests", "fixtures", f"torchvision_{name}_detections.json")) as f:
        reference = json.load(f)
    model = _torchvision_config_model(config_name, reference["kwargs"])
    result = load_state_dict(model, convert_torchvision_state_dict(tool.detection_weights(torchvision_keys[name])))
    assert result.unused == [] and result.dropped == []
    assert all(k.startswith("rpn.anchor_generator.") for k in result.missing), result.missing
    image = tool.detection_image()
    assert list(image.shape) == reference["image_shape"]
    with torch.no_grad():
        detections = model(to_image_list(image, size_divisible=32))[0]

    assert len(reference["boxes"]) > 0
    assert detections.get_field("labels").tolist() == reference["labels"]
    torch.testing.assert_close(detections.bbox, torch.tensor(reference["boxes"]), rtol=0, atol=1e-3)
    torch.testing.assert_close(detections.get_field("scores"), torch.tensor(reference["scores"]), rtol=0, atol=1e-5)
    if "masks" in reference:
        masks = tool.mask_summary(detections.get_field("mask"))
        for field in ("sum", "pooled"):
            torch.testing.assert_close(torch.tensor(masks[field]), torch.tensor(reference["masks"][field]),
                                       rtol=1e-4, atol=1e-5, msg=lambda m, field=field: f"mask {field}: {m}")
    if "keypoints" in reference:
        keypoints = detections.get_field("keypoints")
        torch.testing.assert_close(keypoints.keypoints.reshape(-1, 3), torch.tensor(reference["keypoints"]),
                                   rtol=0, atol=1e-3)
        torch.testing.assert_close(keypoints.get_field("logits").reshape(-1),
                                   torch.tensor(reference["keypoints_scores"]), rtol=1e-4, atol=1e-4)
