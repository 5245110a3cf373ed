"""Test-time augmentation of box detections (maskrcnn-benchmark's ``TEST.BBOX_AUG``).

The detector runs on several views of each image: the plain test resize (``INPUT.MIN_SIZE_TEST``
/ ``INPUT.MAX_SIZE_TEST``), optionally its horizontal mirror (``H_FLIP``), and every extra shorter
side in ``SCALES`` capped at ``MAX_SIZE`` (each optionally mirrored too, ``SCALE_H_FLIP``). Every
view's boxes are mapped back to the plain view's frame (un-mirrored, then rescaled), pooled, and
filtered as the box head filters one view: score threshold, NMS per class, best
``DETECTIONS_PER_IMG`` kept.

While the views run, the box head of the model (if it has one) is in TTA mode
(``unfiltered_box_detections``): its post-processor returns every (RoI, class) box,
``R * num_classes`` rows in (RoI, class) order with field ``scores``, and the merge filters them
all together. Outside it the model is left as built: a model built from a config with
``TEST.BBOX_AUG.ENABLED`` gives normal detections from a plain forward (the Predictor / COCODemo
run it so, without TTA, as Detectron2's DefaultPredictor does); ``maskrcnn.engine.inference``
(tools/test_net.py) is where TTA runs. Models without a box head (RetinaNet, or any callable)
return already-filtered detections with fields ``scores`` and ``labels``, merged by per-class NMS
alone.

Mask R-CNN and Keypoint R-CNN: the heads that run on the box head's detections (``roi_heads.mask``,
``roi_heads.keypoint``) cannot run on the unfiltered (RoI, class) boxes of TTA mode, so for such
models every view runs the backbone, the RPN and the box head only, and once the boxes of all views
are merged those heads run on the merged boxes with the features of the plain view (masks and
keypoints come from the plain view; only the boxes are augmented).
"""
import contextlib

import numpy as np
import torch

from maskrcnn.data.transforms.transforms import Compose, Normalize, Resize, ToTensor
from maskrcnn.layers.nms import batched_nms
from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, BoxList
from maskrcnn.structures.image_list import to_image_list

__all__ = ["im_detect_bbox_aug", "bbox_aug_views", "merge_detections", "unfiltered_box_detections"]


def bbox_aug_views(cfg):
    """The (min_size, max_size, hflip) views TEST.BBOX_AUG asks for; the plain view comes first."""
    aug = cfg.TEST.BBOX_AUG
    views = [(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, False)]
    if aug.H_FLIP:
        views.append((cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, True))
    for scale in aug.SCALES:
        views.append((scale, aug.MAX_SIZE, False))
        if aug.SCALE_H_FLIP:
            views.append((scale, aug.MAX_SIZE, True))
    return views


@contextlib.contextmanager
def unfiltered_box_detections(model):
    """Puts the box head of ``model`` in TTA mode for the block (its post-processor returns every
    (RoI, class) box unfiltered, ``bbox_aug_enabled``) and restores its mode after; models without
    a box head are left alone."""
    roi_heads = getattr(model, "roi_heads", None)
    post_processor = roi_heads["box"].post_processor if roi_heads and "box" in roi_heads else None
    if not hasattr(post_processor, "bbox_aug_enabled"):
        yield
        return
    previous = post_processor.bbox_aug_enabled
    post_processor.bbox_aug_enabled = True
    try:
        yield
    finally:
        post_processor.bbox_aug_enabled = previous


def _check_image(position, image):
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(
            f"im_detect_bbox_aug: images[{position}] must be a BGR uint8 numpy array [H, W, 3] "
            f"(the raw image the TTA loader hands over), got {shape}"
        )


def _detect_view(model, images, min_size, max_size, hflip, device, cfg):
    """Run `model` on one view of `images`; boxes come back in that view's (mirrored) frame and
    are un-mirrored here. Returns list[BoxList] in the view's resized frame."""
    transform = Compose([
        Resize(min_size, max_size),
        ToTensor(),
        Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD, to_bgr255=cfg.INPUT.TO_BGR255),
    ])
    tensors = []
    for image in images:
        if hflip:
            image = np.ascontiguousarray(image[:, ::-1])
        tensors.append(transform(image)[0])
    batch = to_image_list(tensors, cfg.DATALOADER.SIZE_DIVISIBILITY)
    detections, features = _detect_boxes(model, batch.to(device))
    if len(detections) != len(images):
        raise ValueError(f"im_detect_bbox_aug: the model returned {len(detections)} results for {len(images)} images")
    if hflip:
        detections = [boxlist.transpose(FLIP_LEFT_RIGHT) for boxlist in detections]
    return detections, features


