"""Keypoint-head predictor: per-RoI features Tensor[K, C, R, R] -> heatmap logits Tensor[K, NK, 4R, 4R].

``KeypointRCNNPredictor`` (registered in ``ROI_KEYPOINT_PREDICTOR``): ``kps_score_lowres``, a
4x4 stride-2 transposed conv (padding 1) to one channel per keypoint (2x), then bilinear
upsampling by 2 (half-pixel centres). NK = MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES.
"""
from torch import nn

from maskrcnn.layers import ConvTranspose2d, interpolate
from maskrcnn.modeling import registry

__all__ = ["KeypointHeatmapPredictor", "KeypointRCNNPredictor", "make_roi_keypoint_predictor"]


class KeypointHeatmapPredictor(nn.Module):
    """Transposed conv (kernel ``deconv_kernel``, stride 2) to ``num_keypoints`` channels, then
    bilinear upsampling by ``up_scale``. Weights MSRAFill (kaiming_normal_, fan_out), bias zero."""

    def __init__(self, in_channels, num_keypoints, deconv_kernel=4, up_scale=2):
        super().__init__()
        if num_keypoints < 1:
            raise ValueError(
                f"KeypointRCNNPredictor: num_keypoints (MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES) must be >= 1, "
                f"got {num_keypoints}"
            )
        self.kps_score_lowres = ConvTranspose2d(
            in_channels, num_keypoints, deconv_kernel, stride=2, padding=deconv_kernel // 2 - 1
        )
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = up_scale
        self.out_channels = num_keypoints

    def forward(self, x):
        """x: Tensor[K, C, R, R] -> Tensor[K, num_keypoints, 2 * up_scale * R, ...] logits."""
        x = self.kps_score_lowres(x)
        return interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)


@registry.ROI_KEYPOINT_PREDICTOR.register("KeypointRCNNPredictor")
class KeypointRCNNPredictor(KeypointHeatmapPredictor):
    """KeypointHeatmapPredictor with MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES keypoints."""

    def __init__(self, cfg, in_channels):
        super().__init__(in_channels, cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES)


def make_roi_keypoint_predictor(cfg, in_channels):
    """The predictor registered as MODEL.ROI_KEYPOINT_HEAD.PREDICTOR, built on ``in_channels``."""
    name = cfg.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR
    if name not in registry.ROI_KEYPOINT_PREDICTOR:
        raise KeyError(
            f"MODEL.ROI_KEYPOINT_HEAD.PREDICTOR: {name!r} is not registered; "
            f"registered: {sorted(registry.ROI_KEYPOINT_PREDICTOR)}"
        )
    return registry.ROI_KEYPOINT_PREDICTOR[name](cfg, in_channels)
