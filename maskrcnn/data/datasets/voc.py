"""PASCAL VOC (VOCdevkit/VOC20xx layout: Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/<split>.txt)."""
import os
import xml.etree.ElementTree as ET

import torch

from maskrcnn.structures.bounding_box import BoxList

from .image_io import read_image


class PascalVOCDataset(torch.utils.data.Dataset):
    """Items (image BGR uint8, BoxList target with "labels" and "difficult", index)."""

    CLASSES = (
        "__background__ ", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
        "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
        "sheep", "sofa", "train", "tvmonitor",
    )

    def __init__(self, data_dir, split, use_difficult=False, transforms=None):
        self.root = data_dir
        self.image_set = split
        self.keep_difficult = use_difficult
        self.transforms = transforms
        self._annopath = os.path.join(data_dir, "Annotations", "%s.xml")
        self._imgpath = os.path.join(data_dir, "JPEGImages", "%s.jpg")
        list_file = os.path.join(data_dir, "ImageSets", "Main", "%s.txt" % split)
        if not os.path.isfile(list_file):
            raise FileNotFoundError("PascalVOCDataset: image set file not found: %s" % list_file)
        with open(list_file) as f:
            self.ids = [line.strip() for line in f if line.strip()]
        self.id_to_img_map = {k: v for k, v in enumerate(self.ids)}
        self.class_to_ind = {name: i for i, name in enumerate(self.CLASSES)}
        self.categories = {i: name for i, name in enumerate(self.CLASSES)}
        self._annotations = {}

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        image = read_image(self._imgpath % self.ids[index], index)
        target = self.get_groundtruth(index).clip_to_image(remove_empty=True)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target, index

    def _parse(self, index):
        if index not in self._annotations:
            path = self._annopath % self.ids[index]
            try:
                root = ET.parse(path).getroot()
            except (OSError, ET.ParseError) as error:
                raise ValueError("PascalVOCDataset: cannot read %s (index %d): %s" % (path, index, error))
            boxes, labels, difficult = [], [], []
            for obj in root.iter("object"):
                is_difficult = int(obj.findtext("difficult", "0")) == 1
                if not self.keep_difficult and is_difficult:
                    continue
                name = obj.findtext("name").lower().strip()
                if name not in self.class_to_ind:
                    raise ValueError("PascalVOCDataset: %s: unknown class %r" % (path, name))
                box = obj.find("bndbox")
                # VOC coordinates are 1-based; the legacy convention keeps them 0-based inclusive.
                boxes.append([float(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
                labels.append(self.class_to_ind[name])
                difficult.append(is_difficult)
            size = root.find("size")
            info = {"height": int(size.findtext("height")), "width": int(size.findtext("width"))}
            self._annotations[index] = (boxes, labels, difficult, info)
        return self._annotations[index]

    def get_groundtruth(self, index):
        boxes, labels, difficult, info = self._parse(index)
        target = BoxList(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), (info["width"], info["height"]))
        target.add_field("labels", torch.tensor(labels, dtype=torch.int64))
        target.add_field("difficult", torch.tensor(difficult, dtype=torch.bool))
        return target

    def get_img_info(self, index):
        return dict(self._parse(index)[3])

    def map_class_id_to_class_name(self, class_id):
        return self.CLASSES[class_id]
