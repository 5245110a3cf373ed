"""Mask post-processing: per-detection mask probabilities, optionally pasted into the image.

``MaskPostProcessor`` turns the logits Tensor[K, num_classes, M, M] into probabilities of each
detection's predicted class and attaches them as the field "mask" (Tensor[N, 1, M, M]); with a
``Masker`` the field is instead the image-sized masks Tensor[N, 1, H, W] (uint8).

``Masker`` pastes M x M masks into the image with the compiled op ``maskrcnn.layers.paste_masks``
(all detections of an image in one call, each computing only its box's pixels; C++ on the CPU,
CUDA on GPUs):

* legacy convention (maskrcnn-benchmark): the mask is padded by ``padding`` zero cells, its box
  enlarged by (M + 2 * padding) / M about the centre, truncated to integers (x0, y0, x1, y1),
  and the padded mask resized bilinearly (half-pixel centres, edge values repeated) onto the
  (x1 - x0 + 1) x (y1 - y0 + 1) pixels of that box;
* modern convention (Detectron2's ``paste_masks_in_image``): image pixel (x, y) reads the mask
  at its centre (x + 0.5, y + 0.5) mapped linearly from the box [x1, x2] x [y1, y2] onto the
  mask, zero outside it (with padding >= 1 this is exactly Detectron2's result).
"""
import torch
from torch import nn

from maskrcnn.layers.paste_masks import paste_masks
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import resolve_legacy_plus_one

__all__ = ["Masker", "MaskPostProcessor", "make_roi_mask_post_processor"]


class Masker(object):
    """Pastes per-detection masks into image-sized masks.

    Arguments:
        threshold (float): pasted values > threshold become 1 (uint8 0 / 1); a negative threshold
            keeps the probabilities instead, as uint8 in [0, 255].
        padding (int): zero cells added round each mask before pasting.
        legacy_plus_one (bool or None): the pasting rule of the legacy or the modern box
            convention (see the module docstring); None follows each BoxList's own flag (and the
            process default in ``paste``).
    """

    def __init__(self, threshold=0.5, padding=1, legacy_plus_one=None):
        if padding < 0:
            raise ValueError(f"Masker: padding must be >= 0, got {padding}")
        self.threshold = threshold
        self.padding = int(padding)
        self.legacy_plus_one = None if legacy_plus_one is None else bool(legacy_plus_one)

    def paste(self, masks, boxes, image_size, legacy_plus_one=None):
        """
        Arguments:
            masks: Tensor[N, 1, M, M] (or [N, M, M]) probabilities.
            boxes: Tensor[N, 4] (x1, y1, x2, y2).
            image_size: (width, height).
            legacy_plus_one: overrides the Masker's convention for this call.
        Returns:
            Tensor[N, 1, H, W] uint8.
        """
        if masks.dim() == 3:
            masks = masks[:, None]
        if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"Masker: masks must be [N, 1, M, M] with N = {boxes.shape[0]} boxes, got {list(masks.shape)}"
            )
        legacy = self.legacy_plus_one if legacy_plus_one is None else bool(legacy_plus_one)
        legacy = resolve_legacy_plus_one(legacy)
        width, height = (int(v) for v in image_size)
        pasted = paste_masks(masks.float(), boxes.to(masks.device), height, width, threshold=self.threshold,
                             padding=self.padding, legacy_plus_one=legacy)
        if self.threshold < 0:
            pasted = (pasted * 255).to(torch.uint8)
        return pasted

    def forward_single_image(self, masks, boxes):
        """masks: Tensor[N, 1, M, M]; boxes: BoxList of N boxes -> Tensor[N, 1, H, W] uint8."""
        boxes = boxes.convert("xyxy")
        legacy = boxes.legacy_plus_one if self.legacy_plus_one is None else self.legacy_plus_one
        return self.paste(masks, boxes.bbox, boxes.size, legacy_plus_one=legacy)

    def __call__(self, masks, boxes):
        """masks: list (per image) of Tensor[N_i, 1, M, M]; boxes: list[BoxList] (or one BoxList)
        -> list of Tensor[N_i, 1, H_i, W_i] uint8."""
        if isinstance(boxes, BoxList):
            boxes = [boxes]
        if len(boxes) != len(masks):
            raise ValueError(f"Masker: {len(masks)} mask tensors for {len(boxes)} images")
        results = []
        for masks_per_image, boxes_per_image in zip(masks, boxes):
            if masks_per_image.shape[0] != len(boxes_per_image):
                raise ValueError(
                    f"Masker: {masks_per_image.shape[0]} masks for {len(boxes_per_image)} boxes"
                )
            results.append(self.forward_single_image(masks_per_image, boxes_per_image))
        return results


class MaskPostProcessor(nn.Module):
    """Probabilities of each detection's predicted class, attached as the field "mask".

    Arguments:
        masker (Masker or None): when given, the masks are pasted into the image.
    """

    def __init__(self, masker=None):
        super().__init__()
        self.masker = masker

    def forward(self, x, boxes):
        """
        Arguments:
            x: Tensor[K, num_classes, M, M] mask logits (K = all detections of all images).
            boxes: list[BoxList] with field "labels" (the detections).
        Returns:
            list[BoxList]: the detections with every field kept plus "mask": Tensor[N, 1, M, M]
            probabilities, or Tensor[N, 1, H, W] uint8 with a masker.
        """
        num_masks = x.shape[0]
        labels = torch.cat([box.get_field("labels") for box in boxes]) if boxes else x.new_zeros(0)
        if labels.numel() != num_masks:
            raise ValueError(f"MaskPostProcessor: {num_masks} masks for {labels.numel()} detections")
        index = torch.arange(num_masks, device=x.device)
        # the predicted class's channel only, then the sigmoid (not all classes')
        mask_prob = x[index, labels.to(device=x.device, dtype=torch.int64)][:, None].sigmoid()
        mask_prob = mask_prob.split([box.bbox.shape[0] for box in boxes], dim=0)  # (symbolic under torch.export)
        if self.masker:
            mask_prob = self.masker(mask_prob, boxes)
        results = []
        for prob, box in zip(mask_prob, boxes):
            result = BoxList(box.bbox, box.size, mode="xyxy", legacy_plus_one=box.legacy_plus_one)
            for field in box.fields():
                result.add_field(field, box.get_field(field))
            result.add_field("mask", prob)
            results.append(result)
        return results


def make_roi_mask_post_processor(cfg):
    """MaskPostProcessor; with MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS a Masker (threshold
    POSTPROCESS_MASKS_THRESHOLD, padding 1, the box convention of MODEL.BOX_CONVENTION_LEGACY)."""
    from maskrcnn.config.conventions import box_convention

    masker = None
    if cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS:
        masker = Masker(
            threshold=cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD,
            padding=1,
            legacy_plus_one=box_convention(cfg).legacy_plus_one,
        )
    return MaskPostProcessor(masker)
