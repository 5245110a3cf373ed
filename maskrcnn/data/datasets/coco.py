"""COCO-format detection dataset: (image BGR uint8, BoxList target, index)."""
import logging
import os

import torch

from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import PersonKeypoints, make_keypoints_class
from maskrcnn.structures.segmentation_mask import SegmentationMask

from .coco_json import load_coco_json
from .image_io import UnreadableImageError, read_image

logger = logging.getLogger("maskrcnn.data")

MIN_KEYPOINTS_PER_IMAGE = 10


def _count_visible_keypoints(anno):
    return sum(sum(1 for v in ann["keypoints"][2::3] if v > 0) for ann in anno)


def _box_is_usable(ann, width, height):
    x, y, w, h = ann["bbox"][:4]
    return w > 1 and h > 1 and x < width and y < height and x + w > 0 and y + h > 0


def _polygons_are_usable(segmentation):
    if isinstance(segmentation, dict):
        return True  # RLE
    return isinstance(segmentation, list) and any(len(p) >= 6 for p in segmentation)


def has_valid_annotation(anno, min_keypoints_per_image=MIN_KEYPOINTS_PER_IMAGE):
    """True when an image has something to train on (maskrcnn-benchmark's rule)."""
    anno = [a for a in anno if a.get("iscrowd", 0) == 0]
    if not anno:
        return False
    if all(any(v <= 1 for v in a["bbox"][2:4]) for a in anno):
        return False
    if "keypoints" not in anno[0]:
        return True
    return _count_visible_keypoints(anno) >= min_keypoints_per_image


def _flip_map_from_names(names):
    flip = {}
    for name in names:
        for left, right in (("left", "right"), ("l_", "r_")):
            if left in name:
                partner = name.replace(left, right)
                if partner in names:
                    flip[name] = partner
    return flip


