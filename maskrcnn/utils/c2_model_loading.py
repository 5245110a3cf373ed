"""Detectron (Caffe2) `.pkl` weights -> this library's state-dict keys, by blob name.

Detectron stores weights as a pickled dict blob name -> numpy array (optionally under "blobs").
Blob names follow its own scheme; the renaming here maps them onto our module names:

    conv1_w                        -> backbone.body.stem.conv1.weight
    res_conv1_bn_s / _b            -> backbone.body.stem.bn1.weight / .bias   (AffineChannel)
    res2_0_branch2a_w              -> backbone.body.layer1.0.conv1.weight
    res3_0_branch1_bn_s            -> backbone.body.layer2.0.downsample.1.weight
    fpn_inner_res5_2_sum_w         -> backbone.fpn.fpn_inner4.weight  (R-50's res5 ends at block 2)
    fpn_inner_res4_5_sum_lateral_w -> backbone.fpn.fpn_inner3.weight
    fpn_res2_2_sum_b               -> backbone.fpn.fpn_layer1.bias
    fpn_6_w / fpn_7_w              -> backbone.fpn.top_blocks.p6 / .p7          (RetinaNet)
    conv_rpn_fpn2_w / conv_rpn_w   -> rpn.head.conv.weight  (rpn_cls_logits*, rpn_bbox_pred* alike)
    fc6_w, fc7_w                   -> roi_heads.box.feature_extractor.fc6 / fc7
    cls_score_w, bbox_pred_w       -> roi_heads.box.predictor.cls_score / bbox_pred
    _[mask]_fcn1_w                 -> roi_heads.mask.feature_extractor.mask_fcn1.weight
    conv5_mask_w, mask_fcn_logits_w-> roi_heads.mask.predictor.conv5_mask / mask_fcn_logits
    conv_fcn1_w                    -> roi_heads.keypoint.feature_extractor.conv_fcn1.weight
    kps_score_lowres_w             -> roi_heads.keypoint.predictor.kps_score_lowres.weight

In C4 models res5 is the box head: its blobs go to `roi_heads.box.feature_extractor.head.layer4.*`.
Detectron's AffineChannel layers (`*_bn_s`, `*_bn_b`) have no running statistics; the conversion
adds the identity ones (running_mean 0, running_var 1), with which our FrozenBatchNorm2d (eps 0)
computes exactly y = x * s + b.
Optimiser state (`*_momentum`) is skipped; blobs this module does not know (e.g. an ImageNet
classifier's `pred_w`) are kept under their own name, so loading reports them as unused.

SECURITY: `load_c2_format` unpickles the file, and unpickling can run arbitrary code. Only load
`.pkl` files from a source you trust (e.g. Detectron's own model zoo).
"""
import logging
import pickle
import re
from collections import OrderedDict

import numpy as np
import torch

from maskrcnn.utils.registry import Registry

__all__ = ["load_c2_format", "load_resnet_c2_format", "C2_FORMAT_LOADER", "_C2_STAGE_NAMES"]

logger = logging.getLogger(__name__)

# "<stage>.<index of the stage's last block>" for res2..res5 (stages numbered 1..4 as layer1..4);
# the last block of each stage is where Detectron's FPN taps the body ("res4_5_sum").
_C2_STAGE_NAMES = {
    "R-50": ["1.2", "2.3", "3.5", "4.2"],
    "R-101": ["1.2", "2.3", "3.22", "4.2"],
    "R-152": ["1.2", "2.7", "3.35", "4.2"],
}

# MODEL.BACKBONE.CONV_BODY -> loader(cfg, f) for Detectron pickles (filled at the end of this
# module; other bodies can register their own loader).
C2_FORMAT_LOADER = Registry("C2_FORMAT_LOADER")

_BRANCH_TO_CONV = {"1": "downsample.0", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_BRANCH_TO_NORM = {"1": "downsample.1", "2a": "bn1", "2b": "bn2", "2c": "bn3"}
_PARAM = {"w": "weight", "b": "bias"}
_NORM_PARAM = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}

_STEM_CONV = re.compile(r"^conv1_(w|b)$")
_STEM_NORM = re.compile(r"^(?:res_)?conv1_(?:bn|gn)_(s|b|rm|riv)$")
_BLOCK_CONV = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_(w|b)$")
_BLOCK_NORM = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_(?:bn|gn)_(s|b|rm|riv)$")

_FPN_INNER = re.compile(r"^fpn_inner_res([2-5])_(\d+)_sum(_lateral)?_(w|b)$")
_FPN_LAYER = re.compile(r"^fpn_res([2-5])_(\d+)_sum_(w|b)$")
_FPN_EXTRA = re.compile(r"^fpn_([67])_(w|b)$")

