"""Our detector and torchvision's same model, built from one config, for model.py and train.py.

* `detector_cfg(name_or_path, overrides)`: a config for one of the R-50-FPN models (`faster`,
  `mask`, `keypoint`: configs/e2e_*_R_50_FPN_1x.yaml) with the settings torchvision's
  `*rcnn_resnet50_fpn` use (TORCHVISION_PARITY), or any YAML file as it is.
* `torchvision_from_cfg(cfg)`: torchvision's FasterRCNN / MaskRCNN / KeypointRCNN with the same
  architecture and the same RPN / RoI-head sizes as the config (ResNet-18/34/50/101 + FPN bodies).
* `build_pair(cfg, device, with_peer)`: both models, with torchvision's random weights converted
  into ours (maskrcnn.utils.torchvision_conversion), so both sides compute nearly the same function
  and keep comparable detections. Without torchvision: ours alone, seeded. Ours is laid out as
  tools/train_net.py lays it out (channels-last weights when MODEL.CHANNELS_LAST, the default).
* `synthetic_batch(...)`: one random batch, the same images and ground truth for both sides in
  each one's format (ours: a normalised image tensor and BoxLists with polygon masks as our COCO
  dataset gives them; torchvision: [0, 1] images and dicts with bitmap masks, as its reference
  training scripts give them).

torchvision is imported only inside `torchvision_from_cfg`; the rest runs without it.
"""
import os

import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.memory_format import channels_last_from_cfg
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask
from maskrcnn.utils.torchvision_conversion import convert_torchvision_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_CONFIGS = {
    "faster": "configs/e2e_faster_rcnn_R_50_FPN_1x.yaml",
    "mask": "configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
    "keypoint": "configs/e2e_keypoint_rcnn_R_50_FPN_1x.yaml",
}

# What torchvision's fasterrcnn / maskrcnn / keypointrcnn_resnet50_fpn do differently from the
# maskrcnn-benchmark YAMLs: stride in the 3x3 conv, modern box convention, RGB [0, 1] input,
# 91 COCO ids, 2000 training proposals per image (not per batch), masks pasted into the image in
# the forward (torchvision's postprocess does it).
TORCHVISION_PARITY = [
    "MODEL.WEIGHT", "",
    "MODEL.RESNETS.STRIDE_IN_1X1", False,
    "MODEL.BOX_CONVENTION_LEGACY", False,
    "MODEL.RPN.FPN_POST_NMS_PER_BATCH", False,
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 2000,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 2000,
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS", True,
    "INPUT.TO_BGR255", False,
    "INPUT.PIXEL_MEAN", [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD", [0.229, 0.224, 0.225],
]
COCO_CLASSES = ["MODEL.ROI_BOX_HEAD.NUM_CLASSES", 91]

# Every detection an untrained model scores is kept (score threshold 0), up to 100 per image:
# the "100 detections kept" of the targets, so the mask / keypoint heads and the mask
# pasting run on 100 boxes per image on both sides.
KEEP_100_DETECTIONS = [
    "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 100,
]


def detector_cfg(model, overrides=()):
    """A frozen config: `model` is faster / mask / keypoint (R-50-FPN with TORCHVISION_PARITY) or
    the path of a YAML file (taken as it is); `overrides` is a flat KEY, VALUE list merged last."""
    cfg = default_cfg.clone()
    if model in MODEL_CONFIGS:
        cfg.merge_from_file(os.path.join(REPO, MODEL_CONFIGS[model]))
        cfg.merge_from_list(list(TORCHVISION_PARITY))
        if model != "keypoint":
            cfg.merge_from_list(list(COCO_CLASSES))
    elif os.path.isfile(model):
        cfg.merge_from_file(model)
        cfg.MODEL.WEIGHT = ""
    else:
        raise ValueError(f"model: expected one of {sorted(MODEL_CONFIGS)} or a YAML file, got {model!r}")
    cfg.merge_from_list(list(overrides))
    cfg.freeze()
    return cfg


def model_label(model):
    if model in MODEL_CONFIGS:
        return f"{model} R-50-FPN"
    return os.path.splitext(os.path.basename(model))[0]


# ----------------------------------------------------------------------------- torchvision
_DEPTHS = {"R-18-FPN": 18, "R-34-FPN": 34, "R-50-FPN": 50, "R-101-FPN": 101}


def _torchvision_backbone(cfg, tv_models, tv_ops, backbone_utils):
    body_name = cfg.MODEL.BACKBONE.CONV_BODY
    if body_name not in _DEPTHS:
        raise ValueError(f"torchvision_from_cfg: no torchvision body for MODEL.BACKBONE.CONV_BODY {body_name!r}")
    frozen_bn = "Fixed" in cfg.MODEL.RESNETS.TRANS_FUNC
    norm_layer = tv_ops.misc.FrozenBatchNorm2d if frozen_bn else torch.nn.BatchNorm2d
    depth = _DEPTHS[body_name]
    body = getattr(tv_models, f"resnet{depth}")(weights=None, norm_layer=norm_layer)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][: max(0, 5 - cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT)]
    if len(trainable) == 5:
        trainable.append("bn1")
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(layer) for layer in trainable))
    stage2 = 64 if depth < 50 else 256
    return backbone_utils.BackboneWithFPN(
        body,
        return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
        in_channels_list=[stage2 * 2 ** i for i in range(4)],
        out_channels=cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS,
    )


