"""Mask head: extractors / predictors, mask targets, loss, post-processing, pasting, the head."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from maskrcnn.config import cfg as global_cfg
from maskrcnn.modeling import registry
from maskrcnn.modeling.matcher import Matcher
from maskrcnn.modeling.roi_heads.box_head.roi_box_feature_extractors import (
    ResNet50Conv5ROIFeatureExtractor,
)
from maskrcnn.modeling.roi_heads.mask_head.inference import Masker, MaskPostProcessor
from maskrcnn.modeling.roi_heads.mask_head.loss import (
    rasterize_polygons_in_boxes,
    MaskRCNNLossComputation,
    project_masks_on_boxes,
)
from maskrcnn.modeling.roi_heads.mask_head.mask_head import build_roi_mask_head, keep_only_positive_boxes
from maskrcnn.modeling.roi_heads.mask_head.roi_mask_feature_extractors import make_roi_mask_feature_extractor
from maskrcnn.modeling.roi_heads.mask_head.roi_mask_predictors import make_roi_mask_predictor
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.segmentation_mask import SegmentationMask

IMAGE_W, IMAGE_H = 64, 48
NUM_CLASSES = 4


def make_cfg(**mask_head):
    cfg = global_cfg.clone()
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES = NUM_CLASSES
    head = cfg.MODEL.ROI_MASK_HEAD
    head.FEATURE_EXTRACTOR = "MaskRCNNFPNFeatureExtractor"
    head.PREDICTOR = "MaskRCNNC4Predictor"
    head.POOLER_SCALES = (0.25, 0.125)
    head.POOLER_RESOLUTION = 7
    head.POOLER_SAMPLING_RATIO = 2
    head.CONV_LAYERS = (8, 8)
    head.RESOLUTION = 14
    head.SHARE_BOX_FEATURE_EXTRACTOR = False
    for key, value in mask_head.items():
        setattr(head, key, value)
    return cfg


def features(channels=4, batch=1):
    torch.manual_seed(0)
    return [torch.randn(batch, channels, IMAGE_H // 4, IMAGE_W // 4),
            torch.randn(batch, channels, IMAGE_H // 8, IMAGE_W // 8)]


def boxlist(boxes, **fields):
    result = BoxList(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), (IMAGE_W, IMAGE_H))
    for name, value in fields.items():
        result.add_field(name, value)
    return result


def rectangle_polygon(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


# ----------------------------------------------------------------- extractors / predictors

def test_fpn_extractor_shapes_and_key_names():
    extractor = make_roi_mask_feature_extractor(make_cfg(), 4)
    proposals = [boxlist([[0, 0, 20, 20], [10, 5, 60, 40], [30, 30, 33, 34]])]
    out = extractor(features(), proposals)
    assert out.shape == (3, 8, 7, 7)
    assert extractor.out_channels == 8
    keys = set(extractor.state_dict())
    assert {"mask_fcn1.weight", "mask_fcn1.bias", "mask_fcn2.weight", "mask_fcn2.bias"} <= keys
    assert (out >= 0).all()  # ReLU after the last conv
    empty = extractor(features(), [boxlist([])])
    assert empty.shape == (0, 8, 7, 7)


def test_fpn_extractor_group_norm_and_dilation():
    extractor = make_roi_mask_feature_extractor(make_cfg(CONV_LAYERS=(32, 32), USE_GN=True, DILATION=2), 4)
    keys = set(extractor.state_dict())
    assert {"mask_fcn1.0.weight", "mask_fcn1.1.weight", "mask_fcn1.1.bias"} <= keys
    assert "mask_fcn1.0.bias" not in keys
    assert extractor.mask_fcn1[0].dilation == (2, 2) and extractor.mask_fcn1[0].padding == (2, 2)
    out = extractor(features(), [boxlist([[0, 0, 20, 20], [10, 5, 60, 40]])])
    assert out.shape == (2, 32, 7, 7)


def test_c4_extractor_is_registered_for_the_mask_head():
    assert registry.ROI_MASK_FEATURE_EXTRACTORS["ResNet50Conv5ROIFeatureExtractor"] is ResNet50Conv5ROIFeatureExtractor


def test_unknown_extractor_and_predictor_names():
    with pytest.raises(KeyError, match="FEATURE_EXTRACTOR"):
        make_roi_mask_feature_extractor(make_cfg(FEATURE_EXTRACTOR="Nope"), 4)
    with pytest.raises(KeyError, match="PREDICTOR"):
        make_roi_mask_predictor(make_cfg(PREDICTOR="Nope"), 4)


def test_predictors_shapes_and_key_names():
    x = torch.randn(3, 8, 7, 7)
    c4 = make_roi_mask_predictor(make_cfg(CONV_LAYERS=(8, 6)), 8)
    assert c4(x).shape == (3, NUM_CLASSES, 14, 14)
    assert set(c4.state_dict()) == {"conv5_mask.weight", "conv5_mask.bias",
                                    "mask_fcn_logits.weight", "mask_fcn_logits.bias"}
    assert c4.conv5_mask.out_channels == 6
    one = make_roi_mask_predictor(make_cfg(PREDICTOR="MaskRCNNConv1x1Predictor"), 8)
    assert one(x).shape == (3, NUM_CLASSES, 7, 7)
    assert set(one.state_dict()) == {"mask_fcn_logits.weight", "mask_fcn_logits.bias"}
    assert c4(x[:0]).shape == (0, NUM_CLASSES, 14, 14)


# ------------------------------------------------------------------------ mask targets

def test_box_equal_to_the_gt_gives_the_full_mask_bitmap_and_polygon():
    bitmap = torch.zeros(1, IMAGE_H, IMAGE_W, dtype=torch.uint8)
    bitmap[0, 10:30, 8:20] = 1  # pixels x 8..19, y 10..29: the window [8, 20] x [10, 30]
    proposals = boxlist([[8, 10, 20, 30]])
    for masks in (SegmentationMask(bitmap, (IMAGE_W, IMAGE_H), mode="mask"),
                  SegmentationMask([rectangle_polygon(8, 10, 20, 30)], (IMAGE_W, IMAGE_H), mode="poly")):
        target = project_masks_on_boxes(masks, proposals, 16)
        assert target.shape == (1, 16, 16) and target.dtype == torch.float32
        assert torch.equal(target, torch.ones(1, 16, 16)), masks.mode


def test_box_twice_the_gt_width_gives_the_left_half():
    bitmap = torch.zeros(1, IMAGE_H, IMAGE_W, dtype=torch.uint8)
    bitmap[0, 10:30, 8:20] = 1
    proposals = boxlist([[8, 10, 32, 30]])
    expected = torch.zeros(1, 10, 10)
    expected[:, :, :5] = 1
    for masks in (SegmentationMask(bitmap, (IMAGE_W, IMAGE_H), mode="mask"),
                  SegmentationMask([rectangle_polygon(8, 10, 20, 30)], (IMAGE_W, IMAGE_H), mode="poly")):
        assert torch.equal(project_masks_on_boxes(masks, proposals, 10), expected), masks.mode


def test_bitmap_targets_equal_crop_and_resize_for_integer_boxes():
    torch.manual_seed(1)
    blob = (F.avg_pool2d(torch.rand(3, 1, IMAGE_H, IMAGE_W), 7, 1, 3)[:, 0] > 0.5).to(torch.uint8)
    masks = SegmentationMask(blob, (IMAGE_W, IMAGE_H), mode="mask")
    boxes = [[0, 0, 40, 30], [5, 7, 61, 47], [20, 10, 50, 44]]  # integer, no smaller than M
    target = project_masks_on_boxes(masks, boxlist(boxes), 12)
    for i, box in enumerate(boxes):
        expected = masks[i].crop(box).resize((12, 12)).get_mask_tensor().float()
        assert torch.equal(target[i], expected), i


def test_polygon_and_bitmap_targets_agree_within_a_pixel():
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ellipse = np.stack([30 + 18 * np.cos(angles), 22 + 12 * np.sin(angles)], 1).reshape(-1).tolist()
    triangle = [5.3, 40.2, 25.7, 8.1, 44.9, 41.6]
    polygons = SegmentationMask([[ellipse], [triangle]], (IMAGE_W, IMAGE_H), mode="poly")
    bitmaps = polygons.convert("mask")
    proposals = boxlist([[10.4, 8.2, 50.7, 36.9], [3.0, 6.5, 47.2, 43.0]])
    size = 20
    from_polygons = project_masks_on_boxes(polygons, proposals, size)
    from_bitmaps = project_masks_on_boxes(bitmaps, proposals, size)
    assert from_polygons.sum() > 100
    differ = from_polygons != from_bitmaps
    assert differ.float().mean() < 0.08
    # every disagreement sits on the polygon target's boundary (a 3x3 neighbourhood sees both values)
    grown = F.max_pool2d(from_polygons[:, None], 3, 1, 1)[:, 0]
    shrunk = -F.max_pool2d(-from_polygons[:, None], 3, 1, 1)[:, 0]
    boundary = grown != shrunk
    assert (differ & ~boundary).sum() == 0


def test_polygon_targets_of_all_rois_at_once_equal_crop_and_resize_per_roi():
    gen = torch.Generator().manual_seed(7)
    instances = []
    for num_polygons in (1, 2, 0, 3):  # the third object has no polygon left
        polygons = []
        for _ in range(num_polygons):
            points = torch.rand(int(torch.randint(3, 9, (1,), generator=gen)), 2, generator=gen)
            polygons.append((points * torch.tensor([IMAGE_W, IMAGE_H])).reshape(-1).tolist())
        instances.append(polygons)
    masks = SegmentationMask(instances, (IMAGE_W, IMAGE_H), mode="poly")
    x1y1 = torch.rand(40, 2, generator=gen) * torch.tensor([IMAGE_W, IMAGE_H]) - 5
    boxes = torch.cat([x1y1, x1y1 + torch.rand(40, 2, generator=gen) * 40], 1)
    boxes[0, 2:] = boxes[0, :2] + 0.25  # thinner than a pixel: crop widens it to 1
    index = torch.randint(len(instances), (40,), generator=gen)
    expected = torch.stack([
        masks[int(i)].crop(box).resize((14, 14)).get_mask_tensor().reshape(14, 14) for i, box in zip(index, boxes)
    ])
    polygon_instances = [masks.instances.polygons[int(i)] for i in index]
    got = rasterize_polygons_in_boxes(polygon_instances, boxes, 14)
    assert got.dtype == torch.uint8 and got.shape == (40, 14, 14) and got.sum() > 0
    assert torch.equal(got, expected)
    assert torch.equal(project_masks_on_boxes(masks, boxlist(boxes.tolist()), 14, mask_indices=index), got.float())
    assert rasterize_polygons_in_boxes([], torch.zeros(0, 4), 14).shape == (0, 14, 14)
    with pytest.raises(ValueError, match="rasterize_polygons_in_boxes: 1 instances for 2 boxes"):
        rasterize_polygons_in_boxes(polygon_instances[:1], boxes[:2], 14)
    with pytest.raises(ValueError, match="x2 >= x1"):
        rasterize_polygons_in_boxes(polygon_instances[:1], torch.tensor([[5.0, 5.0, 4.0, 9.0]]), 14)


@pytest.mark.parametrize("mode", ["poly", "mask"])
def test_mask_indices_equal_indexing_the_masks(mode):
    polygons = [rectangle_polygon(8, 10, 20, 30), [[30, 5, 60, 5, 45, 25]]]
    masks = SegmentationMask(polygons, (IMAGE_W, IMAGE_H), mode=mode)
    proposals = boxlist([[30, 4, 58, 26], [6.5, 9, 22, 31.5], [29, 6, 61, 24]])
    indices = torch.tensor([1, 0, 1])
    expected = project_masks_on_boxes(masks[indices], proposals, 12)
    assert expected.sum() > 0
    assert torch.equal(project_masks_on_boxes(masks, proposals, 12, mask_indices=indices), expected)
    with pytest.raises(ValueError, match="2 mask_indices for 3 proposals"):
        project_masks_on_boxes(masks, proposals, 12, mask_indices=indices[:2])


def test_project_masks_empty_and_errors():
    masks = SegmentationMask([], (IMAGE_W, IMAGE_H), mode="poly")
    assert project_masks_on_boxes(masks, boxlist([]), 14).shape == (0, 14, 14)
    two = SegmentationMask([rectangle_polygon(0, 0, 5, 5)] * 2, (IMAGE_W, IMAGE_H))
    with pytest.raises(ValueError, match="2 masks for 1 proposals"):
        project_masks_on_boxes(two, boxlist([[0, 0, 5, 5]]), 14)
    other_size = SegmentationMask([rectangle_polygon(0, 0, 5, 5)], (IMAGE_W + 1, IMAGE_H))
    with pytest.raises(ValueError, match="image size"):
        project_masks_on_boxes(other_size, boxlist([[0, 0, 5, 5]]), 14)


# ------------------------------------------------------------------------------- loss

def mask_targets(mode="poly"):
    polygons = [rectangle_polygon(8, 10, 20, 30), rectangle_polygon(30, 5, 60, 25)]
    gt = boxlist([[8, 10, 20, 30], [30, 5, 60, 25]], labels=torch.tensor([1, 3]))
    gt.add_field("masks", SegmentationMask(polygons, (IMAGE_W, IMAGE_H), mode=mode))
    return gt


def test_mask_loss_matches_bce_on_the_gt_class_channel():
    loss_evaluator = MaskRCNNLossComputation(Matcher(0.5, 0.5), 14)
    # two positives (matching gt 1 and gt 0) and one RoI that matches nothing
    proposals = [boxlist([[31, 6, 59, 24], [8, 11, 21, 29], [0, 35, 10, 47]], labels=torch.tensor([3, 1, 0]))]
    torch.manual_seed(0)
    logits = torch.randn(3, NUM_CLASSES, 14, 14, requires_grad=True)
    loss = loss_evaluator(proposals, logits, [mask_targets()])
    assert torch.isfinite(loss)
    gt = mask_targets()
    targets = project_masks_on_boxes(gt.get_field("masks")[[1, 0]], proposals[0][[0, 1]], 14)
    expected = F.binary_cross_entropy_with_logits(logits[[0, 1], [3, 1]], targets)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[2].abs().sum() == 0 and logits.grad[0, 3].abs().sum() > 0
    assert logits.grad[0, 1].abs().sum() == 0  # only the gt class channel is trained


def test_mask_loss_bitmap_and_polygon_targets_agree_on_rectangles():
    loss_evaluator = MaskRCNNLossComputation(Matcher(0.5, 0.5), 14)
    proposals = [boxlist([[31, 6, 59, 24], [8, 11, 21, 29]], labels=torch.tensor([3, 1]))]
    logits = torch.randn(2, NUM_CLASSES, 14, 14)
    from_polygons = loss_evaluator(proposals, logits, [mask_targets("poly")])
    from_bitmaps = loss_evaluator(proposals, logits, [mask_targets("mask")])
    torch.testing.assert_close(from_polygons, from_bitmaps)


@pytest.mark.parametrize("case", ["no_positive", "no_gt", "no_rois"])
def test_mask_loss_is_a_graph_connected_zero_without_positives(case):
    loss_evaluator = MaskRCNNLossComputation(Matcher(0.5, 0.5), 14)
    targets = [mask_targets()]
    if case == "no_positive":
        proposals = [boxlist([[0, 35, 10, 47]], labels=torch.tensor([0]))]
    elif case == "no_gt":
        proposals = [boxlist([[8, 10, 20, 30]], labels=torch.tensor([1]))]
        targets = [mask_targets()[[]]]
    else:
        proposals = [boxlist([], labels=torch.zeros(0, dtype=torch.int64))]
    logits = torch.randn(len(proposals[0]), NUM_CLASSES, 14, 14, requires_grad=True)
    loss = loss_evaluator(proposals, logits, targets)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0


# ----------------------------------------------------------------------- pasting masks

def reference_paste(mask, box, height, width, threshold, padding, legacy):
    """One mask at a time, following the published algorithms: maskrcnn-benchmark's
    paste_mask_in_image (legacy) and Detectron2's grid_sample paste (modern, pixels floor(x1) ..
    ceil(x2) - 1 of the enlarged box only). Computes in the mask's floating dtype; threshold None
    returns the pasted values themselves."""
    mask = F.pad(mask if mask.is_floating_point() else mask.float(), (padding,) * 4)
    size = mask.shape[-1] - 2 * padding
    scale = (size + 2 * padding) / size
    x1, y1, x2, y2 = box.tolist()
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
    out = torch.zeros(height, width, dtype=mask.dtype)
    if legacy:
        x1, y1, x2, y2 = (int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        xa, ya, xb, yb = max(x1, 0), max(y1, 0), min(x2 + 1, width), min(y2 + 1, height)
        if xb > xa and yb > ya:
            out[ya:yb, xa:xb] = resized[ya - y1:yb - y1, xa - x1:xb - x1]
    else:
        x1, y1, x2, y2 = cx - hw, cy - hh, cx + hw, cy + hh
        xs = (torch.arange(width, dtype=mask.dtype) + 0.5 - x1) / (x2 - x1) * 2 - 1
        ys = (torch.arange(height, dtype=mask.dtype) + 0.5 - y1) / (y2 - y1) * 2 - 1
        grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], 2)
        out = F.grid_sample(mask[None, None], grid[None], align_corners=False)[0, 0]
        xa, ya = max(math.floor(x1), 0), max(math.floor(y1), 0)
        window = torch.zeros_like(out, dtype=torch.bool)
        window[ya:max(math.ceil(y2), ya), xa:max(math.ceil(x2), xa)] = True
        out = torch.where(window, out, torch.zeros_like(out))
    if threshold is None:
        return out
    if threshold >= 0:
        return (out > threshold).to(torch.uint8)
    return (out * 255).to(torch.uint8)


def test_masker_modern_pastes_a_full_mask_into_exactly_its_box():
    masks = torch.ones(3, 1, 14, 14)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 35.0], [0.0, 0.0, 5.0, 7.0], [3.0, 4.0, 40.0, 44.0]])
    pasted = Masker(threshold=0.5, padding=1, legacy_plus_one=False).paste(masks, boxes, (IMAGE_W, IMAGE_H))
    assert pasted.shape == (3, 1, IMAGE_H, IMAGE_W) and pasted.dtype == torch.uint8
    for mask, (x1, y1, x2, y2) in zip(pasted[:, 0], boxes.long().tolist()):
        expected = torch.zeros(IMAGE_H, IMAGE_W, dtype=torch.uint8)
        expected[y1:y2, x1:x2] = 1  # pixels whose centres lie inside the box
        if x2 - x1 > 28:
            # a box over 2 px per mask cell: bilinear weights of the corner pixels' two edges
            # multiply to < 0.5 against the zero padding, so the four corners drop (as in Detectron2)
            for y, x in ((y1, x1), (y1, x2 - 1), (y2 - 1, x1), (y2 - 1, x2 - 1)):
                expected[y, x] = 0
        assert torch.equal(mask, expected)


def test_masker_legacy_pastes_a_full_mask_into_its_box_up_to_truncation():
    """maskrcnn-benchmark's paste truncates the enlarged box to integers, so the pasted region of
    a legacy box (pixels x1..x2 inclusive) can lose or gain one row / column at an edge; the
    region is the published algorithm's, reproduced exactly."""
    masks = torch.ones(3, 1, 14, 14)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 35.0], [0.0, 0.0, 5.0, 7.0], [3.0, 4.0, 40.0, 44.0]])
    pasted = Masker(threshold=0.5, padding=1, legacy_plus_one=True).paste(masks, boxes, (IMAGE_W, IMAGE_H))
    for mask, box in zip(pasted[:, 0], boxes):
        assert torch.equal(mask, reference_paste(torch.ones(14, 14), box, IMAGE_H, IMAGE_W, 0.5, 1, True))
        ys, xs = mask.nonzero(as_tuple=True)
        x1, y1, x2, y2 = box.long().tolist()
        assert mask.sum() == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)  # a filled rectangle
        for got, want in zip((xs.min(), ys.min(), xs.max(), ys.max()), (x1, y1, x2, y2)):
            assert abs(int(got) - want) <= 1
    # the first box loses its last column and gains a row above: maskrcnn-benchmark's result
    ys, xs = pasted[0, 0].nonzero(as_tuple=True)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 19, 35)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("threshold", [0.5, 0.3, -1])
