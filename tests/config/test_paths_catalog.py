import os

import pytest

from maskrcnn.config.paths_catalog import DatasetCatalog, ModelCatalog, register_coco_instances

UPSTREAM_NAMES = [
    "coco_2014_train", "coco_2014_val", "coco_2014_minival", "coco_2014_valminusminival",
    "coco_2017_train", "coco_2017_val",
    "keypoints_coco_2014_train", "keypoints_coco_2014_val", "keypoints_coco_2014_minival",
    "keypoints_coco_2014_valminusminival", "keypoints_coco_2017_train", "keypoints_coco_2017_val",
    "voc_2007_train", "voc_2007_val", "voc_2007_test",
    "voc_2007_train_cocostyle", "voc_2007_val_cocostyle", "voc_2007_test_cocostyle",
    "voc_2012_train", "voc_2012_val", "voc_2012_test",
    "voc_2012_train_cocostyle", "voc_2012_val_cocostyle",
    "cityscapes_fine_instanceonly_seg_train_cocostyle", "cityscapes_fine_instanceonly_seg_val_cocostyle",
    "cityscapes_fine_instanceonly_seg_test_cocostyle",
]
SHAPES_NAMES = ["shapes_train", "shapes_val", "keypoints_shapes_train", "keypoints_shapes_val"]


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("MASKRCNN_DATA_DIR", raising=False)


def test_all_names_registered():
    for name in UPSTREAM_NAMES + SHAPES_NAMES:
        assert name in DatasetCatalog.DATASETS, name
        entry = DatasetCatalog.get(name)
        assert set(entry) == {"factory", "args"}


def test_coco_entries():
    entry = DatasetCatalog.get("coco_2014_minival")
    assert entry == dict(
        factory="COCODataset",
        args=dict(
            root=os.path.join("datasets", "coco/val2014"),
            ann_file=os.path.join("datasets", "coco/annotations/instances_minival2014.json"),
        ),
    )
    kp = DatasetCatalog.get("keypoints_coco_2017_train")["args"]
    assert kp["ann_file"].endswith("coco/annotations/person_keypoints_train2017.json")
    assert kp["root"].endswith("coco/train2017")
    assert DatasetCatalog.get("voc_2012_val_cocostyle")["factory"] == "COCODataset"
    assert DatasetCatalog.get("cityscapes_fine_instanceonly_seg_test_cocostyle")["args"]["ann_file"].endswith(
        "instancesonly_filtered_gtFine_test.json"
    )


def test_voc_and_shapes_entries():
    assert DatasetCatalog.get("voc_2007_test") == dict(
        factory="PascalVOCDataset", args=dict(data_dir=os.path.join("datasets", "voc/VOC2007"), split="test")
    )
    assert DatasetCatalog.get("keypoints_shapes_val") == dict(
        factory="ShapesDataset", args=dict(root=os.path.join("datasets", "shapes"), split="val", keypoints=True)
    )
    assert DatasetCatalog.get("shapes_train")["args"]["keypoints"] is False


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path))
    assert DatasetCatalog.get("shapes_val")["args"]["root"] == os.path.join(str(tmp_path), "shapes")
    monkeypatch.delenv("MASKRCNN_DATA_DIR")
    monkeypatch.setattr(DatasetCatalog, "DATA_DIR", "/data")
    assert DatasetCatalog.get("coco_2017_val")["args"]["root"] == "/data/coco/val2017"


def test_get_returns_a_copy():
    DatasetCatalog.get("voc_2007_train")["args"]["split"] = "changed"
    assert DatasetCatalog.get("voc_2007_train")["args"]["split"] == "train"


def test_unknown_name_lists_registered():
    with pytest.raises(KeyError) as info:
        DatasetCatalog.get("coco_2019_train")
    message = info.value.args[0]
    assert "'coco_2019_train'" in message and "coco_2017_train" in message and "shapes_val" in message


def test_register_coco_instances(monkeypatch, tmp_path):
    monkeypatch.setattr(DatasetCatalog, "DATASETS", dict(DatasetCatalog.DATASETS))
    register_coco_instances("my_set", str(tmp_path / "ann.json"), str(tmp_path / "imgs"))
    assert DatasetCatalog.get("my_set") == dict(
        factory="COCODataset", args=dict(root=str(tmp_path / "imgs"), ann_file=str(tmp_path / "ann.json"))
    )
    register_coco_instances("rel_set", "mine/ann.json", "mine/imgs")
    assert DatasetCatalog.get("rel_set")["args"]["root"] == os.path.join("datasets", "mine/imgs")
    with pytest.raises(KeyError, match="already registered"):
        register_coco_instances("my_set", "a.json", "b")
    DatasetCatalog.register("voc_like", "PascalVOCDataset", data_dir="/v", split="trainval")
    assert DatasetCatalog.get("voc_like")["args"] == dict(data_dir="/v", split="trainval")


def test_model_catalog_urls():
    assert ModelCatalog.get("ImageNetPretrained/MSRA/R-50") == (
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl"
    )
    assert ModelCatalog.get("ImageNetPretrained/FAIR/20171220/X-101-32x8d").endswith(
        "ImageNetPretrained/20171220/X-101-32x8d.pkl"
    )
    url = ModelCatalog.get("Caffe2Detectron/COCO/35858933/e2e_mask_rcnn_R-50-FPN_1x")
    assert url == (
        "https://dl.fbaipublicfiles.com/detectron/35858933/12_2017_baselines/"
        "e2e_mask_rcnn_R-50-FPN_1x.yaml.01_48_14.DzEQe4wC/output/train/"
        "coco_2014_train%3Acoco_2014_valminusminival/generalized_rcnn/model_final.pkl"
    )
    kp = ModelCatalog.get("Caffe2Detectron/COCO/37697547/e2e_keypoint_rcnn_R-50-FPN_1x")
    assert "keypoints_coco_2014_train%3Akeypoints_coco_2014_valminusminival" in kp
    assert len(ModelCatalog.names()) == 15


@pytest.mark.parametrize("name", ["ImageNetPretrained/MSRA/R-152", "Caffe2Detectron/COCO/1/x", "R-50"])
def test_model_catalog_unknown(name):
    with pytest.raises(KeyError, match="Known names: ImageNetPretrained/MSRA/R-50"):
        ModelCatalog.get(name)
