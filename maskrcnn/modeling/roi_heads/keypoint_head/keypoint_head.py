"""ROIKeypointHead: the Keypoint R-CNN head (feature extractor + predictor + loss / post-processing)."""
import torch

from ..roi_head_base import ROIHeadParts
from .inference import make_roi_keypoint_post_processor
from .loss import make_roi_keypoint_loss_evaluator
from .roi_keypoint_feature_extractors import make_roi_keypoint_feature_extractor
from .roi_keypoint_predictors import make_roi_keypoint_predictor

__all__ = ["ROIKeypointHead", "build_roi_keypoint_head"]


class ROIKeypointHead(ROIHeadParts):
    """
    Arguments:
        feature_extractor: module (features, list[BoxList]) -> Tensor[K, C, R, R] (``out_channels``).
        predictor: module Tensor[K, C, R, R] -> heatmap logits Tensor[K, NK, M, M].
        post_processor: KeypointPostProcessor (eval).
        loss_evaluator: KeypointRCNNLossComputation (training).
    Attribute names follow maskrcnn-benchmark (``roi_heads.keypoint.feature_extractor.conv_fcn1.weight``,
    ``roi_heads.keypoint.predictor.kps_score_lowres.weight``).
    """

    @classmethod
    def from_config(cls, cfg, in_channels):
        if cfg.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR:
            raise ValueError(
                "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR must be False: the keypoint head "
                "samples its own RoIs and pools its own features (maskrcnn-benchmark's keypoint configs "
                "set it False)"
            )
        feature_extractor = make_roi_keypoint_feature_extractor(cfg, in_channels)
        return cls(
            feature_extractor,
            make_roi_keypoint_predictor(cfg, feature_extractor.out_channels),
            make_roi_keypoint_post_processor(cfg),
            make_roi_keypoint_loss_evaluator(cfg),
        )

    def forward(self, features, proposals, targets=None):
        """
        Arguments:
            features: list[Tensor[N, C, H_l, W_l]], the backbone's feature maps.
            proposals: list[BoxList]: training: the box head's RoIs; eval: the detections.
            targets: list[BoxList] with fields "labels" and "keypoints" (training only).
        Returns:
            (x, detections, losses): training: the features of the sampled positive RoIs, those
            RoIs (fields "labels", "keypoints"), {"loss_kp"}; eval: the features, the detections
            with the field "keypoints", {}.
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIKeypointHead: targets must be given in training mode")
            with torch.no_grad():
                proposals = self.loss_evaluator.subsample(proposals, targets)

        x = self.feature_extractor(features, proposals)
        kp_logits = self.predictor(x)

        if not self.training:
            return x, self.post_processor(kp_logits, proposals), {}

        loss_kp = self.loss_evaluator(proposals, kp_logits)
        return x, proposals, dict(loss_kp=loss_kp)


def build_roi_keypoint_head(cfg, in_channels):
    """ROIKeypointHead from the config (MODEL.ROI_KEYPOINT_HEAD, MODEL.ROI_HEADS), on ``in_channels`` features."""
    return ROIKeypointHead.from_config(cfg, in_channels)
