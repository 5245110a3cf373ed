"""Where datasets and pretrained weights live: DatasetCatalog and ModelCatalog.

`DatasetCatalog.get(name)` returns ``dict(factory="COCODataset", args=dict(...))``: the name of a
dataset class in `maskrcnn.data.datasets` and the keyword arguments that locate its files (the data
builder adds transforms and train/test flags). Paths are relative to the data directory: the
environment variable ``MASKRCNN_DATA_DIR`` when set, else ``DatasetCatalog.DATA_DIR``
("datasets", relative to the working directory, as in maskrcnn-benchmark).

`ModelCatalog.get(name)` turns "ImageNetPretrained/..." and "Caffe2Detectron/COCO/..." names (used
as ``MODEL.WEIGHT: "catalog://<name>"``) into URLs. Nothing here downloads anything.
"""
import copy
import os

__all__ = ["DatasetCatalog", "ModelCatalog", "register_coco_instances"]

DATA_DIR_ENV = "MASKRCNN_DATA_DIR"


def _coco(img_dir, ann_file):
    return {"factory": "COCODataset", "img_dir": img_dir, "ann_file": ann_file}


def _voc(data_dir, split):
    return {"factory": "PascalVOCDataset", "data_dir": data_dir, "split": split}


def _shapes(split, keypoints):
    return {"factory": "ShapesDataset", "root": "shapes", "split": split, "keypoints": keypoints}


def _default_datasets():
    datasets = {}
    coco_ann = "coco/annotations/"
    for year, splits in (("2014", ("train", "val", "minival", "valminusminival")), ("2017", ("train", "val"))):
        for split in splits:
            image_split = "val" if split in ("minival", "valminusminival") else split
            img_dir = f"coco/{image_split}{year}"
            datasets[f"coco_{year}_{split}"] = _coco(img_dir, f"{coco_ann}instances_{split}{year}.json")
            datasets[f"keypoints_coco_{year}_{split}"] = _coco(
                img_dir, f"{coco_ann}person_keypoints_{split}{year}.json"
            )
    for year, splits in (("2007", ("train", "val", "test")), ("2012", ("train", "val", "test"))):
        for split in splits:
            datasets[f"voc_{year}_{split}"] = _voc(f"voc/VOC{year}", split)
            if year == "2012" and split == "test":
                continue  # VOC2012 test annotations were never released: no COCO-style json
            datasets[f"voc_{year}_{split}_cocostyle"] = _coco(
                f"voc/VOC{year}/JPEGImages", f"voc/VOC{year}/Annotations/pascal_{split}{year}.json"
            )
    for split in ("train", "val", "test"):
        datasets[f"cityscapes_fine_instanceonly_seg_{split}_cocostyle"] = _coco(
            "cityscapes/images", f"cityscapes/annotations/instancesonly_filtered_gtFine_{split}.json"
        )
    for split in ("train", "val"):
        datasets[f"shapes_{split}"] = _shapes(split, keypoints=False)
        datasets[f"keypoints_shapes_{split}"] = _shapes(split, keypoints=True)
    return datasets


# Entry keys that hold paths relative to the data directory, per factory.
_PATH_KEYS = {
    "COCODataset": {"img_dir": "root", "ann_file": "ann_file"},
    "PascalVOCDataset": {"data_dir": "data_dir"},
    "ShapesDataset": {"root": "root"},
}


class DatasetCatalog(object):
    """Dataset name -> dataset class name + constructor arguments.

    DATASETS maps each name to an entry: "factory" plus the factory's arguments, with paths relative
    to the data directory (keys img_dir/ann_file for COCODataset, data_dir/split for
    PascalVOCDataset, root/split/keypoints for ShapesDataset). Add your own with
    `DatasetCatalog.register(...)` or `register_coco_instances(...)`.
    """

    DATA_DIR = "datasets"
    DATASETS = _default_datasets()

    @staticmethod
    def data_dir():
        """The data directory: $MASKRCNN_DATA_DIR if set, else DatasetCatalog.DATA_DIR."""
        return os.environ.get(DATA_DIR_ENV) or DatasetCatalog.DATA_DIR

    @staticmethod
    def names():
        """Sorted list of the registered dataset names."""
        return sorted(DatasetCatalog.DATASETS)

    @staticmethod
    def register(name, factory, **attrs):
        """Register dataset `name` built by `factory` (a class name in maskrcnn.data.datasets).

        Path-like attributes (see _PATH_KEYS) may be absolute, or relative to the data directory.
        Raises KeyError if `name` is already registered.
        """
        if name in DatasetCatalog.DATASETS:
            raise KeyError(f"DatasetCatalog: dataset '{name}' is already registered")
        DatasetCatalog.DATASETS[name] = dict(factory=factory, **attrs)

    @staticmethod
    def get(name):
        """dict(factory=<class name>, args=<constructor kwargs with paths joined to data_dir()>)."""
        if name not in DatasetCatalog.DATASETS:
            raise KeyError(
                f"Dataset '{name}' is not in DatasetCatalog (maskrcnn/config/paths_catalog.py). "
                f"Registered datasets: {', '.join(DatasetCatalog.names())}"
            )
        attrs = copy.deepcopy(DatasetCatalog.DATASETS[name])
        factory = attrs.pop("factory")
        renames = _PATH_KEYS.get(factory, {})
        data_dir = DatasetCatalog.data_dir()
        args = {}
        for key, value in attrs.items():
            if key in renames:
                args[renames[key]] = os.path.join(data_dir, value)  # absolute values stay absolute
            else:
                args[key] = value
        return dict(factory=factory, args=args)


