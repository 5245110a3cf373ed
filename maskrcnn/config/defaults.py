"""The default configuration tree `_C` (exported as `maskrcnn.config.cfg`).

Every key of maskrcnn-benchmark's defaults is here with the same default value, so its YAML files
and command-line overrides work unchanged. Keys added by this project are marked "(maskrcnn)".

Naming convention kept from maskrcnn-benchmark: a setting that differs between training and
inference comes as a pair suffixed _TRAIN / _TEST (e.g. INPUT.MAX_SIZE_TRAIN, INPUT.MAX_SIZE_TEST).

Tools clone or merge into this tree (`cfg.merge_from_file(path)`, `cfg.merge_from_list(opts)`);
an unknown key raises a KeyError that names it and suggests the closest valid keys.
"""
import os

from .config_node import CfgNode as CN

_C = CN()

# ============================================================================ MODEL
_C.MODEL = CN()
# Detector flavour switches; the meta architecture assembles backbone + RPN (or RetinaNet) + RoI heads.
_C.MODEL.RPN_ONLY = False        # stop after the RPN: proposals are the output
_C.MODEL.MASK_ON = False         # add the mask head
_C.MODEL.RETINANET_ON = False    # single-stage RetinaNet head in place of RPN + RoI heads
_C.MODEL.KEYPOINT_ON = False     # add the keypoint head
_C.MODEL.DEVICE = "cuda"         # "cuda", "cuda:1" or "cpu"
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
_C.MODEL.CLS_AGNOSTIC_BBOX_REG = False  # one box regressor for all classes instead of one per class
# Initial weights: a file path, a URL, or "catalog://<name>" resolved through ModelCatalog
# (paths_catalog.py), e.g. "catalog://ImageNetPretrained/MSRA/R-50".
_C.MODEL.WEIGHT = ""
# (maskrcnn) Store the convolution weights channels-last (NHWC) for training and for
# tools/test_net.py: oneDNN's CPU convolutions (forward and backward) and our RoIAlign then run
# without layout conversions (maskrcnn.modeling.memory_format). Checkpoints load either way.
_C.MODEL.CHANNELS_LAST = True
# (maskrcnn) On the CPU, compute the 3x3 stride-1 convolutions with at least 64 channels (FPN outputs,
# RPN head, mask head, ResNet's 3x3s) by Winograd F(4x4, 3x3) when their input is float32 and
# channels-last: about twice as fast as oneDNN's direct kernel, forward and backward, equal up to
# rounding (maskrcnn.layers.winograd_conv). No effect on CUDA, under autocast, or in torch.export /
# ONNX graphs (those hold the ordinary convolution).
_C.MODEL.WINOGRAD = True

# (maskrcnn) Box pixel convention, read in one place by the builders (see config/conventions.py):
#   True  = legacy Detectron "+1" convention of maskrcnn-benchmark: width = x2 - x1 + 1 in the box
#           coder, areas/IoU, NMS, anchors and clipping; RoIAlign runs with aligned=False.
#   False = modern convention of torchvision/Detectron2: width = x2 - x1; RoIAlign runs with
#           aligned=True ("ROIAlignV2", half-pixel offset).
# RoIAlign's alignment follows this switch unless MODEL.ROI_HEADS.POOLER_ALIGNED says otherwise.
_C.MODEL.BOX_CONVENTION_LEGACY = True

# ---------------------------------------------------------------------------- INPUT
_C.INPUT = CN()
# Shorter image side when training; with several values one is drawn per image (multi-scale training)
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MAX_SIZE_TRAIN = 1333   # cap on the longer side when training
_C.INPUT.MIN_SIZE_TEST = 800     # shorter side at inference
_C.INPUT.MAX_SIZE_TEST = 1333    # cap on the longer side at inference
# Per-channel normalisation, in the channel order the model expects (BGR, 0-255 for Caffe2 weights)
_C.INPUT.PIXEL_MEAN = [102.9801, 115.9465, 122.7717]
_C.INPUT.PIXEL_STD = [1.0, 1.0, 1.0]
_C.INPUT.TO_BGR255 = True        # feed BGR in [0, 255] (Caffe2/Detectron weights); False = RGB in [0, 1]
# Colour jitter strengths for training (0 disables each)
_C.INPUT.BRIGHTNESS = 0.0
_C.INPUT.CONTRAST = 0.0
_C.INPUT.SATURATION = 0.0
_C.INPUT.HUE = 0.0
# Random flip probabilities for training
_C.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5
_C.INPUT.VERTICAL_FLIP_PROB_TRAIN = 0.0

