"""Every YAML under configs/ merges into the default config tree and its backbone builds.

Parametrised over the files found on disk, so a new config is covered as soon as it is added.
Only constructors run here (no forward passes of full-size models).
"""
import importlib.util
import pathlib

import pytest
import torch

from maskrcnn.config import cfg as default_cfg

CONFIG_ROOT = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIG_ROOT.rglob("*.yaml"))
CONFIG_IDS = [str(path.relative_to(CONFIG_ROOT)) for path in CONFIG_FILES]


def load_config(path):
    cfg = default_cfg.clone()
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


# maskrcnn-benchmark's model zoo, by file name: each must be present (more may be added)
EXPECTED = [
    *(f"e2e_{kind}_rcnn_{body}_1x.yaml" for kind in ("faster", "mask")
      for body in ("R_50_C4", "R_50_FPN", "R_101_FPN", "X_101_32x8d_FPN")),
    *(f"rpn_{body}_1x.yaml" for body in ("R_50_C4", "R_50_FPN", "R_101_FPN", "X_101_32x8d_FPN")),
    "e2e_keypoint_rcnn_R_50_FPN_1x.yaml", "e2e_mask_rcnn_R_50_FPN_1x_periodically_testing.yaml",
    "e2e_faster_rcnn_fbnet.yaml", "e2e_faster_rcnn_fbnet_600.yaml", "e2e_faster_rcnn_fbnet_chamv1a_600.yaml",
    "e2e_mask_rcnn_fbnet.yaml", "e2e_mask_rcnn_fbnet_600.yaml",
    "e2e_mask_rcnn_fbnet_xirb16d_dsmask.yaml", "e2e_mask_rcnn_fbnet_xirb16d_dsmask_600.yaml",
    *(f"retinanet/retinanet_{name}.yaml" for name in (
        "R-50-FPN_1x", "R-101-FPN_1x", "R-50-FPN_P5_1x", "R-101-FPN_P5_1x", "X_101_32x8d_FPN_1x",
        "R-50-FPN_1x_quick")),
    *(f"quick_schedules/{name}_quick.yaml" for name in (
        "e2e_faster_rcnn_R_50_C4", "e2e_faster_rcnn_R_50_FPN", "e2e_faster_rcnn_X_101_32x8d_FPN",
        "e2e_mask_rcnn_R_50_C4", "e2e_mask_rcnn_R_50_FPN", "e2e_mask_rcnn_X_101_32x8d_FPN",
        "e2e_keypoint_rcnn_R_50_FPN", "rpn_R_50_C4", "rpn_R_50_FPN")),
    *(f"gn_baselines/{prefix}e2e_{kind}_rcnn_R_50_FPN{head}_{sched}_gn.yaml"
      for prefix, sched in (("", "1x"), ("scratch_", "3x")) for kind in ("faster", "mask")
      for head in ("", "_Xconv1fc")),
    *(f"dcn/e2e_{kind}_rcnn_{conv}_R_50_FPN_1x.yaml" for kind in ("faster", "mask")
      for conv in ("dconv", "mdconv")),
    *(f"caffe2/e2e_{kind}_rcnn_{body}_1x_caffe2.yaml" for kind in ("faster", "mask")
      for body in ("R_50_C4", "R_50_FPN", "R_101_FPN", "X_101_32x8d_FPN")),
    "caffe2/e2e_keypoint_rcnn_R_50_FPN_1x_caffe2.yaml",
    "caffe2/e2e_mask_rcnn_X-152-32x8d-FPN-IN5k_1.44x_caffe2.yaml",
    *(f"cityscapes/e2e_{kind}_rcnn_R_50_FPN_1x{style}.yaml" for kind in ("faster", "mask")
      for style in ("", "_cocostyle")),
    "pascal_voc/e2e_faster_rcnn_R_50_C4_1x_1_gpu_voc.yaml",
    "pascal_voc/e2e_faster_rcnn_R_50_C4_1x_4_gpu_voc.yaml",
    "pascal_voc/e2e_mask_rcnn_R_50_FPN_1x_cocostyle.yaml",
    "test_time_aug/e2e_mask_rcnn_R_50_FPN_1x.yaml",
]


def test_model_zoo_files_present():
    missing = [name for name in EXPECTED if not (CONFIG_ROOT / name).is_file()]
    assert not missing, missing
    assert len(set(EXPECTED)) == len(EXPECTED) == 66


