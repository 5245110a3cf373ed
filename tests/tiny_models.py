"""Small detectors for the tests, in one place: KEY VALUE override lists that shrink the default
config to a model that trains and infers in well under a second on one CPU core, and the builders
the test suites share (seeded models, detections pinned to anchors, seeded losses).

The lists are building blocks, merged in order by ``make_cfg`` (a key given twice takes its later
value): a suite composes the blocks it needs and adds its own keys after them.
"""
import math

import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.layers.batch_norm import FrozenBatchNorm2d
from maskrcnn.modeling.detector import build_detection_model

FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)

# on the CPU, 4 classes (background and the 3 of the shapes data)
CPU_4_CLASSES = [
    "MODEL.DEVICE", "cpu",
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
]

# few proposals at test time
FEW_TEST_PROPOSALS = [
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 10,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 10,
]

# few proposals and sampled anchors / RoIs in training
FEW_TRAIN_PROPOSALS = [
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 200,
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 20,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 20,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
]

# a train step and an eval forward take well under a second with any body
SMALL = CPU_4_CLASSES + FEW_TRAIN_PROPOSALS + FEW_TEST_PROPOSALS

# test images of 64 px (longer side at most 96)
SMALL_TEST_IMAGES = [
    "INPUT.MIN_SIZE_TEST", 64,
    "INPUT.MAX_SIZE_TEST", 96,
]

# the FPN anchors (one size per level) and the FPN box head, for any FPN body
FPN_BOX_HEAD = [
    "MODEL.RPN.USE_FPN", True,
    "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    "MODEL.RPN.ANCHOR_SIZES", (8, 16, 32, 64, 128),
    "MODEL.ROI_HEADS.USE_FPN", True,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
    "DATALOADER.SIZE_DIVISIBILITY", 32,
]

# a narrow R-18-FPN body (frozen batch norms, 32 FPN channels) with a 64-wide box head
R18_FPN = [
    "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
    "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithFixedBatchNorm",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 32,
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 64,
] + FPN_BOX_HEAD

# a small FPN mask head of its own (2 convolutions of 16 channels, 14 x 14 masks)
MASK_FPN = [
    "MODEL.MASK_ON", True,
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", "MaskRCNNFPNFeatureExtractor",
    "MODEL.ROI_MASK_HEAD.PREDICTOR", "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (16, 16),
    "MODEL.ROI_MASK_HEAD.RESOLUTION", 14,
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
]

# a small FPN keypoint head of its own (3 keypoints, 2 convolutions of 16 channels)
KEYPOINT_FPN = [
    "MODEL.KEYPOINT_ON", True,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES", FPN_SCALES,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", (16, 16),
    "MODEL.ROI_KEYPOINT_HEAD.RESOLUTION", 28,
    "MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES", 3,
    "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
]


def make_cfg(*opts):
    """A clone of the default config with the KEY VALUE pairs ``opts`` merged in order."""
    cfg = default_cfg.clone()
    cfg.merge_from_list(list(opts))
    return cfg


def command_line(opts):
    """KEY VALUE pairs ``opts`` as command-line words (what a tool's argv gets): every value as its
    str(), which the config's merge_from_list reads back to the same value."""
    return [str(word) for word in opts]


def seeded_model(cfg, seed=0):
    """build_detection_model(cfg) right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return build_detection_model(cfg)


def zero_box_regression(model):
    """Zero the RPN's and the box head's box regression, in place: the proposals are the anchors
    and each detection is its proposal's box. Returns ``model``."""
    with torch.no_grad():
        for layer in (model.rpn.head.bbox_pred, model.roi_heads.box.predictor.bbox_pred):
            layer.weight.zero_()
            layer.bias.zero_()
    return model


def seeded_losses(cfg, targets):
    """The training losses {name: float} of the model of ``cfg`` (seed 0) on one 64 x 96 image
    (its own generator, seed 1) with ground truth ``targets`` (a list of one BoxList), the samplers
    drawing from seed 2."""
    model = seeded_model(cfg).train()
    image = torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    return {name: value.item() for name, value in model([image], targets).items()}


def assert_pinned_losses(losses, pinned, abs_tol=1e-6):
    """``losses`` has exactly the names of ``pinned`` and each value within 1e-3 (relative) or
    ``abs_tol`` of the pinned one."""
    assert set(losses) == set(pinned)
    for name, value in pinned.items():
        assert math.isclose(losses[name], value, rel_tol=1e-3, abs_tol=abs_tol), (name, losses[name], value)


def randomize_norms(model, seed=0):
    """Non-trivial statistics and affine values in every FrozenBatchNorm2d / nn.BatchNorm2d of
    `model` (the defaults are identities, which would hide folding errors). Returns `model`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model
