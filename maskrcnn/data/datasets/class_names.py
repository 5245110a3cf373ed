"""Class and keypoint names of the dataset a model was trained on, for drawing its detections.

``dataset_metadata(name)`` looks ``name`` up in the DatasetCatalog and returns a DatasetMetadata:
the shapes datasets name their own categories (and the triangle keypoints), PASCAL VOC its 20
classes, COCO its 80 (or "person" and the 17 person keypoints for the keypoint files), and any other
COCO-format dataset the categories of its annotation file. An unknown name, or an annotation file
that is not on disk, falls back to COCO's 80 classes.
"""
import json
import logging
import os
from typing import List, NamedTuple, Tuple

from maskrcnn.config.paths_catalog import DatasetCatalog
from maskrcnn.structures.keypoint import PersonKeypoints

__all__ = [
    "COCO_CLASS_NAMES", "DatasetMetadata", "coco_metadata", "metadata_from_categories",
    "dataset_metadata", "metadata_for_cfg",
]

logger = logging.getLogger("maskrcnn.data")

BACKGROUND = "__background"

# COCO's 80 detection categories in category-id order (contiguous labels 1..80)
COCO_CLASS_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]


class DatasetMetadata(NamedTuple):
    """What drawing needs to know about a dataset.

    class_names: name of each contiguous label; index 0 is the background.
    keypoint_names: names of the K keypoints ([] when the dataset has none).
    keypoint_connections: [i, j] index pairs of the keypoint skeleton.
    keypoint_labels: labels of the categories that carry keypoints (empty: any).
    """

    class_names: List[str]
    keypoint_names: List[str] = []
    keypoint_connections: List[Tuple[int, int]] = []
    keypoint_labels: Tuple[int, ...] = ()

    def class_name(self, label):
        """Name of label ``label`` ("class <label>" beyond the known names)."""
        label = int(label)
        if 0 <= label < len(self.class_names):
            return self.class_names[label]
        return "class %d" % label


def coco_metadata(keypoints=False):
    """COCO's 80 classes; with ``keypoints`` the person-keypoint files' single class and 17 keypoints."""
    if keypoints:
        return DatasetMetadata(
            [BACKGROUND, "person"], list(PersonKeypoints.NAMES),
            [tuple(c) for c in PersonKeypoints.CONNECTIONS], (1,),
        )
    return DatasetMetadata([BACKGROUND] + COCO_CLASS_NAMES)


def metadata_from_categories(categories):
    """DatasetMetadata of a COCO "categories" list (contiguous labels follow sorted ids, as
    COCODataset numbers them; skeletons are 1-based there)."""
    ordered = sorted(categories, key=lambda c: c["id"])
    names = [BACKGROUND] + [str(c["name"]) for c in ordered]
    keypoint_names, connections, labels = [], [], []
    for label, category in enumerate(ordered, start=1):
        if category.get("keypoints"):
            labels.append(label)
            if not keypoint_names:
                keypoint_names = list(category["keypoints"])
                connections = [(int(a) - 1, int(b) - 1) for a, b in category.get("skeleton", [])]
    return DatasetMetadata(names, keypoint_names, connections, tuple(labels))


def _categories_of_file(ann_file):
    with open(ann_file, "r") as f:
        content = json.load(f)
    categories = content.get("categories") if isinstance(content, dict) else None
    if not categories:
        raise ValueError("%s has no 'categories' list" % ann_file)
    return categories


def dataset_metadata(dataset_name, catalog=DatasetCatalog):
    """DatasetMetadata of the catalog dataset ``dataset_name`` (see the module docstring); COCO's
    when the name is None, unknown, or its annotation file is not on disk."""
    if not dataset_name or dataset_name not in catalog.DATASETS:
        if dataset_name:
            logger.info("Dataset %r is not in the DatasetCatalog: using COCO's class names", dataset_name)
        return coco_metadata()
    entry = catalog.get(dataset_name)
    factory, args = entry["factory"], entry["args"]
    if factory == "ShapesDataset":
        from .shapes import shapes_categories

        return metadata_from_categories(shapes_categories(keypoints=bool(args.get("keypoints"))))
    if factory == "PascalVOCDataset" or dataset_name.startswith("voc_"):
        from .voc import PascalVOCDataset

        return DatasetMetadata([BACKGROUND] + [c.strip() for c in PascalVOCDataset.CLASSES[1:]])
    if dataset_name.startswith("keypoints_coco_"):
        return coco_metadata(keypoints=True)
    if dataset_name.startswith("coco_"):
        return coco_metadata()  # the built-in list: no need to parse a 400 MB annotation file
    ann_file = args.get("ann_file")
    if ann_file and os.path.isfile(ann_file):
        return metadata_from_categories(_categories_of_file(ann_file))
    logger.info("Annotations of %r not found (%s): using COCO's class names", dataset_name, ann_file)
    return coco_metadata()


def metadata_for_cfg(cfg):
    """DatasetMetadata of the first training dataset of ``cfg`` (DATASETS.TRAIN[0])."""
    train = list(cfg.DATASETS.TRAIN)
    return dataset_metadata(train[0] if train else None)
