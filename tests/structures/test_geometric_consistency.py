"""A BoxList's resize / crop / transpose carries its mask and keypoint fields along."""
import pytest
import torch

from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM, BoxList
from maskrcnn.structures.keypoint import PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask

SIZE = (64, 48)
POLYGONS = [[[10, 8, 30, 8, 30, 28, 10, 28]], [[35, 20, 60, 20, 48, 44]]]


def annotated(mode, legacy):
    boxes = BoxList([[10.0, 8.0, 30.0, 28.0], [35.0, 20.0, 60.0, 44.0]], SIZE, legacy_plus_one=legacy)
    boxes.add_field("labels", torch.tensor([1, 2]))
    boxes.add_field("masks", SegmentationMask(POLYGONS, SIZE, mode=mode, legacy_plus_one=legacy))
    keypoints = torch.zeros(2, 17, 3)
    keypoints[:, 1] = torch.tensor([[12.0, 10.0, 2], [40.0, 25.0, 2]])  # left eye
    keypoints[:, 2] = torch.tensor([[28.0, 10.0, 2], [55.0, 25.0, 2]])  # right eye
    boxes.add_field("keypoints", PersonKeypoints(keypoints, SIZE, legacy_plus_one=legacy))
    return boxes


def axis_of(method):
    return 0 if method == FLIP_LEFT_RIGHT else 1


def mask_bounds(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]


@pytest.mark.parametrize("mode", ["poly", "mask"])
@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("method", [FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM])
def test_flip_carries_fields(mode, legacy, method):
    boxes = annotated(mode, legacy)
    flipped = boxes.transpose(method)
    masks = flipped.get_field("masks")
    keypoints = flipped.get_field("keypoints")
    assert masks.size == SIZE and keypoints.size == SIZE
    assert torch.equal(flipped.get_field("labels"), boxes.get_field("labels"))
    assert torch.equal(masks.get_mask_tensor(), boxes.get_field("masks").transpose(method).get_mask_tensor())
    # each flipped mask is the mirror image of the original (within a pixel), and keeps the same
    # margins to its flipped box as the original had on the mirrored sides
    pairs = zip(boxes.bbox.tolist(), boxes.get_field("masks").get_mask_tensor(), flipped.bbox.tolist(),
                masks.get_mask_tensor())
    for box, mask, new_box, new_mask in pairs:
        bounds, new_bounds = mask_bounds(mask), mask_bounds(new_mask)
        extent = SIZE[axis_of(method)] - 1
        lo, hi = (0, 2) if method == FLIP_LEFT_RIGHT else (1, 3)
        mirrored = list(bounds)
        mirrored[lo], mirrored[hi] = extent - bounds[hi], extent - bounds[lo]
        assert all(abs(a - b) <= 1 for a, b in zip(new_bounds, mirrored))
        margins = [b - m for b, m in zip(box, bounds)]
        new_margins = [b - m for b, m in zip(new_box, new_bounds)]
        margins[lo], margins[hi] = -margins[hi], -margins[lo]
        assert all(abs(a - b) <= 1 for a, b in zip(new_margins, margins))
    left_eye = keypoints.keypoints[:, 1]
    original_right_eye = boxes.get_field("keypoints").keypoints[:, 2]
    axis = axis_of(method)
    assert torch.allclose(left_eye[:, axis], SIZE[axis] - original_right_eye[:, axis] - (1 if legacy else 0))


@pytest.mark.parametrize("mode", ["poly", "mask"])
def test_resize_carries_fields(mode):
    boxes = annotated(mode, True)
    resized = boxes.resize((128, 96))
    masks = resized.get_field("masks")
    assert masks.size == (128, 96) and resized.get_field("keypoints").size == (128, 96)
    assert torch.allclose(resized.get_field("keypoints").keypoints[..., :2], boxes.get_field("keypoints").keypoints[..., :2] * 2)
    assert torch.allclose(resized.bbox, boxes.bbox * 2)
    for mask, new_mask in zip(boxes.get_field("masks").get_mask_tensor(), masks.get_mask_tensor()):
        x0, y0, x1, y1 = mask_bounds(mask)
        scaled = [2 * x0, 2 * y0, 2 * x1 + 1, 2 * y1 + 1]  # pixel i covers pixels 2i and 2i + 1
        assert all(abs(a - b) <= 1 for a, b in zip(mask_bounds(new_mask), scaled))


@pytest.mark.parametrize("mode", ["poly", "mask"])
def test_crop_carries_fields(mode):
    boxes = annotated(mode, True)
    cropped = boxes.crop([5, 4, 45, 40])
    masks = cropped.get_field("masks")
    assert cropped.size == (40, 36) and masks.size == (40, 36) and cropped.get_field("keypoints").size == (40, 36)
    assert cropped.bbox[0].tolist() == [5.0, 4.0, 25.0, 24.0]
    assert mask_bounds(masks.get_mask_tensor()[0]) == [5, 4, 24, 23]
    assert cropped.get_field("keypoints").keypoints[0, 1].tolist() == [7.0, 6.0, 2.0]
    # the second object's right eye (55, 25) falls outside the window
    assert cropped.get_field("keypoints").keypoints[1, 2].tolist() == [0.0, 0.0, 0.0]


def test_indexing_and_convert_carry_fields():
    boxes = annotated("poly", True)
    second = boxes[torch.tensor([False, True])]
    assert len(second.get_field("masks")) == 1 and len(second.get_field("keypoints")) == 1
    assert torch.equal(second.get_field("masks").get_mask_tensor(), boxes.get_field("masks").get_mask_tensor()[1])
    xywh = boxes.convert("xywh").transpose(FLIP_LEFT_RIGHT)
    assert xywh.mode == "xywh" and len(xywh.get_field("masks")) == 2


def test_mixed_conventions_are_refused():
    boxes = BoxList([[0.0, 0.0, 5.0, 5.0]], SIZE, legacy_plus_one=True)
    with pytest.raises(ValueError, match="field 'masks' uses legacy_plus_one=False"):
        boxes.add_field("masks", SegmentationMask([POLYGONS[0]], SIZE, legacy_plus_one=False))
