"""Shared by the inference tests: a tiny R-18-FPN Mask R-CNN config evaluated on a small shapes
subset generated into a temporary MASKRCNN_DATA_DIR."""
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.detector import build_detection_model

FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)

# a small random model that still returns detections (score threshold 0) on 64-pixel images
TINY_MASK_RCNN = [
    "MODEL.DEVICE", "cpu",
    "MODEL.META_ARCHITECTURE", "GeneralizedRCNN",
    "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
    "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithFixedBatchNorm",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 32,
    "MODEL.RPN.USE_FPN", True,
    "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    "MODEL.RPN.ANCHOR_SIZES", (8, 16, 32, 64, 128),
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 20,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 20,
    "MODEL.ROI_HEADS.USE_FPN", True,
    "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 10,
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
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
    "DATALOADER.SIZE_DIVISIBILITY", 32,
    "DATALOADER.NUM_WORKERS", 0,
    "DATASETS.TRAIN", ("shapes_train",),
    "DATASETS.TEST", ("shapes_val",),
    "DATASETS.SHAPES.IMAGE_SIZE", 64,
    "DATASETS.SHAPES.NUM_VAL_IMAGES", 6,
    "INPUT.MIN_SIZE_TEST", 64,
    "INPUT.MAX_SIZE_TEST", 64,
    "TEST.IMS_PER_BATCH", 2,
]


def tiny_cfg(output_dir, *opts):
    cfg = default_cfg.clone()
    cfg.merge_from_list(TINY_MASK_RCNN + ["OUTPUT_DIR", str(output_dir)] + list(opts))
    return cfg


def tiny_model(cfg, seed=0):
    """A seeded random model; the class scores get a wider spread so scores are distinct."""
    torch.manual_seed(seed)
    model = build_detection_model(cfg)
    with torch.no_grad():
        model.roi_heads.box.predictor.cls_score.weight.normal_(0, 0.5)
    return model
