"""Shared by the training tests: KEY VALUE overrides of a tiny R-18-FPN Faster R-CNN training on
64 px shapes images (a few iterations take about a second on one core) and tools/train_net.py
loaded as a module. (A module of its own, not conftest.py: several test folders have a conftest.)"""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


def load_train_net():
    """tools/train_net.py imported as the module `train_net`."""
    spec = importlib.util.spec_from_file_location("train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_TRAIN = [
    "MODEL.DEVICE", "cpu",
    "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
    "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithFixedBatchNorm",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "32",
    "MODEL.RPN.USE_FPN", "True",
    "MODEL.RPN.ANCHOR_STRIDE", "(4, 8, 16, 32, 64)",
    "MODEL.RPN.ANCHOR_SIZES", "(8, 16, 32, 64, 128)",
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", "200",
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN", "20",
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", "100",
    "MODEL.RPN.POST_NMS_TOP_N_TEST", "10",
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", "20",
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", "10",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.ROI_HEADS.USE_FPN", "True",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES", "4",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "7",
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES", "(0.25, 0.125, 0.0625, 0.03125)",
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2",
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", "64",
    "DATASETS.TRAIN", "('shapes_train',)",
    "DATASETS.TEST", "('shapes_val',)",
    "DATASETS.SHAPES.IMAGE_SIZE", "64",
    "DATASETS.SHAPES.NUM_TRAIN_IMAGES", "8",
    "DATASETS.SHAPES.NUM_VAL_IMAGES", "4",
    "INPUT.MIN_SIZE_TRAIN", "(56, 64)",
    "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96",
    "DATALOADER.NUM_WORKERS", "0",
    "DATALOADER.SIZE_DIVISIBILITY", "32",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.BASE_LR", "0.002",
    "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
    "SOLVER.CLIP_GRADIENTS.MAX_NORM", "5.0",
    "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.STEPS", "(4,)",
    "SOLVER.MAX_ITER", "6",
    "SOLVER.CHECKPOINT_PERIOD", "3",
    "SOLVER.LOG_PERIOD", "1",
    "TEST.IMS_PER_BATCH", "2",
    "SEED", "7",
]
