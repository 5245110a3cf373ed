"""Keypoint head: extractor / predictor, heatmap decoding, loss, post-processing, the head."""
import pytest
import torch
from torch.nn import functional as F

from maskrcnn.config import cfg as global_cfg
from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.roi_heads.keypoint_head.inference import (
    KeypointPostProcessor,
    Keypointer,
    heatmaps_to_keypoints,
)
from maskrcnn.modeling.roi_heads.keypoint_head.keypoint_head import build_roi_keypoint_head
from maskrcnn.modeling.roi_heads.keypoint_head.loss import KeypointRCNNLossComputation
from maskrcnn.modeling.roi_heads.keypoint_head.roi_keypoint_feature_extractors import (
    make_roi_keypoint_feature_extractor,
)
from maskrcnn.modeling.roi_heads.keypoint_head.roi_keypoint_predictors import make_roi_keypoint_predictor
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import Keypoints, PersonKeypoints, keypoints_to_heat_map

IMAGE_W, IMAGE_H = 64, 48
NUM_KEYPOINTS = 3


class TriangleKeypoints(Keypoints):
    NAMES = ["top", "left", "right"]
    FLIP_MAP = {"left": "right"}


def make_cfg(**keypoint_head):
    cfg = global_cfg.clone()
    cfg.MODEL.KEYPOINT_ON = True
    head = cfg.MODEL.ROI_KEYPOINT_HEAD
    head.POOLER_SCALES = (0.25, 0.125)
    head.POOLER_RESOLUTION = 7
    head.POOLER_SAMPLING_RATIO = 2
    head.CONV_LAYERS = (8, 8, 8)
    head.RESOLUTION = 28
    head.NUM_CLASSES = NUM_KEYPOINTS
    head.SHARE_BOX_FEATURE_EXTRACTOR = False
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 8
    for key, value in keypoint_head.items():
        setattr(head, key, value)
    return cfg


