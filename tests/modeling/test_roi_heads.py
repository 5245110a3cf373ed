"""CombinedROIHeads: head order, shared feature extractors, and when build_roi_heads builds none."""
import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.roi_heads.box_head.box_head import build_roi_box_head
from maskrcnn.modeling.roi_heads.roi_heads import CombinedROIHeads, build_roi_heads
from maskrcnn.structures.bounding_box import BoxList

FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)


def make_cfg(*opts):
    cfg = default_cfg.clone()
    cfg.merge_from_list([
        "MODEL.ROI_BOX_HEAD.POOLER_SCALES", FPN_SCALES,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 16,
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3,
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 8,
        *opts,
    ])
    return cfg


class RecordingHead(nn.Module):
    """Stands in for a mask / keypoint head: records its inputs, adds a field and a loss."""

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.feature_extractor = nn.Linear(1, 1)
        self.seen = None

    def forward(self, features, detections, targets=None):
        self.seen = features
        for d in detections:
            d.add_field(self.name, torch.ones(len(d)))
        losses = {f"loss_{self.name}": torch.tensor(1.0)} if self.training else {}
        return features, detections, losses


def inputs():
    features = [torch.randn(1, 8, int(64 * s), int(96 * s)) for s in FPN_SCALES]
    gt = BoxList(torch.tensor([[10.0, 10.0, 40.0, 30.0]]), (96, 64))
    gt.add_field("labels", torch.tensor([2]))
    proposals = [BoxList(torch.tensor([[10.0, 10.0, 40.0, 30.0], [50.0, 30.0, 90.0, 60.0]]), (96, 64))]
    return features, proposals, [gt]


@pytest.mark.parametrize("share", [True, False])
def test_mask_and_keypoint_heads_follow_the_box_head(share):
    cfg = make_cfg(
        "MODEL.MASK_ON", True, "MODEL.KEYPOINT_ON", True,
        "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", share,
        "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", share,
    )
    box = build_roi_box_head(cfg, 8)
    heads = CombinedROIHeads(
        cfg, [("box", box), ("mask", RecordingHead("mask")), ("keypoint", RecordingHead("keypoint"))]
    )
    assert (heads.mask.feature_extractor is box.feature_extractor) == share
    assert (heads.keypoint.feature_extractor is box.feature_extractor) == share

    features, proposals, targets = inputs()
    heads.train()
    x, detections, losses = heads(features, proposals, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_keypoint"}
    # in training a sharing head gets the box head's RoI features, otherwise the backbone's
    assert (heads.mask.seen is features) != share
    assert isinstance(heads.mask.seen, torch.Tensor) == share
    assert detections[0].has_field("mask") and detections[0].has_field("keypoint")

    heads.eval()
    with torch.no_grad():
        _, detections, losses = heads(features, proposals)
    assert losses == {}
    assert heads.mask.seen is features and heads.keypoint.seen is features
    assert detections[0].has_field("scores") and detections[0].has_field("mask")


def test_build_roi_heads_box_only():
    heads = build_roi_heads(make_cfg(), 8)
    assert isinstance(heads, CombinedROIHeads) and list(heads.keys()) == ["box"]
    assert "box.feature_extractor.fc6.weight" in heads.state_dict()


def test_no_roi_heads_for_rpn_only_and_retinanet():
    assert build_roi_heads(make_cfg("MODEL.RPN_ONLY", True), 8) == []
    assert build_roi_heads(make_cfg("MODEL.RETINANET_ON", True), 8) == []
    with pytest.raises(ValueError, match="RPN_ONLY"):
        build_roi_heads(make_cfg("MODEL.RPN_ONLY", True, "MODEL.MASK_ON", True), 8)


def test_combined_heads_need_a_box_head():
    with pytest.raises(ValueError, match="box"):
        CombinedROIHeads(make_cfg(), [("mask", RecordingHead("mask"))])
