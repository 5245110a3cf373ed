"""Box head: feature extractors, predictors, loss and post-processing, on hand-made inputs."""
import pytest
import torch
from torch.nn import functional as F

from maskrcnn.config import cfg as default_cfg
from maskrcnn.layers import nms
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.modeling.roi_heads.box_head.box_head import ROIBoxHead, build_roi_box_head
from maskrcnn.modeling.roi_heads.box_head.inference import PostProcessor, make_roi_box_post_processor
from maskrcnn.modeling.roi_heads.box_head.loss import make_roi_box_loss_evaluator
from maskrcnn.modeling.roi_heads.box_head.roi_box_feature_extractors import make_roi_box_feature_extractor
from maskrcnn.modeling.roi_heads.box_head.roi_box_predictors import (
    FastRCNNPredictor,
    FPNPredictor,
    make_roi_box_predictor,
)
from maskrcnn.structures.bounding_box import BoxList

FPN_SCALES = (0.25, 0.125, 0.0625, 0.03125)


def make_cfg(*opts):
    cfg = default_cfg.clone()
    cfg.merge_from_list(list(opts))
    return cfg


def fpn_cfg(*opts):
    return make_cfg(
        "MODEL.ROI_BOX_HEAD.POOLER_SCALES", FPN_SCALES,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 16,
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
        *opts,
    )


def fpn_features(channels=8, height=64, width=96, images=2):
    return [torch.randn(images, channels, int(height * s), int(width * s)) for s in FPN_SCALES]


def random_boxes(count, width=96, height=64, min_size=4.0):
    xy = torch.rand(count, 2) * torch.tensor([width - min_size - 1, height - min_size - 1])
    wh = min_size + torch.rand(count, 2) * torch.tensor([width / 2, height / 2])
    x2y2 = torch.min(xy + wh, torch.tensor([width - 1.0, height - 1.0]))
    return torch.cat([xy, x2y2], dim=1)


def boxlist(boxes, size=(96, 64), labels=None, legacy_plus_one=True):
    result = BoxList(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), size, legacy_plus_one=legacy_plus_one)
    if labels is not None:
        result.add_field("labels", torch.as_tensor(labels, dtype=torch.int64))
    return result


# ---------------------------------------------------------------------------- feature extractors
def test_fpn2mlp_extractor_shape_and_names():
    cfg = fpn_cfg("MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor")
    extractor = make_roi_box_feature_extractor(cfg, 8)
    proposals = [boxlist(random_boxes(5)), boxlist(random_boxes(3))]
    out = extractor(fpn_features(), proposals)
    assert out.shape == (8, 16)
    assert extractor.out_channels == 16
    assert (out >= 0).all()
    assert set(extractor.state_dict()) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert extractor.fc6.weight.shape == (16, 8 * 7 * 7)


def test_extractor_ignores_levels_beyond_its_pooler():
    """An FPN body hands P2-P6 to a box head pooling from P2-P5 (maskrcnn-benchmark zips them)."""
    cfg = fpn_cfg("MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor")
    extractor = make_roi_box_feature_extractor(cfg, 8)
    features = fpn_features()
    p6 = torch.randn(2, 8, 1, 2)
    proposals = [boxlist(random_boxes(5)), boxlist(random_boxes(3))]
    torch.testing.assert_close(extractor(features + [p6], proposals), extractor(features, proposals))
    with pytest.raises(ValueError, match="feature maps"):
        extractor(features[:3], proposals)


def test_xconv1fc_extractor_with_group_norm():
    cfg = fpn_cfg(
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPNXconv1fcFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.USE_GN", True,
        "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", 32,
        "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS", 2,
    )
    extractor = make_roi_box_feature_extractor(cfg, 8)
    out = extractor(fpn_features(), [boxlist(random_boxes(4)), boxlist(random_boxes(2))])
    assert out.shape == (6, 16)
    keys = set(extractor.state_dict())
    # conv (no bias with GN), GroupNorm, ReLU per stage
    assert {"xconvs.0.weight", "xconvs.1.weight", "xconvs.1.bias", "xconvs.3.weight", "fc6.weight"} <= keys
    assert "xconvs.0.bias" not in keys
    assert isinstance(extractor.xconvs[1], torch.nn.GroupNorm)
    assert extractor.fc6.weight.shape == (16, 32 * 7 * 7)


