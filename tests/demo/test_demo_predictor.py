"""COCODemo (demo/predictor.py) with a tiny R-18-FPN Mask R-CNN whose box classifier is biased
to detect every anchor-box proposal as a confident "circle": predictions come back in image
coordinates with pasted masks, and drawing changes the image where the detections are."""
import numpy as np
import pytest
import torch

from tiny_detector import DETECTED_LABEL, KEYPOINTS, detecting_model, tiny_cfg
from demo.predictor import COCODemo
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import set_legacy_plus_one
from maskrcnn.utils import visualization as vis


@pytest.fixture(scope="module")
def model_and_cfg(tmp_path_factory):
    cfg = tiny_cfg(tmp_path_factory.mktemp("predictor") / "output")
    model = detecting_model(cfg)
    yield model, cfg
    set_legacy_plus_one(True)


def gray_image(height=120, width=160):
    """A flat image: anything drawn on it changes pixels."""
    return np.full((height, width, 3), 90, dtype=np.uint8)


def test_compute_prediction_is_in_image_coordinates(model_and_cfg):
    model, cfg = model_and_cfg
    demo = COCODemo(cfg, confidence_threshold=0.5, min_image_size=64, model=model)
    image = gray_image()
    prediction = demo.compute_prediction(image)
    assert prediction.size == (160, 120)
    assert len(prediction) > 0
    assert (prediction.get_field("labels") == DETECTED_LABEL).all()
    assert (prediction.get_field("scores") > 0.99).all()
    boxes = prediction.bbox
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    masks = prediction.get_field("mask")
    assert masks.dtype == torch.uint8 and tuple(masks.shape) == (len(prediction), 1, 120, 160)
    assert not boxes.is_inference() and not masks.is_inference(), "callers may change them in place"
    assert set(masks.unique().tolist()) <= {0, 1}
    # the mask logits are positive everywhere in the RoI: each mask covers its box
    for box, mask in zip(boxes.round().long().tolist(), masks[:, 0]):
        x1, y1, x2, y2 = box
        inner = mask[y1 + 1:y2, x1 + 1:x2]
        if inner.numel():
            assert inner.float().mean() > 0.9


def test_select_top_predictions_filters_and_sorts(model_and_cfg):
    model, cfg = model_and_cfg
    demo = COCODemo(cfg, confidence_threshold=0.7, model=model)
    predictions = BoxList(torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 8, 8.0]]), (32, 32))
    predictions.add_field("scores", torch.tensor([0.3, 0.75, 0.9]))
    predictions.add_field("labels", torch.tensor([1, 2, 3]))
    top = demo.select_top_predictions(predictions)
    assert top.get_field("scores").tolist() == pytest.approx([0.9, 0.75])
    assert top.get_field("labels").tolist() == [3, 2]


def test_run_on_opencv_image_draws_the_detections(model_and_cfg):
    model, cfg = model_and_cfg
    demo = COCODemo(cfg, confidence_threshold=0.5, min_image_size=64, model=model)
    assert demo.CATEGORIES == ["__background", "circle", "square", "triangle"]
    image = gray_image()
    original = image.copy()
    annotated = demo.run_on_opencv_image(image)
    assert np.array_equal(image, original), "the input image must not be modified"
    assert annotated.shape == image.shape and annotated.dtype == np.uint8
    top = demo.select_top_predictions(demo.compute_prediction(image))
    assert len(top) > 0
    for x1, y1, x2, y2 in top.bbox.round().long().tolist():
        region = (slice(max(y1, 0), y2 + 1), slice(max(x1, 0), x2 + 1))
        assert (annotated[region] != image[region]).any(), "nothing drawn in a detected box"
    # no detection above the threshold: the image comes back unchanged
    strict = COCODemo(cfg, confidence_threshold=1.01, min_image_size=64, model=model)
    assert np.array_equal(strict.run_on_opencv_image(image), image)


def test_mask_heatmaps_montage(model_and_cfg):
    model, cfg = model_and_cfg
    demo = COCODemo(cfg, confidence_threshold=0.5, show_mask_heatmaps=True, masks_per_dim=2, min_image_size=64,
                    model=model)
    image = gray_image()
    prediction = demo.compute_prediction(image)
    masks = prediction.get_field("mask")
    assert masks.dtype == torch.uint8 and masks.max() > 200, "heatmaps need probabilities as 0..255"
    montage = demo.run_on_opencv_image(image)
    assert montage.shape == image.shape
    assert len(np.unique(montage.reshape(-1, 3), axis=0)) > 1, "the montage shows the masks"


def test_keypoints_are_drawn_for_triangles(tmp_path):
    """keypoints_shapes: triangles carry the three keypoints; a model detecting triangles draws
    the skeleton, one detecting circles does not."""
    cfg = tiny_cfg(tmp_path / "output", *KEYPOINTS)
    image = gray_image()
    for label, expect_keypoints in ((1, False), (3, True)):
        model = detecting_model(cfg, label=label)
        demo = COCODemo(cfg, confidence_threshold=0.5, min_image_size=64, model=model)
        assert demo.metadata.keypoint_names == ["top", "left", "right"]
        top = demo.select_top_predictions(demo.compute_prediction(image))
        keypoints = top.get_field("keypoints")
        assert tuple(keypoints.keypoints.shape) == (len(top), 3, 3)
        assert (keypoints.get_field("logits") > 2).all()
        assert not keypoints.keypoints.is_inference()
        top.clip_to_image()  # in place: fine on ordinary tensors
        with_keypoints = demo.run_on_opencv_image(image)
        without = vis.draw_instances(image, top.copy_with_fields(["scores", "labels", "mask"]), demo.metadata)
        assert (with_keypoints != without).any() == expect_keypoints
