"""Batched matching (pairwise_iou, Matcher.match_batch, modeling.batched_matching) against
per-image references written out here, and the losses' prepare_targets against per-image loops."""
import pytest
import torch

from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.batched_matching import BatchedMatch, match_boxlists, pad_boxes
from maskrcnn.modeling.box_coder import BoxCoder
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.roi_heads.box_head.loss import FastRCNNLossComputation
from maskrcnn.modeling.roi_heads.keypoint_head.loss import KeypointRCNNLossComputation
from maskrcnn.modeling.roi_heads.mask_head.loss import MaskRCNNLossComputation, project_masks_on_boxes
from maskrcnn.modeling.rpn.loss import RPNLossComputation, generate_rpn_labels
from maskrcnn.structures import boxlist_ops
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import boxlist_iou, pairwise_iou
from maskrcnn.structures.keypoint import PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask

BELOW, BETWEEN = Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS


# ------------------------------------------------------------------------------ references
def reference_match(quality, high, low, allow_low_quality_matches):
    """maskrcnn-benchmark's matcher, one prediction at a time in plain Python (quality: [G][M])."""
    num_gt = len(quality)
    num_pred = len(quality[0]) if num_gt else 0
    if num_gt == 0:
        return []
    argmax, matches = [], []
    for m in range(num_pred):
        column = [quality[g][m] for g in range(num_gt)]
        best = column.index(max(column))  # the first of tied maxima
        argmax.append(best)
        value = column[best]
        matches.append(BELOW if value < low else BETWEEN if value < high else best)
    if allow_low_quality_matches:
        for g in range(num_gt):
            highest = max(quality[g]) if num_pred else None
            for m in range(num_pred):
                if quality[g][m] == highest:
                    matches[m] = argmax[m]
    return matches


def random_quality(num_gt, num_pred, generator):
    """IoU-like values on a coarse grid (many ties), some all-zero ground-truth rows."""
    quality = (torch.randint(0, 6, (num_gt, num_pred), generator=generator) / 5.0) ** 2
    quality *= (torch.rand(num_gt, num_pred, generator=generator) < 0.6).float()  # many zeros
    if num_gt > 1:
        quality[torch.randint(0, num_gt, (1,), generator=generator)] = 0  # a ground truth overlapping nothing
    return quality


def random_boxes(num, size, generator):
    width, height = size
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
    wh = 4 + torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.4, height * 0.4])
    return torch.cat([xy, xy + wh], dim=1).round()


# ------------------------------------------------------------------------------ pairwise_iou
@pytest.mark.parametrize("legacy", [True, False])
def test_pairwise_iou_follows_the_box_convention(legacy):
    boxes1 = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    boxes2 = torch.tensor([[5.0, 5.0, 14.0, 14.0], [10.0, 0.0, 19.0, 9.0]])
    # legacy: 10 x 10 boxes, a 5 x 5 overlap; the second box touches at x = 9 / 10: no pixel shared
    # modern: 9 x 9 boxes, a 4 x 4 overlap
    expected = [25 / 175, 0.0] if legacy else [16 / 146, 0.0]
    iou = pairwise_iou(boxes1, boxes2, legacy_plus_one=legacy)
    assert iou.shape == (1, 2)
    assert iou[0].tolist() == pytest.approx(expected)
    shared_edge = pairwise_iou(boxes1, torch.tensor([[9.0, 0.0, 18.0, 9.0]]), legacy_plus_one=legacy)
    assert shared_edge.item() == pytest.approx(10 / 190 if legacy else 0.0)


def test_pairwise_iou_batches_give_the_per_image_values_exactly():
    generator = torch.Generator().manual_seed(0)
    gts = [random_boxes(n, (300, 200), generator) for n in (3, 5, 1)]
    preds = [random_boxes(n, (300, 200), generator) for n in (40, 7, 0)]
    gt_padded, _ = pad_boxes(gts)
    pred_padded, _ = pad_boxes(preds)
    for legacy in (True, False):
        batched = pairwise_iou(gt_padded, pred_padded, legacy_plus_one=legacy)
        assert batched.shape == (3, 5, 40)
        for image, (gt, pred) in enumerate(zip(gts, preds)):
            alone = boxlist_iou(BoxList(gt, (300, 200), legacy_plus_one=legacy),
                                BoxList(pred, (300, 200), legacy_plus_one=legacy))
            assert torch.equal(batched[image, : len(gt), : len(pred)], alone)
    # leading dimensions broadcast: one set of ground truth against a batch of predictions
    assert torch.equal(pairwise_iou(gts[0], pred_padded[:2], True)[1], pairwise_iou(gts[0], pred_padded[1], True))