def test_xconv1fc_extractor_without_group_norm_has_biases():
    cfg = fpn_cfg(
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPNXconv1fcFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", 6,
        "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS", 3,
    )
    extractor = make_roi_box_feature_extractor(cfg, 8)
    assert len(extractor.xconvs) == 6  # (conv, relu) x 3
    assert torch.count_nonzero(extractor.xconvs[0].bias) == 0
    out = extractor(fpn_features(), [boxlist(random_boxes(3)), boxlist(random_boxes(0))])
    assert out.shape == (3, 16)


def test_c4_extractor_shape_and_names():
    cfg = make_cfg(
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
        "MODEL.RESNETS.WIDTH_PER_GROUP", 4,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 8,
    )
    in_channels = 16 * 4  # C4 of this narrow ResNet
    extractor = make_roi_box_feature_extractor(cfg, in_channels)
    features = [torch.randn(2, in_channels, 4, 6)]  # stride 16 on 64 x 96
    out = extractor(features, [boxlist(random_boxes(3)), boxlist(random_boxes(2))])
    assert extractor.out_channels == 16 * 8
    assert out.shape == (5, 128, 4, 4)
    assert "head.layer4.0.conv1.weight" in extractor.state_dict()
    assert "head.layer4.2.conv3.weight" in extractor.state_dict()


def test_unknown_extractor_names_the_key():
    cfg = fpn_cfg("MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "NoSuchExtractor")
    with pytest.raises(KeyError, match="MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR.*FPN2MLPFeatureExtractor"):
        make_roi_box_feature_extractor(cfg, 8)


def test_pooler_alignment_follows_box_convention():
    for legacy in (True, False):
        cfg = fpn_cfg("MODEL.BOX_CONVENTION_LEGACY", legacy,
                      "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor")
        extractor = make_roi_box_feature_extractor(cfg, 8)
        assert all(p.aligned == (not legacy) for p in extractor.pooler.poolers)


@pytest.mark.parametrize("aligned", [True, False])
def test_pooler_aligned_key_overrides_the_convention(aligned):
    # torchvision: modern boxes (areas without "+1" in the level mapper) with aligned=False
    cfg = fpn_cfg("MODEL.BOX_CONVENTION_LEGACY", False, "MODEL.ROI_HEADS.POOLER_ALIGNED", aligned,
                  "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor")
    pooler = make_roi_box_feature_extractor(cfg, 8).pooler
    assert all(p.aligned == aligned for p in pooler.poolers)
    assert pooler.map_levels.legacy_plus_one is False


# ---------------------------------------------------------------------------- predictors
def test_fast_rcnn_predictor_pools_and_shapes():
    cfg = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 5, "MODEL.ROI_BOX_HEAD.PREDICTOR", "FastRCNNPredictor")
    predictor = make_roi_box_predictor(cfg, 12)
    assert isinstance(predictor, FastRCNNPredictor)
    x = torch.randn(3, 12, 4, 4)
    logits, deltas = predictor(x)
    assert logits.shape == (3, 5) and deltas.shape == (3, 20)
    pooled = x.mean(dim=(2, 3))
    torch.testing.assert_close(logits, pooled @ predictor.cls_score.weight.T + predictor.cls_score.bias)
    assert set(predictor.state_dict()) == {"cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias"}
    assert predictor.bbox_pred.weight.std() < 0.01 < predictor.cls_score.weight.std() * 3


