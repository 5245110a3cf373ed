"""FBNet backbone, RPN head and RoI heads, built from an FBNet architecture definition.

Registered names (as in maskrcnn-benchmark):
- BACKBONES["FBNet"]: the trunk (stages listed under "backbone"), one feature map;
- RPN_HEADS["FBNet.rpn_head"]: the "rpn" stage blocks followed by 1x1 objectness / box convs;
- ROI_BOX_FEATURE_EXTRACTORS["FBNet.roi_head"], ROI_KEYPOINT_FEATURE_EXTRACTORS
  ["FBNet.roi_head_keypoints"], ROI_MASK_FEATURE_EXTRACTORS["FBNet.roi_head_mask"]: a Pooler
  followed by the "bbox" / "kpts" / "mask" stage blocks (falling back to "head") and "last".

Configuration: cfg.MODEL.FBNET.* (ARCH names an entry of fbnet_modeldef.MODEL_ARCH, or
ARCH_DEF gives one as JSON).
"""
import copy
import json
import logging
from collections import OrderedDict

from torch import nn

from maskrcnn.modeling import poolers, registry
from . import fbnet_builder as mbuilder
from . import fbnet_modeldef as modeldef

logger = logging.getLogger(__name__)


def _load_arch_def(arch, arch_def_json):
    """The arch def named `arch` (MODEL_ARCH) or given as JSON; both must agree when both exist."""
    custom = json.loads(arch_def_json) if len(arch_def_json) > 0 else None
    if arch in modeldef.MODEL_ARCH:
        if custom is not None and custom != modeldef.MODEL_ARCH[arch]:
            raise ValueError(
                f"MODEL.FBNET.ARCH_DEF differs from the built-in architecture {arch!r} of the "
                f"same name (MODEL.FBNET.ARCH); rename one of them"
            )
        return modeldef.MODEL_ARCH[arch]
    if custom is None:
        raise KeyError(
            f"MODEL.FBNET.ARCH {arch!r} is not a known architecture "
            f"({sorted(modeldef.MODEL_ARCH)}) and MODEL.FBNET.ARCH_DEF is empty"
        )
    return custom


def _norm_type(cfg, bn_type):
    """A config norm name as FBNetBuilder takes it: "gn" gets MODEL.GROUP_NORM.NUM_GROUPS."""
    if bn_type == "gn":
        return ("gn", cfg.MODEL.GROUP_NORM.NUM_GROUPS)
    return bn_type


def create_builder(cfg):
    """(FBNetBuilder, unified arch def) from cfg.MODEL.FBNET."""
    fbnet_cfg = cfg.MODEL.FBNET
    bn_type = _norm_type(cfg, fbnet_cfg.BN_TYPE)

    arch = fbnet_cfg.ARCH
    arch_def = mbuilder.unify_arch_def(_load_arch_def(arch, fbnet_cfg.ARCH_DEF))

    rpn_stride = arch_def.get("rpn_stride", None)
    if rpn_stride is not None and cfg.MODEL.RPN.ANCHOR_STRIDE[0] != rpn_stride:
        raise ValueError(
            f"FBNet arch {arch!r} has rpn_stride {rpn_stride}: set MODEL.RPN.ANCHOR_STRIDE to "
            f"({rpn_stride},), got {tuple(cfg.MODEL.RPN.ANCHOR_STRIDE)}"
        )
    logger.info("Building FBNet arch %s (before width scaling):\n%s", arch, arch_def)

    builder = mbuilder.FBNetBuilder(
        width_ratio=fbnet_cfg.SCALE_FACTOR,
        bn_type=bn_type,
        width_divisor=fbnet_cfg.WIDTH_DIVISOR,
        dw_skip_bn=fbnet_cfg.DW_CONV_SKIP_BN,
        dw_skip_relu=fbnet_cfg.DW_CONV_SKIP_RELU,
    )
    return builder, arch_def