def torchvision_from_cfg(cfg, image_size):
    """torchvision's two-stage detector with the architecture and sizes of `cfg` (FPN models).

    image_size: (height, width) of the benchmark's images; the model's transform keeps that size
    (min_size / max_size set to it), as ours does, so both run at the same resolution.
    """
    import torchvision
    from torchvision.models.detection import backbone_utils, faster_rcnn, keypoint_rcnn, mask_rcnn
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    m = cfg.MODEL
    if m.RETINANET_ON or m.RPN_ONLY or not m.RPN.USE_FPN:
        raise ValueError("torchvision_from_cfg: only two-stage FPN models have a torchvision peer here")
    backbone = _torchvision_backbone(cfg, torchvision.models, torchvision.ops, backbone_utils)
    channels = backbone.out_channels
    levels = ["0", "1", "2", "3"]
    anchors = AnchorGenerator(tuple((s,) for s in m.RPN.ANCHOR_SIZES),
                              (tuple(m.RPN.ASPECT_RATIOS),) * len(m.RPN.ANCHOR_SIZES))
    box_res = m.ROI_BOX_HEAD.POOLER_RESOLUTION
    kwargs = dict(
        min_size=min(image_size), max_size=max(image_size),
        image_mean=list(cfg.INPUT.PIXEL_MEAN) if not cfg.INPUT.TO_BGR255 else None,
        image_std=list(cfg.INPUT.PIXEL_STD) if not cfg.INPUT.TO_BGR255 else None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=m.RPN.PRE_NMS_TOP_N_TRAIN, rpn_pre_nms_top_n_test=m.RPN.PRE_NMS_TOP_N_TEST,
        rpn_post_nms_top_n_train=m.RPN.FPN_POST_NMS_TOP_N_TRAIN,
        rpn_post_nms_top_n_test=m.RPN.FPN_POST_NMS_TOP_N_TEST,
        rpn_nms_thresh=m.RPN.NMS_THRESH, rpn_fg_iou_thresh=m.RPN.FG_IOU_THRESHOLD,
        rpn_bg_iou_thresh=m.RPN.BG_IOU_THRESHOLD, rpn_batch_size_per_image=m.RPN.BATCH_SIZE_PER_IMAGE,
        rpn_positive_fraction=m.RPN.POSITIVE_FRACTION,
        box_roi_pool=MultiScaleRoIAlign(levels, box_res, m.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO),
        box_head=faster_rcnn.TwoMLPHead(channels * box_res ** 2, m.ROI_BOX_HEAD.MLP_HEAD_DIM),
        box_predictor=faster_rcnn.FastRCNNPredictor(m.ROI_BOX_HEAD.MLP_HEAD_DIM, m.ROI_BOX_HEAD.NUM_CLASSES),
        box_score_thresh=m.ROI_HEADS.SCORE_THRESH, box_nms_thresh=m.ROI_HEADS.NMS,
        box_detections_per_img=m.ROI_HEADS.DETECTIONS_PER_IMG,
        box_fg_iou_thresh=m.ROI_HEADS.FG_IOU_THRESHOLD, box_bg_iou_thresh=m.ROI_HEADS.BG_IOU_THRESHOLD,
        box_batch_size_per_image=m.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=m.ROI_HEADS.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(m.ROI_HEADS.BBOX_REG_WEIGHTS),
    )
    if m.KEYPOINT_ON:
        layers = tuple(m.ROI_KEYPOINT_HEAD.CONV_LAYERS)
        return keypoint_rcnn.KeypointRCNN(
            backbone, num_classes=None,
            keypoint_roi_pool=MultiScaleRoIAlign(levels, m.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION,
                                                 m.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO),
            keypoint_head=keypoint_rcnn.KeypointRCNNHeads(channels, layers),
            keypoint_predictor=keypoint_rcnn.KeypointRCNNPredictor(layers[-1], m.ROI_KEYPOINT_HEAD.NUM_CLASSES),
            **kwargs)
    if m.MASK_ON:
        layers = tuple(m.ROI_MASK_HEAD.CONV_LAYERS)
        return mask_rcnn.MaskRCNN(
            backbone, num_classes=None,
            mask_roi_pool=MultiScaleRoIAlign(levels, m.ROI_MASK_HEAD.POOLER_RESOLUTION,
                                             m.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO),
            mask_head=mask_rcnn.MaskRCNNHeads(channels, layers, m.ROI_MASK_HEAD.DILATION),
            mask_predictor=mask_rcnn.MaskRCNNPredictor(layers[-1], layers[-1], m.ROI_BOX_HEAD.NUM_CLASSES),
            **kwargs)
    return faster_rcnn.FasterRCNN(backbone, num_classes=None, **kwargs)