@pytest.mark.parametrize("agnostic,columns", [(False, 20), (True, 8)])
def test_fpn_predictor_shapes(agnostic, columns):
    cfg = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 5, "MODEL.CLS_AGNOSTIC_BBOX_REG", agnostic)
    predictor = FPNPredictor(cfg, 16)
    logits, deltas = predictor(torch.randn(7, 16))
    assert logits.shape == (7, 5) and deltas.shape == (7, columns)
    logits4, deltas4 = predictor(torch.randn(7, 16, 1, 1))
    assert logits4.shape == (7, 5) and deltas4.shape == (7, columns)
    with pytest.raises(ValueError, match=r"\[K, C, 1, 1\]"):
        predictor(torch.randn(7, 16, 2, 2))


def test_fast_rcnn_predictor_class_agnostic():
    cfg = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 5, "MODEL.CLS_AGNOSTIC_BBOX_REG", True)
    _, deltas = FastRCNNPredictor(cfg, 12)(torch.randn(2, 12, 3, 3))
    assert deltas.shape == (2, 8)


def test_predictor_on_no_rois():
    cfg = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 5)
    logits, deltas = FastRCNNPredictor(cfg, 12)(torch.randn(0, 12, 3, 3))
    assert logits.shape == (0, 5) and deltas.shape == (0, 20)


# ---------------------------------------------------------------------------- loss
GT = [[10.0, 10.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0]]
BACKGROUND = [[0.0, 40.0, 8.0, 63.0], [60.0, 0.0, 95.0, 10.0], [0.0, 0.0, 5.0, 5.0]]


def loss_evaluator(*opts):
    return make_roi_box_loss_evaluator(make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4, *opts))


def test_loss_labels_and_targets_on_hand_made_proposals():
    evaluator = loss_evaluator()
    target = boxlist(GT, labels=[3, 1])
    jittered = [[11.0, 10.0, 41.0, 31.0], [50.0, 22.0, 88.0, 60.0]]
    proposals = boxlist(GT + jittered + BACKGROUND)
    sampled = evaluator.subsample([proposals], [target])[0]
    assert len(sampled) == 7  # batch of 512 keeps all, positive fraction allows 128 positives
    # sampling reorders: compare as sets of (box, label)
    order = torch.argsort(sampled.bbox[:, 0] * 1000 + sampled.bbox[:, 1])
    expected_order = torch.argsort(proposals.bbox[:, 0] * 1000 + proposals.bbox[:, 1])
    torch.testing.assert_close(sampled.bbox[order], proposals.bbox[expected_order])
    expected_labels = torch.tensor([3, 1, 3, 1, 0, 0, 0])[expected_order]
    assert torch.equal(sampled.get_field("labels")[order], expected_labels)
    targets = sampled.get_field("regression_targets")[order]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    matched_gt = torch.tensor(GT + GT)
    expected_targets = coder.encode(matched_gt, torch.tensor(GT + jittered))
    foreground = expected_labels > 0
    torch.testing.assert_close(targets[foreground], expected_targets[expected_order[foreground]])


def test_perfect_proposals_give_zero_box_loss_and_jitter_a_small_one():
    evaluator = loss_evaluator()
    target = boxlist(GT, labels=[3, 1])
    sampled = evaluator.subsample([boxlist(GT + BACKGROUND)], [target])
    logits = torch.randn(len(sampled[0]), 4)
    loss_cls, loss_box = evaluator([logits], [torch.zeros(len(sampled[0]), 16)])
    assert loss_box.item() == 0.0
    torch.testing.assert_close(loss_cls, F.cross_entropy(logits, sampled[0].get_field("labels")))

    jittered = [[11.0, 10.0, 41.0, 31.0], [50.0, 21.0, 90.0, 61.0]]
    sampled = evaluator.subsample([boxlist(jittered + BACKGROUND)], [target])
    _, loss_box = evaluator([torch.randn(5, 4)], [torch.zeros(5, 16)])
    assert 0.0 < loss_box.item() < 0.05


