import pytest
import yaml

from maskrcnn.config import CfgNode, cfg
from maskrcnn.config.conventions import box_convention
from maskrcnn.config.defaults import _C

# A sample of maskrcnn-benchmark's default keys with their default values.
UPSTREAM_DEFAULTS = {
    "MODEL.RPN_ONLY": False,
    "MODEL.MASK_ON": False,
    "MODEL.RETINANET_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.DEVICE": "cuda",
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.WEIGHT": "",
    "INPUT.MIN_SIZE_TRAIN": (800,),
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
    "INPUT.TO_BGR255": True,
    "INPUT.VERTICAL_FLIP_PROB_TRAIN": 0.0,
    "DATASETS.TRAIN": (),
    "DATASETS.TEST": (),
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.SIZE_DIVISIBILITY": 0,
    "DATALOADER.ASPECT_RATIO_GROUPING": True,
    "MODEL.BACKBONE.CONV_BODY": "R-50-C4",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT": 2,
    "MODEL.FPN.USE_GN": False,
    "MODEL.GROUP_NORM.DIM_PER_GP": -1,
    "MODEL.GROUP_NORM.NUM_GROUPS": 32,
    "MODEL.GROUP_NORM.EPSILON": 1e-5,
    "MODEL.RPN.ANCHOR_SIZES": (32, 64, 128, 256, 512),
    "MODEL.RPN.ANCHOR_STRIDE": (16,),
    "MODEL.RPN.STRADDLE_THRESH": 0,
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN": 12000,
    "MODEL.RPN.POST_NMS_TOP_N_TEST": 1000,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": 2000,
    "MODEL.RPN.FPN_POST_NMS_PER_BATCH": True,
    "MODEL.RPN.RPN_HEAD": "SingleConvRPNHead",
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.25,
    "MODEL.ROI_HEADS.NMS": 0.5,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": "ResNet50Conv5ROIFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": 81,
    "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS": 4,
    "MODEL.ROI_MASK_HEAD.PREDICTOR": "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS": (256, 256, 256, 256),
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD": 0.5,
    "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS": (512,) * 8,
    "MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES": 17,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.TRANS_FUNC": "BottleneckWithFixedBatchNorm",
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": 1024,
    "MODEL.RESNETS.STAGE_WITH_DCN": (False, False, False, False),
    "MODEL.RESNETS.WITH_MODULATED_DCN": False,
    "MODEL.RESNETS.DEFORMABLE_GROUPS": 1,
    "MODEL.RETINANET.NUM_CLASSES": 81,
    "MODEL.RETINANET.ANCHOR_STRIDES": (8, 16, 32, 64, 128),
    "MODEL.RETINANET.BBOX_REG_BETA": 0.11,
    "MODEL.RETINANET.BG_IOU_THRESHOLD": 0.4,
    "MODEL.RETINANET.NMS_TH": 0.4,
    "MODEL.FBNET.ARCH": "default",
    "MODEL.FBNET.DET_HEAD_BLOCKS": [],
    "MODEL.FBNET.RPN_BN_TYPE": "",
    "SOLVER.MAX_ITER": 40000,
    "SOLVER.BASE_LR": 0.001,
    "SOLVER.BIAS_LR_FACTOR": 2,
    "SOLVER.STEPS": (30000,),
    "SOLVER.WARMUP_FACTOR": 1.0 / 3,
    "SOLVER.WARMUP_METHOD": "linear",
    "SOLVER.CHECKPOINT_PERIOD": 2500,
    "SOLVER.IMS_PER_BATCH": 16,
    "TEST.EXPECTED_RESULTS": [],
    "TEST.IMS_PER_BATCH": 8,
    "TEST.DETECTIONS_PER_IMG": 100,
    "TEST.BBOX_AUG.ENABLED": False,
    "TEST.BBOX_AUG.MAX_SIZE": 4000,
    "OUTPUT_DIR": ".",
    "DTYPE": "float32",
    "AMP_VERBOSE": False,
}