def test_masker_matches_a_per_box_reference(legacy, threshold):
    torch.manual_seed(3)
    num = 12
    masks = torch.rand(num, 1, 10, 10)
    x1y1 = torch.rand(num, 2) * torch.tensor([IMAGE_W, IMAGE_H]) - 8  # some start outside the image
    wh = torch.rand(num, 2) * 40 + 0.5
    boxes = torch.cat([x1y1, x1y1 + wh], dim=1)
    boxes[0] = torch.tensor([80.0, 60.0, 90.0, 70.0])  # entirely outside
    masker = Masker(threshold, padding=1, legacy_plus_one=legacy)
    pasted = masker.paste(masks, boxes, (IMAGE_W, IMAGE_H))
    expected = torch.stack([
        reference_paste(m[0], b, IMAGE_H, IMAGE_W, threshold, 1, legacy) for m, b in zip(masks, boxes)
    ])
    assert pasted[0].sum() == 0
    if threshold >= 0:
        # identical but for values within rounding of the threshold
        assert (pasted[:, 0] != expected).sum() <= 3
    else:
        assert (pasted[:, 0].int() - expected.int()).abs().max() <= 1


def test_masker_empty_and_boxlists():
    masker = Masker()
    empty = masker([torch.zeros(0, 1, 14, 14)], [boxlist([])])
    assert len(empty) == 1 and empty[0].shape == (0, 1, IMAGE_H, IMAGE_W)
    with pytest.raises(ValueError, match="2 masks for 1 boxes"):
        masker([torch.zeros(2, 1, 14, 14)], [boxlist([[0, 0, 5, 5]])])