def test_box_loss_reference_value():
    """smooth L1 (beta 1) of the deltas of each foreground RoI's own class, summed / #sampled."""
    evaluator = loss_evaluator()
    target = boxlist(GT, labels=[3, 1])
    proposals = boxlist([[12.0, 8.0, 44.0, 30.0], [48.0, 20.0, 90.0, 58.0]] + BACKGROUND)
    sampled = evaluator.subsample([proposals], [target])[0]
    deltas = torch.randn(len(sampled), 16)
    _, loss_box = evaluator([torch.randn(len(sampled), 4)], [deltas])
    labels = sampled.get_field("labels")
    expected = 0.0
    for row in range(len(sampled)):
        if labels[row] > 0:
            own_class = deltas[row, 4 * labels[row]: 4 * labels[row] + 4]
            diff = (own_class - sampled.get_field("regression_targets")[row]).abs()
            expected += torch.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum()
    torch.testing.assert_close(loss_box, expected / len(sampled))


def test_class_agnostic_loss_reads_the_object_columns():
    evaluator = loss_evaluator("MODEL.CLS_AGNOSTIC_BBOX_REG", True)
    evaluator.subsample([boxlist(GT + BACKGROUND)], [boxlist(GT, labels=[3, 1])])
    deltas = torch.zeros(5, 8)
    deltas[:, :4] = 7.0  # background columns are ignored
    _, loss_box = evaluator([torch.randn(5, 4)], [deltas])
    assert loss_box.item() == 0.0
    deltas[:, 4:] = 0.5
    _, loss_box = evaluator([torch.randn(5, 4)], [deltas])
    assert loss_box.item() > 0


def test_image_without_ground_truth_is_all_background():
    evaluator = loss_evaluator()
    empty = boxlist(torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))
    proposals = [boxlist(GT + BACKGROUND), boxlist(GT + BACKGROUND)]
    sampled = evaluator.subsample(proposals, [empty, boxlist(GT, labels=[2, 2])])
    assert torch.equal(sampled[0].get_field("labels"), torch.zeros(5, dtype=torch.int64))
    assert torch.count_nonzero(sampled[0].get_field("regression_targets")) == 0
    assert (sampled[1].get_field("labels") > 0).sum() == 2
    logits = torch.randn(10, 4, requires_grad=True)
    deltas = torch.randn(10, 16, requires_grad=True)
    loss_cls, loss_box = evaluator([logits], [deltas])
    assert torch.isfinite(loss_cls) and torch.isfinite(loss_box) and loss_box > 0
    # a batch of only empty images: no box loss at all
    evaluator.subsample([boxlist(BACKGROUND)], [empty])
    loss_cls, loss_box = evaluator([torch.randn(3, 4)], [torch.randn(3, 16)])
    assert loss_box.item() == 0.0 and torch.isfinite(loss_cls)


def test_ignored_proposals_between_thresholds_are_not_sampled():
    evaluator = loss_evaluator("MODEL.ROI_HEADS.BG_IOU_THRESHOLD", 0.3)
    # IoU with GT[0] (legacy widths, 31 x 21 each, 17 columns shared): 357 / 945 = 0.38
    halfway = [[24.0, 10.0, 54.0, 30.0]]
    sampled = evaluator.subsample([boxlist(GT + halfway + BACKGROUND)], [boxlist(GT, labels=[3, 1])])[0]
    assert len(sampled) == 5
    assert not any(torch.equal(b, torch.tensor(halfway[0])) for b in sampled.bbox)


def test_sampler_budget_and_positive_fraction():
    evaluator = loss_evaluator("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 4, "MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.25)
    sampled = evaluator.subsample([boxlist(GT + BACKGROUND)], [boxlist(GT, labels=[3, 1])])[0]
    assert len(sampled) == 4
    assert (sampled.get_field("labels") > 0).sum() == 1


