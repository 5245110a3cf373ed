"""The embedded "shapes" dataset: synthetic COCO-format images generated on first use.

Each image shows 1..N randomly placed, sized, rotated and coloured circles, squares and
triangles, which may overlap, on a textured background (colour gradient + blotches + noise).
Every shape is *drawn from its annotation polygon* with the COCO rasterizer
(`pycocotools.mask.frPyObjects` + `decode`), so the mask COCO derives from the polygon is
exactly the set of pixels painted for that shape (annotations are amodal: a shape partly
covered by a later one keeps its full polygon; placements covering more than half of an
earlier shape are rejected). Circles are fine polygons (a vertex every ~2 pixels).

In the keypoint variant the triangles carry their three vertices as keypoints named
"top", "left", "right" (COCO keypoint format: [x, y, v] * 3, v=2 visible, v=1 covered by a later
shape); circles and squares carry three unlabeled keypoints (v=0) so every annotation has the
same keypoint count, as pycocotools' OKS needs.

Generation is deterministic: image `i` of split `s` is drawn from a random stream seeded by
(seed, crc32(s), i), and the files are written in a fixed order, so the same parameters give the
same bytes. `ensure_shapes_dataset` generates into a temporary folder and renames it into place,
so a killed generation never leaves a half-written dataset and concurrent processes are safe.
"""
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import zlib

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .coco import COCODataset

logger = logging.getLogger("maskrcnn.data")

SHAPE_NAMES = ("circle", "square", "triangle")
TRIANGLE_KEYPOINT_NAMES = ["top", "left", "right"]
TRIANGLE_SKELETON = [[1, 2], [2, 3], [3, 1]]  # 1-based, as COCO writes skeletons
DEFAULT_NUM_IMAGES = {"train": 2000, "val": 200, "test": 200}
FORMAT_VERSION = 1  # bump when the drawing changes, so cached datasets are regenerated


def shapes_categories(keypoints=False):
    """COCO "categories" of the shapes dataset: ids 1..3 = circle, square, triangle."""
    categories = []
    for cat_id, name in enumerate(SHAPE_NAMES, start=1):
        category = {"id": cat_id, "name": name, "supercategory": "shape"}
        if keypoints and name == "triangle":
            category["keypoints"] = list(TRIANGLE_KEYPOINT_NAMES)
            category["skeleton"] = [list(edge) for edge in TRIANGLE_SKELETON]
        categories.append(category)
    return categories


def _image_size_hw(image_size):
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    return height, width


def _shapes_params(num_images, image_size, min_shapes, max_shapes, seed, keypoints, image_format):
    height, width = _image_size_hw(image_size)
    if num_images < 0:
        raise ValueError("shapes: num_images must be >= 0, got %r" % num_images)
    if height < 16 or width < 16:
        raise ValueError("shapes: image_size must be at least 16 pixels, got %r" % (image_size,))
    if not 0 <= min_shapes <= max_shapes:
        raise ValueError(
            "shapes: need 0 <= min_shapes <= max_shapes, got %r, %r" % (min_shapes, max_shapes)
        )
    if image_format not in ("png", "jpg"):
        raise ValueError("shapes: image_format must be 'png' or 'jpg', got %r" % (image_format,))
    return {
        "version": FORMAT_VERSION,
        "num_images": int(num_images),
        "height": height,
        "width": width,
        "min_shapes": int(min_shapes),
        "max_shapes": int(max_shapes),
        "seed": int(seed),
        "keypoints": bool(keypoints),
        "image_format": image_format,
    }


