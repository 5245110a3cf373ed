"""torchvision detection state dicts -> this library's (maskrcnn-benchmark's) key names.

Covers torchvision's `fasterrcnn_resnet50_fpn`, `maskrcnn_resnet50_fpn`, `keypointrcnn_resnet50_fpn`
(v1 heads) and `retinanet_resnet50_fpn`, in the key layouts of torchvision 0.13+ (`inner_blocks.0.0`,
`rpn.head.conv.0.0`, `mask_head.0.0`) and the older ones (`inner_blocks.0`, `rpn.head.conv`,
`mask_head.mask_fcn1`). No torchvision import: plain dicts of tensors in and out.

What changes besides names:
* `num_batches_tracked` buffers are dropped (our FrozenBatchNorm2d has none).
* torchvision's frozen batch norm divides by sqrt(var + 1e-5); ours uses eps=0 (Caffe2 style),
  so `bn_eps` (default 1e-5) is folded into every `running_var`.
* RetinaNet's classifier has a logit for the background class 0 that ours has not (ours has
  MODEL.RETINANET.NUM_CLASSES - 1 per anchor): that column is dropped from `cls_logits`.

A converted checkpoint reproduces torchvision only with a config that matches it: the Faster,
Mask and Keypoint R-CNN ones are configs/torchvision/*.yaml (RGB input in [0, 1] normalised with
ImageNet's mean / std, STRIDE_IN_1X1 False, the modern box convention with RoIAlign aligned=False,
torchvision's anchor strides and RPN / box-head thresholds, NUM_CLASSES 91 = COCO category ids);
tests/tools/test_convert_torchvision.py checks their detections against torchvision's.
"""
import re
from collections import OrderedDict

import torch

__all__ = ["convert_torchvision_state_dict"]

_NORM_LEAF = ("weight", "bias", "running_mean", "running_var")


def _fpn_offset(state_dict):
    """fpn_inner index of inner_blocks.0: 1 when the FPN starts at C2, 2 for RetinaNet's C3."""
    indices = {
        int(m.group(1))
        for k in state_dict
        for m in [re.match(r"backbone\.fpn\.inner_blocks\.(\d+)\.", k)]
        if m
    }
    return 5 - len(indices) if indices else 1


# (pattern, replacement) applied with re.fullmatch, first match wins; replacements are callables
# taking the match (and the FPN offset).
def _rules(fpn_offset):
    def fpn(kind):
        return lambda m: f"backbone.fpn.fpn_{kind}{int(m.group(1)) + fpn_offset}.{m.group(2)}"

    return [
        (r"backbone\.body\.(conv1|bn1)\.(.+)",
         lambda m: f"backbone.body.stem.{m.group(1)}.{m.group(2)}"),
        (r"backbone\.body\.(layer[1-4]\..+)", lambda m: f"backbone.body.{m.group(1)}"),
        (r"backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?(weight|bias)", fpn("inner")),
        (r"backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?(weight|bias)", fpn("layer")),
        (r"backbone\.fpn\.extra_blocks\.(p[67])\.(weight|bias)",
         lambda m: f"backbone.fpn.top_blocks.{m.group(1)}.{m.group(2)}"),
        (r"rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)", lambda m: f"rpn.head.conv.{m.group(1)}"),
        (r"rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)", lambda m: m.group(0)),
        (r"roi_heads\.box_head\.(fc[67])\.(weight|bias)",
         lambda m: f"roi_heads.box.feature_extractor.{m.group(1)}.{m.group(2)}"),
        (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)",
         lambda m: f"roi_heads.box.predictor.{m.group(1)}.{m.group(2)}"),
        (r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)",
         lambda m: f"roi_heads.mask.feature_extractor.mask_fcn{int(m.group(1)) + 1}.{m.group(2)}"),
        (r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)",
         lambda m: f"roi_heads.mask.feature_extractor.mask_fcn{m.group(1)}.{m.group(2)}"),
        (r"roi_heads\.mask_predictor\.(conv5_mask|mask_fcn_logits)\.(weight|bias)",
         lambda m: f"roi_heads.mask.predictor.{m.group(1)}.{m.group(2)}"),
        # keypoint_head is Sequential(conv, relu, conv, relu, ...): conv j sits at index 2 * (j - 1).
        (r"roi_heads\.keypoint_head\.(\d*[02468])\.(weight|bias)",
         lambda m: "roi_heads.keypoint.feature_extractor."
                   f"conv_fcn{int(m.group(1)) // 2 + 1}.{m.group(2)}"),
        (r"roi_heads\.keypoint_predictor\.kps_score_lowres\.(weight|bias)",
         lambda m: f"roi_heads.keypoint.predictor.kps_score_lowres.{m.group(1)}"),
        # RetinaNet towers are Sequential(conv, relu, ...) on our side: conv i at index 2 * i.
        (r"head\.classification_head\.conv\.(\d+)\.0\.(weight|bias)",
         lambda m: f"rpn.head.cls_tower.{2 * int(m.group(1))}.{m.group(2)}"),
        (r"head\.regression_head\.conv\.(\d+)\.0\.(weight|bias)",
         lambda m: f"rpn.head.bbox_tower.{2 * int(m.group(1))}.{m.group(2)}"),
        (r"head\.classification_head\.cls_logits\.(weight|bias)",
         lambda m: f"rpn.head.cls_logits.{m.group(1)}"),
        (r"head\.regression_head\.bbox_reg\.(weight|bias)",
         lambda m: f"rpn.head.bbox_pred.{m.group(1)}"),
    ]