def build_pair(cfg, image_size, device, with_peer, seed=0):
    """(ours, peer or None, weights note). With a peer, torchvision's random initialisation is
    converted into ours; where the state dicts do not line up, each side keeps its own seeded
    initialisation and the note says so."""
    torch.manual_seed(seed)
    ours = build_detection_model(cfg)
    peer, note = None, "ours: own random init"
    if with_peer:
        torch.manual_seed(seed)
        peer = torchvision_from_cfg(cfg, image_size)
        frozen = "Fixed" in cfg.MODEL.RESNETS.TRANS_FUNC
        try:
            state = convert_torchvision_state_dict(peer.state_dict(), bn_eps=1e-5 if frozen else 0.0)
            missing, unexpected = ours.load_state_dict(state, strict=False)
            # buffers computed at construction (anchors) have no torchvision counterpart
            anchors = {f"{name}.{buffer}" for name, module in ours.named_modules()
                       if "Anchor" in type(module).__name__ for buffer, _ in module.named_buffers()}
            missing = [k for k in missing if k not in anchors and not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                raise KeyError(f"missing {missing[:3]}..., unexpected {unexpected[:3]}...")
            note = "same weights (torchvision's random init, converted)"
        except (KeyError, RuntimeError, ValueError) as error:
            note = f"independent random weights (conversion failed: {str(error)[:120]})"
        peer.to(device)
    # laid out as tools/train_net.py leaves it (MODEL.CHANNELS_LAST)
    return channels_last_from_cfg(cfg, ours.to(device)), peer, note


# ----------------------------------------------------------------------------- inputs
def random_images(batch, image_size, generator):
    """list of `batch` Tensor[3, H, W] in [0, 1] (RGB)."""
    return [torch.rand(3, *image_size, generator=generator) for _ in range(batch)]


def normalize_for_ours(images, cfg, device):
    """Our models take preprocessed images (the data transforms normalise): [0, 1] RGB ->
    cfg's input format, as Tensor[3, H, W] each on `device`."""
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN)[:, None, None]
    std = torch.tensor(cfg.INPUT.PIXEL_STD)[:, None, None]
    out = []
    for image in images:
        if cfg.INPUT.TO_BGR255:
            image = image[[2, 1, 0]] * 255
        out.append(((image - mean) / std).to(device))
    return out


