"""Box regression targets: the (dx, dy, dw, dh) parametrisation of R-CNN.

A reference box is described relative to a proposal (anchor) by the shift of its centre in units of
the proposal's size and the log-ratio of the sizes, each multiplied by a weight:

    dx = wx * (gx - px) / pw        dw = ww * log(gw / pw)
    dy = wy * (gy - py) / ph        dh = wh * log(gh / ph)

where (px, py, pw, ph) / (gx, gy, gw, gh) are the centre and size of proposal / reference box.
Widths are x2 - x1 + 1 under the legacy "+1" convention of maskrcnn-benchmark (the default) and
x2 - x1 under the modern one of torchvision / Detectron2 (``legacy_plus_one=False``).
"""
import math

import torch

__all__ = ["BoxCoder"]


class BoxCoder(object):
    """Encodes boxes as regression targets relative to proposals, and decodes them back.

    Arguments:
        weights: (wx, wy, ww, wh) multipliers of the four deltas, e.g. (1, 1, 1, 1) for the RPN
            and (10, 10, 5, 5) for the Fast R-CNN box head.
        bbox_xform_clip: dw / dh are clamped to this value before ``exp`` when decoding, so that
            a wild prediction cannot overflow (the default allows a 1000 / 16 growth).
        legacy_plus_one: True for width = x2 - x1 + 1 (maskrcnn-benchmark), False for x2 - x1.
    """

    def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16), legacy_plus_one=True):
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4:
            raise ValueError(f"BoxCoder: weights must have 4 values (wx, wy, ww, wh), got {len(weights)}")
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip
        self.legacy_plus_one = bool(legacy_plus_one)

    def _centres_and_sizes(self, boxes):
        """Tensor[N, 4] xyxy -> four Tensor[N]: centre x, centre y, width, height."""
        to_remove = 1 if self.legacy_plus_one else 0
        widths = boxes[:, 2] - boxes[:, 0] + to_remove
        heights = boxes[:, 3] - boxes[:, 1] + to_remove
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        return ctr_x, ctr_y, widths, heights

    def encode(self, reference_boxes, proposals):
        """Regression targets that turn ``proposals`` into ``reference_boxes``.

        Arguments:
            reference_boxes: Tensor[N, 4] (x1, y1, x2, y2), e.g. the matched ground truth.
            proposals: Tensor[N, 4] (x1, y1, x2, y2), e.g. the anchors.
        Returns:
            Tensor[N, 4]: (dx, dy, dw, dh) per box.
        """
        if reference_boxes.shape != proposals.shape or (proposals.dim() != 2 or proposals.shape[-1] != 4):
            raise ValueError(
                "BoxCoder.encode: reference_boxes and proposals must both be [N, 4], got "
                f"{list(reference_boxes.shape)} and {list(proposals.shape)}"
            )
        ex_ctr_x, ex_ctr_y, ex_widths, ex_heights = self._centres_and_sizes(proposals)
        gt_ctr_x, gt_ctr_y, gt_widths, gt_heights = self._centres_and_sizes(reference_boxes)
        wx, wy, ww, wh = self.weights
        return torch.stack(
            (
                wx * (gt_ctr_x - ex_ctr_x) / ex_widths,
                wy * (gt_ctr_y - ex_ctr_y) / ex_heights,
                ww * torch.log(gt_widths / ex_widths),
                wh * torch.log(gt_heights / ex_heights),
            ),
            dim=1,
        )

    def decode(self, rel_codes, boxes):
        """Apply regression deltas to boxes.

        Arguments:
            rel_codes: Tensor[N, 4 * K]: K sets of (dx, dy, dw, dh) per box (e.g. one per class).
            boxes: Tensor[N, 4] (x1, y1, x2, y2), the boxes the deltas are relative to.
        Returns:
            Tensor[N, 4 * K] of (x1, y1, x2, y2), in ``rel_codes``' dtype. Under the legacy
            convention x2 = centre + w / 2 - 1 (maskrcnn-benchmark), under the modern one
            x2 = centre + w / 2.
        """
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"BoxCoder.decode: boxes must be [N, 4], got {list(boxes.shape)}")
        if rel_codes.dim() != 2 or rel_codes.shape[-1] % 4 != 0 or rel_codes.shape[0] != boxes.shape[0]:
            raise ValueError(
                "BoxCoder.decode: rel_codes must be [N, 4 * K] with N = len(boxes) = "
                f"{boxes.shape[0]}, got {list(rel_codes.shape)}"
            )
        boxes = boxes.to(rel_codes.dtype)
        ctr_x, ctr_y, widths, heights = self._centres_and_sizes(boxes)
        num_boxes = rel_codes.shape[0]
        deltas = rel_codes.reshape(num_boxes, rel_codes.shape[1] // 4, 4)  # [N, K, 4]
        weights = deltas.new_tensor(self.weights)
        deltas = deltas / weights
        dx, dy, dw, dh = deltas.unbind(dim=2)  # each [N, K]
        dw = dw.clamp(max=self.bbox_xform_clip)
        dh = dh.clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        to_remove = 1 if self.legacy_plus_one else 0
        pred_boxes = torch.stack(
            (
                pred_ctr_x - 0.5 * pred_w,
                pred_ctr_y - 0.5 * pred_h,
                pred_ctr_x + 0.5 * pred_w - to_remove,
                pred_ctr_y + 0.5 * pred_h - to_remove,
            ),
            dim=2,
        )
        return pred_boxes.reshape(num_boxes, rel_codes.shape[1])
