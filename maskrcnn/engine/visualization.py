"""Pictures of a dataset: its ground truth, saved predictions, or a model's predictions, drawn
with maskrcnn.utils.visualization and written as PNGs (one grid image or one file per image).

``render_model_predictions(cfg, "detections.png")`` is the one call a training pipeline needs:
the trained model's detections on the first images of the test dataset, in one grid PNG.
"""
import logging
import os

import cv2
import numpy as np
import torch

from maskrcnn.config.paths_catalog import DatasetCatalog
from maskrcnn.data.datasets.class_names import dataset_metadata, metadata_for_cfg
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.keypoint import Keypoints, PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask
from maskrcnn.utils.visualization import draw_instances, make_grid

from .predictor import Predictor, make_masker, prediction_in_image

__all__ = [
    "IMAGE_EXTENSIONS", "build_plain_dataset", "load_predictions", "render_ground_truth",
    "render_predictions", "render_model_predictions", "render_saved_predictions", "write_images",
]

logger = logging.getLogger("maskrcnn.visualization")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def build_plain_dataset(cfg, dataset_name):
    """The catalog dataset ``dataset_name`` as evaluation sees it (no image left out), without
    transforms: items are (BGR uint8 image, BoxList target in image size, index)."""
    from maskrcnn.data.build import build_dataset

    return build_dataset([dataset_name], None, DatasetCatalog, is_train=False, cfg=cfg)[0]


def _image_title(dataset, index):
    info = dataset.get_img_info(index) if hasattr(dataset, "get_img_info") else {}
    return os.path.basename(str(info.get("file_name", index)))


def load_predictions(path):
    """The list of BoxLists of ``path`` (OUTPUT_DIR/inference/<dataset>/predictions.pth, one
    per image in dataset order, as tools/test_net.py saves them).

    Loaded with weights_only=True when the file holds only the library's structures; otherwise
    (e.g. keypoint classes made at run time) with a full unpickle, after a warning: load only
    prediction files you wrote yourself."""
    if not os.path.isfile(path):
        raise FileNotFoundError("predictions file not found: %s" % path)
    allowed = [BoxList, SegmentationMask, Keypoints, PersonKeypoints]
    try:
        with torch.serialization.safe_globals(allowed):
            predictions = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for classes outside the allow-list
        logger.warning("%s needs a full unpickle (%s); loading it as a trusted local file",
                       path, str(error).splitlines()[0])
        predictions = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(predictions, dict) and "predictions" in predictions:
        predictions = predictions["predictions"]
    if not isinstance(predictions, (list, tuple)) or not all(isinstance(p, BoxList) for p in predictions):
        raise ValueError("%s: expected a list of BoxList (one per image), got %s" % (path, type(predictions).__name__))
    return list(predictions)


# small images (the shapes data is 128 pixels) are enlarged so that labels stay readable
DISPLAY_MIN_SIZE = 320


def _enlarged(image, min_size=DISPLAY_MIN_SIZE):
    """``image`` scaled up (nearest neighbour) by an integer factor so its shorter side is at
    least ``min_size``; unchanged when it already is."""
    factor = int(np.ceil(min_size / float(min(image.shape[:2]))))
    if factor <= 1:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def render_ground_truth(dataset, indices, metadata):
    """Images ``indices`` of ``dataset`` with their annotations drawn; returns (images, titles)."""
    images, titles = [], []
    for index in indices:
        image, target, _ = dataset[index]
        images.append(draw_instances(_enlarged(image), target, metadata))
        titles.append(_image_title(dataset, index))
    return images, titles


def _select(prediction, confidence_threshold):
    if not prediction.has_field("scores"):
        return prediction
    scores = prediction.get_field("scores")
    keep = torch.nonzero(scores > confidence_threshold).squeeze(1)
    prediction = prediction[keep]
    return prediction[prediction.get_field("scores").argsort(descending=True)]


