"""ROIMaskHead: the Mask R-CNN head (feature extractor + predictor + loss / post-processing)."""
import torch

from maskrcnn.structures.bounding_box import BoxList

from ..roi_head_base import ROIHeadParts
from .inference import make_roi_mask_post_processor
from .loss import make_roi_mask_loss_evaluator
from .roi_mask_feature_extractors import make_roi_mask_feature_extractor
from .roi_mask_predictors import make_roi_mask_predictor

__all__ = ["keep_only_positive_boxes", "ROIMaskHead", "build_roi_mask_head"]


def keep_only_positive_boxes(boxes):
    """The RoIs labelled foreground (field "labels" > 0) of each image.

    Arguments:
        boxes: list[BoxList] with field "labels".
    Returns:
        (positive_boxes list[BoxList], positive_inds list[Tensor[M_i] bool]).
    """
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"keep_only_positive_boxes: boxes must be a list of BoxList, got {type(boxes).__name__}")
    positive_boxes, positive_inds = [], []
    for position, boxes_per_image in enumerate(boxes):
        if not isinstance(boxes_per_image, BoxList) or not boxes_per_image.has_field("labels"):
            raise ValueError(
                f"keep_only_positive_boxes: boxes[{position}] must be a BoxList with a 'labels' field"
            )
        inds_mask = boxes_per_image.get_field("labels") > 0
        positive_boxes.append(boxes_per_image[torch.nonzero(inds_mask).squeeze(1)])
        positive_inds.append(inds_mask)
    return positive_boxes, positive_inds


class ROIMaskHead(ROIHeadParts):
    """
    Arguments:
        feature_extractor: module (features, list[BoxList]) -> Tensor[K, C, R, R] (``out_channels``).
        predictor: module Tensor[K, C, R, R] -> mask logits Tensor[K, num_classes, M, M].
        post_processor: MaskPostProcessor (eval).
        loss_evaluator: MaskRCNNLossComputation (training).
        share_box_features (bool): in training, ``features`` are the box head's RoI features
            (one row per RoI of ``proposals``), and the positive rows are used directly
            (MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR).
    Attribute names follow maskrcnn-benchmark (``roi_heads.mask.feature_extractor.mask_fcn1.weight``,
    ``roi_heads.mask.predictor.mask_fcn_logits.weight``).
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator,
                 share_box_features=False):
        super().__init__(feature_extractor, predictor, post_processor, loss_evaluator)
        self.share_box_features = share_box_features

    @classmethod
    def from_config(cls, cfg, in_channels):
        feature_extractor = make_roi_mask_feature_extractor(cfg, in_channels)
        return cls(
            feature_extractor,
            make_roi_mask_predictor(cfg, feature_extractor.out_channels),
            make_roi_mask_post_processor(cfg),
            make_roi_mask_loss_evaluator(cfg),
            share_box_features=cfg.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR,
        )

    def forward(self, features, proposals, targets=None):
        """
        Arguments:
            features: list[Tensor[N, C, H_l, W_l]] backbone feature maps, or (training with
                shared box features) Tensor[K, C, R, R], the box head's features of ``proposals``.
            proposals: list[BoxList]: training: the box head's sampled RoIs (field "labels");
                eval: the detections (field "labels").
            targets: list[BoxList] with fields "labels" and "masks" (training only).
        Returns:
            (x, detections, losses): training: the features of the positive RoIs, all
            ``proposals`` unchanged, {"loss_mask"}; eval: the features, the detections with the
            field "mask", {}.
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIMaskHead: targets must be given in training mode")
            all_proposals = proposals
            proposals, positive_inds = keep_only_positive_boxes(proposals)
        if self.training and self.share_box_features and isinstance(features, torch.Tensor):
            x = features[torch.cat(positive_inds, dim=0)]
        else:
            x = self.feature_extractor(features, proposals)
        mask_logits = self.predictor(x)

        if not self.training:
            return x, self.post_processor(mask_logits, proposals), {}

        loss_mask = self.loss_evaluator(proposals, mask_logits, targets)
        return x, all_proposals, dict(loss_mask=loss_mask)


def build_roi_mask_head(cfg, in_channels):
    """ROIMaskHead from the config (MODEL.ROI_MASK_HEAD, MODEL.ROI_HEADS), on ``in_channels`` features."""
    return ROIMaskHead.from_config(cfg, in_channels)