def _get_trunk_cfg(arch_def):
    """The trunk's blocks: stages listed under "backbone" (default: all but the last stage)."""
    num_stages = mbuilder.get_num_stages(arch_def)
    trunk_stages = arch_def.get("backbone", list(range(num_stages - 1)))
    return mbuilder.get_blocks(arch_def, stage_indices=trunk_stages)


class FBNetTrunk(nn.Module):
    """Stem (`first`) and trunk blocks (`stages`). Tensor[N, dim_in, H, W] -> [Tensor[N, C, H/s, W/s]]."""

    def __init__(self, builder, arch_def, dim_in):
        super().__init__()
        self.first = builder.add_first(arch_def["first"], dim_in=dim_in)
        self.stages = builder.add_blocks(_get_trunk_cfg(arch_def)["stages"])

    def forward(self, x):
        return [self.stages(self.first(x))]


@registry.BACKBONES.register("FBNet")
def add_conv_body(cfg, dim_in=3):
    """nn.Sequential with the FBNetTrunk as `body`; `out_channels` is the trunk's last depth."""
    builder, arch_def = create_builder(cfg)
    body = FBNetTrunk(builder, arch_def, dim_in)
    model = nn.Sequential(OrderedDict([("body", body)]))
    model.out_channels = builder.last_depth
    return model


def _get_rpn_stage(arch_def, num_blocks):
    """Blocks of the "rpn" stages; with num_blocks > 0 only the last num_blocks of them."""
    if "rpn" not in arch_def:
        raise KeyError("the FBNet arch def has no 'rpn' stage for FBNet.rpn_head")
    blocks = mbuilder.get_blocks(arch_def, stage_indices=arch_def["rpn"])["stages"]
    if num_blocks > 0:
        if num_blocks > len(blocks):
            raise ValueError(
                f"MODEL.FBNET.RPN_HEAD_BLOCKS is {num_blocks} but the rpn stage has "
                f"{len(blocks)} blocks"
            )
        logger.warning("Using the last %d rpn blocks of the FBNet arch", num_blocks)
        blocks = blocks[len(blocks) - num_blocks:]
    return blocks


class FBNetRPNHead(nn.Module):
    """The arch def's "rpn" blocks (`head`), applied to each feature map: list -> list."""

    def __init__(self, cfg, in_channels, builder, arch_def):
        super().__init__()
        if in_channels != builder.last_depth:
            raise ValueError(
                f"FBNetRPNHead: in_channels {in_channels} != builder depth {builder.last_depth}"
            )
        rpn_bn_type = cfg.MODEL.FBNET.RPN_BN_TYPE
        if len(rpn_bn_type) > 0:
            builder.bn_type = _norm_type(cfg, rpn_bn_type)
        stages = _get_rpn_stage(arch_def, cfg.MODEL.FBNET.RPN_HEAD_BLOCKS)
        self.head = builder.add_blocks(stages)
        self.out_channels = builder.last_depth

    def forward(self, x):
        return [self.head(feature) for feature in x]