def render_predictions(dataset, predictions, indices, metadata, confidence_threshold=0.5, masker=None,
                       with_ground_truth=False):
    """Images ``indices`` with their detections scoring above ``confidence_threshold`` drawn.

    predictions: a list of BoxLists aligned with the dataset (saved predictions, mapped to the
    image size here, M x M masks pasted by ``masker``), or a callable image -> BoxList in image
    coordinates (e.g. a Predictor). with_ground_truth: the annotated image on the left of each.
    Returns (images, titles).
    """
    if not callable(predictions) and len(predictions) != len(dataset):
        raise ValueError(
            "render_predictions: %d predictions for a dataset of %d images (was it saved for another "
            "dataset, or with a different DATASETS.SHAPES size?)" % (len(predictions), len(dataset))
        )
    images, titles = [], []
    for index in indices:
        image, target, _ = dataset[index]
        prediction = predictions(image) if callable(predictions) else predictions[index]
        image = _enlarged(image)
        height, width = image.shape[:2]
        prediction = prediction_in_image(prediction, width, height, masker)
        drawn = draw_instances(image, _select(prediction, confidence_threshold), metadata)
        if with_ground_truth:
            separator = np.full((height, 4, 3), 255, dtype=np.uint8)
            drawn = np.concatenate([draw_instances(image, target, metadata), separator, drawn], axis=1)
        images.append(drawn)
        titles.append(_image_title(dataset, index))
    return images, titles


def write_images(images, output, grid=None, titles=None, columns=None):
    """Writes ``images`` as one grid image at ``output`` (when ``grid``, or by default when
    ``output`` has an image extension), else as <output>/<title>.png files. Returns the paths."""
    if grid is None:
        grid = output.lower().endswith(IMAGE_EXTENSIONS)
    if grid:
        if not output.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError("write_images: a grid needs an image file name (e.g. detections.png), got %r" % output)
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        if not cv2.imwrite(output, make_grid(images, columns=columns, titles=titles)):
            raise OSError("could not write %s" % output)
        return [output]
    os.makedirs(output, exist_ok=True)
    paths = []
    for position, image in enumerate(images):
        name = os.path.splitext(str(titles[position]))[0] if titles else "%06d" % position
        path = os.path.join(output, name + ".png")
        if not cv2.imwrite(path, image):
            raise OSError("could not write %s" % path)
        paths.append(path)
    return paths


def render_model_predictions(cfg, output, num_images=8, dataset_name=None, confidence_threshold=0.5,
                             model=None, columns=None, with_ground_truth=True):
    """Draws a model's detections on the first ``num_images`` images of ``dataset_name``
    (default DATASETS.TEST[0]) into one grid PNG ``output`` (ground truth on the left of each
    with ``with_ground_truth``). The model is ``model`` or built from ``cfg`` with its trained
    weights (the last checkpoint of OUTPUT_DIR, else MODEL.WEIGHT). Returns ``output``."""
    dataset_name = dataset_name or cfg.DATASETS.TEST[0]
    dataset = build_plain_dataset(cfg, dataset_name)
    predictor = Predictor(cfg, model=model)
    indices = list(range(min(int(num_images), len(dataset))))
    images, titles = render_predictions(dataset, predictor, indices, metadata_for_cfg(cfg), confidence_threshold,
                                        with_ground_truth=with_ground_truth)
    write_images(images, output, grid=True, titles=titles, columns=columns)
    return output


def render_saved_predictions(cfg, predictions_path, dataset_name, indices, confidence_threshold=0.5,
                             with_ground_truth=False):
    """(images, titles) of the predictions saved at ``predictions_path`` for ``dataset_name``."""
    dataset = build_plain_dataset(cfg, dataset_name)
    predictions = load_predictions(predictions_path)
    indices = [i for i in indices if i < len(dataset)]
    metadata = dataset_metadata(cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else dataset_name)
    return render_predictions(dataset, predictions, indices, metadata, confidence_threshold, make_masker(cfg),
                              with_ground_truth)
