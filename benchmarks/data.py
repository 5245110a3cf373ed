"""Training data loader throughput (images/second): the shapes set and a COCO-like set of large
images resized to 800x1333, with 0 and 2 worker processes. Prints a table.

    PYTHONPATH=. python benchmarks/data.py [--iters 30] [--workers 0 2]
"""
import argparse
import json
import os
import tempfile
import time

import cv2
import numpy as np

from maskrcnn.config import cfg
from maskrcnn.config.paths_catalog import register_coco_instances
from maskrcnn.data import make_data_loader


def write_large_coco(folder, count=16, size=(1024, 1536)):
    """`count` synthetic JPEGs (h, w) = size with a few box/polygon annotations each."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    images, anns = [], []
    h, w = size
    for i in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (9, 9), 3)
        name = "%04d.jpg" % i
        cv2.imwrite(os.path.join(folder, "images", name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for _ in range(5):
            x, y = rng.uniform(0, w - 200), rng.uniform(0, h - 200)
            bw, bh = rng.uniform(20, 200, size=2)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, bw, bh], "area": bw * bh,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
    ann_file = os.path.join(folder, "instances.json")
    with open(ann_file, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}, f)
    return ann_file, os.path.join(folder, "images")


def measure(c, iters):
    loader = make_data_loader(c, is_train=True)
    iterator = iter(loader)
    next(iterator)  # start-up (workers, first batch) is not counted
    count, start = 0, time.perf_counter()
    for images, _, _ in iterator:
        count += images.tensors.shape[0]
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="maskrcnn-bench-data-")
    os.environ["MASKRCNN_DATA_DIR"] = tmp
    ann_file, image_root = write_large_coco(os.path.join(tmp, "large"))
    register_coco_instances("bench_large_coco", ann_file, image_root)

    shapes = cfg.clone()
    shapes.DATASETS.TRAIN = ("shapes_train",)
    shapes.DATASETS.SHAPES.NUM_TRAIN_IMAGES = 400
    shapes.INPUT.MIN_SIZE_TRAIN = (128,)
    shapes.INPUT.MAX_SIZE_TRAIN = 128
    shapes.SOLVER.IMS_PER_BATCH = 8
    large = cfg.clone()
    large.DATASETS.TRAIN = ("bench_large_coco",)
    large.SOLVER.IMS_PER_BATCH = 2
    large.DATALOADER.SIZE_DIVISIBILITY = 32

    print("| dataset | image size | batch | workers | images/s |")
    print("|---|---|---|---|---|")
    for label, c, size in (("shapes", shapes, "128x128"), ("COCO-like", large, "1024x1536 -> 800x1200")):
        for workers in args.workers:
            c = c.clone()
            c.DATALOADER.NUM_WORKERS = workers
            c.SOLVER.MAX_ITER = args.iters + 1
            rate = measure(c, args.iters)
            print("| %s | %s | %d | %d | %.1f |" % (label, size, c.SOLVER.IMS_PER_BATCH, workers, rate))


if __name__ == "__main__":
    main()