def _is_norm_buffer(tv_key, state_dict):
    """running_var of a batch-norm layer (recognised by its running_mean sibling)."""
    if not tv_key.endswith(".running_var"):
        return False
    return tv_key[: -len("running_var")] + "running_mean" in state_dict


def _drop_background_logit(tensor, num_anchors_hint, key):
    """cls_logits weight/bias laid out [A * C, ...] -> [A * (C - 1), ...] without class 0."""
    total = tensor.shape[0]
    if num_anchors_hint <= 0 or total % num_anchors_hint:
        raise ValueError(
            f"convert_torchvision_state_dict: cannot split '{key}' of shape {list(tensor.shape)} "
            f"into {num_anchors_hint} anchors"
        )
    per_anchor = tensor.reshape(num_anchors_hint, total // num_anchors_hint, *tensor.shape[1:])
    return per_anchor[:, 1:].reshape(-1, *tensor.shape[1:]).clone()


# torchvision's RetinaNet decodes with box-coder weights (1, 1, 1, 1); ours with (10, 10, 5, 5)
# (maskrcnn-benchmark's). Scaling the regression conv's output rows by ours gives the same boxes.
RETINANET_BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _rescale_retinanet_regression(tensor, num_anchors):
    """bbox_reg weight [A * 4, C, k, k] or bias [A * 4]: row (a, j) multiplied by our coder weight j."""
    scale = torch.tensor(RETINANET_BOX_CODER_WEIGHTS, dtype=tensor.dtype).repeat(num_anchors)
    return tensor * scale.reshape(-1, *([1] * (tensor.dim() - 1)))


def convert_torchvision_state_dict(state_dict, bn_eps=1e-5):
    """torchvision detection state dict -> OrderedDict with this library's keys.

    state_dict: mapping torchvision key -> Tensor (a `{"model": ...}` wrapper is not expected;
        pass the state dict itself).
    bn_eps: torchvision's FrozenBatchNorm2d eps, folded into `running_var` (0 to keep it as is).
    Raises KeyError listing every key it has no rule for (nothing is dropped silently).
    """
    state_dict = OrderedDict(state_dict)
    rules = [(re.compile(p), r) for p, r in _rules(_fpn_offset(state_dict))]
    retina_anchors = None
    if "head.regression_head.bbox_reg.weight" in state_dict:
        retina_anchors = state_dict["head.regression_head.bbox_reg.weight"].shape[0] // 4
    converted, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        for pattern, replace in rules:
            m = pattern.fullmatch(key)
            if m:
                break
        else:
            unknown.append(key)
            continue
        new_key = replace(m)
        if new_key in converted:
            raise KeyError(
                f"convert_torchvision_state_dict: two keys map to '{new_key}' (one is '{key}')"
            )
        if _is_norm_buffer(key, state_dict) and bn_eps:
            value = value + bn_eps
        if key.startswith("head.classification_head.cls_logits."):
            value = _drop_background_logit(value, retina_anchors, key)
        if key.startswith("head.regression_head.bbox_reg."):
            value = _rescale_retinanet_regression(value, retina_anchors)
        converted[new_key] = value
    if unknown:
        raise KeyError(
            "convert_torchvision_state_dict: no rule for these torchvision keys "
            f"(another architecture?): {unknown}"
        )
    return converted


def load_torchvision_file(path):
    """torch.load a torchvision checkpoint (weights only) and return its state dict."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
        loaded = loaded["model"]
    return loaded