@pytest.mark.parametrize("path", CONFIG_FILES, ids=CONFIG_IDS)
def test_config_merges(path):
    cfg = load_config(path)
    # a merged recipe is internally consistent in the ways builders rely on
    if cfg.MODEL.RPN.USE_FPN and not cfg.MODEL.RETINANET_ON:
        assert len(cfg.MODEL.RPN.ANCHOR_STRIDE) == len(cfg.MODEL.RPN.ANCHOR_SIZES)
    if cfg.MODEL.ROI_HEADS.USE_FPN:
        assert len(cfg.MODEL.ROI_BOX_HEAD.POOLER_SCALES) == 4
        assert cfg.DATALOADER.SIZE_DIVISIBILITY == 32
    if "FPN" in cfg.MODEL.BACKBONE.CONV_BODY and path.parent.name != "shapes":  # shapes/: narrow CPU recipes
        assert cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS == 256
    if cfg.MODEL.WEIGHT:
        assert cfg.MODEL.WEIGHT.startswith("catalog://"), cfg.MODEL.WEIGHT
    assert len(cfg.SOLVER.STEPS) >= 1 and max(cfg.SOLVER.STEPS) < cfg.SOLVER.MAX_ITER


def test_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  RPN:\n    ANCHOR_STRIDES: (4, 8)\n")
    with pytest.raises(KeyError, match="MODEL.RPN.ANCHOR_STRIDES"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=CONFIG_IDS)
def test_backbone_builds(path):
    from maskrcnn.modeling.backbone import build_backbone

    cfg = load_config(path)
    with torch.device("meta"):
        backbone = build_backbone(cfg)
    assert backbone.out_channels == (
        cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
        if cfg.MODEL.BACKBONE.CONV_BODY != "FBNet" else backbone.out_channels
    )
    assert sum(p.numel() for p in backbone.parameters()) > 0


# A few published hyper-parameters, pinned so an edit that breaks a recipe fails here.
RECIPE_FACTS = {
    "e2e_mask_rcnn_R_50_FPN_1x.yaml": {
        "SOLVER.BASE_LR": 0.02, "SOLVER.STEPS": (60000, 80000), "SOLVER.MAX_ITER": 90000,
        "MODEL.ROI_MASK_HEAD.RESOLUTION": 28, "MODEL.RPN.ANCHOR_STRIDE": (4, 8, 16, 32, 64)},
    "e2e_faster_rcnn_R_50_C4_1x.yaml": {
        "SOLVER.BASE_LR": 0.01, "SOLVER.IMS_PER_BATCH": 8, "MODEL.BACKBONE.CONV_BODY": "R-50-C4"},
    "e2e_keypoint_rcnn_R_50_FPN_1x.yaml": {
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES": 2, "MODEL.ROI_KEYPOINT_HEAD.RESOLUTION": 56,
        "INPUT.MIN_SIZE_TRAIN": (640, 672, 704, 736, 768, 800)},
    "e2e_faster_rcnn_fbnet_chamv1a_600.yaml": {
        "MODEL.FBNET.ARCH": "cham_v1a", "SOLVER.BASE_LR": 0.045, "SOLVER.IMS_PER_BATCH": 96,
        "INPUT.PIXEL_STD": [57.375, 57.12, 58.395]},
    "retinanet/retinanet_R-101-FPN_P5_1x.yaml": {
        "MODEL.RETINANET_ON": True, "MODEL.RETINANET.USE_C5": False,
        "MODEL.RETINANET.STRADDLE_THRESH": -1, "MODEL.BACKBONE.CONV_BODY": "R-101-FPN-RETINANET"},
    "caffe2/e2e_mask_rcnn_X-152-32x8d-FPN-IN5k_1.44x_caffe2.yaml": {
        "MODEL.BACKBONE.CONV_BODY": "R-152-FPN", "MODEL.RESNETS.NUM_GROUPS": 32,
        "MODEL.RESNETS.WIDTH_PER_GROUP": 8, "MODEL.RESNETS.STRIDE_IN_1X1": False},
    "gn_baselines/scratch_e2e_mask_rcnn_R_50_FPN_Xconv1fc_3x_gn.yaml": {
        "MODEL.WEIGHT": "", "MODEL.BACKBONE.FREEZE_CONV_BODY_AT": 0,
        "MODEL.RESNETS.TRANS_FUNC": "BottleneckWithGN", "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR":
        "FPNXconv1fcFeatureExtractor", "SOLVER.MAX_ITER": 270000},
    "dcn/e2e_mask_rcnn_mdconv_R_50_FPN_1x.yaml": {
        "MODEL.RESNETS.STAGE_WITH_DCN": (False, True, True, True),
        "MODEL.RESNETS.WITH_MODULATED_DCN": True},
    "test_time_aug/e2e_mask_rcnn_R_50_FPN_1x.yaml": {
        "TEST.BBOX_AUG.ENABLED": True, "TEST.BBOX_AUG.MAX_SIZE": 2000,
        "TEST.BBOX_AUG.SCALES": (400, 500, 600, 700, 900, 1000, 1100, 1200)},
}