def test_loss_requires_subsample_first():
    with pytest.raises(RuntimeError, match="subsample"):
        loss_evaluator()([torch.randn(2, 4)], [torch.randn(2, 16)])


# ---------------------------------------------------------------------------- post-processing
def reference_post_process(logits, deltas, proposals, score_thresh, nms_thresh, detections, coder):
    """Per image, per class: threshold, NMS (maskrcnn.layers.nms), then the best `detections`."""
    results = []
    probs = F.softmax(logits, -1)
    start = 0
    for props in proposals:
        n = len(props)
        prob = probs[start:start + n]
        boxes = coder.decode(deltas[start:start + n], props.bbox)
        start += n
        legacy = props.legacy_plus_one
        w, h = props.size
        off = 1 if legacy else 0
        boxes = boxes.reshape(n, prob.shape[1], 4)
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, w - off)
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, h - off)
        rows = []
        for j in range(1, prob.shape[1]):
            inds = torch.nonzero(prob[:, j] > score_thresh).squeeze(1)
            b, s = boxes[inds, j], prob[inds, j]
            keep = nms(b, s, nms_thresh, legacy_plus_one=legacy)
            rows += [(s[k].item(), j, b[k]) for k in keep]
        rows.sort(key=lambda r: -r[0])
        rows = rows[:detections] if detections > 0 else rows
        results.append(rows)
    return results


def _as_rows(result):
    scores, labels = result.get_field("scores"), result.get_field("labels")
    return [(s.item(), l.item(), b) for s, l, b in zip(scores, labels, result.bbox)]


@pytest.mark.parametrize("legacy", [True, False])
def test_post_processor_matches_per_class_loop(legacy):
    num_classes = 5
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0), legacy_plus_one=legacy)
    post = PostProcessor(score_thresh=0.05, nms=0.5, detections_per_img=12, box_coder=coder)
    # clustered proposals so that NMS has work to do, some deltas push boxes out of the image
    proposals = []
    for count in (40, 0, 25):
        centre = random_boxes(4)[torch.randint(0, 4, (count,))]
        proposals.append(boxlist(centre + torch.randn(count, 4), legacy_plus_one=legacy))
    total = sum(len(p) for p in proposals)
    logits = torch.randn(total, num_classes) * 2
    deltas = torch.randn(total, 4 * num_classes) * 2
    results = post((logits, deltas), proposals)
    expected = reference_post_process(logits, deltas, proposals, 0.05, 0.5, 12, coder)
    assert len(results) == 3
    for result, rows, props in zip(results, expected, proposals):
        assert result.size == props.size and result.legacy_plus_one == legacy
        got = _as_rows(result)
        assert len(got) == len(rows)
        for (s, l, b), (es, el, eb) in zip(got, rows):
            assert l == el and abs(s - es) < 1e-6
            torch.testing.assert_close(b, eb)
        scores = result.get_field("scores")
        assert torch.all(scores[:-1] >= scores[1:])
    assert len(results[0]) == 12  # capped
    assert len(results[1]) == 0


def test_post_processor_score_threshold_and_labels():
    # three RoIs, hand-set logits: only class 2 of RoI 0 and class 1 of RoI 2 pass 0.6
    logits = torch.log(torch.tensor([[0.1, 0.1, 0.7, 0.1], [0.5, 0.2, 0.2, 0.1], [0.05, 0.9, 0.03, 0.02]]))
    proposals = [boxlist([[10.0, 10.0, 30.0, 30.0], [40.0, 10.0, 60.0, 30.0], [5.0, 35.0, 25.0, 60.0]])]
    post = PostProcessor(score_thresh=0.6, nms=0.5, detections_per_img=100)
    result = post((logits, torch.zeros(3, 16)), proposals)[0]
    assert result.get_field("labels").tolist() == [1, 2]
    torch.testing.assert_close(result.get_field("scores"), torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(result.bbox, proposals[0].bbox[[2, 0]])  # zero deltas: boxes unchanged
    assert result.get_field("labels").dtype == torch.int64


def test_post_processor_nms_is_per_class():
    # two identical boxes: same class -> one survives, different classes -> both survive
    box = [[10.0, 10.0, 30.0, 30.0]]
    proposals = [boxlist(box + box)]
    same = torch.log(torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1]]))
    different = torch.log(torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.1, 0.7]]))
    post = PostProcessor(score_thresh=0.5, nms=0.5, detections_per_img=100)
    assert len(post((same, torch.zeros(2, 12)), proposals)[0]) == 1
    assert post((different, torch.zeros(2, 12)), proposals)[0].get_field("labels").tolist() == [1, 2]
    # and per image: the same box in two images is kept in both
    two = post((same[:1].repeat(2, 1), torch.zeros(2, 12)), [boxlist(box), boxlist(box)])
    assert [len(r) for r in two] == [1, 1]


