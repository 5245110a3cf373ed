"""Mask post-processing: per-detection mask probabilities, optionally pasted into the image.

``MaskPostProcessor`` turns the logits Tensor[K, num_classes, M, M] into probabilities of each
detection's predicted class and attaches them as the field "mask" (Tensor[N, 1, M, M]); with a
``Masker`` the field is instead the image-sized masks Tensor[N, 1, H, W] (uint8).

``Masker`` pastes M x M masks into the image, every detection of an image at once:

* legacy convention (maskrcnn-benchmark): the mask is padded by ``padding`` zero cells, its box
  enlarged by (M + 2 * padding) / M about the centre, truncated to integers (x0, y0, x1, y1),
  and the padded mask resized bilinearly (half-pixel centres, edge values repeated) onto the
  (x1 - x0 + 1) x (y1 - y0 + 1) pixels of that box;
* modern convention (Detectron2's ``paste_masks_in_image``): image pixel (x, y) reads the mask
  at its centre (x + 0.5, y + 0.5) mapped linearly from the box [x1, x2] x [y1, y2] onto the
  mask, zero outside it (with padding >= 1 this is exactly Detectron2's result).

Both are one bilinear lookup per image pixel, u = (x + 0.5 - a) * P / L - 0.5 in padded-mask
cells (P = M + 2 * padding; a, L the pasted window's start and length), evaluated over each
detection's window only:

* on accelerators, for groups of detections at a time: separable bilinear weights (two small
  matrix products per group, windows of similar size padded to the group's largest) and one
  scatter per group;
* on the CPU, one detection at a time (which measured fastest there: each window costs only its
  own pixels); the legacy rule is then literally F.interpolate of the padded mask to its integer
  box, the modern one the separable weights.
"""
import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import resolve_legacy_plus_one

__all__ = ["Masker", "MaskPostProcessor", "make_roi_mask_post_processor"]

# windows of one chunk hold at most this many sampled pixels (bounds the temporary memory)
_PASTE_CHUNK_PIXELS = 1 << 22


def _paste_windows(boxes, mask_size, padding, legacy_plus_one):
    """Start and length of the mapped window (a, L) and the integer pixel range [lo, hi) that is
    written, per axis: returns (starts [N, 2], lengths [N, 2], lo [N, 2], hi [N, 2]) for (x, y)."""
    scale = (mask_size + 2.0 * padding) / mask_size
    centres = (boxes[:, 0:2] + boxes[:, 2:4]) * 0.5
    halves = (boxes[:, 2:4] - boxes[:, 0:2]) * 0.5 * scale
    low, high = centres - halves, centres + halves
    if legacy_plus_one:
        low_int, high_int = low.trunc(), high.trunc()
        lengths = (high_int - low_int + 1).clamp(min=1)
        return low_int, lengths, low_int, low_int + lengths
    return low, (high - low).clamp(min=1e-6), low.floor(), high.ceil()



def _interpolation_weights(pixels, starts, lengths, cells, zero_outside):
    """Bilinear weights Tensor[n, K, P] taking P padded-mask cells to K pixels per detection.

    pixels: Tensor[n, K] pixel indices; starts, lengths: Tensor[n, 1] (a, L); cells: P.
    Pixel x reads cell position u = (x + 0.5 - a) * P / L - 0.5. Edge rule: ``zero_outside``
    drops taps outside the mask (grid_sample "zeros"); otherwise u is clamped to [0, P - 1]
    (the edge value repeats, as F.interpolate does).
    """
    positions = (pixels + 0.5 - starts) * (cells / lengths) - 0.5
    if not zero_outside:
        positions = positions.clamp(0, cells - 1)
    low = positions.floor()
    frac = positions - low
    weights = positions.new_zeros(positions.shape + (cells,))
    for index, weight in ((low, 1 - frac), (low + 1, frac)):
        inside = (index >= 0) & (index <= cells - 1)
        weights.scatter_add_(2, index.clamp(0, cells - 1).long()[..., None], (weight * inside)[..., None])
    return weights


class _WindowSampler(object):
    """Samples the padded masks over pixel windows: ``sampler(ids, Ww, Wh)`` -> Tensor[n, Wh, Ww]
    uint8 for detections ``ids``, window n starting at pixel ``lo[ids[n]]`` (the mapping of the
    module docstring, then the threshold or the 0..255 scaling). Bilinear interpolation is
    separable, so a window is ``rows (Wh x P) @ mask (P x P) @ cols (P x Ww)``."""

    def __init__(self, masks, starts, lengths, lo, zero_outside, threshold):
        self.masks, self.starts, self.lengths, self.lo = masks[:, 0], starts, lengths, lo
        self.zero_outside = zero_outside
        self.threshold = threshold

    def __call__(self, ids, window_w, window_h):
        device = self.masks.device
        starts, lengths, lo = self.starts[ids], self.lengths[ids], self.lo[ids]
        cells = self.masks.shape[-1]
        cols = lo[:, 0:1] + torch.arange(window_w, device=device, dtype=lo.dtype)  # pixel x [n, Ww]
        rows = lo[:, 1:2] + torch.arange(window_h, device=device, dtype=lo.dtype)  # pixel y [n, Wh]
        col_weights = _interpolation_weights(cols, starts[:, 0:1], lengths[:, 0:1], cells, self.zero_outside)
        row_weights = _interpolation_weights(rows, starts[:, 1:2], lengths[:, 1:2], cells, self.zero_outside)
        values = torch.matmul(torch.matmul(row_weights, self.masks[ids]), col_weights.transpose(1, 2))
        return _binarize(values, self.threshold)

    def resized(self, i, window_w, window_h):
        """The window of detection ``i`` as Tensor[Wh, Ww] uint8, by F.interpolate of the whole
        padded mask to its integer box size (the legacy rule only, where a and L are integers)."""
        (start_x, start_y), (length_x, length_y) = self.starts[i].tolist(), self.lengths[i].tolist()
        (x0, y0) = self.lo[i].tolist()
        full = F.interpolate(self.masks[i][None, None], size=(int(length_y), int(length_x)), mode="bilinear",
                             align_corners=False)[0, 0]
        top, left = int(y0 - start_y), int(x0 - start_x)
        return _binarize(full[top:top + window_h, left:left + window_w], self.threshold)