def features(channels=4):
    torch.manual_seed(0)
    return [torch.randn(1, channels, IMAGE_H // 4, IMAGE_W // 4),
            torch.randn(1, channels, IMAGE_H // 8, IMAGE_W // 8)]


def boxlist(boxes, **fields):
    result = BoxList(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), (IMAGE_W, IMAGE_H))
    for name, value in fields.items():
        result.add_field(name, value)
    return result


def keypoint_targets(visibility=2):
    points = torch.tensor([
        [[14.0, 12.0, visibility], [9.0, 28.0, visibility], [19.0, 28.0, 0]],
        [[45.0, 8.0, visibility], [33.0, 22.0, visibility], [57.0, 22.0, visibility]],
    ])
    gt = boxlist([[8, 10, 20, 30], [30, 5, 60, 25]], labels=torch.tensor([1, 1]))
    gt.add_field("keypoints", TriangleKeypoints(points, (IMAGE_W, IMAGE_H)))
    return gt


def test_extractor_and_predictor_shapes_and_key_names():
    cfg = make_cfg()
    extractor = make_roi_keypoint_feature_extractor(cfg, 4)
    x = extractor(features(), [boxlist([[0, 0, 20, 20], [10, 5, 60, 40]])])
    assert x.shape == (2, 8, 7, 7) and extractor.out_channels == 8
    assert {f"conv_fcn{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")} == set(extractor.state_dict())
    predictor = make_roi_keypoint_predictor(cfg, 8)
    logits = predictor(x)
    assert logits.shape == (2, NUM_KEYPOINTS, 28, 28)  # 2x transposed conv, then 2x upsampling
    assert set(predictor.state_dict()) == {"kps_score_lowres.weight", "kps_score_lowres.bias"}
    assert predictor(x[:0]).shape == (0, NUM_KEYPOINTS, 28, 28)
    assert extractor(features(), [boxlist([])]).shape == (0, 8, 7, 7)


def test_default_config_predicts_17_keypoints_at_56():
    cfg = global_cfg.clone()
    predictor = make_roi_keypoint_predictor(cfg, 16)
    assert predictor(torch.randn(1, 16, 14, 14)).shape == (1, 17, 56, 56)


@pytest.mark.parametrize("roi", [(10.0, 20.0, 66.0, 76.0), (3.0, 5.0, 115.0, 61.0), (2.5, 4.2, 30.1, 17.9)])
def test_heatmaps_to_keypoints_recovers_the_peak(roi):
    size = 56
    peaks = [(30, 12), (0, 55), (41, 41)]  # (column, row) per keypoint
    # smooth peaks (a log-Gaussian of 2 cells), as trained heatmaps are
    grid = torch.arange(size, dtype=torch.float32)
    maps = torch.stack([
        -((grid[None, :] - column) ** 2 + (grid[:, None] - row) ** 2) / 8.0 + 10.0 for column, row in peaks
    ])[None]
    xy, scores = heatmaps_to_keypoints(maps, torch.tensor([roi]))
    assert xy.shape == (1, 3, 3) and scores.shape == (1, 3)
    x1, y1, x2, y2 = roi
    cell_w, cell_h = (x2 - x1) / size, (y2 - y1) / size
    for k, (column, row) in enumerate(peaks):
        # the centre of the peak cell, up to one output pixel of the resized map
        assert abs(xy[0, k, 0] - (x1 + (column + 0.5) * cell_w)) <= max(cell_w / 2, 1.0)
        assert abs(xy[0, k, 1] - (y1 + (row + 0.5) * cell_h)) <= max(cell_h / 2, 1.0)
    assert (xy[0, :, 2] == 1).all()
    assert (scores > 0).all()


def test_heatmaps_to_keypoints_inverts_the_training_targets():
    torch.manual_seed(0)
    size = 56
    rois = torch.tensor([[10.0, 20.0, 66.0, 76.0], [0.0, 0.0, 112.0, 112.0]])
    points = torch.rand(2, 5, 3)
    points[..., :2] = rois[:, None, :2] + points[..., :2] * 0.98 * (rois[:, None, 2:] - rois[:, None, :2])
    points[..., 2] = 2
    cells, valid = keypoints_to_heat_map(points, rois, size)
    assert valid.all()
    maps = F.one_hot(cells, size * size).float().reshape(2, 5, size, size) * 10
    xy, _ = heatmaps_to_keypoints(maps, rois)
    cell = (rois[:, 2:] - rois[:, :2]) / size
    assert ((xy[..., :2] - points[..., :2]).abs() <= cell[:, None, :] + 1e-4).all()


def test_heatmaps_to_keypoints_empty_and_errors():
    xy, scores = heatmaps_to_keypoints(torch.zeros(0, 3, 56, 56), torch.zeros(0, 4))
    assert xy.shape == (0, 3, 3) and scores.shape == (0, 3)
    with pytest.raises(ValueError, match="rois"):
        heatmaps_to_keypoints(torch.zeros(2, 3, 56, 56), torch.zeros(1, 4))


def test_post_processor_attaches_keypoints_with_logits():
    detections = [boxlist([[10, 20, 66, 76], [0, 0, 30, 30]], labels=torch.tensor([1, 1]),
                          scores=torch.tensor([0.9, 0.5])),
                  boxlist([], labels=torch.zeros(0, dtype=torch.int64), scores=torch.zeros(0))]
    maps = torch.randn(2, NUM_KEYPOINTS, 28, 28)
    results = KeypointPostProcessor(Keypointer())(maps, detections)
    keypoints = results[0].get_field("keypoints")
    assert isinstance(keypoints, Keypoints) and keypoints.keypoints.shape == (2, NUM_KEYPOINTS, 3)
    assert keypoints.get_field("logits").shape == (2, NUM_KEYPOINTS)
    assert results[0].fields() == ["labels", "scores", "keypoints"]
    assert results[1].get_field("keypoints").keypoints.shape == (0, NUM_KEYPOINTS, 3)
    person = KeypointPostProcessor(Keypointer())(torch.randn(1, 17, 28, 28), [detections[0][[0]]])
    assert isinstance(person[0].get_field("keypoints"), PersonKeypoints)
    named = KeypointPostProcessor(Keypointer(), TriangleKeypoints)(maps, detections)
    assert isinstance(named[0].get_field("keypoints"), TriangleKeypoints)


def make_loss(batch=8):
    return KeypointRCNNLossComputation(Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(batch, 1.0), 28)


def test_keypoint_loss_matches_cross_entropy_over_cells():
    loss_evaluator = make_loss()
    proposals = [boxlist([[8, 10, 20, 30], [31, 6, 59, 24], [0, 35, 10, 47]], labels=torch.tensor([1, 1, 0]))]
    sampled = loss_evaluator.subsample(proposals, [keypoint_targets()])
    assert len(sampled[0]) == 2  # the background RoI is not kept
    assert proposals[0].get_field("labels").tolist() == [1, 1, 0]  # the caller's RoIs are untouched
    torch.manual_seed(0)
    logits = torch.randn(2, NUM_KEYPOINTS, 28, 28, requires_grad=True)
    loss = loss_evaluator(sampled, logits)
    assert torch.isfinite(loss) and loss > 0
    cells, valid = keypoints_to_heat_map(sampled[0].get_field("keypoints").keypoints, sampled[0].bbox, 28)
    flat = logits.reshape(-1, 28 * 28)
    keep = valid.reshape(-1) > 0
    assert keep.sum() == 5  # one keypoint is not labelled
    torch.testing.assert_close(loss, F.cross_entropy(flat[keep], cells.reshape(-1)[keep]))
    loss.backward()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("case", ["no_visible", "no_gt", "no_rois", "background_only"])
def test_keypoint_loss_is_a_graph_connected_zero_without_targets(case):
    loss_evaluator = make_loss()
    targets = [keypoint_targets()]
    proposals = [boxlist([[8, 10, 20, 30], [31, 6, 59, 24]], labels=torch.tensor([1, 1]))]
    if case == "no_visible":
        targets = [keypoint_targets(visibility=0)]
    elif case == "no_gt":
        targets = [keypoint_targets()[[]]]
    elif case == "no_rois":
        proposals = [boxlist([], labels=torch.zeros(0, dtype=torch.int64))]
    else:
        proposals = [boxlist([[0, 35, 10, 47]], labels=torch.tensor([0]))]
    sampled = loss_evaluator.subsample(proposals, targets)
    assert len(sampled[0]) == 0
    logits = torch.randn(0, NUM_KEYPOINTS, 28, 28, requires_grad=True)
    loss = loss_evaluator(sampled, logits)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None


def test_keypoint_loss_rejects_a_keypoint_count_mismatch():
    loss_evaluator = make_loss()
    sampled = loss_evaluator.subsample([boxlist([[8, 10, 20, 30]], labels=torch.tensor([1]))], [keypoint_targets()])
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        loss_evaluator(sampled, torch.randn(1, 17, 28, 28))


def test_keypoint_head_train_step_reaches_every_parameter_and_eval_decodes():
    head = build_roi_keypoint_head(make_cfg(), 4).train()
    proposals = [boxlist([[8, 10, 20, 30], [31, 6, 59, 24], [0, 35, 10, 47]], labels=torch.tensor([1, 1, 0]))]
    x, sampled, losses = head(features(), proposals, [keypoint_targets()])
    assert set(losses) == {"loss_kp"} and len(sampled[0]) == 2 and x.shape == (2, 8, 7, 7)
    losses["loss_kp"].backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name

    head.eval()
    detections = [boxlist([[8, 10, 20, 30]], labels=torch.tensor([1]), scores=torch.tensor([0.9]))]
    with torch.no_grad():
        _, results, losses = head(features(), detections)
    assert losses == {}
    keypoints = results[0].get_field("keypoints")
    assert keypoints.keypoints.shape == (1, NUM_KEYPOINTS, 3)
    assert keypoints.get_field("logits").shape == (1, NUM_KEYPOINTS)
    with torch.no_grad():
        _, results, _ = head(features(), [boxlist([], labels=torch.zeros(0, dtype=torch.int64))])
    assert results[0].get_field("keypoints").keypoints.shape == (0, NUM_KEYPOINTS, 3)


def test_keypoint_head_without_positives_gives_zero_loss_with_gradients():
    head = build_roi_keypoint_head(make_cfg(), 4).train()
    proposals = [boxlist([[0, 35, 10, 47]], labels=torch.tensor([0]))]
    _, _, losses = head(features(), proposals, [keypoint_targets()])
    assert losses["loss_kp"].item() == 0
    losses["loss_kp"].backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name


def test_keypoint_head_refuses_shared_box_features_and_needs_targets():
    with pytest.raises(ValueError, match="SHARE_BOX_FEATURE_EXTRACTOR"):
        build_roi_keypoint_head(make_cfg(SHARE_BOX_FEATURE_EXTRACTOR=True), 4)
    head = build_roi_keypoint_head(make_cfg(), 4).train()
    with pytest.raises(ValueError, match="targets"):
        head(features(), [boxlist([[0, 0, 5, 5]], labels=torch.tensor([1]))])
