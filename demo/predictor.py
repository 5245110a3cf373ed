"""COCODemo: a detection model that annotates OpenCV images (maskrcnn-benchmark's demo API).

    from maskrcnn.config import cfg
    from predictor import COCODemo          # or: from demo.predictor import COCODemo

    cfg.merge_from_file("configs/shapes/<config>.yaml")
    cfg.merge_from_list(["MODEL.WEIGHT", "output/model_final.pth", "MODEL.DEVICE", "cpu"])
    demo = COCODemo(cfg, confidence_threshold=0.7, min_image_size=128)
    annotated = demo.run_on_opencv_image(cv2.imread("image.png"))

Class and keypoint names come from the dataset the model was trained on (cfg.DATASETS.TRAIN[0],
see maskrcnn/data/datasets/class_names.py; COCO's 80 classes when it is unknown).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskrcnn.data.datasets.class_names import metadata_for_cfg  # noqa: E402
from maskrcnn.engine.predictor import Predictor  # noqa: E402
from maskrcnn.utils import visualization as vis  # noqa: E402

__all__ = ["COCODemo"]


class COCODemo(object):
    """Detects objects in BGR images and draws them.

    Arguments:
        cfg: the model's config (MODEL.WEIGHT, or the last checkpoint of OUTPUT_DIR, is loaded).
        confidence_threshold (float): detections scoring below it are not drawn.
        show_mask_heatmaps (bool): draw a montage of mask probability heatmaps instead.
        masks_per_dim (int): the heatmap montage shows masks_per_dim x masks_per_dim masks.
        min_image_size (int): shorter side of the network input.
        model: an already built model to use instead of building one from cfg.
    """

    def __init__(self, cfg, confidence_threshold=0.7, show_mask_heatmaps=False, masks_per_dim=2,
                 min_image_size=224, model=None):
        if masks_per_dim < 1:
            raise ValueError("COCODemo: masks_per_dim must be >= 1, got %r" % (masks_per_dim,))
        self.cfg = cfg.clone()
        self.confidence_threshold = confidence_threshold
        self.show_mask_heatmaps = show_mask_heatmaps
        self.masks_per_dim = masks_per_dim
        self.min_image_size = min_image_size
        # heatmaps need the pasted probabilities, not the thresholded masks
        self.predictor = Predictor(cfg, min_image_size, mask_threshold=-1 if show_mask_heatmaps else None,
                                   model=model)
        self.model = self.predictor.model
        self.device = self.predictor.device
        self.transforms = self.predictor.transforms
        self.metadata = metadata_for_cfg(cfg)
        self.CATEGORIES = list(self.metadata.class_names)

    def run_on_opencv_image(self, image):
        """image: BGR uint8 [H, W, 3] -> a new BGR image with the detections above the confidence
        threshold drawn (or the mask heatmap montage with show_mask_heatmaps)."""
        top_predictions = self.select_top_predictions(self.compute_prediction(image))
        if self.show_mask_heatmaps:
            return self.create_mask_montage(image, top_predictions)
        return vis.draw_instances(image, top_predictions, self.metadata)

    def compute_prediction(self, original_image):
        """BoxList of all detections of a BGR image, in its coordinates (masks pasted)."""
        return self.predictor(original_image)

    def select_top_predictions(self, predictions):
        """The detections scoring above confidence_threshold, best first."""
        scores = predictions.get_field("scores")
        keep = torch.nonzero(scores > self.confidence_threshold).squeeze(1)
        predictions = predictions[keep]
        order = predictions.get_field("scores").argsort(descending=True)
        return predictions[order]

    def compute_colors_for_labels(self, labels):
        """BGR colour tuple of each label."""
        return [vis.label_color(label) for label in labels.tolist()]

    def overlay_boxes(self, image, predictions):
        return vis.overlay_boxes(image, predictions.bbox, self.compute_colors_for_labels(predictions.get_field("labels")))

    def overlay_mask(self, image, predictions):
        height, width = image.shape[:2]
        masks = vis.instance_masks(predictions, height, width)
        if masks is None:
            return image.copy()
        return vis.overlay_masks(image, masks, self.compute_colors_for_labels(predictions.get_field("labels")))

    def overlay_class_names(self, image, predictions):
        labels = predictions.get_field("labels").tolist()
        scores = predictions.get_field("scores").tolist()
        texts = ["%s %.2f" % (self.metadata.class_name(label), score) for label, score in zip(labels, scores)]
        return vis.overlay_class_names(image, predictions.bbox, texts, self.compute_colors_for_labels(
            predictions.get_field("labels")))

    def create_mask_montage(self, image, predictions):
        """Heatmaps of the best masks_per_dim ** 2 masks, tiled to the image's size."""
        if not predictions.has_field("mask"):
            raise ValueError("COCODemo: show_mask_heatmaps needs a model with masks (MODEL.MASK_ON)")
        return vis.create_mask_montage(image, predictions.get_field("mask"), self.masks_per_dim)