# ------------------------------------------------------------------------- DATASETS
_C.DATASETS = CN()
# Dataset names registered in paths_catalog.DatasetCatalog (several are concatenated for training,
# evaluated one by one for testing). Empty by default, as in maskrcnn-benchmark; the configs under
# configs/ name the data they use (the shapes configs use "shapes_train" / "shapes_val").
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# (maskrcnn) COCO labels: the categories numbered 1..C (True, maskrcnn-benchmark) or the JSON
# category ids themselves (False: torchvision's COCO models predict ids 1..90, NUM_CLASSES 91)
_C.DATASETS.CONTIGUOUS_CATEGORY_IDS = True

# (maskrcnn) The embedded synthetic "shapes" dataset, generated deterministically on first use.
_C.DATASETS.SHAPES = CN()
_C.DATASETS.SHAPES.IMAGE_SIZE = 128          # side of the square images, in pixels
_C.DATASETS.SHAPES.NUM_TRAIN_IMAGES = 2000   # images in shapes_train / keypoints_shapes_train
_C.DATASETS.SHAPES.NUM_VAL_IMAGES = 200      # images in shapes_val / keypoints_shapes_val
_C.DATASETS.SHAPES.MIN_SHAPES_PER_IMAGE = 1  # each image holds a random count in [MIN, MAX]
_C.DATASETS.SHAPES.MAX_SHAPES_PER_IMAGE = 4
_C.DATASETS.SHAPES.SEED = 0                  # generator seed: same seed, same files

# ----------------------------------------------------------------------- DATALOADER
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4          # loader worker processes
# Pad each batch's height and width up to a multiple of this (e.g. 32 for FPN); 0 = no rounding
_C.DATALOADER.SIZE_DIVISIBILITY = 0
# Batch landscape images with landscape ones and portrait with portrait (less padding)
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
# (maskrcnn) Keep training images that have no (non-crowd) annotation; maskrcnn-benchmark drops them
_C.DATALOADER.KEEP_EMPTY_IMAGES = False
# (maskrcnn) Skip (with a warning) images that cannot be read instead of raising
_C.DATALOADER.SKIP_UNREADABLE_IMAGES = False

# ------------------------------------------------------------------------- BACKBONE
_C.MODEL.BACKBONE = CN()
# Registered name in modeling.registry.BACKBONES, e.g. "R-50-C4", "R-50-FPN", "R-101-FPN-RETINANET",
# "FBNet"
_C.MODEL.BACKBONE.CONV_BODY = "R-50-C4"
# Freeze the stem and the first N residual stages (their weights get no gradient); 0 = train all
_C.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 2

# ------------------------------------------------------------------------------ FPN
_C.MODEL.FPN = CN()
_C.MODEL.FPN.USE_GN = False    # GroupNorm after the FPN convolutions
_C.MODEL.FPN.USE_RELU = False  # ReLU after the FPN convolutions

# ----------------------------------------------------------------------- GROUP_NORM
# Read by modeling/make_layers.group_norm wherever a *.USE_GN switch asks for GroupNorm.
_C.MODEL.GROUP_NORM = CN()
_C.MODEL.GROUP_NORM.DIM_PER_GP = -1   # channels per group (-1: use NUM_GROUPS instead)
_C.MODEL.GROUP_NORM.NUM_GROUPS = 32   # number of groups (-1: use DIM_PER_GP instead)
_C.MODEL.GROUP_NORM.EPSILON = 1e-5    # added to the variance

