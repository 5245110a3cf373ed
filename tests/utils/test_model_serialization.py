import logging
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.layers import FrozenBatchNorm2d
from maskrcnn.utils.model_serialization import (
    align_and_update_state_dicts,
    load_state_dict,
    strip_prefix_if_present,
)


def _tiny_detector(num_classes=3, retinanet=False):
    """A few modules under maskrcnn-benchmark's key names (backbone.body..., rpn.head..., roi_heads...)."""
    body = nn.Module()
    body.stem = nn.Module()
    body.stem.conv1 = nn.Conv2d(3, 4, 3, bias=False)
    body.stem.bn1 = FrozenBatchNorm2d(4)
    backbone = nn.Module()
    backbone.body = body
    fpn = nn.Module()
    fpn.fpn_conv1 = nn.Conv2d(4, 4, 1)  # must not be filled by a loaded "conv1.weight"
    backbone.fpn = fpn
    head = nn.Module()
    if retinanet:
        head.cls_tower = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())
        head.cls_logits = nn.Conv2d(4, 2 * (num_classes - 1), 3)
    else:
        head.conv = nn.Conv2d(4, 4, 3)
        head.cls_logits = nn.Conv2d(4, 2, 1)
    head.bbox_pred = nn.Conv2d(4, 8, 1)
    rpn = nn.Module()
    rpn.head = head
    predictor = nn.Module()
    predictor.cls_score = nn.Linear(8, num_classes)
    predictor.bbox_pred = nn.Linear(8, 4 * num_classes)
    box = nn.Module()
    box.predictor = predictor
    box.feature_extractor = nn.Module()
    box.feature_extractor.fc6 = nn.Linear(16, 8)
    model = nn.Module()
    model.backbone = backbone
    model.rpn = rpn
    model.roi_heads = nn.ModuleDict({"box": box})
    return model


def _randomized_state_dict(model):
    return OrderedDict((k, torch.randn_like(v)) for k, v in model.state_dict().items())


def _assert_state_equal(model, state_dict):
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state_dict[key], rtol=0, atol=0, msg=key)


def test_strip_prefix_if_present():
    sd = OrderedDict([("module.a.weight", 1), ("module.b.bias", 2)])
    assert list(strip_prefix_if_present(sd, "module.")) == ["a.weight", "b.bias"]
    mixed = OrderedDict([("module.a.weight", 1), ("b.bias", 2)])
    assert list(strip_prefix_if_present(mixed, "module.")) == ["module.a.weight", "b.bias"]
    assert list(strip_prefix_if_present(OrderedDict(), "module.")) == []


@pytest.mark.parametrize("wrap", ["plain", "module", "checkpoint", "module_checkpoint"])
def test_load_state_dict_as_saved_by_maskrcnn_benchmark(wrap):
    source = _randomized_state_dict(_tiny_detector())
    loaded = source
    if "module" in wrap:
        loaded = OrderedDict(("module." + k, v) for k, v in loaded.items())
    if "checkpoint" in wrap:
        loaded = {"model": loaded, "optimizer": {}, "iteration": 7}
    model = _tiny_detector()
    result = load_state_dict(model, loaded)
    _assert_state_equal(model, source)
    assert result.missing == [] and result.unused == [] and result.dropped == []
    assert set(result.matched) == set(source)


def test_suffix_matching_longest_wins_and_whole_components_only(caplog):
    model = _tiny_detector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stem_weight = torch.randn(4, 3, 3, 3)
    decoy = torch.randn(4, 3, 3, 3)
    loaded = {
        "stem.conv1.weight": stem_weight,  # suffix of backbone.body.stem.conv1.weight
        "conv1.weight": decoy,  # shorter suffix of the same key; also not a suffix of fpn_conv1.weight
        "bn1.running_var": np.full(4, 2.0, dtype=np.float32),  # numpy values are accepted
        "unrelated.thing": torch.zeros(1),
    }
    with caplog.at_level(logging.INFO, logger="maskrcnn.utils.model_serialization"):
        result = load_state_dict(model, loaded)
    sd = model.state_dict()
    torch.testing.assert_close(sd["backbone.body.stem.conv1.weight"], stem_weight, rtol=0, atol=0)
    torch.testing.assert_close(sd["backbone.body.stem.bn1.running_var"], torch.full((4,), 2.0))
    torch.testing.assert_close(sd["backbone.fpn.fpn_conv1.weight"], before["backbone.fpn.fpn_conv1.weight"])
    assert result.matched["backbone.body.stem.conv1.weight"] == "stem.conv1.weight"
    assert "backbone.fpn.fpn_conv1.weight" in result.missing
    assert sorted(result.unused) == ["conv1.weight", "unrelated.thing"]
    logged = caplog.text
    assert "backbone.body.stem.conv1.weight" in logged and "stem.conv1.weight" in logged