_HEAD_RULES = [
    (re.compile(r"^(?:conv_rpn|rpn_conv)(?:_fpn2)?_(w|b)$"), "rpn.head.conv"),
    (re.compile(r"^rpn_cls_logits(?:_fpn2)?_(w|b)$"), "rpn.head.cls_logits"),
    (re.compile(r"^rpn_bbox_pred(?:_fpn2)?_(w|b)$"), "rpn.head.bbox_pred"),
    (re.compile(r"^(fc[67])_(w|b)$"), "roi_heads.box.feature_extractor.{0}"),
    (re.compile(r"^(cls_score|bbox_pred)_(w|b)$"), "roi_heads.box.predictor.{0}"),
    (
        re.compile(r"^(?:_\[mask\]_|mask_)fcn(\d+)_(w|b)$"),
        "roi_heads.mask.feature_extractor.mask_fcn{0}",
    ),
    (re.compile(r"^(conv5_mask|mask_fcn_logits)_(w|b)$"), "roi_heads.mask.predictor.{0}"),
    (re.compile(r"^conv_fcn(\d+)_(w|b)$"), "roi_heads.keypoint.feature_extractor.conv_fcn{0}"),
    (re.compile(r"^(kps_score_lowres)_(w|b)$"), "roi_heads.keypoint.predictor.{0}"),
]


def _rename_basic_resnet_weights(layer_keys):
    """ResNet body blob names -> body-relative keys (`stem.conv1.weight`, `layer1.0.bn1.bias`).

    layer_keys: list of blob names. Names that are not ResNet body blobs come back unchanged.
    """
    renamed = []
    for key in layer_keys:
        m = _STEM_CONV.match(key)
        if m:
            renamed.append(f"stem.conv1.{_PARAM[m.group(1)]}")
            continue
        m = _STEM_NORM.match(key)
        if m:
            renamed.append(f"stem.bn1.{_NORM_PARAM[m.group(1)]}")
            continue
        m = _BLOCK_CONV.match(key)
        if m:
            stage, block, branch, param = m.groups()
            renamed.append(
                f"layer{int(stage) - 1}.{int(block)}.{_BRANCH_TO_CONV[branch]}.{_PARAM[param]}"
            )
            continue
        m = _BLOCK_NORM.match(key)
        if m:
            stage, block, branch, param = m.groups()
            renamed.append(
                f"layer{int(stage) - 1}.{int(block)}.{_BRANCH_TO_NORM[branch]}.{_NORM_PARAM[param]}"
            )
            continue
        renamed.append(key)
    return renamed