# ------------------------------------------------------------------------------ RPN
_C.MODEL.RPN = CN()
_C.MODEL.RPN.USE_FPN = False
# Anchor side lengths in input pixels (one per FPN level when USE_FPN)
_C.MODEL.RPN.ANCHOR_SIZES = (32, 64, 128, 256, 512)
# Stride of the feature map(s) the RPN runs on (one per level with FPN)
_C.MODEL.RPN.ANCHOR_STRIDE = (16,)
_C.MODEL.RPN.ASPECT_RATIOS = (0.5, 1.0, 2.0)   # anchor height / width ratios
# (maskrcnn) Shift the anchors of each level by (padded batch size // feature-map size) along each
# axis instead of by ANCHOR_STRIDE (torchvision's rule). The two differ where the padded size is not
# a multiple of the stride, e.g. P6 (stride 64) of an 800-pixel-high batch: 13 rows, 800 // 13 = 61.
_C.MODEL.RPN.ANCHOR_STRIDE_FROM_IMAGE_SIZE = False
# Anchors sticking out of the image by more than this many pixels are ignored in training;
# -1 (or a huge value) keeps them all
_C.MODEL.RPN.STRADDLE_THRESH = 0
# Anchor labelling: IoU >= FG_IOU_THRESHOLD positive, < BG_IOU_THRESHOLD negative, between ignored
_C.MODEL.RPN.FG_IOU_THRESHOLD = 0.7
_C.MODEL.RPN.BG_IOU_THRESHOLD = 0.3
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256   # sampled anchors per image for the RPN loss
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5      # at most this share of them positive
# Proposals kept by score before NMS (per FPN level with FPN) and after NMS
_C.MODEL.RPN.PRE_NMS_TOP_N_TRAIN = 12000
_C.MODEL.RPN.PRE_NMS_TOP_N_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOP_N_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOP_N_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# Proposals with a side below this (in input pixels) are dropped (torchvision: 1e-3)
_C.MODEL.RPN.MIN_SIZE = 0.0
# With FPN: proposals kept after merging all levels
_C.MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN = 2000
_C.MODEL.RPN.FPN_POST_NMS_TOP_N_TEST = 2000
# In training, apply FPN_POST_NMS_TOP_N_TRAIN to the whole batch (True, Detectron's behaviour) or
# to each image (False)
_C.MODEL.RPN.FPN_POST_NMS_PER_BATCH = True
# Registered name in modeling.registry.RPN_HEADS
_C.MODEL.RPN.RPN_HEAD = "SingleConvRPNHead"

# ------------------------------------------------------------------------ ROI_HEADS
_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.USE_FPN = False
# Proposal labelling: IoU >= FG_IOU_THRESHOLD foreground, < BG_IOU_THRESHOLD background
_C.MODEL.ROI_HEADS.FG_IOU_THRESHOLD = 0.5
_C.MODEL.ROI_HEADS.BG_IOU_THRESHOLD = 0.5
# Scales of the (dx, dy, dw, dh) regression targets (roughly unit variance)
_C.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512  # sampled RoIs per image for the head losses
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25    # at most this share of them foreground
# Inference only: score threshold, per-class NMS IoU, detections kept per image
_C.MODEL.ROI_HEADS.SCORE_THRESH = 0.05
_C.MODEL.ROI_HEADS.NMS = 0.5
_C.MODEL.ROI_HEADS.DETECTIONS_PER_IMG = 100
# (maskrcnn) Inference only: detections with a side below this many pixels are dropped before the
# NMS (torchvision: 1e-2); 0 keeps them all, as maskrcnn-benchmark
_C.MODEL.ROI_HEADS.MIN_SIZE = 0.0
# (maskrcnn) RoIAlign's `aligned` in every RoI head pooler: None follows MODEL.BOX_CONVENTION_LEGACY
# (legacy: False, modern: True); True / False overrides it (torchvision's MultiScaleRoIAlign pools
# the modern boxes with aligned=False)
_C.MODEL.ROI_HEADS.POOLER_ALIGNED = None

# --------------------------------------------------------------------- ROI_BOX_HEAD
_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"  # ROI_BOX_FEATURE_EXTRACTORS
_C.MODEL.ROI_BOX_HEAD.PREDICTOR = "FastRCNNPredictor"                        # ROI_BOX_PREDICTOR
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0   # RoIAlign samples per bin side; 0 = adaptive
_C.MODEL.ROI_BOX_HEAD.POOLER_SCALES = (1.0 / 16,)  # feature-map scale(s) relative to the input
_C.MODEL.ROI_BOX_HEAD.NUM_CLASSES = 81             # including background
_C.MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM = 1024          # hidden width of the 2-fc head
_C.MODEL.ROI_BOX_HEAD.USE_GN = False
_C.MODEL.ROI_BOX_HEAD.DILATION = 1
_C.MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM = 256          # conv-head ("4conv1fc") channels
_C.MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS = 4