OURS = {
    "MODEL.BOX_CONVENTION_LEGACY": True,
    "SOLVER.OPTIMIZER": "SGD",
    "SOLVER.LR_SCHEDULER": "WarmupMultiStepLR",
    "SOLVER.CLIP_GRADIENTS.ENABLED": False,
    "SOLVER.TEST_PERIOD": 0,
    "DATALOADER.KEEP_EMPTY_IMAGES": False,
    "DATALOADER.SKIP_UNREADABLE_IMAGES": False,
    "DATASETS.SHAPES.IMAGE_SIZE": 128,
    "DATASETS.SHAPES.SEED": 0,
    "TEST.INT8": False,
    "TEST.INT8_CALIBRATION_IMAGES": 8,
}


def _get(node, dotted):
    for name in dotted.split("."):
        node = node[name]
    return node


def test_cfg_is_the_default_tree_and_every_node_is_ours():
    assert cfg is _C
    stack = [cfg]
    while stack:
        node = stack.pop()
        assert type(node) is CfgNode
        stack.extend(v for v in node.values() if isinstance(v, dict))


@pytest.mark.parametrize("key, value", sorted({**UPSTREAM_DEFAULTS, **OURS}.items()))
def test_default_values(key, value):
    assert _get(cfg, key) == value
    assert type(_get(cfg, key)) is type(value)


def test_paths_catalog_default_points_at_our_file():
    assert cfg.PATHS_CATALOG.endswith("maskrcnn/config/paths_catalog.py")


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("MODEL:\n  RPN:\n    PRE_NMS_TOP_N_TRAINN: 10\n")
    c = cfg.clone()
    with pytest.raises(KeyError) as info:
        c.merge_from_file(str(path))
    message = info.value.args[0]
    assert message.startswith("Unknown config key 'MODEL.RPN.PRE_NMS_TOP_N_TRAINN' (in ")
    assert str(path) in message
    assert "Did you mean: MODEL.RPN.PRE_NMS_TOP_N_TRAIN" in message
    assert c.MODEL.RPN.PRE_NMS_TOP_N_TRAIN == 12000  # nothing merged


def test_unknown_key_under_wrong_parent_suggests_same_leaf():
    with pytest.raises(KeyError, match="MODEL.RPN.RPN_HEAD"):
        cfg.clone().merge_from_list(["MODEL.RPN_HEAD", "X"])


def test_unknown_key_without_lookalike_lists_parent_keys():
    with pytest.raises(KeyError) as info:
        cfg.clone().merge_from_list(["SOLVER.ZZZZZZZZZZZZ", 1])
    message = info.value.args[0]
    assert "'SOLVER.ZZZZZZZZZZZZ'" in message and "Keys under SOLVER:" in message
    assert "BASE_LR" in message


def test_unknown_nested_section_is_reported_with_full_key(tmp_path):
    path = tmp_path / "y.yaml"
    path.write_text(yaml.safe_dump({"MODEL": {"ROI_BOX_HEADS": {"NUM_CLASSES": 2}}}))
    with pytest.raises(KeyError, match="'MODEL.ROI_BOX_HEADS'.*Did you mean: MODEL.ROI_BOX_HEAD"):
        cfg.clone().merge_from_file(str(path))


def test_merge_from_file_and_list_apply_values(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "MODEL": {"MASK_ON": True, "RPN": {"ANCHOR_STRIDE": [4, 8, 16, 32, 64]}},
                "DATASETS": {"TRAIN": ["shapes_train"], "TEST": ["shapes_val"]},
                "SOLVER": {"OPTIMIZER": "AdamW", "CLIP_GRADIENTS": {"ENABLED": True}},
            }
        )
    )
    c = cfg.clone()
    c.merge_from_file(str(path))
    c.merge_from_list(["SOLVER.BASE_LR", "0.02", "DTYPE", "bfloat16", "INPUT.MIN_SIZE_TRAIN", "(600, 800)"])
    assert c.MODEL.MASK_ON is True
    assert c.MODEL.RPN.ANCHOR_STRIDE == (4, 8, 16, 32, 64)  # list coerced to the default's tuple
    assert c.DATASETS.TRAIN == ("shapes_train",)
    assert c.SOLVER.OPTIMIZER == "AdamW" and c.SOLVER.CLIP_GRADIENTS.ENABLED is True
    assert c.SOLVER.BASE_LR == 0.02 and c.DTYPE == "bfloat16"
    assert c.INPUT.MIN_SIZE_TRAIN == (600, 800)
    assert cfg.MODEL.MASK_ON is False and cfg.DTYPE == "float32"  # the clone was merged, not cfg