def test_post_processor_detections_cap_keeps_best():
    proposals = [boxlist(random_boxes(30))]
    logits = torch.randn(30, 3)
    post_all = PostProcessor(score_thresh=0.0, nms=0.0, detections_per_img=0)
    post_cap = PostProcessor(score_thresh=0.0, nms=0.0, detections_per_img=7)
    everything = post_all((logits, torch.zeros(30, 12)), proposals)[0]
    capped = post_cap((logits, torch.zeros(30, 12)), proposals)[0]
    assert len(everything) == 60 and len(capped) == 7
    best = everything.get_field("scores").sort(descending=True).values[:7]
    torch.testing.assert_close(capped.get_field("scores"), best)


def test_post_processor_clips_to_the_image_in_each_convention():
    for legacy, limit in ((True, 95.0), (False, 96.0)):
        proposals = [boxlist([[80.0, 50.0, 95.0, 63.0]], legacy_plus_one=legacy)]
        deltas = torch.tensor([[0.0] * 4 + [20.0, 20.0, 2.0, 2.0]])  # pushes class 1 far right/down
        post = PostProcessor(score_thresh=0.0, nms=0.5, box_coder=BoxCoder((10, 10, 5, 5), legacy_plus_one=legacy))
        result = post((torch.tensor([[0.0, 5.0]]), deltas), proposals)[0]
        assert result.bbox[0, 2].item() == limit and result.bbox[0, 3].item() == limit - 32


@pytest.mark.parametrize("legacy", [True, False])
def test_post_processor_min_size_drops_thin_boxes_before_nms(legacy):
    # RoI 0 is 0.005 px wide (0.005 + 1 under the legacy convention); it would suppress nothing
    # but is dropped by min_size 1e-2 only in the modern convention
    proposals = [boxlist([[10.0, 10.0, 10.005, 30.0], [40.0, 10.0, 60.0, 30.0]], legacy_plus_one=legacy)]
    logits = torch.tensor([[0.0, 3.0], [0.0, 2.0]])
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0), legacy_plus_one=legacy)
    kept = PostProcessor(score_thresh=0.05, nms=0.5, box_coder=coder)((logits, torch.zeros(2, 8)), proposals)[0]
    assert len(kept) == 2
    post = PostProcessor(score_thresh=0.05, nms=0.5, box_coder=coder, min_size=1e-2)
    result = post((logits, torch.zeros(2, 8)), proposals)[0]
    assert len(result) == (2 if legacy else 1)
    torch.testing.assert_close(result.bbox[-1], proposals[0].bbox[1])