# -------------------------------------------------------------------- ROI_MASK_HEAD
_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"  # ROI_MASK_FEATURE_EXTRACTORS
_C.MODEL.ROI_MASK_HEAD.PREDICTOR = "MaskRCNNC4Predictor"                      # ROI_MASK_PREDICTOR
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_MASK_HEAD.POOLER_SCALES = (1.0 / 16,)
_C.MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM = 1024
_C.MODEL.ROI_MASK_HEAD.CONV_LAYERS = (256, 256, 256, 256)  # channels of the stacked mask convs
_C.MODEL.ROI_MASK_HEAD.RESOLUTION = 14                     # side of the predicted mask targets
# Reuse the box head's features for the mask head (C4 models) instead of pooling again
_C.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True
# Paste the predicted masks into full-image masks at inference, binarised at the threshold
_C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS = False
_C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD = 0.5
_C.MODEL.ROI_MASK_HEAD.DILATION = 1
_C.MODEL.ROI_MASK_HEAD.USE_GN = False

# ---------------------------------------------------------------- ROI_KEYPOINT_HEAD
_C.MODEL.ROI_KEYPOINT_HEAD = CN()
_C.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR = "KeypointRCNNFeatureExtractor"
_C.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR = "KeypointRCNNPredictor"
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES = (1.0 / 16,)
_C.MODEL.ROI_KEYPOINT_HEAD.MLP_HEAD_DIM = 1024
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS = (512,) * 8   # eight 512-channel convs
_C.MODEL.ROI_KEYPOINT_HEAD.RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES = 17           # number of keypoints (COCO persons: 17)
_C.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True

# -------------------------------------------------------------------------- RESNETS
# ResNet / ResNeXt settings, shared by the backbone body and the C4 RoI head (res5).
_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.NUM_GROUPS = 1          # 1 = ResNet, > 1 = ResNeXt cardinality
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64    # bottleneck width per group in res2
# Put the stride-2 convolution on the first 1x1 (MSRA ResNet, True) or on the 3x3 (C2/Torch, False)
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
_C.MODEL.RESNETS.TRANS_FUNC = "BottleneckWithFixedBatchNorm"  # residual block type
_C.MODEL.RESNETS.STEM_FUNC = "StemWithFixedBatchNorm"         # conv1 + pool1 type
_C.MODEL.RESNETS.RES5_DILATION = 1       # dilation of res5 (stride 1 when 2)
_C.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256 * 4  # channels the backbone hands on (256 with FPN)
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
# Deformable convolutions in the 3x3 of res2..res5 (one flag per stage)
_C.MODEL.RESNETS.STAGE_WITH_DCN = (False, False, False, False)
_C.MODEL.RESNETS.WITH_MODULATED_DCN = False   # DCNv2 (with modulation mask) instead of DCNv1
_C.MODEL.RESNETS.DEFORMABLE_GROUPS = 1

# ------------------------------------------------------------------------ RETINANET
_C.MODEL.RETINANET = CN()
_C.MODEL.RETINANET.NUM_CLASSES = 81      # foreground classes + background, as for the box head
_C.MODEL.RETINANET.ANCHOR_SIZES = (32, 64, 128, 256, 512)
_C.MODEL.RETINANET.ASPECT_RATIOS = (0.5, 1.0, 2.0)
_C.MODEL.RETINANET.ANCHOR_STRIDES = (8, 16, 32, 64, 128)
_C.MODEL.RETINANET.STRADDLE_THRESH = 0
# SCALES_PER_OCTAVE anchor sizes per level: size * OCTAVE ** (i / SCALES_PER_OCTAVE)
_C.MODEL.RETINANET.OCTAVE = 2.0
_C.MODEL.RETINANET.SCALES_PER_OCTAVE = 3
_C.MODEL.RETINANET.USE_C5 = True         # build P6 from C5 (True) or from P5 (False)
_C.MODEL.RETINANET.NUM_CONVS = 4         # convs in each tower, before the final prediction conv
_C.MODEL.RETINANET.BBOX_REG_WEIGHT = 4.0 # the box regression loss is DIVIDED by (positives * this), as upstream
_C.MODEL.RETINANET.BBOX_REG_BETA = 0.11  # smooth-L1 beta of the box regression loss
_C.MODEL.RETINANET.PRE_NMS_TOP_N = 1000  # inference: candidates per level before NMS
_C.MODEL.RETINANET.FG_IOU_THRESHOLD = 0.5
_C.MODEL.RETINANET.BG_IOU_THRESHOLD = 0.4
_C.MODEL.RETINANET.LOSS_ALPHA = 0.25     # focal loss alpha
_C.MODEL.RETINANET.LOSS_GAMMA = 2.0      # focal loss gamma
_C.MODEL.RETINANET.PRIOR_PROB = 0.01     # initial foreground probability (sets the logits bias)
_C.MODEL.RETINANET.INFERENCE_TH = 0.05   # inference score threshold
_C.MODEL.RETINANET.NMS_TH = 0.4          # inference NMS IoU