def test_merge_from_list_type_errors_name_the_key():
    c = cfg.clone()
    with pytest.raises(ValueError, match="SOLVER.MAX_ITER"):
        c.merge_from_list(["SOLVER.MAX_ITER", "many"])
    with pytest.raises(ValueError, match="MODEL.MASK_ON"):
        c.merge_from_list(["MODEL.MASK_ON", "1"])
    with pytest.raises(ValueError, match="odd number"):
        c.merge_from_list(["MODEL.MASK_ON"])


def test_file_type_error_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  IMS_PER_BATCH: two\n")
    with pytest.raises(ValueError) as info:
        cfg.clone().merge_from_file(str(path))
    assert "SOLVER.IMS_PER_BATCH" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "key, bad", [("DTYPE", "float64"), ("SOLVER.OPTIMIZER", "Adam"), ("SOLVER.LR_SCHEDULER", "Cosine")]
)
def test_value_choices_enforced(key, bad):
    with pytest.raises(ValueError, match=f"'{key}' must be one of"):
        cfg.clone().merge_from_list([key, bad])


def test_clone_keeps_class_choices_and_independence():
    c = cfg.clone()
    assert type(c) is CfgNode and type(c.SOLVER.CLIP_GRADIENTS) is CfgNode
    assert c.value_choices() == cfg.value_choices()
    c.MODEL.RPN.NMS_THRESH = 0.5
    assert cfg.MODEL.RPN.NMS_THRESH == 0.7
    with pytest.raises(KeyError, match="Did you mean"):
        c.merge_from_list(["MODEL.RPN.NMS_TRESH", 0.1])


def test_freeze_blocks_changes():
    c = cfg.clone()
    c.freeze()
    assert c.is_frozen() and c.MODEL.is_frozen()
    with pytest.raises(AttributeError):
        c.MODEL.MASK_ON = True
    with pytest.raises(AttributeError):
        c.merge_from_list(["MODEL.MASK_ON", True])
    c.defrost()
    c.merge_from_list(["MODEL.MASK_ON", True])
    assert c.MODEL.MASK_ON is True


def test_deprecated_and_new_allowed_keys_still_follow_yacs(tmp_path):
    c = cfg.clone()
    c.register_deprecated_key("MODEL.OLD_SWITCH")
    c.merge_from_list(["MODEL.OLD_SWITCH", 1])  # ignored, as yacs does
    assert "OLD_SWITCH" not in c.MODEL
    c.register_renamed_key("MODEL.OLD_NAME", "MODEL.MASK_ON")
    with pytest.raises(KeyError, match="renamed"):
        c.merge_from_list(["MODEL.OLD_NAME", True])
    c.MODEL.FBNET.set_new_allowed(True)
    path = tmp_path / "new.yaml"
    path.write_text("MODEL:\n  FBNET:\n    MY_EXTRA: 3\n")
    c.merge_from_file(str(path))
    assert c.MODEL.FBNET.MY_EXTRA == 3


def test_dump_round_trips(tmp_path):
    c = cfg.clone()
    c.merge_from_list(["MODEL.BOX_CONVENTION_LEGACY", False])
    path = tmp_path / "dump.yaml"
    path.write_text(c.dump())
    d = cfg.clone()
    d.merge_from_file(str(path))
    assert d == c


def test_box_convention_switch():
    legacy = box_convention(cfg)
    assert legacy.legacy_plus_one is True and legacy.to_remove == 1 and legacy.pooler_aligned is False
    c = cfg.clone()
    c.merge_from_list(["MODEL.BOX_CONVENTION_LEGACY", False])
    modern = box_convention(c)
    assert modern.legacy_plus_one is False and modern.to_remove == 0 and modern.pooler_aligned is True


