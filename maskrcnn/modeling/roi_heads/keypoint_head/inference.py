"""Keypoint post-processing: heatmap logits -> keypoint coordinates and scores per detection.

``heatmaps_to_keypoints`` resizes each detection's heatmaps (bicubic, half-pixel centres) to the
detection's size in pixels, ceil(w) x ceil(h) with w = x2 - x1 and h = y2 - y1 (at least 1), takes
each keypoint's arg-max cell (d) and maps its centre back into the image:
x = x1 + (d + 0.5) * w / ceil(w) (Heckbert's c = d + 0.5, consistent with the training targets of
``keypoints_to_heat_map``). The score of a keypoint is the resized logit at that cell. All
detections are decoded in one call of the compiled op (``maskrcnn.layers.heatmaps_to_keypoints``),
which evaluates the resized values without storing the resized maps and equals resizing each
detection with F.interpolate and taking torch.argmax (first maximum in row-major order on ties).
The box convention does not enter: the heatmap spans x1..x2 in both conventions.
``KeypointPostProcessor`` attaches the result to the detections as the field "keypoints"
(the ``keypoints_class`` given; else ``PersonKeypoints`` for 17 keypoints and a generic
``Keypoints`` subclass otherwise), with the scores as
its field "logits" (maskrcnn-benchmark's names).
"""
import torch
from torch import nn

from maskrcnn.layers.heatmaps_to_keypoints import heatmaps_to_keypoints as decode_heatmaps
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import PersonKeypoints, make_keypoints_class

__all__ = ["heatmaps_to_keypoints", "Keypointer", "KeypointPostProcessor", "make_roi_keypoint_post_processor"]


def heatmaps_to_keypoints(maps, rois):
    """Keypoint locations from heatmaps.

    Arguments:
        maps: Tensor[N, K, H, W] heatmap logits.
        rois: Tensor[N, 4] (x1, y1, x2, y2), finite.
    Returns:
        (xy_preds Tensor[N, K, 3] float32 of (x, y, 1), scores Tensor[N, K] float32).
    """
    maps = torch.as_tensor(maps)
    rois = torch.as_tensor(rois).to(device=maps.device, dtype=torch.float32)
    if maps.dim() != 4 or rois.dim() != 2 or rois.shape[-1] != 4 or maps.shape[0] != rois.shape[0]:
        raise ValueError(
            f"heatmaps_to_keypoints: maps must be [N, K, H, W] and rois [N, 4], got {list(maps.shape)} "
            f"and {list(rois.shape)}"
        )
    return decode_heatmaps(maps.float(), rois)


class Keypointer(object):
    """Decodes heatmaps of detections into keypoints (``heatmaps_to_keypoints``).

    Arguments:
        padding (int): kept for maskrcnn-benchmark compatibility (unused).
    """

    def __init__(self, padding=0):
        self.padding = padding

    def __call__(self, masks, boxes):
        """masks: Tensor[N, K, H, W] for the boxes of all images in order; boxes: list[BoxList]
        (or one) -> (Tensor[N, K, 3], Tensor[N, K]) on the masks' device."""
        if isinstance(boxes, BoxList):
            boxes = [boxes]
        if boxes:
            rois = torch.cat([b.convert("xyxy").bbox.to(masks.device) for b in boxes], dim=0)
        else:
            rois = masks.new_zeros((0, 4))
        return heatmaps_to_keypoints(masks.detach(), rois)


_GENERIC_KEYPOINT_CLASSES = {}


def _default_keypoints_class(num_keypoints):
    """PersonKeypoints for 17 keypoints; otherwise a Keypoints subclass with K generic names
    ("keypoint_0", ...), so even zero detections keep the shape [0, K, 3]."""
    if num_keypoints == len(PersonKeypoints.NAMES):
        return PersonKeypoints
    if num_keypoints not in _GENERIC_KEYPOINT_CLASSES:
        names = [f"keypoint_{i}" for i in range(num_keypoints)]
        _GENERIC_KEYPOINT_CLASSES[num_keypoints] = make_keypoints_class(f"Keypoints{num_keypoints}", names)
    return _GENERIC_KEYPOINT_CLASSES[num_keypoints]


class KeypointPostProcessor(nn.Module):
    """Attaches the decoded keypoints to the detections.

    Arguments:
        keypointer (Keypointer or None): decoder; None attaches the raw heatmaps.
        keypoints_class: Keypoints subclass of the result; None picks PersonKeypoints for 17
            keypoints and a Keypoints subclass with generic names otherwise.
    """

    def __init__(self, keypointer=None, keypoints_class=None):
        super().__init__()
        self.keypointer = keypointer
        self.keypoints_class = keypoints_class

    def forward(self, x, boxes):
        """
        Arguments:
            x: Tensor[K, NK, M, M] heatmap logits of all detections of all images.
            boxes: list[BoxList], the detections.
        Returns:
            list[BoxList]: the detections with every field kept plus "keypoints" (a Keypoints
            with field "logits" Tensor[N, NK], the keypoint scores).
        """
        keypoints, scores = x, None
        if self.keypointer:
            keypoints, scores = self.keypointer(x, boxes)
        per_image = [len(box) for box in boxes]
        if sum(per_image) != x.shape[0]:
            raise ValueError(f"KeypointPostProcessor: {x.shape[0]} heatmaps for {sum(per_image)} detections")
        keypoints = keypoints.split(per_image, dim=0)
        scores = scores.split(per_image, dim=0) if scores is not None else [None] * len(boxes)
        keypoints_class = self.keypoints_class or _default_keypoints_class(x.shape[1])
        results = []
        for points, box, score in zip(keypoints, boxes, scores):
            result = BoxList(box.bbox, box.size, mode="xyxy", legacy_plus_one=box.legacy_plus_one)
            for field in box.fields():
                result.add_field(field, box.get_field(field))
            if score is not None:
                points = keypoints_class(points, box.size, legacy_plus_one=box.legacy_plus_one)
                points.add_field("logits", score)
            result.add_field("keypoints", points)
            results.append(result)
        return results


def make_roi_keypoint_post_processor(cfg):
    """KeypointPostProcessor with a Keypointer."""
    return KeypointPostProcessor(Keypointer())
