"""Helpers the demo tests import (a module of its own name: a second conftest module could
shadow it). A tiny Mask R-CNN / Keypoint R-CNN (R-18-FPN, random weights) that detects
deterministically: the RPN's box regression is zeroed (proposals are anchors), the box
classifier's bias makes every proposal a confident detection of one class of the shapes data
(label 1, "circle", by default) and the box regression is zeroed too."""
import pytest
import torch

from maskrcnn.structures.box_convention import set_legacy_plus_one
from tests.tiny_models import (CPU_4_CLASSES, FEW_TEST_PROPOSALS, KEYPOINT_FPN, MASK_FPN, R18_FPN, SMALL_TEST_IMAGES,
                               make_cfg, seeded_model, zero_box_regression)

TINY_R18_FPN = CPU_4_CLASSES + FEW_TEST_PROPOSALS + R18_FPN + MASK_FPN + SMALL_TEST_IMAGES + [
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 5,
    "DATASETS.TRAIN", ("shapes_train",),
    "DATASETS.TEST", ("shapes_val",),
]

KEYPOINTS = KEYPOINT_FPN + [
    "DATASETS.TRAIN", ("keypoints_shapes_train",),
    "DATASETS.TEST", ("keypoints_shapes_val",),
]

DETECTED_LABEL = 1


def make_detecting(model, label=DETECTED_LABEL):
    """Every proposal becomes a confident detection of ``label`` at its anchor box; masks
    cover their whole box and keypoints score above the drawing threshold."""
    zero_box_regression(model)  # proposals are anchors (not degenerate boxes)
    predictor = model.roi_heads.box.predictor
    with torch.no_grad():
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[label] = 12.0
        if hasattr(model.roi_heads, "mask"):
            logits = model.roi_heads.mask.predictor.mask_fcn_logits
            logits.weight.zero_()
            logits.bias.fill_(4.0)  # every mask covers its whole box
        if hasattr(model.roi_heads, "keypoint"):
            heatmaps = model.roi_heads.keypoint.predictor.kps_score_lowres
            heatmaps.weight.normal_(0.0, 0.01)
            heatmaps.bias.fill_(5.0)  # keypoint scores above the drawing threshold (2)
    return model


def tiny_cfg(output_dir, *opts):
    """The tiny config plus KEY VALUE pairs ``opts``, OUTPUT_DIR ``output_dir`` (so no stray
    checkpoint of the working directory is loaded)."""
    return make_cfg(*TINY_R18_FPN, "OUTPUT_DIR", str(output_dir), *opts)


def detecting_model(cfg, label=DETECTED_LABEL):
    """The tiny model of ``cfg`` (seeded), made to detect ``label`` deterministically."""
    return make_detecting(seeded_model(cfg), label)


@pytest.fixture(scope="module")
def detecting_config_file(tmp_path_factory):
    """(config file, weights file) of the detecting Mask R-CNN, for the command-line tools."""
    folder = tmp_path_factory.mktemp("detecting")
    cfg = tiny_cfg(folder / "output")
    model = detecting_model(cfg)
    set_legacy_plus_one(True)
    weights = folder / "detecting.pth"
    torch.save({"model": model.state_dict()}, weights)
    cfg.merge_from_list(["MODEL.WEIGHT", str(weights)])
    config_file = folder / "tiny.yaml"
    config_file.write_text(cfg.dump())
    return str(config_file), str(weights)

