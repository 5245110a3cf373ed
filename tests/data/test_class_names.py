"""Class and keypoint names per dataset (maskrcnn/data/datasets/class_names.py)."""
import json

from maskrcnn.config import cfg as default_cfg
from maskrcnn.config.paths_catalog import DatasetCatalog
from maskrcnn.data.datasets.class_names import COCO_CLASS_NAMES, dataset_metadata, metadata_for_cfg


def test_shapes_and_keypoint_shapes():
    shapes = dataset_metadata("shapes_train")
    assert shapes.class_names == ["__background", "circle", "square", "triangle"]
    assert shapes.keypoint_names == [] and shapes.keypoint_labels == ()
    keypoints = dataset_metadata("keypoints_shapes_val")
    assert keypoints.keypoint_names == ["top", "left", "right"]
    assert sorted(tuple(sorted(c)) for c in keypoints.keypoint_connections) == [(0, 1), (0, 2), (1, 2)]
    assert keypoints.keypoint_labels == (3,)


def test_coco_voc_and_unknown():
    assert len(COCO_CLASS_NAMES) == 80 and COCO_CLASS_NAMES[0] == "person" and COCO_CLASS_NAMES[-1] == "toothbrush"
    coco = dataset_metadata("coco_2017_val")
    assert coco.class_names[1:] == COCO_CLASS_NAMES
    assert dataset_metadata("no_such_dataset").class_names == coco.class_names
    assert dataset_metadata(None).class_name(81) == "class 81"
    person = dataset_metadata("keypoints_coco_2017_val")
    assert person.class_names == ["__background", "person"] and len(person.keypoint_names) == 17
    assert dataset_metadata("voc_2007_test").class_names[1] == "aeroplane"
    assert dataset_metadata("voc_2012_val_cocostyle").class_names[-1] == "tvmonitor"


def test_registered_coco_format_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "DATASETS", dict(DatasetCatalog.DATASETS))
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 7, "name": "zebra crossing"}, {"id": 3, "name": "lamp post"}]}))
    DatasetCatalog.register("my_streets", "COCODataset", img_dir=str(tmp_path), ann_file=str(ann_file))
    DatasetCatalog.register("my_missing", "COCODataset", img_dir=str(tmp_path), ann_file=str(tmp_path / "none.json"))
    assert dataset_metadata("my_streets").class_names == ["__background", "lamp post", "zebra crossing"]
    assert dataset_metadata("my_missing").class_names[1:] == COCO_CLASS_NAMES
    cfg = default_cfg.clone()
    cfg.merge_from_list(["DATASETS.TRAIN", ("my_streets",)])
    assert metadata_for_cfg(cfg).class_name(2) == "zebra crossing"