# ---------------------------------------------------------------------------- FBNET
_C.MODEL.FBNET = CN()
_C.MODEL.FBNET.ARCH = "default"          # named architecture from the FBNet arch definitions
_C.MODEL.FBNET.ARCH_DEF = ""             # JSON arch definition overriding ARCH when set
_C.MODEL.FBNET.BN_TYPE = "bn"            # "bn", "gn" or "af" (frozen)
_C.MODEL.FBNET.SCALE_FACTOR = 1.0        # width multiplier
_C.MODEL.FBNET.WIDTH_DIVISOR = 1         # round channel counts to multiples of this
_C.MODEL.FBNET.DW_CONV_SKIP_BN = True
_C.MODEL.FBNET.DW_CONV_SKIP_RELU = True
# Heads: *_LAST_SCALE > 0 scales the last block's width, 0 drops it, < 0 keeps the input width;
# *_BLOCKS lists the arch stages used for the head; *_STRIDE overrides their stride (0 = keep)
_C.MODEL.FBNET.DET_HEAD_LAST_SCALE = 1.0
_C.MODEL.FBNET.DET_HEAD_BLOCKS = []
_C.MODEL.FBNET.DET_HEAD_STRIDE = 0
_C.MODEL.FBNET.KPTS_HEAD_LAST_SCALE = 0.0
_C.MODEL.FBNET.KPTS_HEAD_BLOCKS = []
_C.MODEL.FBNET.KPTS_HEAD_STRIDE = 0
_C.MODEL.FBNET.MASK_HEAD_LAST_SCALE = 0.0
_C.MODEL.FBNET.MASK_HEAD_BLOCKS = []
_C.MODEL.FBNET.MASK_HEAD_STRIDE = 0
_C.MODEL.FBNET.RPN_HEAD_BLOCKS = 0       # RPN head blocks from the arch (0 = all)
_C.MODEL.FBNET.RPN_BN_TYPE = ""          # norm type of the RPN head ("" = BN_TYPE)

# =========================================================================== SOLVER
_C.SOLVER = CN()
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
_C.SOLVER.BIAS_LR_FACTOR = 2             # biases train at BASE_LR * BIAS_LR_FACTOR
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.WEIGHT_DECAY = 0.0005
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0        # weight decay of biases
_C.SOLVER.GAMMA = 0.1                    # LR multiplier at each of STEPS
_C.SOLVER.STEPS = (30000,)
# Warm-up: LR ramps from BASE_LR * WARMUP_FACTOR over WARMUP_ITERS ("linear" or "constant")
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3
_C.SOLVER.WARMUP_ITERS = 500
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 2500       # save a checkpoint every N iterations
# (maskrcnn) Log line, metrics.json line and TensorBoard scalars every N iterations
_C.SOLVER.LOG_PERIOD = 20
# Images per batch over all processes (16 on 8 GPUs = 2 per GPU)
_C.SOLVER.IMS_PER_BATCH = 16
# (maskrcnn) Evaluate on DATASETS.TEST every N iterations during training; 0 = only at the end
_C.SOLVER.TEST_PERIOD = 0
# (maskrcnn) Optimizer: "SGD" (maskrcnn-benchmark's, with MOMENTUM) or "AdamW" (with BETAS)
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.BETAS = (0.9, 0.999)           # (maskrcnn) AdamW's beta1, beta2
# (maskrcnn) LR schedule after warm-up: "WarmupMultiStepLR" (steps at STEPS, by GAMMA) or
# "WarmupCosineLR" (cosine from BASE_LR at the end of warm-up to BASE_LR_END at MAX_ITER)
_C.SOLVER.LR_SCHEDULER = "WarmupMultiStepLR"
_C.SOLVER.BASE_LR_END = 0.0              # (maskrcnn) final LR of WarmupCosineLR
# (maskrcnn) Clip the global L2 norm of all gradients to MAX_NORM before each step
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
_C.SOLVER.CLIP_GRADIENTS.MAX_NORM = 1.0