class COCODataset(torch.utils.data.Dataset):
    """Images of a COCO annotation file.

    Arguments:
        ann_file: path of the instances / person_keypoints JSON.
        root: folder holding the images (file_name is relative to it).
        remove_images_without_annotations: drop images with no usable (non-crowd, non-empty)
            annotation, as for training.
        transforms: callable (image, target) -> (image, target), or None.
        min_keypoints_per_image: with keypoints, images need this many visible ones to be kept.
        skip_unreadable_images: substitute the next readable image for an unreadable one (and
            count it in the log) instead of raising.
        contiguous_category_ids: labels are the categories numbered 1..C in id order
            (maskrcnn-benchmark, the default); False keeps the JSON category ids as labels
            (torchvision's 91-class COCO models: ids 1..90 with gaps).

    Items: (image, target, index), image BGR uint8 [H, W, 3] before transforms; target a
    BoxList (xyxy) with fields "labels" (contiguous 1..C, or the JSON ids), "masks" (SegmentationMask, polygons
    or RLE bitmaps) when all annotations have segmentations, "keypoints" when present. Crowd
    annotations are excluded; zero-area / out-of-image boxes and empty polygons are dropped
    (counted in `self.dropped_annotations` and logged).
    """

    def __init__(
        self,
        ann_file,
        root,
        remove_images_without_annotations,
        transforms=None,
        min_keypoints_per_image=MIN_KEYPOINTS_PER_IMAGE,
        skip_unreadable_images=False,
        contiguous_category_ids=True,
    ):
        self.ann_file = ann_file
        self.root = root
        self.coco = load_coco_json(ann_file)
        self.ids = sorted(self.coco.imgs.keys())
        if remove_images_without_annotations:
            kept = []
            for img_id in self.ids:
                anno = self.coco.imgToAnns.get(img_id, [])
                if has_valid_annotation(anno, min_keypoints_per_image):
                    kept.append(img_id)
            if len(kept) < len(self.ids):
                logger.info(
                    "%s: %d of %d images have no usable annotation and are left out",
                    ann_file, len(self.ids) - len(kept), len(self.ids),
                )
            self.ids = kept
        self.categories = {cat["id"]: cat["name"] for cat in self.coco.dataset["categories"]}
        self.json_category_id_to_contiguous_id = {
            json_id: (i + 1 if contiguous_category_ids else json_id)
            for i, json_id in enumerate(sorted(self.coco.getCatIds()))
        }
        self.contiguous_category_id_to_json_id = {
            v: k for k, v in self.json_category_id_to_contiguous_id.items()
        }
        self.id_to_img_map = {k: v for k, v in enumerate(self.ids)}
        self.keypoints_class = self._keypoints_class()
        self._transforms = transforms
        self.skip_unreadable_images = skip_unreadable_images
        self.dropped_annotations = 0
        self.skipped_images = 0

    def _keypoints_class(self):
        for category in self.coco.dataset["categories"]:
            names = category.get("keypoints")
            if names:
                if list(names) == list(PersonKeypoints.NAMES):
                    return PersonKeypoints
                connections = [(a - 1, b - 1) for a, b in category.get("skeleton", [])]
                return make_keypoints_class(
                    "%sKeypoints" % category["name"].title().replace(" ", ""), list(names),
                    _flip_map_from_names(list(names)), connections,
                )
        return PersonKeypoints

    def __len__(self):
        return len(self.ids)

    def get_img_info(self, index):
        """{"height", "width", "file_name", "id", ...} of image `index` (original size)."""
        return self.coco.imgs[self.id_to_img_map[index]]

    def _load_image(self, index):
        info = self.get_img_info(index)
        return read_image(os.path.join(self.root, info["file_name"]), index)

    def __getitem__(self, index):
        try:
            image = self._load_image(index)
        except UnreadableImageError as error:
            if not self.skip_unreadable_images or len(self) < 2:
                raise
            self.skipped_images += 1
            logger.warning("%s; skipped (%d so far), using index %d instead", error,
                           self.skipped_images, (index + 1) % len(self))
            return self[(index + 1) % len(self)]
        target = self.get_target(index, (image.shape[1], image.shape[0]))
        if self._transforms is not None:
            image, target = self._transforms(image, target)
        return image, target, index

    def get_target(self, index, size=None):
        """BoxList target of image `index` in its original size (see the class doc)."""
        info = self.get_img_info(index)
        if size is None:
            size = (info["width"], info["height"])
        width, height = size
        anno = [a for a in self.coco.imgToAnns.get(self.id_to_img_map[index], []) if a.get("iscrowd", 0) == 0]
        usable = [a for a in anno if _box_is_usable(a, width, height)
                  and ("segmentation" not in a or _polygons_are_usable(a["segmentation"]))]
        dropped = len(anno) - len(usable)
        if dropped:
            self.dropped_annotations += dropped
            logger.info("%s: image %s (index %d): dropped %d annotation(s) with an empty, inverted or "
                        "out-of-image box or an empty polygon", self.ann_file, info["file_name"], index, dropped)
        boxes = torch.as_tensor([a["bbox"][:4] for a in usable], dtype=torch.float32).reshape(-1, 4)
        target = BoxList(boxes, size, mode="xywh").convert("xyxy")
        labels = [self.json_category_id_to_contiguous_id[a["category_id"]] for a in usable]
        target.add_field("labels", torch.tensor(labels, dtype=torch.int64))
        if usable and all("segmentation" in a for a in usable):
            segs = [a["segmentation"] for a in usable]
            if all(isinstance(s, list) for s in segs):
                masks = SegmentationMask([[p for p in s if len(p) >= 6] for s in segs], size, mode="poly")
            else:
                masks = SegmentationMask([self.coco.annToRLE(a) for a in usable], size, mode="mask")
            target.add_field("masks", masks)
        if usable and "keypoints" in usable[0]:
            keypoints = torch.as_tensor([a["keypoints"] for a in usable], dtype=torch.float32)
            target.add_field("keypoints", self.keypoints_class(keypoints.reshape(len(usable), -1, 3), size))
        return target.clip_to_image(remove_empty=True)
