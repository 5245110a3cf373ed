"""GeneralizedRCNN: backbone -> RPN (or RetinaNet) -> RoI heads."""
from torch import nn

from maskrcnn.structures.image_list import to_image_list

from ..backbone import build_backbone
from ..roi_heads.roi_heads import build_roi_heads
from ..rpn.rpn import build_rpn

__all__ = ["GeneralizedRCNN"]


class GeneralizedRCNN(nn.Module):
    """The two-stage (or RPN-only / RetinaNet) detector of maskrcnn-benchmark.

    Attributes: ``backbone`` (build_backbone), ``rpn`` (build_rpn: RPN or RetinaNet),
    ``roi_heads`` (CombinedROIHeads, or an empty list when the model has none).
    Images given as tensors are batched with ``to_image_list`` padded to a multiple of
    DATALOADER.SIZE_DIVISIBILITY.
    """

    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.rpn = build_rpn(cfg, self.backbone.out_channels)
        self.roi_heads = build_roi_heads(cfg, self.backbone.out_channels)
        self.size_divisibility = cfg.DATALOADER.SIZE_DIVISIBILITY

    def forward(self, images, targets=None):
        """
        Arguments:
            images: an ImageList, a Tensor[N, C, H, W] / [C, H, W], or a list/tuple of
                Tensor[C, H, W] (padded into one batch).
            targets: list[BoxList], the ground truth of each image (training only; fields
                "labels", and "masks" / "keypoints" for those heads). An image may have no boxes.
        Returns:
            training: dict of scalar losses (RPN's and the heads').
            eval: list[BoxList], one per image: the detections (fields "scores", "labels", plus
            "mask" / "keypoints" when those heads run), or the proposals (field "objectness")
            for RPN-only models.
        """
        if self.training and targets is None:
            raise ValueError("GeneralizedRCNN: targets (list[BoxList], one per image) must be given in training mode")
        images = to_image_list(images, self.size_divisibility)
        if targets is not None and len(targets) != len(images.image_sizes):
            raise ValueError(
                f"GeneralizedRCNN: got {len(images.image_sizes)} images but {len(targets)} targets"
            )
        features = self.backbone(images.tensors)
        proposals, proposal_losses = self.rpn(images, features, targets)
        if self.roi_heads:
            _, result, detector_losses = self.roi_heads(features, proposals, targets)
        else:
            result, detector_losses = proposals, {}

        if self.training:
            losses = {}
            losses.update(detector_losses)
            losses.update(proposal_losses)
            return losses
        return result