def _heads_after_box(model):
    """The RoI heads that run on the box head's detections (mask, keypoint), in order; [] when the
    model has none (Faster R-CNN, RetinaNet, or a model that is not a GeneralizedRCNN)."""
    roi_heads = getattr(model, "roi_heads", None)
    if not roi_heads or "box" not in roi_heads:
        return []
    return [roi_heads[name] for name in roi_heads.keys() if name != "box"]


def _detect_boxes(model, batch):
    """(detections, features) of one view. Models with heads after the box head run backbone, RPN
    and box head only and also return the backbone features (list[Tensor[N, C, H_l, W_l]]); the
    others run whole and return None for the features."""
    if not _heads_after_box(model):
        return model(batch), None
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    _, detections, _ = model.roi_heads["box"](features, proposals)
    return detections, features


def _run_heads_after_box(model, features, detections):
    """Run the mask / keypoint heads on `detections` (the merged boxes, in the frame of the view
    whose backbone `features` are given); returns the detections with their fields added."""
    for head in _heads_after_box(model):
        _, detections, _ = head(features, detections)
    return detections


def _candidates(boxlist, num_classes):
    """(boxes Tensor[M, 4] xyxy, scores Tensor[M], labels Tensor[M]) of one view's output."""
    boxlist = boxlist.convert("xyxy")
    scores = boxlist.get_field("scores")
    if boxlist.has_field("labels"):
        return boxlist.bbox, scores, boxlist.get_field("labels").to(torch.int64)
    if len(boxlist) % num_classes != 0:
        raise ValueError(
            f"im_detect_bbox_aug: an unfiltered box-head output has {len(boxlist)} rows, not a multiple of "
            f"MODEL.ROI_BOX_HEAD.NUM_CLASSES = {num_classes} (does the model's box head have that many classes?)"
        )
    labels = torch.arange(num_classes, device=scores.device).repeat(len(boxlist) // num_classes)
    foreground = labels > 0
    return boxlist.bbox[foreground], scores[foreground], labels[foreground]


def merge_detections(per_view, num_classes, score_thresh, nms_thresh, detections_per_img):
    """Pool one image's detections from every view (all BoxLists in the same frame) and filter them.

    per_view: list[BoxList] of the same size. Returns a BoxList with fields "scores" and "labels"
    sorted by decreasing score.
    """
    reference = per_view[0]
    parts = [_candidates(boxlist, num_classes) for boxlist in per_view]
    boxes = torch.cat([p[0] for p in parts])
    scores = torch.cat([p[1] for p in parts])
    labels = torch.cat([p[2] for p in parts])
    keep = torch.nonzero(scores > score_thresh, as_tuple=True)[0]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if nms_thresh > 0 and scores.numel() > 0:
        order = batched_nms(boxes.float(), scores.float(), labels, nms_thresh,
                            legacy_plus_one=reference.legacy_plus_one)
    else:
        order = torch.argsort(scores, descending=True)
    if detections_per_img > 0:
        order = order[:detections_per_img]
    merged = BoxList(boxes[order], reference.size, mode="xyxy", legacy_plus_one=reference.legacy_plus_one)
    merged.add_field("scores", scores[order])
    merged.add_field("labels", labels[order])
    return merged


@torch.no_grad()
def im_detect_bbox_aug(model, images, device, cfg=None):
    """Detections for `images` merged over the views of ``cfg.TEST.BBOX_AUG``.

    Arguments:
        model: the detector in eval mode; called with an ImageList, returns list[BoxList].
        images: sequence of raw BGR uint8 numpy images [H, W, 3] (untransformed: each view
            resizes and normalises them itself).
        device: where the batches go (``torch.device`` or string).
        cfg: the config (default: the global ``maskrcnn.config.cfg``, as maskrcnn-benchmark reads it).
    Returns:
        list[BoxList], one per image, in the frame of the plain test resize (as a model without
        augmentation returns them), with fields "scores" and "labels" (and "mask" / "keypoints"
        when the model has those heads).
    """
    if cfg is None:
        from maskrcnn.config import cfg
    images = list(images)
    for position, image in enumerate(images):
        _check_image(position, image)
    if not images:
        return []

    per_image = [[] for _ in images]
    plain_features = None
    with unfiltered_box_detections(model):
        for min_size, max_size, hflip in bbox_aug_views(cfg):
            detections, features = _detect_view(model, images, min_size, max_size, hflip, device, cfg)
            if plain_features is None:
                plain_features = features  # the first view is the plain one
            for views, boxlist in zip(per_image, detections):
                # the plain view (first) sets the frame; the others are rescaled into it
                views.append(boxlist if not views else boxlist.resize(views[0].size))

    heads = cfg.MODEL.ROI_HEADS
    merged = [
        merge_detections(views, cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES, heads.SCORE_THRESH, heads.NMS,
                         heads.DETECTIONS_PER_IMG)
        for views in per_image
    ]
    if plain_features is not None:
        merged = _run_heads_after_box(model, plain_features, merged)
    return merged