# ----------------------------------------------------------------------------------- drawing
def _background(rng, height, width):
    """Float32 [H, W, 3] BGR texture: a two-colour linear gradient, coloured blotches, noise."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    cells = int(rng.integers(3, 9))
    blotches = rng.uniform(-60, 60, size=(cells, cells, 3)).astype(np.float32)
    image += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, rng.uniform(2, 12), size=image.shape)
    return image.astype(np.float32)


def _shape_polygon(rng, kind, center, size):
    """Vertices [V, 2] (x, y) of a shape of the given kind around `center` with "radius" `size`."""
    cx, cy = center
    if kind == "circle":
        count = max(16, int(math.ceil(2 * math.pi * size / 2.0)))
        angles = np.arange(count) * (2 * math.pi / count)
        radii = np.full(count, size)
    elif kind == "square":
        rotation = rng.uniform(0, math.pi / 2)
        angles = rotation + np.arange(4) * (math.pi / 2) + math.pi / 4
        radii = np.full(4, size)
    else:  # triangle: top (apex), then left and right base vertices; y grows downwards
        rotation = rng.uniform(-math.pi / 6, math.pi / 6)
        angles = np.array([-math.pi / 2, 5 * math.pi / 6, math.pi / 6]) + rotation
        radii = size * rng.uniform(0.85, 1.15, size=3)
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(points, 2)


def _rasterize(polygon, height, width):
    """uint8 [H, W] mask of a polygon [V, 2], by the COCO rasterizer (what annToMask gives)."""
    rles = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height, width)
    return mask_utils.decode(mask_utils.merge(rles))


def _contrasting_colour(rng, background, mask):
    local = background[mask.astype(bool)].mean(axis=0)
    best, best_distance = None, -1.0
    for _ in range(12):
        colour = rng.integers(0, 256, size=3)
        distance = float(np.abs(colour - local).sum())
        if distance > 150:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _bbox_of(polygon):
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


def render_shapes_image(params, split, index):
    """Draws image `index` of `split`.

    Returns (image uint8 [H, W, 3] BGR, shapes) where shapes is a list of dicts with keys
    "kind", "polygon" ([V, 2] float, 2 decimals), "area" (pixel count of the polygon's mask),
    "colour" and "keypoints" ([3, 3] x, y, v for triangles, else None), in drawing order.
    """
    height, width = params["height"], params["width"]
    rng = np.random.default_rng(
        np.random.SeedSequence([params["seed"], zlib.crc32(split.encode("utf-8")), index])
    )
    background = _background(rng, height, width)
    image = np.clip(background, 0, 255).astype(np.uint8)
    num_shapes = int(rng.integers(params["min_shapes"], params["max_shapes"] + 1))
    shortest = min(height, width)
    shapes, masks = [], []
    for _ in range(num_shapes):
        kind = SHAPE_NAMES[int(rng.integers(0, len(SHAPE_NAMES)))]
        for _attempt in range(20):
            size = rng.uniform(0.08, 0.3) * shortest
            reach = size * 1.2 + 1.0
            if 2 * reach >= shortest - 2:
                size = (shortest - 4) / 2.4
                reach = size * 1.2 + 1.0
            center = (rng.uniform(reach, width - 1 - reach), rng.uniform(reach, height - 1 - reach))
            polygon = _shape_polygon(rng, kind, center, size)
            mask = _rasterize(polygon, height, width)
            area = int(mask.sum())
            if area < 16:
                continue
            if any((m & mask).sum() > 0.5 * m.sum() for m in masks):
                continue
            break
        else:
            continue
        colour = _contrasting_colour(rng, background, mask)
        image[mask.astype(bool)] = colour.astype(np.uint8)
        keypoints = None
        if kind == "triangle":
            keypoints = np.concatenate([polygon, np.full((3, 1), 2.0)], axis=1)
        shapes.append(
            {"kind": kind, "polygon": polygon, "area": area, "colour": colour.tolist(), "keypoints": keypoints}
        )
        masks.append(mask)
    # A vertex painted over by a later shape is labeled but not visible (v=1).
    for position, shape in enumerate(shapes):
        if shape["keypoints"] is None:
            continue
        for vertex in shape["keypoints"]:
            col = min(max(int(round(vertex[0])), 0), width - 1)
            row = min(max(int(round(vertex[1])), 0), height - 1)
            if any(m[row, col] for m in masks[position + 1 :]):
                vertex[2] = 1.0
    return image, shapes


def _annotation(shape, ann_id, image_id, with_keypoints):
    polygon = shape["polygon"]
    annotation = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": SHAPE_NAMES.index(shape["kind"]) + 1,
        "segmentation": [[float(v) for v in polygon.reshape(-1)]],
        "area": float(shape["area"]),
        "bbox": _bbox_of(polygon),
        "iscrowd": 0,
    }
    if with_keypoints:
        if shape["keypoints"] is None:
            annotation["keypoints"] = [0.0] * (3 * len(TRIANGLE_KEYPOINT_NAMES))
            annotation["num_keypoints"] = 0
        else:
            annotation["keypoints"] = [float(v) for v in shape["keypoints"].reshape(-1)]
            annotation["num_keypoints"] = int((shape["keypoints"][:, 2] > 0).sum())
    return annotation


def write_shapes_dataset(out_dir, split, params):
    """Writes `images/*.{png,jpg}` and `annotations.json` of one split into `out_dir`."""
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    extension = "." + params["image_format"]
    encode_args = [cv2.IMWRITE_PNG_COMPRESSION, 3] if extension == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    images, annotations = [], []
    for index in range(params["num_images"]):
        image, shapes = render_shapes_image(params, split, index)
        file_name = "%06d%s" % (index, extension)
        ok, encoded = cv2.imencode(extension, image, encode_args)
        if not ok:
            raise RuntimeError("shapes: could not encode %s" % file_name)
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(encoded.tobytes())
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": file_name, "height": params["height"], "width": params["width"]}
        )
        for shape in shapes:
            annotations.append(_annotation(shape, len(annotations) + 1, image_id, params["keypoints"]))
    content = {
        "info": {"description": "maskrcnn synthetic shapes", "split": split, "params": params},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": shapes_categories(params["keypoints"]),
    }
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump(content, f, separators=(",", ":"))


def shapes_dataset_dir(root, split, params):
    """Folder of one generated split: depends on every parameter, so changing one regenerates."""
    digest = hashlib.sha1(json.dumps([split, params], sort_keys=True).encode()).hexdigest()[:10]
    prefix = "keypoints_" if params["keypoints"] else ""
    return os.path.join(
        root, "%s%s_%dx%d_n%d_%s" % (prefix, split, params["width"], params["height"], params["num_images"], digest)
    )


def ensure_shapes_dataset(
    root,
    split,
    num_images=None,
    image_size=128,
    min_shapes=1,
    max_shapes=4,
    seed=0,
    keypoints=False,
    image_format="png",
):
    """Generates the split under `root` unless it is already there; returns (ann_file, image_root).

    Generation writes into a temporary sibling folder and renames it into place, under a file
    lock, so an interrupted run leaves no partial dataset and parallel callers (e.g. one per
    GPU) generate it once.
    """
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES.get(split, 200)
    params = _shapes_params(num_images, image_size, min_shapes, max_shapes, seed, keypoints, image_format)
    final_dir = shapes_dataset_dir(root, split, params)
    ann_file = os.path.join(final_dir, "annotations.json")
    image_root = os.path.join(final_dir, "images")
    if os.path.isfile(ann_file):
        return ann_file, image_root
    os.makedirs(root, exist_ok=True)
    lock_path = os.path.join(root, ".%s.lock" % os.path.basename(final_dir))
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not os.path.isfile(ann_file):
                logger.info(
                    "Generating the shapes dataset (%s, %d images of %dx%d) in %s",
                    split, params["num_images"], params["width"], params["height"], final_dir,
                )
                temp_dir = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(final_dir) + "-", dir=root)
                try:
                    write_shapes_dataset(temp_dir, split, params)
                    os.rename(temp_dir, final_dir)
                except OSError:
                    shutil.rmtree(temp_dir, ignore_errors=True)
                    if not os.path.isfile(ann_file):
                        raise
                except BaseException:
                    shutil.rmtree(temp_dir, ignore_errors=True)
                    raise
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return ann_file, image_root


class ShapesDataset(COCODataset):
    """The shapes split `split` under `root`, generated there on first use (see module doc).

    Keypoint variant (`keypoints=True`): images with at least one visible triangle vertex are
    kept for training (COCO's person threshold of 10 visible keypoints does not fit shapes).
    """

    def __init__(
        self,
        root,
        split,
        keypoints=False,
        num_images=None,
        image_size=128,
        min_shapes=1,
        max_shapes=4,
        seed=0,
        image_format="png",
        remove_images_without_annotations=True,
        transforms=None,
        **kwargs
    ):
        ann_file, image_root = ensure_shapes_dataset(
            root, split, num_images=num_images, image_size=image_size, min_shapes=min_shapes,
            max_shapes=max_shapes, seed=seed, keypoints=keypoints, image_format=image_format,
        )
        kwargs.setdefault("min_keypoints_per_image", 1)
        super(ShapesDataset, self).__init__(
            ann_file, image_root, remove_images_without_annotations, transforms=transforms, **kwargs
        )
        self.split = split