# ------------------------------------------------------------------- post-processing

def test_post_processor_selects_the_predicted_class_channel():
    logits = torch.arange(NUM_CLASSES, dtype=torch.float32)[None, :, None, None].repeat(3, 1, 14, 14)
    detections = [boxlist([[0, 0, 10, 10], [5, 5, 30, 30]], labels=torch.tensor([2, 3]),
                          scores=torch.tensor([0.9, 0.8])),
                  boxlist([[1, 1, 9, 9]], labels=torch.tensor([1]), scores=torch.tensor([0.7]))]
    results = MaskPostProcessor()(logits, detections)
    assert [r.fields() for r in results] == [["labels", "scores", "mask"]] * 2
    first = results[0].get_field("mask")
    assert first.shape == (2, 1, 14, 14)
    torch.testing.assert_close(first[:, 0, 0, 0], torch.sigmoid(torch.tensor([2.0, 3.0])))
    expected = torch.full((14, 14), torch.sigmoid(torch.tensor(1.0)).item())
    torch.testing.assert_close(results[1].get_field("mask")[0, 0], expected)
    pasted = MaskPostProcessor(Masker(0.5))(logits, detections)
    assert pasted[0].get_field("mask").shape == (2, 1, IMAGE_H, IMAGE_W)
    none = MaskPostProcessor()(logits[:0], [boxlist([], labels=torch.zeros(0, dtype=torch.int64))])
    assert none[0].get_field("mask").shape == (0, 1, 14, 14)


