"""A tiny Mask R-CNN / Keypoint R-CNN (R-18-FPN, random weights) that detects deterministically:
the box classifier's bias makes every proposal a confident "circle" (label 1) of the shapes
dataset, and the box regression is zeroed, so detections are the RPN's proposals."""
import os

import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.structures.box_convention import set_legacy_plus_one

FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)

TINY_R18_FPN = [
    "MODEL.DEVICE", "cpu",
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 10,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 10,
    "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
    "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithFixedBatchNorm",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 32,
    "MODEL.RPN.USE_FPN", True,
    "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    "MODEL.RPN.ANCHOR_SIZES", (8, 16, 32, 64, 128),
    "MODEL.ROI_HEADS.USE_FPN", True,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 5,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 64,
    "MODEL.MASK_ON", True,
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", "MaskRCNNFPNFeatureExtractor",
    "MODEL.ROI_MASK_HEAD.PREDICTOR", "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (16, 16),
    "MODEL.ROI_MASK_HEAD.RESOLUTION", 14,
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
    "INPUT.MIN_SIZE_TEST", 64,
    "INPUT.MAX_SIZE_TEST", 96,
    "DATALOADER.SIZE_DIVISIBILITY", 32,
    "DATASETS.TRAIN", ("shapes_train",),
    "DATASETS.TEST", ("shapes_val",),
]

KEYPOINTS = [
    "MODEL.KEYPOINT_ON", True,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", (16, 16),
    "MODEL.ROI_KEYPOINT_HEAD.RESOLUTION", 28,
    "MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES", 3,
    "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
    "DATASETS.TRAIN", ("keypoints_shapes_train",),
    "DATASETS.TEST", ("keypoints_shapes_val",),
]

DETECTED_LABEL = 1


def make_detecting(model, label=DETECTED_LABEL):
    """Every proposal becomes a confident detection of ``label`` at its anchor box; masks
    cover their whole box and keypoints score above the drawing threshold."""
    predictor = model.roi_heads.box.predictor
    with torch.no_grad():
        model.rpn.head.bbox_pred.weight.zero_()  # proposals are anchors (not degenerate boxes)
        model.rpn.head.bbox_pred.bias.zero_()
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[label] = 12.0
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        if hasattr(model.roi_heads, "mask"):
            logits = model.roi_heads.mask.predictor.mask_fcn_logits
            logits.weight.zero_()
            logits.bias.fill_(4.0)  # every mask covers its whole box
        if hasattr(model.roi_heads, "keypoint"):
            heatmaps = model.roi_heads.keypoint.predictor.kps_score_lowres
            heatmaps.weight.normal_(0.0, 0.01)
            heatmaps.bias.fill_(5.0)  # keypoint scores above the drawing threshold (2)
    return model


@pytest.fixture(autouse=True)
def _restore_box_convention():
    """build_detection_model sets the process-wide box convention; put the default back."""
    yield
    set_legacy_plus_one(True)


@pytest.fixture
def tiny_cfg(tmp_path):
    """Factory: the tiny config plus extra KEY VALUE pairs, OUTPUT_DIR in tmp (no stray checkpoint)."""

    def make(*opts):
        cfg = default_cfg.clone()
        cfg.merge_from_list(TINY_R18_FPN + ["OUTPUT_DIR", str(tmp_path / "output")] + list(opts))
        return cfg

    return make


@pytest.fixture
def detecting_weights(tmp_path, tiny_cfg):
    """Factory: writes the detecting model's weights for a config (KEY VALUE extras) and returns
    (config file path, weights path) for the command-line tools."""

    def make(*opts):
        cfg = tiny_cfg(*opts)
        torch.manual_seed(0)
        model = make_detecting(build_detection_model(cfg))
        weights = tmp_path / "detecting.pth"
        torch.save({"model": model.state_dict()}, weights)
        cfg.merge_from_list(["MODEL.WEIGHT", str(weights)])
        config_file = tmp_path / "tiny.yaml"
        config_file.write_text(cfg.dump())
        return str(config_file), str(weights)

    return make


@pytest.fixture
def shapes_data_dir(tmp_path, monkeypatch):
    """A private MASKRCNN_DATA_DIR (the shapes splits are generated there on first use)."""
    data_dir = tmp_path / "datasets"
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(data_dir))
    return str(data_dir)


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
