"""A small hand-written COCO dataset for the data tests."""
import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def write_images(folder, sizes):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        cv2.imwrite(os.path.join(folder, name), rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))


def make_coco(tmp_path, with_keypoints=True):
    """Image 1 (60x80): a polygon cat-7 object, an RLE cat-3 object, a crowd box; image 2 (40x50):
    one polygon; image 3: no annotations. Categories 3 and 7 (non-contiguous json ids)."""
    root = str(tmp_path / "images")
    write_images(root, {"a.png": (60, 80), "b.png": (40, 50), "c.png": (30, 30)})
    rle_mask = np.zeros((60, 80), dtype=np.uint8)
    rle_mask[10:30, 40:70] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    kp = [12, 12, 2, 20, 20, 1, 0, 0, 0]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0,
         "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [40, 10, 30, 20], "area": 600, "iscrowd": 0,
         "segmentation": rle},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 40, 50, 15], "area": 750, "iscrowd": 1,
         "segmentation": rle},
        {"id": 4, "image_id": 2, "category_id": 7, "bbox": [5, 5, 10, 20], "area": 200, "iscrowd": 0,
         "segmentation": [[5, 5, 15, 5, 15, 25, 5, 25]]},
    ]
    if with_keypoints:
        for ann in anns:
            ann["keypoints"] = list(kp)
            ann["num_keypoints"] = 2
    content = {
        "images": [{"id": 1, "file_name": "a.png", "height": 60, "width": 80},
                   {"id": 2, "file_name": "b.png", "height": 40, "width": 50},
                   {"id": 3, "file_name": "c.png", "height": 30, "width": 30}],
        "annotations": anns,
        "categories": [{"id": 3, "name": "box"}, {"id": 7, "name": "thing", "keypoints": ["a", "left_x", "right_x"],
                                                   "skeleton": [[1, 2]]}],
    }
    ann_file = str(tmp_path / "instances.json")
    with open(ann_file, "w") as f:
        json.dump(content, f)
    return ann_file, root, content


import pytest  # noqa: E402


@pytest.fixture
def coco_factory():
    """make_coco(tmp_path, with_keypoints=True) -> (ann_file, image_root, content)."""
    return make_coco