@pytest.mark.parametrize("name", sorted(RECIPE_FACTS))
def test_recipe_values(name):
    cfg = load_config(CONFIG_ROOT / name)
    for key, expected in RECIPE_FACTS[name].items():
        value = cfg
        for part in key.split("."):
            value = value[part]
        if isinstance(expected, (tuple, list)):
            value, expected = list(value), list(expected)
        assert value == expected, f"{name}: {key} = {value!r}, expected {expected!r}"


def _head_modules(path):
    """The optional head packages a recipe needs (imported lazily by the detector builders)."""
    cfg = load_config(path)
    needed = []
    if cfg.MODEL.RETINANET_ON:
        needed.append(("maskrcnn.modeling.rpn.retinanet", "retinanet"))
    if cfg.MODEL.MASK_ON:
        needed.append(("maskrcnn.modeling.roi_heads.mask_head", "mask-kp"))
    if cfg.MODEL.KEYPOINT_ON:
        needed.append(("maskrcnn.modeling.roi_heads.keypoint_head", "mask-kp"))
    return needed


def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _model_build_case(path, relative):
    missing = [(module, branch) for module, branch in _head_modules(path) if not _module_exists(module)]
    if not missing:
        return pytest.param(path, id=relative)
    # Until the branch that adds a head is merged, the build must fail for exactly that reason
    # (strict: once the head lands the mark disappears with the condition and the test runs).
    reason = "needs " + ", ".join(f"{module} (branch {branch})" for module, branch in missing)
    return pytest.param(path, id=relative, marks=pytest.mark.xfail(raises=ModuleNotFoundError, strict=True, reason=reason))


@pytest.mark.parametrize("path", [_model_build_case(p, i) for p, i in zip(CONFIG_FILES, CONFIG_IDS)])
def test_detection_model_builds(path):
    """The whole detector of every recipe builds (on the meta device: shapes only, no memory),
    with output layers sized by the recipe's class, anchor and keypoint counts."""
    from maskrcnn.modeling.detector import build_detection_model

    cfg = load_config(path)
    with torch.device("meta"):
        model = build_detection_model(cfg)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    num_classes = cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES
    if cfg.MODEL.RETINANET_ON:
        retina = cfg.MODEL.RETINANET
        anchors = len(retina.ASPECT_RATIOS) * retina.SCALES_PER_OCTAVE
        assert shapes["rpn.head.cls_logits.weight"][0] == (retina.NUM_CLASSES - 1) * anchors
        assert shapes["rpn.head.bbox_pred.weight"][0] == 4 * anchors
    elif cfg.MODEL.RPN.RPN_HEAD == "SingleConvRPNHead":
        rpn = cfg.MODEL.RPN
        anchors = len(rpn.ASPECT_RATIOS) * (1 if rpn.USE_FPN else len(rpn.ANCHOR_SIZES))
        assert shapes["rpn.head.cls_logits.weight"][0] == anchors
        assert shapes["rpn.head.bbox_pred.weight"][0] == 4 * anchors
    has_roi_heads = any(name.startswith("roi_heads.") for name in shapes)
    assert has_roi_heads == (not cfg.MODEL.RPN_ONLY)
    if not cfg.MODEL.RPN_ONLY:
        assert shapes["roi_heads.box.predictor.cls_score.weight"][0] == num_classes
        assert shapes["roi_heads.box.predictor.bbox_pred.weight"][0] == 4 * num_classes
    if cfg.MODEL.MASK_ON:
        assert shapes["roi_heads.mask.predictor.mask_fcn_logits.weight"][0] == num_classes
    if cfg.MODEL.KEYPOINT_ON:
        assert shapes["roi_heads.keypoint.predictor.kps_score_lowres.weight"][1] == (
            cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES)