def _binarize(values, threshold):
    """values > threshold as uint8 0 / 1; a negative threshold keeps values * 255 as uint8."""
    if threshold >= 0:
        return (values > threshold).to(torch.uint8)
    return (values * 255).to(torch.uint8)


def _paste_batched(sampler, extent, image_size):
    """All windows through few grid_sample calls: detections sorted by window area and grouped
    so a group's padded windows hold at most _PASTE_CHUNK_PIXELS pixels; each group is written
    with one scatter (pixels of a padded window outside its detection's window go to a spare
    slot past the end)."""
    width, height = image_size
    num = extent.shape[0]
    device = extent.device
    flat = torch.zeros(num * height * width + 1, dtype=torch.uint8, device=device)
    spare = num * height * width
    areas = extent[:, 0] * extent[:, 1]
    order = torch.argsort(areas, descending=True)
    sizes = extent[order].tolist()
    begin = 0
    while begin < num and sizes[begin][0] * sizes[begin][1] > 0:
        window_w, window_h = sizes[begin]
        end = begin + 1
        while end < num and sizes[end][0] * sizes[end][1] > 0:
            grown_w, grown_h = max(window_w, sizes[end][0]), max(window_h, sizes[end][1])
            if (end - begin + 1) * grown_w * grown_h > _PASTE_CHUNK_PIXELS:
                break
            window_w, window_h, end = grown_w, grown_h, end + 1
        ids = order[begin:end]
        values = sampler(ids, window_w, window_h)
        lo = sampler.lo[ids].long()
        cols = lo[:, 0:1] + torch.arange(window_w, device=device)
        rows = lo[:, 1:2] + torch.arange(window_h, device=device)
        index = (ids[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
        inside = (
            (torch.arange(window_w, device=device) < extent[ids, 0:1])[:, None, :]
            & (torch.arange(window_h, device=device) < extent[ids, 1:2])[:, :, None]
        )
        flat[torch.where(inside, index, spare).reshape(-1)] = values.reshape(-1)
        begin = end
    return flat[:spare].view(num, 1, height, width)


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

    def paste(self, masks, boxes, image_size, legacy_plus_one=None, batched=None):
        """
        Arguments:
            masks: Tensor[N, 1, M, M] (or [N, M, M]) probabilities.
            boxes: Tensor[N, 4] (x1, y1, x2, y2).
            image_size: (width, height).
            legacy_plus_one: overrides the Masker's convention for this call.
            batched: sample the windows of many detections per call (True), or one detection
                at a time (False). None: batched on accelerators, where launches dominate; one at
                a time on the CPU, where each window then costs only its own pixels. Both give the
                same result.
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
        num, device = masks.shape[0], masks.device
        if num == 0 or width == 0 or height == 0:
            return torch.zeros((num, 1, height, width), dtype=torch.uint8, device=device)
        mask_size = masks.shape[-1]
        masks = F.pad(masks.float(), (self.padding,) * 4) if self.padding else masks.float()
        starts, lengths, lo, hi = _paste_windows(boxes.to(device).float(), mask_size, self.padding, legacy)
        # clip the written pixel range to the image
        lo = torch.maximum(lo, torch.zeros_like(lo))
        hi = torch.minimum(hi, torch.tensor([width, height], device=device, dtype=hi.dtype))
        extent = (hi - lo).clamp(min=0).long()  # [N, 2] window width, height
        sampler = _WindowSampler(masks, starts, lengths, lo, not legacy, self.threshold)
        if batched is None:
            batched = device.type != "cpu"
        if batched:
            return _paste_batched(sampler, extent, (width, height))
        result = torch.zeros((num, 1, height, width), dtype=torch.uint8, device=device)
        for i, (window_w, window_h) in enumerate(extent.tolist()):
            if window_w and window_h:
                x0, y0 = (int(v) for v in lo[i].tolist())
                if legacy:
                    values = sampler.resized(i, window_w, window_h)
                else:
                    values = sampler(torch.tensor([i], device=device), window_w, window_h)[0]
                result[i, 0, y0:y0 + window_h, x0:x0 + window_w] = values
        return result

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
        mask_prob = x.sigmoid()[index, labels.to(device=x.device, dtype=torch.int64)][:, None]
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
