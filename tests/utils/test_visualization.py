"""maskrcnn/utils/visualization.py with hand-made BoxLists: what is drawn where."""
import numpy as np
import pytest
import torch

from maskrcnn.data.datasets.class_names import dataset_metadata
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import make_keypoints_class
from maskrcnn.structures.segmentation_mask import SegmentationMask
from maskrcnn.utils import visualization as vis

TriangleKeypoints = make_keypoints_class("TriangleKeypoints", ["top", "left", "right"])


def flat(height=100, width=120, value=100):
    return np.full((height, width, 3), value, dtype=np.uint8)


def detections(labels=(1,), with_keypoints=False):
    boxes = torch.tensor([[20.0, 30.0, 70.0, 80.0]] * len(labels))
    result = BoxList(boxes, (120, 100))
    result.add_field("labels", torch.tensor(labels))
    result.add_field("scores", torch.full((len(labels),), 0.93))
    mask = torch.zeros(len(labels), 1, 100, 120, dtype=torch.uint8)
    mask[:, :, 40:70, 30:60] = 1
    result.add_field("mask", mask)
    if with_keypoints:
        points = torch.tensor([[[45.0, 35.0, 1.0], [25.0, 75.0, 1.0], [65.0, 75.0, 1.0]]] * len(labels))
        keypoints = TriangleKeypoints(points, (120, 100))
        keypoints.add_field("logits", torch.full((len(labels), 3), 5.0))
        result.add_field("keypoints", keypoints)
    return result


def test_label_colors_are_stable_and_distinct():
    assert vis.label_color(3) == vis.label_color(3)
    colors = {vis.label_color(label) for label in range(1, 81)}
    assert len(colors) == 80
    assert all(0 <= c <= 255 for color in colors for c in color)


def test_draw_instances_draws_inside_the_box_only():
    image = flat()
    drawn = vis.draw_instances(image, detections(), dataset_metadata("shapes_val"))
    assert np.array_equal(image, flat()), "input untouched"
    changed = (drawn != image).any(axis=2)
    # mask fill: (nearly) every mask pixel changes colour
    assert changed[41:69, 31:59].mean() > 0.95
    # the label sits above the box (y < 30), the rest of the image is untouched
    assert changed[:30, 20:].any()
    assert not changed[85:, :].any() and not changed[:, 80:].any()


def test_masks_from_a_segmentation_mask_and_without_scores():
    target = BoxList(torch.tensor([[10.0, 10.0, 50.0, 50.0]]), (120, 100))
    target.add_field("labels", torch.tensor([2]))
    target.add_field("masks", SegmentationMask([[[10, 10, 50, 10, 50, 50, 10, 50]]], (120, 100)))
    masks = vis.instance_masks(target, 100, 120)
    assert masks.shape == (1, 100, 120) and masks[0, 20:40, 20:40].all() and not masks[0, 60:, :].any()
    drawn = vis.draw_instances(flat(), target, dataset_metadata("shapes_val"))
    assert (drawn[20:40, 20:40] != 100).any(axis=2).all()


def test_keypoints_only_for_categories_that_have_them():
    metadata = dataset_metadata("keypoints_shapes_val")
    assert metadata.keypoint_labels == (3,)
    image = flat()
    for label, expect in ((1, False), (3, True)):
        with_points = vis.draw_instances(image, detections((label,), with_keypoints=True), metadata)
        without = vis.draw_instances(image, detections((label,)), metadata)
        assert (with_points != without).any() == expect
    # below the score threshold nothing is drawn
    low = detections((3,), with_keypoints=True)
    low.get_field("keypoints").add_field("logits", torch.zeros(1, 3))
    assert np.array_equal(vis.draw_instances(image, low, metadata), vis.draw_instances(image, detections((3,)), metadata))


def test_mask_montage_and_grid():
    masks = torch.zeros(3, 1, 100, 120, dtype=torch.uint8)
    masks[0, 0, :50] = 255
    montage = vis.create_mask_montage(flat(), masks, masks_per_dim=2)
    assert montage.shape == (100, 120, 3)
    assert not np.array_equal(montage[5, 5], montage[45, 5]), "first tile: top half hot, bottom cold"
    assert np.array_equal(montage[55, 65], montage[99, 119]), "the empty fourth tile is cold"
    with pytest.raises(ValueError, match="masks_per_dim"):
        vis.create_mask_montage(flat(), masks, masks_per_dim=0)
    grid = vis.make_grid([flat(), flat(50, 60), flat()], padding=2, titles=["a", "b", "c"])
    assert grid.shape == (2 * 100 + 3 * 2, 2 * 120 + 3 * 2, 3)
    with pytest.raises(ValueError, match="no images"):
        vis.make_grid([])


def test_pasted_mask_of_the_wrong_size_is_refused():
    result = detections()
    result.add_field("mask", torch.ones(1, 1, 28, 28))
    with pytest.raises(ValueError, match="pasted into the image"):
        vis.draw_instances(flat(), result)