class RPNHeadConvRegressor(nn.Module):
    """1x1 convs predicting per-anchor objectness (`cls_logits`) and box deltas (`bbox_pred`).

    forward(list[Tensor[N, C, H, W]]) -> (list[Tensor[N, A, H, W]], list[Tensor[N, 4A, H, W]]),
    the (objectness, rpn_box_regression) pair RPNModule expects from its head.
    """

    def __init__(self, cfg, in_channels, num_anchors):
        super().__init__()
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in (self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        if not isinstance(x, (list, tuple)):
            raise TypeError(f"RPNHeadConvRegressor takes a list of feature maps, got {type(x)}")
        return [self.cls_logits(y) for y in x], [self.bbox_pred(y) for y in x]


@registry.RPN_HEADS.register("FBNet.rpn_head")
def add_rpn_head(cfg, in_channels, num_anchors):
    """nn.Sequential(FBNetRPNHead, RPNHeadConvRegressor): features -> (objectness, box deltas)."""
    builder, arch_def = create_builder(cfg)
    builder.last_depth = in_channels
    rpn_feature = FBNetRPNHead(cfg, in_channels, builder, arch_def)
    rpn_regressor = RPNHeadConvRegressor(cfg, rpn_feature.out_channels, num_anchors)
    return nn.Sequential(rpn_feature, rpn_regressor)


def _get_head_stage(arch_def, head_name, blocks):
    """Blocks of stage `head_name` ("bbox", "kpts", "mask"; else "head"), optionally a subset."""
    if head_name not in arch_def:
        head_name = "head"
    if head_name not in arch_def:
        raise KeyError(f"the FBNet arch def has no '{head_name}' stage for this RoI head")
    return mbuilder.get_blocks(arch_def, stage_indices=arch_def[head_name],
                               block_indices=blocks)["stages"]


# head names in arch defs -> the config sections holding their pooler settings
ARCH_CFG_NAME_MAPPING = {
    "bbox": "ROI_BOX_HEAD",
    "kpts": "ROI_KEYPOINT_HEAD",
    "mask": "ROI_MASK_HEAD",
}


class FBNetROIHead(nn.Module):
    """Pooler (`pooler`) then the head's blocks and last conv (`head.blocks`, `head.last`).

    forward(list[Tensor] features, list[BoxList] proposals) -> Tensor[K, out_channels, h, w].

    Arguments:
        use_blocks (list[int]): block indices of the head stage to keep ([] = all).
        stride_init (0, 1 or 2): replaces the first block's stride unless 0.
        last_layer_scale (float): channel_scale of the arch's "last" conv (see add_last).
    """

    def __init__(self, cfg, in_channels, builder, arch_def, head_name, use_blocks, stride_init,
                 last_layer_scale):
        super().__init__()
        if in_channels != builder.last_depth:
            raise ValueError(
                f"FBNetROIHead: in_channels {in_channels} != builder depth {builder.last_depth}"
            )
        if stride_init not in (0, 1, 2):
            raise ValueError(f"FBNet {head_name} head: stride must be 0, 1 or 2, got {stride_init}")

        self.pooler = poolers.make_pooler(cfg, ARCH_CFG_NAME_MAPPING[head_name])

        stage = _get_head_stage(arch_def, head_name, list(use_blocks))
        if stride_init != 0:
            stage[0]["block"][3] = stride_init
        blocks = builder.add_blocks(stage)

        last_info = copy.deepcopy(arch_def["last"])
        last_info[1] = last_layer_scale
        last = builder.add_last(last_info)

        self.head = nn.Sequential(OrderedDict([("blocks", blocks), ("last", last)]))
        self.out_channels = builder.last_depth

    def forward(self, x, proposals):
        return self.head(self.pooler(x, proposals))


def _make_roi_head(cfg, in_channels, head_name, prefix):
    builder, arch_def = create_builder(cfg)
    builder.last_depth = in_channels
    fbnet_cfg = cfg.MODEL.FBNET
    return FBNetROIHead(
        cfg, in_channels, builder, arch_def,
        head_name=head_name,
        use_blocks=fbnet_cfg[prefix + "_HEAD_BLOCKS"],
        stride_init=fbnet_cfg[prefix + "_HEAD_STRIDE"],
        last_layer_scale=fbnet_cfg[prefix + "_HEAD_LAST_SCALE"],
    )


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FBNet.roi_head")
def add_roi_head(cfg, in_channels):
    """Box head feature extractor (MODEL.FBNET.DET_HEAD_*)."""
    return _make_roi_head(cfg, in_channels, "bbox", "DET")


@registry.ROI_KEYPOINT_FEATURE_EXTRACTORS.register("FBNet.roi_head_keypoints")
def add_roi_head_keypoints(cfg, in_channels):
    """Keypoint head feature extractor (MODEL.FBNET.KPTS_HEAD_*)."""
    return _make_roi_head(cfg, in_channels, "kpts", "KPTS")


@registry.ROI_MASK_FEATURE_EXTRACTORS.register("FBNet.roi_head_mask")
def add_roi_head_mask(cfg, in_channels):
    """Mask head feature extractor (MODEL.FBNET.MASK_HEAD_*)."""
    return _make_roi_head(cfg, in_channels, "mask", "MASK")