def test_keep_only_positive_boxes():
    boxes = [boxlist([[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7]], labels=torch.tensor([0, 2, 1])),
             boxlist([[0, 0, 5, 5]], labels=torch.tensor([0]))]
    positive, inds = keep_only_positive_boxes(boxes)
    assert [len(b) for b in positive] == [2, 0]
    assert inds[0].tolist() == [False, True, True] and inds[1].tolist() == [False]
    with pytest.raises(ValueError, match="labels"):
        keep_only_positive_boxes([boxlist([[0, 0, 5, 5]])])


# ------------------------------------------------------------------------------ head

def check_all_parameters_have_gradients(module, nonzero=True):
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        if nonzero:
            assert parameter.grad.abs().sum() > 0, name


def test_mask_head_train_step_reaches_every_parameter_and_eval_attaches_masks():
    head = build_roi_mask_head(make_cfg(), 4)
    proposals = [boxlist([[31, 6, 59, 24], [8, 11, 21, 29], [0, 35, 10, 47]], labels=torch.tensor([3, 1, 0]))]
    head.train()
    x, returned, losses = head(features(), proposals, [mask_targets()])
    assert returned is proposals and set(losses) == {"loss_mask"}
    assert x.shape == (2, 8, 7, 7)  # positives only
    losses["loss_mask"].backward()
    check_all_parameters_have_gradients(head)

    head.eval()
    detections = [boxlist([[8, 10, 20, 30]], labels=torch.tensor([1]), scores=torch.tensor([0.9]))]
    with torch.no_grad():
        _, results, losses = head(features(), detections)
    assert losses == {} and results[0].get_field("mask").shape == (1, 1, 14, 14)
    with torch.no_grad():
        _, results, _ = head(features(), [boxlist([], labels=torch.zeros(0, dtype=torch.int64))])
    assert results[0].get_field("mask").shape == (0, 1, 14, 14)


