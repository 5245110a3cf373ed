import json
import logging
import os

import numpy as np
import pytest
import torch

from maskrcnn.data.datasets import COCODataset, ConcatDataset, ListDataset
from maskrcnn.data.datasets.coco_json import MalformedAnnotationError
from maskrcnn.data.datasets.image_io import UnreadableImageError


def test_coco_targets(coco_factory, tmp_path):
    ann_file, root, _ = coco_factory(tmp_path)
    ds = COCODataset(ann_file, root, remove_images_without_annotations=False)
    assert len(ds) == 3
    assert ds.json_category_id_to_contiguous_id == {3: 1, 7: 2}
    assert ds.contiguous_category_id_to_json_id == {1: 3, 2: 7}
    image, target, index = ds[0]
    assert index == 0 and image.shape == (60, 80, 3) and image.dtype == np.uint8
    assert target.size == (80, 60)
    assert len(target) == 2  # the crowd annotation is excluded
    assert target.get_field("labels").tolist() == [2, 1]
    xyxy = target.convert("xyxy").bbox
    assert torch.allclose(xyxy[0], torch.tensor([10.0, 10.0, 29.0, 29.0]))  # legacy +1: x2 = x + w - 1
    masks = target.get_field("masks").get_mask_tensor()
    assert masks.shape == (2, 60, 80)
    assert int(masks[1].sum()) == 600  # RLE decoded exactly
    assert masks[1, 10:30, 40:70].all()
    assert 300 < int(masks[0].sum()) <= 441  # polygon 20x20 rasterised
    kps = target.get_field("keypoints")
    assert kps.keypoints.shape == (2, 3, 3)
    assert type(kps).NAMES == ["a", "left_x", "right_x"]
    assert type(kps).FLIP_INDS.tolist() == [0, 2, 1]
    assert ds.get_img_info(2)["width"] == 30
    _, empty, _ = ds[2]
    assert len(empty) == 0


def test_json_category_ids_as_labels(coco_factory, tmp_path):
    # torchvision's COCO models: labels are the JSON category ids (NUM_CLASSES 91)
    ann_file, root, _ = coco_factory(tmp_path)
    ds = COCODataset(ann_file, root, remove_images_without_annotations=False, contiguous_category_ids=False)
    assert ds.json_category_id_to_contiguous_id == {3: 3, 7: 7}
    assert ds.contiguous_category_id_to_json_id == {3: 3, 7: 7}
    assert ds[0][1].get_field("labels").tolist() == [7, 3]


def test_training_drops_images_without_annotations(coco_factory, tmp_path):
    ann_file, root, _ = coco_factory(tmp_path, with_keypoints=False)
    ds = COCODataset(ann_file, root, remove_images_without_annotations=True)
    assert [ds.get_img_info(i)["file_name"] for i in range(len(ds))] == ["a.png", "b.png"]


def test_concat_and_list_dataset(coco_factory, tmp_path):
    ann_file, root, _ = coco_factory(tmp_path)
    a = COCODataset(ann_file, root, False)
    b = COCODataset(ann_file, root, True, min_keypoints_per_image=1)
    cat = ConcatDataset([a, b])
    assert len(cat) == 5
    assert cat.get_idxs(3) == (1, 0)
    assert cat.get_img_info(4)["file_name"] == "b.png"
    lst = ListDataset(root)
    assert len(lst) == 3
    image, target, index = lst[1]
    assert image.shape == (40, 50, 3) and len(target) == 0 and index == 1
    assert lst.get_img_info(2) == {"height": 30, "width": 30, "file_name": os.path.join(root, "c.png")}


def _rewrite(ann_file, fn):
    with open(ann_file) as f:
        content = json.load(f)
    fn(content)
    with open(ann_file, "w") as f:
        json.dump(content, f)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.pop("images"), "missing the 'images'"),
        (lambda c: c.pop("annotations"), "missing the 'annotations'"),
        (lambda c: c.pop("categories"), "missing the 'categories'"),
        (lambda c: c["annotations"][0].update(image_id=99), "unknown image_id 99"),
        (lambda c: c["annotations"][1].update(category_id=5), "unknown category_id 5"),
    ],
)
def test_malformed_json_names_file_and_fault(coco_factory, tmp_path, mutate, message):
    ann_file, root, _ = coco_factory(tmp_path)
    _rewrite(ann_file, mutate)
    with pytest.raises(MalformedAnnotationError, match=message) as info:
        COCODataset(ann_file, root, False)
    assert ann_file in str(info.value)


def test_not_json(coco_factory, tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(MalformedAnnotationError, match="not valid JSON"):
        COCODataset(str(path), str(tmp_path), False)


def test_unreadable_image_raises_or_is_skipped(coco_factory, tmp_path, caplog):
    ann_file, root, _ = coco_factory(tmp_path)
    with open(os.path.join(root, "a.png"), "wb") as f:
        f.write(b"garbage")
    os.remove(os.path.join(root, "b.png"))
    ds = COCODataset(ann_file, root, False)
    with pytest.raises(UnreadableImageError, match=r"a\.png \(dataset index 0\)"):
        ds[0]
    with pytest.raises(UnreadableImageError, match=r"not found: .*b\.png \(dataset index 1\)"):
        ds[1]
    ds = COCODataset(ann_file, root, False, skip_unreadable_images=True)
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data"):
        image, target, index = ds[0]
    assert index == 2 and image.shape == (30, 30, 3)
    assert ds.skipped_images == 2 and "skipped" in caplog.text


def test_bad_boxes_and_polygons_dropped_with_count(coco_factory, tmp_path, caplog):
    ann_file, root, _ = coco_factory(tmp_path, with_keypoints=False)

    def add_bad(c):
        base = {"image_id": 2, "category_id": 7, "area": 1, "iscrowd": 0}
        c["annotations"] += [
            dict(base, id=10, bbox=[5, 5, 0, 10], segmentation=[[5, 5, 5, 15, 5, 10]]),  # zero width
            dict(base, id=11, bbox=[5, 5, -4, 10], segmentation=[[5, 5, 1, 5, 1, 15]]),  # inverted
            dict(base, id=12, bbox=[100, 100, 10, 10], segmentation=[[100, 100, 110, 100, 110, 110]]),  # outside
            dict(base, id=13, bbox=[1, 1, 10, 10], segmentation=[[]]),  # empty polygon
        ]

    _rewrite(ann_file, add_bad)
    ds = COCODataset(ann_file, root, True)
    with caplog.at_level(logging.INFO, logger="maskrcnn.data"):
        _, target, _ = ds[1]
    assert len(target) == 1
    assert ds.dropped_annotations == 4
    assert "dropped 4 annotation(s)" in caplog.text