def test_class_dependent_layers_dropped_with_warning(caplog):
    source = _randomized_state_dict(_tiny_detector(num_classes=5))
    model = _tiny_detector(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="maskrcnn.utils.model_serialization"):
        result = load_state_dict(model, source)
    dropped = {key: (ms, ls) for key, ms, ls in result.dropped}
    assert set(dropped) == {
        "roi_heads.box.predictor.cls_score.weight",
        "roi_heads.box.predictor.cls_score.bias",
        "roi_heads.box.predictor.bbox_pred.weight",
        "roi_heads.box.predictor.bbox_pred.bias",
    }
    assert dropped["roi_heads.box.predictor.cls_score.weight"] == ((3, 8), (5, 8))
    sd = model.state_dict()
    for key in dropped:
        torch.testing.assert_close(sd[key], before[key], rtol=0, atol=0)
    for key in ("backbone.body.stem.conv1.weight", "rpn.head.cls_logits.weight",
                "roi_heads.box.feature_extractor.fc6.weight"):
        torch.testing.assert_close(sd[key], source[key], rtol=0, atol=0)
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "roi_heads.box.predictor.cls_score.weight" in warning and "[5, 8]" in warning


def test_other_shape_mismatches_are_an_error_listing_all():
    source = _randomized_state_dict(_tiny_detector())
    source["backbone.body.stem.conv1.weight"] = torch.zeros(4, 3, 5, 5)
    source["rpn.head.cls_logits.weight"] = torch.zeros(3, 4, 1, 1)  # RPN objectness: anchors, not classes
    model = _tiny_detector()
    with pytest.raises(RuntimeError) as info:
        load_state_dict(model, source)
    message = str(info.value)
    assert "2 key(s)" in message
    assert "backbone.body.stem.conv1.weight: model [4, 3, 3, 3] vs loaded [4, 3, 5, 5]" in message
    assert "rpn.head.cls_logits.weight: model [2, 4, 1, 1] vs loaded [3, 4, 1, 1]" in message


def test_retinanet_cls_logits_is_class_dependent_but_its_bbox_pred_is_not():
    source = _randomized_state_dict(_tiny_detector(num_classes=5, retinanet=True))
    model = _tiny_detector(num_classes=3, retinanet=True)
    del source["roi_heads.box.predictor.cls_score.weight"], source["roi_heads.box.predictor.cls_score.bias"]
    del source["roi_heads.box.predictor.bbox_pred.weight"], source["roi_heads.box.predictor.bbox_pred.bias"]
    result = load_state_dict(model, source)
    assert {k for k, _, _ in result.dropped} == {"rpn.head.cls_logits.weight", "rpn.head.cls_logits.bias"}
    source["rpn.head.bbox_pred.weight"] = torch.zeros(12, 4, 1, 1)
    with pytest.raises(RuntimeError, match="rpn.head.bbox_pred.weight"):
        load_state_dict(_tiny_detector(num_classes=3, retinanet=True), source)


def test_bad_inputs_name_the_fault():
    model = _tiny_detector()
    with pytest.raises(TypeError, match="'backbone.body.stem.conv1.weight'"):
        load_state_dict(model, {"backbone.body.stem.conv1.weight": [1.0, 2.0]})
    with pytest.raises(TypeError, match="must be a mapping"):
        load_state_dict(model, [("a", torch.zeros(1))])


def test_align_updates_in_place_and_reports():
    model_sd = _tiny_detector().state_dict()
    value = torch.randn(4)
    result = align_and_update_state_dicts(model_sd, {"body.stem.bn1.bias": value})
    assert model_sd["backbone.body.stem.bn1.bias"] is value
    assert result.matched == {"backbone.body.stem.bn1.bias": "body.stem.bn1.bias"}
    assert len(result.missing) == len(model_sd) - 1