def test_mask_head_without_positives_gives_zero_loss_with_gradients():
    head = build_roi_mask_head(make_cfg(), 4).train()
    proposals = [boxlist([[0, 35, 10, 47]], labels=torch.tensor([0]))]
    x, _, losses = head(features(), proposals, [mask_targets()])
    assert x.shape[0] == 0 and losses["loss_mask"].item() == 0
    losses["loss_mask"].backward()
    check_all_parameters_have_gradients(head, nonzero=False)


def test_mask_head_with_shared_box_features_uses_the_positive_rows():
    head = build_roi_mask_head(make_cfg(SHARE_BOX_FEATURE_EXTRACTOR=True), 4).train()
    assert head.share_box_features
    proposals = [boxlist([[31, 6, 59, 24], [0, 35, 10, 47], [8, 11, 21, 29]], labels=torch.tensor([3, 0, 1]))]
    box_features = torch.randn(3, 4, 7, 7)
    head.predictor = make_roi_mask_predictor(make_cfg(), 4)
    x, _, losses = head(box_features, proposals, [mask_targets()])
    assert torch.equal(x, box_features[[0, 2]])
    assert torch.isfinite(losses["loss_mask"])


def test_mask_head_needs_targets_in_training():
    head = build_roi_mask_head(make_cfg(), 4).train()
    with pytest.raises(ValueError, match="targets"):
        head(features(), [boxlist([[0, 0, 5, 5]], labels=torch.tensor([1]))])