def _instance(box_xyxy, generator, num_keypoints):
    """An octagon polygon inscribed in the box (flat [x0, y0, ...]) and keypoints inside it."""
    x1, y1, x2, y2 = box_xyxy.tolist()
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    angles = torch.arange(8) * (torch.pi / 4)
    polygon = torch.stack([cx + rx * angles.cos(), cy + ry * angles.sin()], dim=1).reshape(-1)
    points = torch.rand(num_keypoints, 2, generator=generator)
    xy = points * torch.tensor([x2 - x1, y2 - y1]) + torch.tensor([x1, y1])
    keypoints = torch.cat([xy, torch.full((num_keypoints, 1), 2.0)], dim=1)
    return [polygon.tolist()], keypoints


def synthetic_targets(cfg, batch, image_size, boxes_per_image, generator):
    """Ground truth of `batch` images: list of dicts with boxes Tensor[K, 4] (x1, y1, x2, y2),
    labels Tensor[K], polygons (list per object), keypoints Tensor[K, 17, 3]."""
    height, width = image_size
    num_classes = cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES
    num_keypoints = cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES
    targets = []
    for _ in range(batch):
        sizes = (0.1 + 0.4 * torch.rand(boxes_per_image, 2, generator=generator)) * torch.tensor([width, height])
        corner = torch.rand(boxes_per_image, 2, generator=generator) * (torch.tensor([width, height]) - sizes)
        boxes = torch.cat([corner, corner + sizes], dim=1).floor()
        labels = torch.randint(1, num_classes, (boxes_per_image,), generator=generator)
        polygons, keypoints = zip(*(_instance(b, generator, num_keypoints) for b in boxes))
        targets.append({"boxes": boxes, "labels": labels, "polygons": list(polygons),
                        "keypoints": torch.stack(keypoints)})
    return targets


def targets_for_ours(targets, cfg, image_size, device):
    """list[BoxList] with "labels", and "masks" (SegmentationMask of polygons) / "keypoints"."""
    height, width = image_size
    legacy = bool(cfg.MODEL.BOX_CONVENTION_LEGACY)
    out = []
    for target in targets:
        boxes = BoxList(target["boxes"], (width, height), mode="xyxy", legacy_plus_one=legacy)
        boxes.add_field("labels", target["labels"])
        if cfg.MODEL.MASK_ON:
            boxes.add_field("masks", SegmentationMask(target["polygons"], (width, height), legacy_plus_one=legacy))
        if cfg.MODEL.KEYPOINT_ON:
            boxes.add_field("keypoints", PersonKeypoints(target["keypoints"], (width, height)))
        out.append(boxes.to(device))
    return out


def targets_for_torchvision(targets, cfg, image_size, device):
    """list of dicts (boxes, labels, masks Tensor[K, H, W] uint8, keypoints) for torchvision."""
    height, width = image_size
    out = []
    for target in targets:
        entry = {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)}
        if cfg.MODEL.MASK_ON:
            bitmaps = SegmentationMask(target["polygons"], (width, height), mode="mask")
            entry["masks"] = bitmaps.instances.masks.to(device)
        if cfg.MODEL.KEYPOINT_ON:
            entry["keypoints"] = target["keypoints"].to(device)
        out.append(entry)
    return out


def count_detections(outputs):
    """Detections per image (mean over the batch) of ours (list[BoxList]) or torchvision (dicts)."""
    counts = [len(o["boxes"]) if isinstance(o, dict) else len(o) for o in outputs]
    return sum(counts) / max(len(counts), 1)