# ============================================================================= TEST
_C.TEST = CN()
# Regression check for CI: [[task, metric, value, std], ...] compared after evaluation
_C.TEST.EXPECTED_RESULTS = []
_C.TEST.EXPECTED_RESULTS_SIGMA_TOL = 4
# Images per batch over all processes at inference
_C.TEST.IMS_PER_BATCH = 8
_C.TEST.DETECTIONS_PER_IMG = 100
# (maskrcnn) Fold frozen / eval-mode batch norms into the preceding convolutions for inference
# (maskrcnn.modeling.fold_batch_norm.fold_batch_norms_from_cfg; checkpoints stay unfolded)
_C.TEST.FOLD_BN = True
# (maskrcnn) Store the convolution weights channels-last for inference (faster on CPUs with oneDNN)
# (maskrcnn.modeling.inference_setup.optimize_for_inference_from_cfg)
_C.TEST.CHANNELS_LAST = True
# (maskrcnn) Int8 backbone for CPU inference: post-training static quantization of the backbone
# convolutions (RPN and RoI heads stay float), calibrated on the first INT8_CALIBRATION_IMAGES
# images of DATASETS.TEST[0]; CPU only (maskrcnn.modeling.quantization.quantize_backbone_from_cfg)
_C.TEST.INT8 = False
_C.TEST.INT8_CALIBRATION_IMAGES = 8
# (maskrcnn) Compile the backbone, RPN head and box head with torch.compile (inductor) and their
# weights frozen, at the first image (tens of seconds; a new image size recompiles once). Inference
# only; needs a C++ compiler on the CPU (maskrcnn.modeling.compiled_inference)
_C.TEST.COMPILE = False

# Test-time augmentation for box detection
_C.TEST.BBOX_AUG = CN()
_C.TEST.BBOX_AUG.ENABLED = False
_C.TEST.BBOX_AUG.H_FLIP = False          # also run a flipped copy at the original scale
_C.TEST.BBOX_AUG.SCALES = ()             # extra shorter-side sizes to run
_C.TEST.BBOX_AUG.MAX_SIZE = 4000         # longer-side cap for those scales
_C.TEST.BBOX_AUG.SCALE_H_FLIP = False    # also run a flipped copy at each extra scale

# ============================================================================= MISC
_C.OUTPUT_DIR = "."                      # checkpoints, logs, inference results
# Python file defining DatasetCatalog / ModelCatalog (replace to point at your own datasets)
_C.PATHS_CATALOG = os.path.join(os.path.dirname(__file__), "paths_catalog.py")

# Precision: "float32", or mixed precision with torch.autocast in "float16" (CUDA, with GradScaler)
# or "bfloat16" (CUDA or CPU). maskrcnn-benchmark knew float32/float16 (via apex).
_C.DTYPE = "float32"
_C.AMP_VERBOSE = False                   # maskrcnn-benchmark's apex switch; kept so its configs load

# (maskrcnn) Random seed for Python, NumPy and torch (offset by rank in each process) and for the
# per-sample data augmentation streams. -1 = tools/train_net.py picks one at random and records it
# (OUTPUT_DIR/config.yml and every checkpoint), so a resumed run continues with the same seed.
_C.SEED = -1

# Allowed values of the (maskrcnn) string switches, checked after every merge.
_C.register_value_choices("DTYPE", ("float32", "float16", "bfloat16"))
_C.register_value_choices("SOLVER.OPTIMIZER", ("SGD", "AdamW"))
_C.register_value_choices("SOLVER.LR_SCHEDULER", ("WarmupMultiStepLR", "WarmupCosineLR"))
_C.register_value_choices("SOLVER.WARMUP_METHOD", ("constant", "linear"))