def test_group_norm_reads_global_cfg():
    from maskrcnn.modeling.make_layers import group_norm

    gn = group_norm(64)
    assert (gn.num_groups, gn.eps) == (cfg.MODEL.GROUP_NORM.NUM_GROUPS, cfg.MODEL.GROUP_NORM.EPSILON)
    c = cfg.clone()
    c.merge_from_list(["MODEL.GROUP_NORM.NUM_GROUPS", -1, "MODEL.GROUP_NORM.DIM_PER_GP", 16])
    assert group_norm(64, cfg=c).num_groups == 4


def test_frozen_cfg_refuses_file_merge(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("MODEL:\n  MASK_ON: true\n")
    c = cfg.clone()
    c.freeze()
    with pytest.raises(AttributeError, match="frozen"):
        c.merge_from_file(str(path))
    assert c.MODEL.MASK_ON is False


# Keys as maskrcnn-benchmark's own YAML files set them (FPN, GN, DCN, RetinaNet, keypoints, FBNet,
# test-time augmentation, periodic testing); merging must accept every one with its value type.
UPSTREAM_STYLE_YAML = """
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)
  PIXEL_STD: [57.375, 57.12, 58.395]
MODEL:
  WEIGHT: "catalog://ImageNetPretrained/MSRA/R-50-GN"
  RETINANET_ON: True
  KEYPOINT_ON: True
  BACKBONE:
    CONV_BODY: "R-50-FPN-RETINANET"
    FREEZE_CONV_BODY_AT: 0
  RESNETS:
    BACKBONE_OUT_CHANNELS: 256
    STRIDE_IN_1X1: False
    TRANS_FUNC: "BottleneckWithGN"
    STAGE_WITH_DCN: (False, True, True, True)
    WITH_MODULATED_DCN: True
    DEFORMABLE_GROUPS: 1
  FPN:
    USE_GN: True
  RPN:
    USE_FPN: True
    ANCHOR_STRIDE: (4, 8, 16, 32, 64)
    FPN_POST_NMS_TOP_N_TRAIN: 2000
    RPN_HEAD: FBNet.rpn_head
  RETINANET:
    SCALES_PER_OCTAVE: 3
    USE_C5: False
    STRADDLE_THRESH: -1
    FG_IOU_THRESHOLD: 0.5
  ROI_BOX_HEAD:
    POOLER_SCALES: (0.25, 0.125, 0.0625, 0.03125)
    NUM_CLASSES: 2
  ROI_KEYPOINT_HEAD:
    POOLER_SAMPLING_RATIO: 2
    RESOLUTION: 56
    SHARE_BOX_FEATURE_EXTRACTOR: False
  FBNET:
    ARCH: "xirb16d_dsmask"
    DET_HEAD_LAST_SCALE: -1.0
    MASK_HEAD_BLOCKS: [14]
DATASETS:
  TRAIN: ("keypoints_coco_2014_train", "keypoints_coco_2014_valminusminival")
  TEST: ("keypoints_coco_2014_minival",)
DATALOADER:
  SIZE_DIVISIBILITY: 32
SOLVER:
  BASE_LR: 0.01
  STEPS: (60000, 80000)
  TEST_PERIOD: 20
TEST:
  BBOX_AUG:
    ENABLED: True
    H_FLIP: True
    SCALES: (400, 500, 600, 700, 900, 1000, 1100, 1200)
    SCALE_H_FLIP: True
DTYPE: "float16"
"""


def test_upstream_style_yaml_merges(tmp_path):
    path = tmp_path / "upstream_style.yaml"
    path.write_text(UPSTREAM_STYLE_YAML)
    c = cfg.clone()
    c.merge_from_file(str(path))
    assert c.MODEL.RESNETS.STAGE_WITH_DCN == (False, True, True, True)
    assert c.MODEL.FBNET.MASK_HEAD_BLOCKS == [14]
    assert c.TEST.BBOX_AUG.SCALES[-1] == 1200
    assert c.SOLVER.TEST_PERIOD == 20 and c.DTYPE == "float16"
