import sys
import types

import pytest
import torch

from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import boxlist_iou, boxlist_nms, cat_boxlist, remove_small_boxes
from maskrcnn.structures.keypoint import PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask


def random_boxes(count, seed, size=60.0):
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(count, 2, generator=generator) * size / 2
    extent = torch.rand(count, 2, generator=generator) * size / 2
    return torch.cat([top_left, top_left + extent], dim=1)


def reference_iou(boxes1, boxes2, offset):
    """Pairwise IoU, one pair at a time, in float64 Python arithmetic."""
    result = torch.zeros(len(boxes1), len(boxes2), dtype=torch.float64)
    for i, a in enumerate(boxes1.double().tolist()):
        for j, b in enumerate(boxes2.double().tolist()):
            width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + offset)
            height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + offset)
            inter = width * height
            area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset)
            area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset)
            result[i, j] = inter / (area_a + area_b - inter)
    return result


@pytest.mark.parametrize("legacy", [True, False])
def test_boxlist_iou_matches_float64_reference(legacy):
    boxes1 = random_boxes(7, seed=1)
    boxes2 = torch.cat([random_boxes(5, seed=2), boxes1[:2], torch.tensor([[100.0, 100.0, 110.0, 120.0]])])
    iou = boxlist_iou(BoxList(boxes1, (200, 200), legacy_plus_one=legacy),
                      BoxList(boxes2, (200, 200), legacy_plus_one=legacy).convert("xywh"))
    expected = reference_iou(boxes1, boxes2, 1 if legacy else 0)
    assert iou.shape == (7, 8)
    torch.testing.assert_close(iou.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(iou[0, 5], torch.tensor(1.0)) and iou[:, 7].abs().max() == 0


def test_boxlist_iou_legacy_hand_case():
    # legacy: [0,0,9,9] covers 10x10 pixels, [5,5,14,14] overlaps it on 5x5
    first = BoxList([[0.0, 0.0, 9.0, 9.0]], (20, 20))
    second = BoxList([[5.0, 5.0, 14.0, 14.0]], (20, 20))
    assert boxlist_iou(first, second).item() == pytest.approx(25 / 175)


def test_boxlist_iou_errors_and_empty():
    a = BoxList(random_boxes(3, seed=0), (60, 60))
    assert boxlist_iou(a, BoxList(torch.zeros(0, 4), (60, 60))).shape == (3, 0)
    with pytest.raises(RuntimeError, match="same image size"):
        boxlist_iou(a, BoxList(random_boxes(3, seed=0), (60, 61)))
    with pytest.raises(ValueError, match="different box conventions"):
        boxlist_iou(a, BoxList(random_boxes(3, seed=0), (60, 60), legacy_plus_one=False))


@pytest.mark.parametrize("legacy", [True, False])
def test_remove_small_boxes(legacy):
    boxes = torch.tensor([[0.0, 0.0, 4.0, 10.0], [0.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 3.0], [2.0, 2.0, 9.0, 9.0]])
    boxlist = BoxList(boxes, (20, 20), legacy_plus_one=legacy)
    boxlist.add_field("labels", torch.arange(4))
    kept = remove_small_boxes(boxlist, min_size=5)
    # widths are 5, 6, 11, 8 (legacy) or 4, 5, 10, 7 (modern); heights 11, 11, 4, 8 or 10, 10, 3, 7
    assert kept.get_field("labels").tolist() == ([0, 1, 3] if legacy else [1, 3])
    assert len(remove_small_boxes(boxlist, min_size=0)) == 4


def test_cat_boxlist_concatenates_tensors_and_structures():
    first = BoxList(random_boxes(2, seed=3), (60, 60))
    second = BoxList(random_boxes(3, seed=4), (60, 60))
    for part, count in ((first, 2), (second, 3)):
        part.add_field("labels", torch.arange(count))
        part.add_field("masks", SegmentationMask([[[1, 1, 9, 1, 9, 9]]] * count, (60, 60)))
        part.add_field("keypoints", PersonKeypoints(torch.ones(count, 17, 3), (60, 60)))
    joined = cat_boxlist([first, second])
    assert len(joined) == 5 and joined.size == (60, 60) and joined.mode == "xyxy"
    assert torch.equal(joined.bbox, torch.cat([first.bbox, second.bbox]))
    assert joined.get_field("labels").tolist() == [0, 1, 0, 1, 2]
    assert len(joined.get_field("masks")) == 5 and joined.get_field("keypoints").keypoints.shape == (5, 17, 3)
    assert cat_boxlist([first]).bbox is first.bbox


def test_cat_boxlist_checks():
    a = BoxList(random_boxes(2, seed=3), (60, 60))
    with pytest.raises(ValueError, match=r"image size \(60, 50\) of bboxes\[1\] differs from \(60, 60\)"):
        cat_boxlist([a, BoxList(random_boxes(2, seed=3), (60, 50))])
    with pytest.raises(ValueError, match="mode 'xywh' of bboxes\\[1\\]"):
        cat_boxlist([a, a.convert("xywh")])
    b = BoxList(random_boxes(2, seed=3), (60, 60))
    b.add_field("labels", torch.ones(2))
    with pytest.raises(ValueError, match=r"fields \['labels'\] of bboxes\[1\] differ from \[\]"):
        cat_boxlist([a, b])
    with pytest.raises(ValueError, match="non-empty"):
        cat_boxlist([])
    with pytest.raises(TypeError, match=r"bboxes\[1\] is a Tensor"):
        cat_boxlist([a, torch.zeros(2, 4)])


def _reference_nms(boxes, scores, threshold, legacy_plus_one=True):
    offset = 1 if legacy_plus_one else 0
    order = scores.argsort(descending=True).tolist()
    keep = []
    iou = reference_iou(boxes, boxes, offset)
    for i in order:
        if all(iou[i, j] <= threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def test_boxlist_nms_wrapper_with_reference_op(monkeypatch):
    calls = []

    def fake_nms(boxes, scores, threshold, legacy_plus_one=True):
        calls.append(legacy_plus_one)
        return _reference_nms(boxes, scores, threshold, legacy_plus_one)

    monkeypatch.setitem(sys.modules, "maskrcnn.layers", types.SimpleNamespace(nms=fake_nms))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [21.0, 20.0, 30.0, 30.0]])
    boxlist = BoxList(boxes, (40, 40), legacy_plus_one=False).convert("xywh")
    boxlist.add_field("objectness", torch.tensor([0.9, 0.95, 0.5, 0.7]))
    kept = boxlist_nms(boxlist, 0.5, score_field="objectness")
    assert kept.mode == "xywh" and calls == [False]
    assert kept.get_field("objectness").tolist() == pytest.approx([0.95, 0.7])
    assert len(boxlist_nms(boxlist, 0.5, max_proposals=1, score_field="objectness")) == 1
    assert boxlist_nms(boxlist, 0.0, score_field="objectness") is boxlist


def test_boxlist_nms_with_compiled_op():
    """Needs maskrcnn.layers.nms from the nms-focal branch."""
    boxes = random_boxes(40, seed=5)
    scores = torch.rand(40, generator=torch.Generator().manual_seed(6))
    boxlist = BoxList(boxes, (60, 60))
    boxlist.add_field("scores", scores)
    kept = boxlist_nms(boxlist, 0.4)
    expected = _reference_nms(boxes, scores, 0.4)
    assert torch.equal(kept.bbox, boxes[expected])
    assert len(boxlist_nms(boxlist, 0.4, max_proposals=3)) == min(3, len(expected))
