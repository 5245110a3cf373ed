"""The four parts every RoI head (box, mask, keypoint) is made of."""
from torch import nn


class ROIHeadParts(nn.Module):
    """Holds a RoI head's parts under maskrcnn-benchmark's attribute names.

    Arguments:
        feature_extractor: module (features, list[BoxList]) -> per-RoI features, with ``out_channels``.
        predictor: module per-RoI features -> the head's raw outputs (logits, deltas, heatmaps).
        post_processor: module turning raw outputs into fields of the detections (eval).
        loss_evaluator: callable computing the head's losses (training).
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.predictor = predictor
        self.post_processor = post_processor
        self.loss_evaluator = loss_evaluator