def _rename_fpn_weights(layer_keys, stage_names):
    """FPN blob names -> FPN-relative keys (`fpn_inner1.weight`, `top_blocks.p6.weight`, ...).

    stage_names: `_C2_STAGE_NAMES[arch]`; Detectron names each lateral by the last block of its
    stage (`fpn_inner_res4_5_sum_lateral` in R-50), so a block index that disagrees with the
    architecture raises ValueError naming the blob (the pickle is for another depth).
    Other names come back unchanged.
    """
    last_block = {int(s.split(".")[0]) + 1: int(s.split(".")[1]) for s in stage_names}
    renamed = []
    for key in layer_keys:
        m = _FPN_INNER.match(key) or _FPN_LAYER.match(key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            if last_block.get(stage) != block:
                raise ValueError(
                    f"c2_model_loading: blob '{key}' taps res{stage} at block {block}, but the "
                    f"architecture's res{stage} ends at block {last_block.get(stage)} "
                    f"(stage names {stage_names}); is the pickle for another ResNet depth?"
                )
            kind = "fpn_inner" if m.re is _FPN_INNER else "fpn_layer"
            renamed.append(f"{kind}{stage - 1}.{_PARAM[m.groups()[-1]]}")
            continue
        m = _FPN_EXTRA.match(key)
        if m:
            renamed.append(f"top_blocks.p{m.group(1)}.{_PARAM[m.group(2)]}")
            continue
        renamed.append(key)
    return renamed


def _rename_head_weights(layer_keys):
    """RPN / box / mask / keypoint head blob names -> full model keys; others unchanged."""
    renamed = []
    for key in layer_keys:
        for pattern, target in _HEAD_RULES:
            m = pattern.match(key)
            if m:
                renamed.append(f"{target.format(*m.groups()[:-1])}.{_PARAM[m.groups()[-1]]}")
                break
        else:
            renamed.append(key)
    return renamed


def _rename_weights_for_resnet(weights, stage_names, res5_in_box_head=False):
    """Detectron blob dict -> OrderedDict of full model keys -> Tensor.

    weights: dict blob name -> numpy array (non-array entries and `*_momentum` blobs are skipped).
    stage_names: `_C2_STAGE_NAMES[arch]`.
    res5_in_box_head: True for C4 models, whose res5 is the box head
        (`roi_heads.box.feature_extractor.head.layer4.*`) rather than part of the body.
    """
    blob_names = sorted(
        k for k, v in weights.items() if isinstance(v, np.ndarray) and not k.endswith("_momentum")
    )
    body_keys = _rename_basic_resnet_weights(blob_names)
    fpn_keys = _rename_fpn_weights(blob_names, stage_names)
    head_keys = _rename_head_weights(blob_names)
    new_weights = OrderedDict()
    blob_to_key = {}
    unknown = []
    for blob, body, fpn, head in zip(blob_names, body_keys, fpn_keys, head_keys):
        if body != blob:
            if res5_in_box_head and body.startswith("layer4."):
                key = "roi_heads.box.feature_extractor.head." + body
            else:
                key = "backbone.body." + body
        elif fpn != blob:
            key = "backbone.fpn." + fpn
        elif head != blob:
            key = head
        else:
            key = blob
            unknown.append(blob)
        if key in new_weights:
            raise ValueError(f"c2_model_loading: two blobs map to '{key}' (one is '{blob}')")
        new_weights[key] = torch.from_numpy(np.ascontiguousarray(weights[blob]))
        blob_to_key[blob] = key
        logger.debug("C2 blob %s -> %s", blob, key)
    _add_affine_channel_statistics(blob_to_key, new_weights)
    if unknown:
        logger.info("C2 blobs with no known counterpart (kept under their own names): %s", unknown)
    return new_weights


def _add_affine_channel_statistics(blob_to_key, new_weights):
    """Give each AffineChannel (`*_bn_s`) layer the identity running statistics (mean 0, var 1).

    Detectron's AffineChannel is y = x * s + b; our FrozenBatchNorm2d (eps 0) equals it with these
    statistics, so the converted dict is complete and overwrites whatever statistics a model held.
    Layers whose pickle carries statistics (`*_bn_rm`, `*_bn_riv`) keep them.
    """
    for blob, key in blob_to_key.items():
        if blob.endswith("_bn_s") and key.endswith(".weight"):
            prefix = key[: -len("weight")]
            scale = new_weights[key]
            new_weights.setdefault(prefix + "running_mean", torch.zeros_like(scale))
            new_weights.setdefault(prefix + "running_var", torch.ones_like(scale))


def _load_c2_pickled_weights(file_path):
    """Unpickle a Detectron weight file (trusted files only: unpickling can run code)."""
    if hasattr(file_path, "read"):
        data = pickle.load(file_path, encoding="latin1")
    else:
        with open(file_path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(
            f"c2_model_loading: {file_path} holds a {type(data).__name__}, expected a dict of blobs"
        )
    return data["blobs"] if "blobs" in data else data


def _arch_of(conv_body):
    for suffix in ("-FPN-RETINANET", "-FPN", "-C4", "-C5"):
        if conv_body.endswith(suffix):
            return conv_body[: -len(suffix)]
    return conv_body


def load_resnet_c2_format(cfg, f):
    """Loader for the ResNet bodies (R-50/101/152, C4/C5/FPN/FPN-RETINANET); see load_c2_format."""
    conv_body = cfg.MODEL.BACKBONE.CONV_BODY
    stage_names = _C2_STAGE_NAMES[_arch_of(conv_body)]
    weights = _load_c2_pickled_weights(f)
    state_dict = _rename_weights_for_resnet(
        weights, stage_names, res5_in_box_head=conv_body.endswith("-C4")
    )
    return dict(model=state_dict)


for _body in (
    "R-50-C4", "R-50-C5", "R-101-C4", "R-101-C5", "R-50-FPN", "R-50-FPN-RETINANET",
    "R-101-FPN", "R-101-FPN-RETINANET", "R-152-FPN",
):
    C2_FORMAT_LOADER.register(_body, load_resnet_c2_format)


def load_c2_format(cfg, f):
    """Read a Detectron `.pkl` (path or binary file object) -> {"model": OrderedDict key -> Tensor}.

    Dispatches on cfg.MODEL.BACKBONE.CONV_BODY through `C2_FORMAT_LOADER` (KeyError naming the
    body when none is registered).
    TRUSTED FILES ONLY: the file is unpickled (with encoding="latin1", as Detectron wrote
    Python 2 pickles), which can execute code embedded in it.
    """
    return C2_FORMAT_LOADER[cfg.MODEL.BACKBONE.CONV_BODY](cfg, f)
