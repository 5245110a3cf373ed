"""ROIBoxHead: the Fast R-CNN head (feature extractor + predictor + loss / post-processing)."""
import torch

from ..roi_head_base import ROIHeadParts
from .inference import make_roi_box_post_processor
from .loss import make_roi_box_loss_evaluator
from .roi_box_feature_extractors import make_roi_box_feature_extractor
from .roi_box_predictors import make_roi_box_predictor

__all__ = ["ROIBoxHead", "build_roi_box_head"]


class ROIBoxHead(ROIHeadParts):
    """
    Arguments:
        feature_extractor: module (features, list[BoxList]) -> per-RoI features, with ``out_channels``.
        predictor: module per-RoI features -> (class_logits, box_regression).
        post_processor: PostProcessor (eval).
        loss_evaluator: FastRCNNLossComputation (training).
    Attribute names follow maskrcnn-benchmark (``roi_heads.box.feature_extractor.fc6.weight``,
    ``roi_heads.box.predictor.cls_score.weight``).
    """

    @classmethod
    def from_config(cls, cfg, in_channels):
        feature_extractor = make_roi_box_feature_extractor(cfg, in_channels)
        return cls(
            feature_extractor,
            make_roi_box_predictor(cfg, feature_extractor.out_channels),
            make_roi_box_post_processor(cfg),
            make_roi_box_loss_evaluator(cfg),
        )

    def forward(self, features, proposals, targets=None):
        """
        Arguments:
            features: list[Tensor[N, C, H_l, W_l]], the backbone's feature maps.
            proposals: list[BoxList], the RoIs of each image.
            targets: list[BoxList] with field "labels" (training only).
        Returns:
            (x, detections, losses):
            training: x = features of the sampled RoIs, detections = the sampled RoIs (fields
            "labels", "regression_targets"), losses = {"loss_classifier", "loss_box_reg"};
            eval: x = features of all proposals, detections = list[BoxList] with "scores" and
            "labels", losses = {}.
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIBoxHead: targets must be given in training mode")
            with torch.no_grad():
                proposals = self.loss_evaluator.subsample(proposals, targets)

        x = self.feature_extractor(features, proposals)
        class_logits, box_regression = self.predictor(x)

        if not self.training:
            return x, self.post_processor((class_logits, box_regression), proposals), {}

        loss_classifier, loss_box_reg = self.loss_evaluator([class_logits], [box_regression])
        return x, proposals, dict(loss_classifier=loss_classifier, loss_box_reg=loss_box_reg)


def build_roi_box_head(cfg, in_channels):
    """ROIBoxHead from the config (MODEL.ROI_BOX_HEAD, MODEL.ROI_HEADS), on ``in_channels`` features."""
    return ROIBoxHead.from_config(cfg, in_channels)
