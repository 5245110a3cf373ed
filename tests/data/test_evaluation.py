import json
import os

import numpy as np
import pytest
import torch

from maskrcnn.data.datasets import ShapesDataset
from maskrcnn.data.datasets.evaluation import evaluate
from maskrcnn.data.datasets.evaluation.coco.coco_eval import check_expected_results
from maskrcnn.data.datasets.evaluation.voc.voc_eval import calc_detection_voc_ap, eval_detection_voc
from maskrcnn.structures.bounding_box import BoxList


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    return ShapesDataset(str(tmp_path_factory.mktemp("shapes")), "val", num_images=8, image_size=64,
                         remove_images_without_annotations=False)


def _perfect(ds, scale=0.5):
    """Ground truth as predictions, in an image resized by `scale` (evaluation resizes back)."""
    preds = []
    for i in range(len(ds)):
        gt = ds.get_target(i)
        masks = gt.get_field("masks").get_mask_tensor().float()[:, None]
        p = gt.resize((int(gt.size[0] * scale), int(gt.size[1] * scale)))
        p = BoxList(p.bbox, p.size)
        p.add_field("scores", torch.linspace(1.0, 0.5, len(gt)))
        p.add_field("labels", gt.get_field("labels"))
        p.add_field("mask", masks)  # full-image masks of the original size
        p.add_field("objectness", torch.ones(len(gt)))
        preds.append(p)
    return preds


def test_perfect_detections_ap_one_and_perturbed_much_less(shapes_val, tmp_path):
    preds = _perfect(shapes_val)
    res, _ = evaluate(shapes_val, preds, str(tmp_path), box_only=False, iou_types=("bbox", "segm"))
    assert res.results["bbox"]["AP"] > 0.99 and res.results["segm"]["AP"] > 0.99
    for name in ("bbox.json", "segm.json", "coco_results.json"):
        assert os.path.isfile(tmp_path / name)
    with open(tmp_path / "coco_results.json") as f:
        summary = json.load(f)
    assert set(summary["per_class_AP"]["bbox"]) == {"circle", "square", "triangle"}
    # perturbed: boxes shifted by a third of their size, masks rolled, labels shuffled
    g = torch.Generator().manual_seed(0)
    bad = []
    for p in preds:
        q = BoxList(p.bbox + (p.bbox[:, 2:] - p.bbox[:, :2]).repeat(1, 2) / 3, p.size)
        q.add_field("scores", torch.rand(len(p), generator=g))
        q.add_field("labels", p.get_field("labels")[torch.randperm(len(p), generator=g)])
        q.add_field("mask", torch.roll(p.get_field("mask"), shifts=(8, 8), dims=(2, 3)))
        bad.append(q)
    res_bad, _ = evaluate(shapes_val, bad, None, box_only=False, iou_types=("bbox", "segm"))
    assert res_bad.results["bbox"]["AP"] < 0.5 and res_bad.results["segm"]["AP"] < 0.5


def test_box_proposals_recall(shapes_val, tmp_path):
    res, _ = evaluate(shapes_val, _perfect(shapes_val), str(tmp_path), box_only=True)
    assert res.results["box_proposal"]["AR@100"] > 0.99
    empty = [BoxList(torch.zeros((0, 4)), p.size) for p in _perfect(shapes_val)]
    for e in empty:
        e.add_field("objectness", torch.zeros(0))
    res0, _ = evaluate(shapes_val, empty, None, box_only=True)
    assert res0.results["box_proposal"]["AR@100"] == 0.0


def test_check_expected_results(shapes_val):
    res, _ = evaluate(shapes_val, _perfect(shapes_val), None, iou_types=("bbox",))
    assert check_expected_results(res, [("bbox", "AP", 1.0, 0.01)], 4)
    assert not check_expected_results(res, [("bbox", "AP", 0.5, 0.01)], 4)


def _boxlist(boxes, labels, scores=None, difficult=None):
    b = BoxList(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), (100, 100))
    b.add_field("labels", torch.tensor(labels))
    if scores is not None:
        b.add_field("scores", torch.tensor(scores))
    if difficult is not None:
        b.add_field("difficult", torch.tensor(difficult))
    return b


def test_voc_ap_hand_case():
    gt = [_boxlist([[0, 0, 9, 9], [20, 20, 29, 29], [50, 50, 59, 59]], [1, 1, 1], difficult=[False, False, True])]
    # scores: TP (0.9), FP (0.8), TP (0.7), matched to a difficult box (ignored, 0.6)
    pred = [_boxlist([[0, 0, 9, 9], [70, 70, 79, 79], [20, 20, 29, 29], [50, 50, 59, 59]], [1, 1, 1, 1],
                     scores=[0.9, 0.8, 0.7, 0.6])]
    result = eval_detection_voc(pred, gt, use_07_metric=False)
    # precision 1, 1/2, 2/3 at recall 0.5, 0.5, 1 -> area = 0.5 * 1 + 0.5 * 2/3
    assert result["ap"][1] == pytest.approx(0.5 + 0.5 * 2 / 3)
    result07 = eval_detection_voc(pred, gt, use_07_metric=True)
    assert result07["ap"][1] == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert np.isnan(result["ap"][0])
    assert calc_detection_voc_ap([np.array([1.0])], [np.array([1.0])])[0] == pytest.approx(1.0)


def test_keypoint_evaluation_on_shapes(tmp_path):
    ds = ShapesDataset(str(tmp_path), "val", keypoints=True, num_images=6, image_size=64,
                       remove_images_without_annotations=False)
    preds = []
    for i in range(len(ds)):
        gt = ds.get_target(i)
        p = BoxList(gt.bbox, gt.size)
        p.add_field("scores", torch.ones(len(gt)))
        p.add_field("labels", gt.get_field("labels"))
        p.add_field("keypoints", gt.get_field("keypoints"))
        preds.append(p)
    res, _ = evaluate(ds, preds, None, iou_types=("keypoints",))
    assert res.results["keypoints"]["AP"] > 0.99
    for p in preds:
        kps = p.get_field("keypoints")
        kps.keypoints[..., :2] += 6  # far beyond the OKS tolerance for these small shapes
    res_bad, _ = evaluate(ds, preds, None, iou_types=("keypoints",))
    assert res_bad.results["keypoints"]["AP"] < 0.3
