import hashlib
import json
import os

import cv2
import numpy as np
from pycocotools.coco import COCO

from maskrcnn.data.datasets import ShapesDataset
from maskrcnn.data.datasets.shapes import ensure_shapes_dataset


def _digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a, _ = ensure_shapes_dataset(str(tmp_path / "a"), "train", num_images=6, image_size=64, keypoints=True)
    b, _ = ensure_shapes_dataset(str(tmp_path / "b"), "train", num_images=6, image_size=64, keypoints=True)
    c, _ = ensure_shapes_dataset(str(tmp_path / "c"), "train", num_images=6, image_size=64, seed=1, keypoints=True)
    v, _ = ensure_shapes_dataset(str(tmp_path / "v"), "val", num_images=6, image_size=64, keypoints=True)
    da, db, dc, dv = (_digest(os.path.dirname(p)) for p in (a, b, c, v))
    assert da == db
    assert da != dc and da != dv
    # nothing but the final folder (and its lock file) is left
    assert sorted(n for n in os.listdir(tmp_path / "a") if not n.startswith(".")) == [os.path.basename(os.path.dirname(a))]
    assert not [n for n in os.listdir(tmp_path / "a") if n.startswith(".tmp")]


def test_polygon_masks_match_drawn_pixels(tmp_path):
    ann_file, image_root = ensure_shapes_dataset(str(tmp_path), "train", num_images=12, image_size=96, max_shapes=4)
    coco = COCO(ann_file)
    assert [c["name"] for c in coco.dataset["categories"]] == ["circle", "square", "triangle"]
    checked = 0
    for img in coco.dataset["images"]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        image = cv2.imread(os.path.join(image_root, img["file_name"]))
        assert image.shape == (96, 96, 3)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            assert ann["area"] == mask.sum()  # area is the polygon's pixel count
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1
        top = anns[-1]  # drawn last, so fully visible in one flat colour
        mask = coco.annToMask(top).astype(bool)
        colour = np.median(image[mask], axis=0)
        same = (image == colour).all(axis=-1)
        assert same[mask].all()
        assert abs(int(same.sum()) - int(mask.sum())) <= 3
        checked += 1
    assert checked == 12


def test_keypoint_variant_and_dataset(tmp_path):
    ds = ShapesDataset(str(tmp_path), "train", keypoints=True, num_images=10, image_size=64)
    with open(ds.ann_file) as f:
        content = json.load(f)
    tri = [c for c in content["categories"] if c["name"] == "triangle"][0]
    assert tri["keypoints"] == ["top", "left", "right"] and tri["skeleton"]
    for ann in content["annotations"]:
        kps = np.array(ann["keypoints"]).reshape(3, 3)
        if ann["category_id"] == tri["id"]:
            poly = np.array(ann["segmentation"][0]).reshape(-1, 2)
            assert np.allclose(kps[:, :2], poly)  # keypoints are the vertices
            assert kps[0, 1] < kps[1:, 1].min()  # "top" is above the base
            assert kps[1, 0] < kps[2, 0]  # "left" is left of "right"
        else:
            assert (kps == 0).all() and ann["num_keypoints"] == 0
    image, target, _ = ds[0]
    assert set(target.fields()) == {"labels", "masks", "keypoints"}
    assert type(target.get_field("keypoints")).NAMES == ["top", "left", "right"]
    # generated once: a second dataset reuses the folder
    again = ShapesDataset(str(tmp_path), "train", keypoints=True, num_images=10, image_size=64)
    assert again.ann_file == ds.ann_file


def _generate(root, queue):
    queue.put(ensure_shapes_dataset(root, "train", num_images=8, image_size=48))


def test_interrupted_and_concurrent_generation(tmp_path):
    import multiprocessing as mp

    root = str(tmp_path)
    os.makedirs(os.path.join(root, ".tmp-train_leftover"))  # what a killed run leaves behind
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(root, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(results)) == 1
    ann_file, image_root = results[0]
    assert len(os.listdir(image_root)) == 8
    finished = [n for n in os.listdir(root) if not n.startswith(".")]
    assert finished == [os.path.basename(os.path.dirname(ann_file))]
    assert [n for n in os.listdir(root) if n.startswith(".tmp-")] == [".tmp-train_leftover"]
