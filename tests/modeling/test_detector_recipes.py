"""Detectors built from the recipe YAMLs of configs/ (FBNet, GroupNorm, deformable convolutions),
shrunk by overrides to a few proposals and narrow heads: a train step on two tiny images (one with
no ground truth) reaches every trainable parameter, an eval forward returns detections, and seeded
losses are pinned so that a silent change of behaviour fails."""
import os

import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import set_legacy_plus_one
from maskrcnn.structures.segmentation_mask import SegmentationMask
from tests.tiny_models import SMALL, assert_pinned_losses, seeded_losses
from tests.tool_modules import repo_path

CONFIG_ROOT = repo_path("configs")

# few proposals and sampled RoIs, 4 classes, every detection kept, no pretrained weights
SMALL_RANDOM = SMALL + ["MODEL.WEIGHT", "", "MODEL.ROI_HEADS.SCORE_THRESH", 0.0]

# narrow heads (GroupNorm's 32 groups still divide them)
NARROW_FPN_HEADS = [
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 32,
    "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", 32,
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (32, 32),
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_MASK_HEAD.RESOLUTION", 14,
]

RECIPES = {
    "fbnet_faster": ("e2e_faster_rcnn_fbnet.yaml", []),
    "fbnet_mask": ("e2e_mask_rcnn_fbnet.yaml", []),
    "gn_mask_xconv1fc": ("gn_baselines/e2e_mask_rcnn_R_50_FPN_Xconv1fc_1x_gn.yaml", NARROW_FPN_HEADS),
    "dcn_mask_mdconv": ("dcn/e2e_mask_rcnn_mdconv_R_50_FPN_1x.yaml", NARROW_FPN_HEADS),
}


@pytest.fixture(autouse=True)
def _restore_box_convention():
    yield
    set_legacy_plus_one(True)


def make_cfg(name, *opts):
    path, extra = RECIPES[name]
    cfg = default_cfg.clone()
    cfg.merge_from_file(os.path.join(CONFIG_ROOT, path))
    cfg.merge_from_list(SMALL_RANDOM + extra + list(opts))
    return cfg


def ground_truth(size=(96, 64)):
    gt = BoxList(torch.tensor([[10.0, 8.0, 50.0, 40.0], [40.0, 20.0, 90.0, 60.0]]), size)
    gt.add_field("labels", torch.tensor([1, 3]))
    polygons = [[[10, 8, 50, 8, 30, 40]], [[40, 20, 90, 20, 90, 60, 40, 60]]]
    gt.add_field("masks", SegmentationMask(polygons, size))
    return gt


def empty_ground_truth(size=(80, 56)):
    empty = BoxList(torch.zeros(0, 4), size)
    empty.add_field("labels", torch.zeros(0, dtype=torch.int64))
    empty.add_field("masks", SegmentationMask([], size))
    return empty


def expected_losses(cfg):
    names = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    return names | ({"loss_mask"} if cfg.MODEL.MASK_ON else set())


# the R-50 bodies take ~20 s on 2 busy cores
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if "R_50" in RECIPES[name][0] else name for name in sorted(RECIPES)
])
def test_recipe_train_step_and_eval_forward(name):
    cfg = make_cfg(name)
    model = build_detection_model(cfg).train()
    torch.manual_seed(0)
    images = [torch.randn(3, 64, 96), torch.randn(3, 56, 80)]
    losses = model(images, [ground_truth(), empty_ground_truth()])
    assert set(losses) == expected_losses(cfg)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing}"

    model.eval()
    with torch.no_grad():
        result = model([torch.randn(3, 64, 96)])[0]
    assert result.size == (96, 64) and len(result) > 0
    assert 1 <= result.get_field("labels").min() and result.get_field("labels").max() <= 3
    if cfg.MODEL.MASK_ON:
        resolution = cfg.MODEL.ROI_MASK_HEAD.RESOLUTION
        assert result.get_field("mask").shape == (len(result), 1, resolution, resolution)


def test_recipe_parts_are_the_ones_asked_for():
    from maskrcnn.layers import DFConv2d
    from torch import nn

    gn = build_detection_model(make_cfg("gn_mask_xconv1fc"))
    assert any(isinstance(m, nn.GroupNorm) for m in gn.backbone.fpn.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in gn.roi_heads.box.feature_extractor.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in gn.roi_heads.mask.feature_extractor.modules())
    dcn = build_detection_model(make_cfg("dcn_mask_mdconv"))
    deformable = [m for m in dcn.backbone.body.modules() if isinstance(m, DFConv2d)]
    assert deformable and all(m.with_modulated_dcn for m in deformable)
    assert "roi_heads.mask.feature_extractor.mask_fcn1.weight" in dcn.state_dict()


def recipe_losses(name):
    """One image (seed 1) with two boxes, the model from seed 0, the samplers from seed 2."""
    return seeded_losses(make_cfg(name), [ground_truth()])


# printed by recipe_losses on torch 2.13.0 (CPU build), 1 and 2 threads agreeing to 1e-6; a change
# means a silent change of initialisation, anchors, matching, sampling, pooling, normalisation,
# deformable sampling or the loss formulas
PINNED_LOSSES = {
    "fbnet_mask": {
        "loss_classifier": 1.3844690322875977, "loss_box_reg": 0.3753929138183594,
        "loss_mask": 2.4861769676208496, "loss_objectness": 0.705892026424408,
        "loss_rpn_box_reg": 0.024691039696335793,
    },
    "gn_mask_xconv1fc": {
        "loss_classifier": 1.4074621200561523, "loss_box_reg": 0.490699827671051,
        "loss_mask": 0.8588539361953735, "loss_objectness": 0.6942646503448486,
        "loss_rpn_box_reg": 0.11415240913629532,
    },
    "dcn_mask_mdconv": {
        "loss_classifier": 1.475911259651184, "loss_box_reg": 0.34307482838630676,
        "loss_mask": 1.5509570837020874, "loss_objectness": 0.6595358848571777,
        "loss_rpn_box_reg": 0.13882550597190857,
    },
}


@pytest.mark.parametrize("name", sorted(PINNED_LOSSES))
def test_pinned_seeded_losses(name):
    assert_pinned_losses(recipe_losses(name), PINNED_LOSSES[name])