def test_pairwise_iou_in_cpu_blocks_equals_one_piece(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    gt = random_boxes(6, (500, 400), generator).reshape(2, 3, 4)
    pred = random_boxes(2 * 1001, (500, 400), generator).reshape(2, 1001, 4)
    whole = pairwise_iou(gt, pred, True)
    monkeypatch.setattr(boxlist_ops, "_CPU_IOU_BLOCK", 64)  # 6 rows: blocks of 10 columns, the last one short
    blocked = pairwise_iou(gt, pred, True)
    assert torch.equal(blocked, whole)
    assert torch.equal(blocked, boxlist_ops._iou_block(gt, pred, 1))


def test_pairwise_iou_gradients():
    boxes1 = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 25.0]], dtype=torch.float64, requires_grad=True)
    boxes2 = torch.tensor([[1.0, 2.0, 12.0, 9.0], [4.0, 4.0, 30.0, 30.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: pairwise_iou(a, b, True), (boxes1, boxes2))


def test_pairwise_iou_rejects_bad_shapes():
    with pytest.raises(ValueError, match="pairwise_iou"):
        pairwise_iou(torch.zeros(3, 5), torch.zeros(2, 4))


# ------------------------------------------------------------------------------ Matcher.match_batch
MATCHERS = [(0.7, 0.3), (0.5, 0.5), (0.5, 0.4)]


@pytest.mark.parametrize("high,low", MATCHERS)
@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_match_batch_equals_the_per_image_reference(high, low, allow_low_quality):
    generator = torch.Generator().manual_seed(int(high * 100 + low * 10 + allow_low_quality))
    matcher = Matcher(high, low, allow_low_quality_matches=allow_low_quality)
    for trial in range(20):
        num_images = int(torch.randint(1, 5, (1,), generator=generator))
        gt_counts = torch.randint(0, 6, (num_images,), generator=generator).tolist()
        pred_counts = torch.randint(0, 12, (num_images,), generator=generator).tolist()
        num_gt, num_pred = max(gt_counts), max(pred_counts)
        # padding holds garbage that would win / be claimed if it were looked at
        padded = 1 + torch.rand(num_images, num_gt, num_pred, generator=generator)
        qualities = []
        for image, (g, m) in enumerate(zip(gt_counts, pred_counts)):
            qualities.append(random_quality(g, m, generator))
            padded[image, :g, :m] = qualities[-1]
        gt_valid = torch.arange(num_gt) < torch.tensor(gt_counts)[:, None]
        pred_valid = torch.arange(num_pred) < torch.tensor(pred_counts)[:, None]
        before = padded.clone()
        matches = matcher.match_batch(padded, gt_valid, pred_valid)
        assert torch.equal(padded, before)  # not modified without inplace=True
        assert matches.shape == (num_images, num_pred) and matches.dtype == torch.int64
        for image, quality in enumerate(qualities):
            m = pred_counts[image]
            expected = reference_match(quality.tolist(), high, low, allow_low_quality)
            if gt_counts[image] == 0:
                expected = [BELOW] * m
            assert matches[image, :m].tolist() == expected, (trial, image)
            assert matches[image, m:].eq(BELOW).all()
            assert matcher(quality).tolist() == expected  # the per-image call (B = 1)
        assert torch.equal(matcher.match_batch(padded.clone(), gt_valid, pred_valid, inplace=True), matches)


def test_match_batch_low_quality_rule_with_ties_and_zero_overlap():
    quality = torch.tensor(
        [
            [0.4, 0.4, 0.1, 0.0, 0.0],  # best 0.4, tied between predictions 0 and 1
            [0.0, 0.0, 0.0, 0.0, 0.0],  # overlaps nothing: claims every prediction (quirk)
            [0.0, 0.0, 0.0, 0.8, 0.0],
        ]
    )
    matcher = Matcher(0.7, 0.5, allow_low_quality_matches=True)
    # prediction 4 (all zeros) is claimed by gt 1 and gets its argmax, gt 0 (the first of the tie)
    expected = [0, 0, 0, 2, 0]
    assert matcher(quality).tolist() == expected
    # the same image beside one whose padded rows / columns are garbage
    batch = torch.full((2, 4, 6), 5.0)
    batch[0, :3, :5] = quality
    batch[1, :1, :2] = torch.tensor([[0.9, 0.2]])
    gt_valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    pred_valid = torch.tensor([[True] * 5 + [False], [True, True] + [False] * 4])
    matches = matcher.match_batch(batch, gt_valid, pred_valid)
    assert matches[0, :5].tolist() == expected
    assert matches[1, :2].tolist() == [0, BELOW]
    assert matches[:, 5].tolist() == [BELOW, BELOW] and matches[1, 2:].eq(BELOW).all()


def test_match_batch_empty_images():
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    assert matcher.match_batch(torch.zeros(2, 0, 4)).tolist() == [[BELOW] * 4] * 2
    assert matcher.match_batch(torch.zeros(2, 3, 0)).shape == (2, 0)
    quality = torch.rand(2, 3, 4)
    no_gt = matcher.match_batch(quality, gt_valid=torch.tensor([[True] * 3, [False] * 3]))
    assert no_gt[1].tolist() == [BELOW] * 4 and no_gt[0].ge(0).any()


def test_match_batch_raises_like_the_per_image_call_when_empty_gt_is_not_allowed():
    matcher = Matcher(0.7, 0.3, allow_empty_gt=False)
    quality = torch.rand(3, 2, 4)
    all_valid_gt, all_valid_pred = torch.ones(3, 2, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    assert matcher.match_batch(quality, all_valid_gt, all_valid_pred).shape == (3, 4)
    no_pred = all_valid_pred.clone()
    no_pred[1] = False
    no_gt = all_valid_gt.clone()
    no_gt[2] = False
    with pytest.raises(ValueError, match="No proposal boxes"):
        matcher.match_batch(quality, no_gt, no_pred)  # image 1 (no predictions) comes first
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        matcher.match_batch(quality, no_gt, all_valid_pred)
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        matcher.match_batch(torch.zeros(2, 0, 4))
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        matcher(torch.zeros(0, 0))


def test_match_batch_rejects_bad_arguments():
    matcher = Matcher(0.7, 0.3)
    with pytest.raises(ValueError, match="3-D"):
        matcher.match_batch(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="gt_valid"):
        matcher.match_batch(torch.zeros(2, 3, 4), gt_valid=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="pred_valid"):
        matcher.match_batch(torch.zeros(2, 3, 4), pred_valid=torch.ones(2, 4))


# ------------------------------------------------------------------------------ helper module
SIZES = [(120, 90), (100, 100), (120, 90)]


def make_batch(seed, gt_counts=(4, 0, 3), pred_counts=(60, 45, 0)):
    """Targets (labels, polygon masks, keypoints) and proposals of three images; proposals are
    jittered ground truth plus random boxes, rounded so that IoU ties happen."""
    generator = torch.Generator().manual_seed(seed)
    targets, proposals = [], []
    for size, num_gt, num_pred in zip(SIZES, gt_counts, pred_counts):
        gt = random_boxes(num_gt, size, generator)
        target = BoxList(gt, size)
        target.add_field("labels", torch.randint(1, 5, (num_gt,), generator=generator))
        target.add_field("masks", SegmentationMask(
            [[[x1, y1, x2, y1, (x1 + x2) / 2, y2]] for x1, y1, x2, y2 in gt.tolist()], size))
        points = torch.rand(num_gt, 17, 3, generator=generator)
        points[..., :2] = gt[:, None, :2] + points[..., :2] * (gt[:, None, 2:] - gt[:, None, :2]) * 1.2
        points[..., 2] = (points[..., 2] > 0.6).float() * 2
        target.add_field("keypoints", PersonKeypoints(points, size))
        targets.append(target)
        near = gt[torch.randint(0, max(num_gt, 1), (num_pred // 2,), generator=generator)] if num_gt else \
            torch.zeros(0, 4)
        near = near + torch.randint(-6, 7, near.shape, generator=generator)
        boxes = torch.cat([near, random_boxes(num_pred - len(near), size, generator)])
        boxes = torch.cat([boxes[:, :2].clamp(min=0), torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], dim=1)
        proposal = BoxList(boxes, size)
        proposal.add_field("visibility", torch.rand(num_pred, generator=generator) > 0.1)
        proposal.add_field("objectness", torch.rand(num_pred, generator=generator))
        proposals.append(proposal)
    return targets, proposals


def per_image_matches(matcher, targets, proposals):
    return [matcher(boxlist_iou(t, p)) for t, p in zip(targets, proposals)]


@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_match_boxlists_gives_each_images_matches(allow_low_quality):
    targets, proposals = make_batch(0)
    matcher = Matcher(0.5, 0.3, allow_low_quality_matches=allow_low_quality)
    match = match_boxlists(matcher, targets, proposals)
    expected = per_image_matches(matcher, targets, proposals)
    assert [m.tolist() for m in match.per_image()] == [e.tolist() for e in expected]
    assert match.counts == [60, 45, 0] and match.gt_counts == [4, 0, 3]
    assert match.image_index.tolist() == [0] * 60 + [1] * 45
    assert match.has_gt.tolist() == [True] * 60 + [False] * 45
    assert (match.matched_idxs[:60] >= 0).any() and match.matched_idxs[60:].eq(BELOW).all()
    labels = match.gather_field(targets, "labels", fill=0)
    expected_labels = torch.cat([targets[0].get_field("labels")[expected[0].clamp(min=0)], torch.zeros(45)])
    assert torch.equal(labels, expected_labels.long())


def test_match_boxlists_checks_its_inputs():
    targets, proposals = make_batch(1)
    matcher = Matcher(0.5, 0.5)
    with pytest.raises(ValueError, match="targets for"):
        match_boxlists(matcher, targets[:2], proposals)
    with pytest.raises(RuntimeError, match="same image size"):
        match_boxlists(matcher, [targets[0]], [proposals[1]])
    modern = BoxList(proposals[0].bbox, proposals[0].size, legacy_plus_one=False)
    with pytest.raises(ValueError, match="convention"):
        match_boxlists(matcher, [targets[0]], [modern])


def test_batched_match_split_rows_gives_rows_within_each_image():
    # 3 images of 4, 0 and 3 predictions: concatenation rows 0-3, (none), 4-6
    match = BatchedMatch(torch.zeros(7, dtype=torch.int64), counts=[4, 0, 3], gt_counts=[1, 0, 2])
    local, counts = match.split_rows(torch.tensor([1, 3, 4, 6]))
    assert counts == [2, 0, 2]
    assert [rows.tolist() for rows in local] == [[1, 3], [], [0, 2]]


def test_pad_boxes():
    padded, valid = pad_boxes([torch.ones(2, 4), torch.ones(0, 4), torch.ones(3, 4, dtype=torch.float64)])
    assert padded.shape == (3, 3, 4) and padded.dtype == torch.float64
    assert valid.tolist() == [[True, True, False], [False] * 3, [True] * 3]
    assert padded[~valid].eq(0).all() and padded[valid].eq(1).all()


# ------------------------------------------------------------------------------ the losses
def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("seed", [0, 1])
def test_rpn_prepare_targets_equals_a_per_image_loop(seed):
    targets, anchors = make_batch(seed, pred_counts=(80, 50, 30))
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    matcher = Matcher(0.6, 0.3, allow_low_quality_matches=True)
    loss = RPNLossComputation(matcher, BalancedPositiveNegativeSampler(64, 0.5), coder, generate_rpn_labels)
    labels, regression = loss.prepare_targets(anchors, targets)
    expected_labels, expected_regression = [], []
    for target, anchor, matched in zip(targets, anchors, per_image_matches(matcher, targets, anchors)):
        label = (matched >= 0).float()
        label[matched == BELOW] = 0
        label[~anchor.get_field("visibility")] = -1
        label[matched == BETWEEN] = -1
        boxes = target.bbox[matched.clamp(min=0)] if len(target) else anchor.bbox
        expected_labels.append(label)
        expected_regression.append(coder.encode(boxes, anchor.bbox))
    assert_same(labels, expected_labels)
    assert_same(regression, expected_regression)
    assert any(label.eq(1).any() for label in labels) and any(label.eq(-1).any() for label in labels)


def box_head_reference(matcher, coder, targets, proposals):
    labels, regression = [], []
    for target, proposal, matched in zip(targets, proposals, per_image_matches(matcher, targets, proposals)):
        if len(target) == 0:
            labels.append(torch.zeros(len(proposal), dtype=torch.int64))
            regression.append(torch.zeros(len(proposal), 4))
            continue
        label = target.get_field("labels")[matched.clamp(min=0)]
        label[matched == BELOW] = 0
        label[matched == BETWEEN] = -1
        labels.append(label)
        regression.append(coder.encode(target.bbox[matched.clamp(min=0)], proposal.bbox))
    return labels, regression


@pytest.mark.parametrize("seed", [0, 1])
def test_box_head_prepare_targets_and_subsample_equal_a_per_image_loop(seed):
    targets, proposals = make_batch(seed)
    matcher, coder = Matcher(0.5, 0.3), BoxCoder((10.0, 10.0, 5.0, 5.0))
    sampler = BalancedPositiveNegativeSampler(16, 0.25)
    loss = FastRCNNLossComputation(matcher, sampler, coder)
    labels, regression = loss.prepare_targets(proposals, targets)
    expected_labels, expected_regression = box_head_reference(matcher, coder, targets, proposals)
    assert_same(labels, expected_labels)
    assert_same(regression, expected_regression)
    assert labels[0].gt(0).any() and labels[0].eq(-1).any()

    torch.manual_seed(seed)
    sampled = loss.subsample(proposals, targets)
    torch.manual_seed(seed)
    positive, negative = sampler(expected_labels)
    for got, proposal, label, target, pos, neg in zip(
        sampled, proposals, expected_labels, expected_regression, positive, negative
    ):
        keep = torch.nonzero(pos | neg).squeeze(1)
        assert torch.equal(got.bbox, proposal.bbox[keep])
        assert torch.equal(got.get_field("objectness"), proposal.get_field("objectness")[keep])
        assert_same([got.get_field("labels"), got.get_field("regression_targets")], [label[keep], target[keep]])
    assert [len(s) for s in sampled] == [16, 16, 0]


def test_mask_head_prepare_targets_equals_a_per_image_loop():
    targets, proposals = make_batch(2, pred_counts=(60, 45, 30))
    matcher = Matcher(0.5, 0.5)
    loss = MaskRCNNLossComputation(matcher, 14)
    labels, masks = loss.prepare_targets(proposals, targets)
    expected_labels, expected_masks = [], []
    for target, proposal, matched in zip(targets, proposals, per_image_matches(matcher, targets, proposals)):
        if len(target) == 0:
            expected_labels.append(torch.zeros(len(proposal), dtype=torch.int64))
            expected_masks.append(torch.zeros(0, 14, 14))
            continue
        label = target.get_field("labels")[matched.clamp(min=0)]
        label[matched == BELOW] = 0
        positive = torch.nonzero(label > 0).squeeze(1)
        expected_labels.append(label)
        instances = target.get_field("masks")[matched.clamp(min=0)[positive]]
        expected_masks.append(project_masks_on_boxes(instances, proposal[positive], 14))
    assert_same(labels, expected_labels)
    assert_same(masks, expected_masks)
    assert masks[0].shape[0] > 0 and masks[2].shape[0] > 0 and masks[0].sum() > 0


def test_mask_head_with_bitmaps_is_per_image_and_equal():
    targets, proposals = make_batch(3, gt_counts=(4, 2, 3), pred_counts=(50, 40, 30))
    for target in targets:
        target.add_field("masks", target.get_field("masks").convert("mask"))
    loss = MaskRCNNLossComputation(Matcher(0.5, 0.5), 12)
    labels, masks = loss.prepare_targets(proposals, targets)
    for label, mask, target, proposal in zip(labels, masks, targets, proposals):
        alone_labels, alone_masks = loss.prepare_targets([proposal], [target])
        assert_same([label, mask], [alone_labels[0], alone_masks[0]])
        assert mask.shape[0] == int(label.gt(0).sum())


def test_keypoint_prepare_targets_equals_a_per_image_loop():
    targets, proposals = make_batch(4)
    matcher = Matcher(0.5, 0.5)
    loss = KeypointRCNNLossComputation(matcher, BalancedPositiveNegativeSampler(16, 0.25), 14)
    labels, keypoints = loss.prepare_targets(proposals, targets)
    for target, proposal, matched, label, points in zip(
        targets, proposals, per_image_matches(matcher, targets, proposals), labels, keypoints
    ):
        if len(target) == 0:
            assert label.eq(0).all() and points.keypoints.eq(0).all() and len(points) == len(proposal)
            continue
        expected_points = target.get_field("keypoints").keypoints[matched.clamp(min=0)]
        boxes = target.bbox[matched.clamp(min=0)]
        inside = ((expected_points[..., 0] >= boxes[:, 0, None]) & (expected_points[..., 0] <= boxes[:, 2, None])
                  & (expected_points[..., 1] >= boxes[:, 1, None]) & (expected_points[..., 1] <= boxes[:, 3, None]))
        expected = target.get_field("labels")[matched.clamp(min=0)]
        expected[matched == BELOW] = 0
        expected[matched == BETWEEN] = -1
        expected[~(inside & (expected_points[..., 2] > 0)).any(dim=1)] = -1
        assert torch.equal(label, expected)
        assert torch.equal(points.keypoints, expected_points) and isinstance(points, PersonKeypoints)
