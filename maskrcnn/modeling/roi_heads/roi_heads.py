"""CombinedROIHeads: the box head followed by the optional mask and keypoint heads."""
import torch

from .box_head.box_head import build_roi_box_head

__all__ = ["CombinedROIHeads", "build_roi_heads"]


class CombinedROIHeads(torch.nn.ModuleDict):
    """The RoI heads of a two-stage detector, as a ModuleDict named "box", "mask", "keypoint".

    The box head runs first; the mask / keypoint heads then run on its detections (eval) or its
    sampled RoIs (training). With MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR (or the keypoint
    one), the head reuses the box head's feature extractor module, and in training it receives the
    box head's RoI features instead of the backbone features.

    Arguments:
        cfg: the config (MODEL.MASK_ON, MODEL.KEYPOINT_ON and the SHARE_* keys are read).
        heads: list of (name, module) pairs.
    """

    def __init__(self, cfg, heads):
        super().__init__(heads)
        if "box" not in self:
            raise ValueError("CombinedROIHeads: a 'box' head is required")
        self.cfg = cfg.clone()
        self.share_mask_features = bool(
            cfg.MODEL.MASK_ON and "mask" in self and cfg.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR
        )
        self.share_keypoint_features = bool(
            cfg.MODEL.KEYPOINT_ON and "keypoint" in self and cfg.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR
        )
        if self.share_mask_features:
            self.mask.feature_extractor = self.box.feature_extractor
        if self.share_keypoint_features:
            self.keypoint.feature_extractor = self.box.feature_extractor

    def forward(self, features, proposals, targets=None):
        """
        features: list[Tensor[N, C, H_l, W_l]]; proposals: list[BoxList]; targets: list[BoxList].
        Returns (x, detections, losses): the last head's features, the detections (list[BoxList]
        with the fields each head adds) and the merged loss dict (empty in eval).
        """
        losses = {}
        x, detections, loss_box = self.box(features, proposals, targets)
        losses.update(loss_box)
        if "mask" in self:
            mask_features = x if (self.training and self.share_mask_features) else features
            x, detections, loss_mask = self.mask(mask_features, detections, targets)
            losses.update(loss_mask)
        if "keypoint" in self:
            keypoint_features = x if (self.training and self.share_keypoint_features) else features
            x, detections, loss_keypoint = self.keypoint(keypoint_features, detections, targets)
            losses.update(loss_keypoint)
        return x, detections, losses


def build_roi_heads(cfg, in_channels):
    """CombinedROIHeads for the config, or an empty list when there are no RoI heads
    (MODEL.RETINANET_ON or MODEL.RPN_ONLY). The mask / keypoint heads are imported only when
    MODEL.MASK_ON / MODEL.KEYPOINT_ON ask for them."""
    if cfg.MODEL.RETINANET_ON:
        return []
    if cfg.MODEL.RPN_ONLY:
        if cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON:
            raise ValueError(
                "MODEL.RPN_ONLY: an RPN-only model has no box head, so MODEL.MASK_ON and "
                "MODEL.KEYPOINT_ON must be False"
            )
        return []
    heads = [("box", build_roi_box_head(cfg, in_channels))]
    if cfg.MODEL.MASK_ON:
        from .mask_head.mask_head import build_roi_mask_head

        heads.append(("mask", build_roi_mask_head(cfg, in_channels)))
    if cfg.MODEL.KEYPOINT_ON:
        from .keypoint_head.keypoint_head import build_roi_keypoint_head

        heads.append(("keypoint", build_roi_keypoint_head(cfg, in_channels)))
    return CombinedROIHeads(cfg, heads)
