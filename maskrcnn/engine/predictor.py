"""Run a detection model on single BGR images: preprocessing from the config, inference, and the
results mapped back onto the original image (boxes, keypoints, and masks pasted at full size).

``Predictor`` is the engine under demo/predictor.py's COCODemo and tools/visualize.py;
``prediction_in_image`` also turns saved predictions (OUTPUT_DIR/inference/<dataset>/
predictions.pth, in the network's input size with M x M masks) into image coordinates.
"""
import logging

import torch
import torch.nn.functional as F

from maskrcnn.config.conventions import box_convention
from maskrcnn.data.transforms import transforms as T
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.modeling.roi_heads.mask_head.inference import Masker
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.image_list import to_image_list
from maskrcnn.structures.keypoint import Keypoints
from maskrcnn.utils.checkpoint import DetectronCheckpointer

__all__ = ["Predictor", "prediction_in_image", "select_top_predictions", "resolve_device", "make_masker"]

logger = logging.getLogger("maskrcnn.predictor")


def resolve_device(device):
    """torch.device of MODEL.DEVICE; a CUDA device falls back to the CPU (with a warning) when
    CUDA is not available, so configs written for GPUs run anywhere."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but CUDA is not available: running on the CPU", device)
        return torch.device("cpu")
    return device


def make_masker(cfg, threshold=None):
    """Masker pasting M x M mask probabilities into the image: threshold
    MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD unless given (-1 keeps probabilities as
    uint8 0..255), padding 1, the config's box convention."""
    if threshold is None:
        threshold = cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD
    return Masker(threshold=threshold, padding=1, legacy_plus_one=box_convention(cfg).legacy_plus_one)


def prediction_in_image(prediction, width, height, masker=None):
    """The detections of one image (a BoxList in the network's input size) in the original image
    of ``width`` x ``height``: boxes and keypoints rescaled; a field "mask" of M x M probabilities
    pasted by ``masker`` into Tensor[N, 1, height, width] uint8 (masks already pasted at the input
    size are rescaled, nearest neighbour)."""
    old_width, old_height = prediction.size
    if (old_width, old_height) != (width, height):
        prediction = prediction.resize((width, height))
    if prediction.has_field("mask"):
        masks = prediction.get_field("mask")
        if masks.shape[-2:] == (old_height, old_width) and (old_height, old_width) != (height, width):
            resized = F.interpolate(masks.float(), size=(height, width), mode="nearest")
            prediction.add_field("mask", resized.to(masks.dtype))
        elif masks.shape[-2:] != (height, width) and masker is not None:
            prediction.add_field("mask", masker([masks], [prediction])[0])
    return prediction


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, Keypoints):
        copy = type(value)(value.keypoints.clone(), value.size, value.mode, legacy_plus_one=value.legacy_plus_one)
        for name, field in value.extra_fields.items():
            copy.add_field(name, _clone(field))
        return copy
    return value


def _ordinary_tensors(prediction):
    """A copy of a BoxList made under torch.inference_mode whose tensors are ordinary ones
    (cloned outside it), so callers may change them in place (e.g. clip_to_image)."""
    result = BoxList(_clone(prediction.bbox), prediction.size, prediction.mode, prediction.legacy_plus_one)
    for name in prediction.fields():
        result.add_field(name, _clone(prediction.get_field(name)))
    return result


def select_top_predictions(predictions, confidence_threshold):
    """The detections of a BoxList scoring above ``confidence_threshold``, best first (all of
    them, in order, when it has no field "scores", e.g. ground truth)."""
    if not predictions.has_field("scores"):
        return predictions
    keep = torch.nonzero(predictions.get_field("scores") > confidence_threshold).squeeze(1)
    predictions = predictions[keep]
    return predictions[predictions.get_field("scores").argsort(descending=True)]