def test_post_processor_class_agnostic_uses_the_object_deltas():
    proposals = [boxlist([[10.0, 10.0, 30.0, 30.0]])]
    deltas = torch.tensor([[9.0, 9.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    post = PostProcessor(score_thresh=0.1, nms=0.5, cls_agnostic_bbox_reg=True)
    result = post((torch.zeros(1, 3), deltas), proposals)[0]
    assert len(result) == 2
    expected = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(deltas[:, 4:], proposals[0].bbox)
    torch.testing.assert_close(result.bbox, expected.repeat(2, 1))


def test_post_processor_empty_inputs():
    post = PostProcessor()
    no_boxes = [boxlist(torch.zeros(0, 4)), boxlist(torch.zeros(0, 4), size=(10, 20))]
    results = post((torch.zeros(0, 4), torch.zeros(0, 16)), no_boxes)
    assert [len(r) for r in results] == [0, 0]
    assert results[1].size == (10, 20)
    assert results[0].get_field("scores").shape == (0,) and results[0].get_field("labels").dtype == torch.int64
    # nothing above the threshold
    nothing = PostProcessor(score_thresh=1.0)((torch.randn(4, 4), torch.randn(4, 16)), [boxlist(random_boxes(4))])
    assert len(nothing[0]) == 0 and nothing[0].has_field("labels")


def test_post_processor_with_augmentation_returns_unfiltered_boxes():
    post = PostProcessor(bbox_aug_enabled=True)
    result = post((torch.randn(4, 3), torch.randn(4, 12)), [boxlist(random_boxes(4))])[0]
    assert len(result) == 12 and result.get_field("scores").shape == (12,)
    torch.testing.assert_close(result.get_field("scores").reshape(4, 3).sum(1), torch.ones(4))


def test_post_processor_built_from_a_tta_config_filters():
    """TEST.BBOX_AUG.ENABLED does not put the built post-processor in TTA mode (engine/bbox_aug.py
    does, while it runs its views)."""
    cfg = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3, "TEST.BBOX_AUG.ENABLED", True,
                   "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 2, "MODEL.ROI_HEADS.SCORE_THRESH", 0.0)
    post = make_roi_box_post_processor(cfg)
    assert not post.bbox_aug_enabled
    result = post((torch.randn(4, 3), torch.randn(4, 12)), [boxlist(random_boxes(4))])[0]
    assert len(result) == 2 and result.has_field("labels")


# ---------------------------------------------------------------------------- the head
def test_roi_box_head_train_and_eval():
    cfg = fpn_cfg(
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 8,
    )
    head = build_roi_box_head(cfg, 8)
    assert isinstance(head, ROIBoxHead)
    keys = set(head.state_dict())
    assert {"feature_extractor.fc6.weight", "predictor.cls_score.weight", "predictor.bbox_pred.weight"} <= keys
    features = fpn_features()
    targets = [boxlist(GT, labels=[3, 1]), boxlist(torch.zeros(0, 4), labels=torch.zeros(0))]
    proposals = [boxlist(GT + BACKGROUND + random_boxes(10).tolist()), boxlist(random_boxes(12))]
    head.train()
    x, sampled, losses = head(features, proposals, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert x.shape == (sum(len(s) for s in sampled), 16)
    assert all(len(s) <= 8 for s in sampled)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(ValueError, match="targets"):
        head(features, proposals)
    head.eval()
    with torch.no_grad():
        x, detections, losses = head(features, proposals)
    assert losses == {} and x.shape == (27, 16) and len(detections) == 2
    assert all(d.has_field("scores") and d.has_field("labels") for d in detections)


def test_post_processor_under_bfloat16_outputs_decodes_in_float32():
    proposals = [boxlist(random_boxes(6))]
    logits, deltas = torch.randn(6, 3), torch.randn(6, 12) * 0.1
    post = PostProcessor(score_thresh=0.0, nms=0.0, detections_per_img=0)
    reference = post((logits, deltas), proposals)[0]
    low = post((logits.bfloat16(), deltas.bfloat16()), proposals)[0]
    assert low.bbox.dtype == torch.float32 and low.get_field("scores").dtype == torch.float32
    # only the bfloat16 rounding of the inputs differs, not the decoding arithmetic
    torch.testing.assert_close(low.bbox.sort(0).values, reference.bbox.sort(0).values, atol=0.5, rtol=0)