def register_coco_instances(name, json_file, image_root):
    """Register a COCO-format dataset: `json_file` (annotations) and `image_root` (image folder),
    absolute or relative to the data directory. Use it as DATASETS.TRAIN / TEST entry `name`."""
    DatasetCatalog.register(name, "COCODataset", img_dir=image_root, ann_file=json_file)


class ModelCatalog(object):
    """Names of pretrained weights (Detectron's Caffe2 pickles) -> download URLs."""

    S3_C2_DETECTRON_URL = "https://dl.fbaipublicfiles.com/detectron"
    C2_IMAGENET_MODELS = {
        "MSRA/R-50": "ImageNetPretrained/MSRA/R-50.pkl",
        "MSRA/R-50-GN": "ImageNetPretrained/47261647/R-50-GN.pkl",
        "MSRA/R-101": "ImageNetPretrained/MSRA/R-101.pkl",
        "MSRA/R-101-GN": "ImageNetPretrained/47592356/R-101-GN.pkl",
        "FAIR/20171220/X-101-32x8d": "ImageNetPretrained/20171220/X-101-32x8d.pkl",
    }
    # <model id>/<config name> -> signature of Detectron's 12_2017_baselines output folder
    C2_DETECTRON_SUFFIX = (
        "output/train/{}coco_2014_train%3A{}coco_2014_valminusminival/generalized_rcnn/model_final.pkl"
    )
    C2_DETECTRON_MODELS = {
        "35857197/e2e_faster_rcnn_R-50-C4_1x": "01_33_49.iAX0mXvW",
        "35857345/e2e_faster_rcnn_R-50-FPN_1x": "01_36_30.cUF7QR7I",
        "35857890/e2e_faster_rcnn_R-101-FPN_1x": "01_38_50.sNxI7sX7",
        "36761737/e2e_faster_rcnn_X-101-32x8d-FPN_1x": "06_31_39.5MIHi1fZ",
        "35858791/e2e_mask_rcnn_R-50-C4_1x": "01_45_57.ZgkA7hPB",
        "35858933/e2e_mask_rcnn_R-50-FPN_1x": "01_48_14.DzEQe4wC",
        "35861795/e2e_mask_rcnn_R-101-FPN_1x": "02_31_37.KqyEK4tT",
        "36761843/e2e_mask_rcnn_X-101-32x8d-FPN_1x": "06_35_59.RZotkLKI",
        "37129812/e2e_mask_rcnn_X-152-32x8d-FPN-IN5k_1.44x": "09_35_36.8pzTQKYK",
        "37697547/e2e_keypoint_rcnn_R-50-FPN_1x": "08_42_54.kdzV35ao",
    }

    @staticmethod
    def names():
        """All catalog names ModelCatalog.get accepts."""
        return ["ImageNetPretrained/" + k for k in ModelCatalog.C2_IMAGENET_MODELS] + [
            "Caffe2Detectron/COCO/" + k for k in ModelCatalog.C2_DETECTRON_MODELS
        ]

    @staticmethod
    def get(name):
        """URL of the weights called `name`; KeyError listing the known names otherwise."""
        if name.startswith("ImageNetPretrained/"):
            key = name[len("ImageNetPretrained/"):]
            if key in ModelCatalog.C2_IMAGENET_MODELS:
                return "/".join([ModelCatalog.S3_C2_DETECTRON_URL, ModelCatalog.C2_IMAGENET_MODELS[key]])
        elif name.startswith("Caffe2Detectron/COCO/"):
            key = name[len("Caffe2Detectron/COCO/"):]
            if key in ModelCatalog.C2_DETECTRON_MODELS:
                return ModelCatalog._c2_detectron_url(key)
        raise KeyError(
            f"Model '{name}' is not in ModelCatalog. Known names: {', '.join(ModelCatalog.names())}"
        )

    @staticmethod
    def _c2_detectron_url(key):
        # Detectron's layout: <url>/<model id>/12_2017_baselines/<config>.yaml.<signature>/<suffix>
        model_id, model_name = key.split("/")
        tag = "keypoints_" if "keypoint" in model_name else ""
        folder = f"{model_name}.yaml.{ModelCatalog.C2_DETECTRON_MODELS[key]}"
        suffix = ModelCatalog.C2_DETECTRON_SUFFIX.format(tag, tag)
        return "/".join([ModelCatalog.S3_C2_DETECTRON_URL, model_id, "12_2017_baselines", folder, suffix])