class Predictor(object):
    """A detection model ready for single images.

    Arguments:
        cfg: the config (not modified; its MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS is turned off
            in a copy, as masks are pasted at the original image size here).
        min_image_size (int or None): shorter side the image is resized to (None:
            INPUT.MIN_SIZE_TEST); the longer side is capped in the config's proportion
            INPUT.MAX_SIZE_TEST / INPUT.MIN_SIZE_TEST.
        mask_threshold (float or None): pasted mask threshold (None: the config's; -1 keeps the
            probabilities as uint8 0..255).
        model: an already built model (its weights are then kept); None builds one with
            build_detection_model and loads weights with DetectronCheckpointer: the last
            checkpoint of OUTPUT_DIR when there is one, else MODEL.WEIGHT, then prepares it for
            inference (TEST.FOLD_BN, TEST.CHANNELS_LAST, TEST.INT8: optimize_for_inference_from_cfg).
    Test-time augmentation (TEST.BBOX_AUG.ENABLED) is not applied here, as in Detectron2's
    DefaultPredictor and maskrcnn-benchmark's COCODemo: one forward of the plain test view, with a
    warning when the config asks for TTA. TTA runs in evaluation (tools/test_net.py,
    maskrcnn.engine.inference) or through maskrcnn.engine.bbox_aug.im_detect_bbox_aug.
    """

    def __init__(self, cfg, min_image_size=None, mask_threshold=None, model=None):
        self.cfg = cfg.clone()
        self.cfg.defrost()
        self.cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS = False
        self.cfg.freeze()
        self.device = resolve_device(self.cfg.MODEL.DEVICE)
        if self.cfg.TEST.BBOX_AUG.ENABLED:
            logger.warning("TEST.BBOX_AUG.ENABLED is set but the Predictor runs the plain test view only (no "
                           "test-time augmentation; tools/test_net.py evaluates with it)")
        if model is None:
            model = build_detection_model(self.cfg)
            model.to(self.device)
            checkpointer = DetectronCheckpointer(self.cfg, model, save_dir=self.cfg.OUTPUT_DIR)
            if not self.cfg.MODEL.WEIGHT and not checkpointer.has_checkpoint():
                logger.warning("No MODEL.WEIGHT and no checkpoint in OUTPUT_DIR (%s): the model has random "
                               "weights", self.cfg.OUTPUT_DIR)
            checkpointer.load(self.cfg.MODEL.WEIGHT)
            # our own inference-only model: BN folded, channels-last (TEST.FOLD_BN, TEST.CHANNELS_LAST),
            # and with TEST.INT8 an int8 backbone calibrated on DATASETS.TEST[0] images (CPU only)
            model = optimize_for_inference_from_cfg(self.cfg, model, inplace=True)
        else:
            model.to(self.device)
        self.model = model.eval()
        self.min_image_size = int(min_image_size or self.cfg.INPUT.MIN_SIZE_TEST)
        self.transforms = self.build_transforms()
        self.masker = make_masker(self.cfg, mask_threshold)

    def build_transforms(self):
        """Resize (shorter side min_image_size), ToTensor, Normalize(PIXEL_MEAN, PIXEL_STD, TO_BGR255)."""
        cfg = self.cfg
        max_size = None
        if cfg.INPUT.MAX_SIZE_TEST and cfg.INPUT.MIN_SIZE_TEST:
            max_size = int(round(self.min_image_size * cfg.INPUT.MAX_SIZE_TEST / float(cfg.INPUT.MIN_SIZE_TEST)))
        return T.Compose([
            T.Resize(self.min_image_size, max_size),
            T.ToTensor(),
            T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.TO_BGR255),
        ])

    def __call__(self, original_image):
        """original_image: BGR uint8 numpy [H, W, 3] -> BoxList (CPU) of its detections in image
        coordinates, with fields "scores", "labels" and, as the model has them, "mask"
        (Tensor[N, 1, H, W] uint8) and "keypoints"."""
        if original_image is None or original_image.ndim != 3 or original_image.shape[2] != 3:
            shape = None if original_image is None else tuple(original_image.shape)
            raise ValueError("Predictor: expected a BGR image of shape [H, W, 3], got %s" % (shape,))
        image, _ = self.transforms(original_image)
        image_list = to_image_list(image, self.cfg.DATALOADER.SIZE_DIVISIBILITY).to(self.device)
        with torch.inference_mode():
            prediction = self.model(image_list)[0].to(torch.device("cpu"))
            height, width = original_image.shape[:2]
            prediction = prediction_in_image(prediction, width, height, self.masker)
        return _ordinary_tensors(prediction)
