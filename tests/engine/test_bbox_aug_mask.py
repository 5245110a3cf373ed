"""Test-time augmentation with Mask R-CNN (and Keypoint R-CNN): the mask head runs on the merged boxes (it used to get
TTA's unfiltered (RoI, class) boxes and fail), with one view it reproduces plain inference, and
run_test evaluates a TTA Mask R-CNN (bbox and segm)."""
import numpy as np
import pytest
import torch

from maskrcnn.data.transforms.transforms import Compose, Normalize, Resize, ToTensor
from maskrcnn.engine.bbox_aug import im_detect_bbox_aug
from maskrcnn.engine.inference import run_test
from maskrcnn.structures.box_convention import set_legacy_plus_one
from maskrcnn.structures.image_list import to_image_list

from inference_helpers import tiny_cfg, tiny_model
from tests.tiny_models import KEYPOINT_FPN

# three views: plain (shorter side 64, longer at most 64), its mirror, a smaller scale
FLIPS_AND_SCALES = ["TEST.BBOX_AUG.H_FLIP", True, "TEST.BBOX_AUG.SCALES", (48,), "TEST.BBOX_AUG.MAX_SIZE", 80]


@pytest.fixture(autouse=True)
def _restore_box_convention():
    yield
    set_legacy_plus_one(True)


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, size=(48, 72, 3), dtype=np.uint8)]


def test_single_view_mask_keypoint_rcnn_equals_plain_inference(tmp_path):
    """Mask and keypoint heads both run, in order, on the merged boxes."""
    plain_cfg = tiny_cfg(tmp_path, *KEYPOINT_FPN)
    aug_cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True, *KEYPOINT_FPN)
    plain_model, aug_model = tiny_model(plain_cfg).eval(), tiny_model(aug_cfg).eval()
    aug_model.load_state_dict(plain_model.state_dict())

    images = _images()
    transform = Compose([Resize(64, 64), ToTensor(),
                         Normalize(plain_cfg.INPUT.PIXEL_MEAN, plain_cfg.INPUT.PIXEL_STD)])
    batch = to_image_list([transform(image)[0] for image in images], 32)
    with torch.no_grad():
        expected = plain_model(batch)
    got = im_detect_bbox_aug(aug_model, images, "cpu", cfg=aug_cfg)
    for want, have in zip(expected, got):
        assert len(want) > 0 and len(have) == len(want)
        torch.testing.assert_close(have.bbox, want.bbox)
        torch.testing.assert_close(have.get_field("labels"), want.get_field("labels"))
        torch.testing.assert_close(have.get_field("scores"), want.get_field("scores"))
        torch.testing.assert_close(have.get_field("mask"), want.get_field("mask"))
        torch.testing.assert_close(have.get_field("keypoints").keypoints, want.get_field("keypoints").keypoints)


def test_flips_and_scales_give_one_mask_per_merged_box(tmp_path):
    cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True, *FLIPS_AND_SCALES)
    model = tiny_model(cfg).eval()
    results = im_detect_bbox_aug(model, _images(), "cpu", cfg=cfg)
    resolution = cfg.MODEL.ROI_MASK_HEAD.RESOLUTION
    for result, size in zip(results, [(64, 64), (64, 43)]):
        assert result.size == size  # the plain view's frame
        assert 0 < len(result) <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG
        masks = result.get_field("mask")
        assert masks.shape == (len(result), 1, resolution, resolution)
        assert masks.min() >= 0 and masks.max() <= 1


def test_run_test_with_tta_mask_rcnn(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path / "data"))
    cfg = tiny_cfg(tmp_path / "out", "TEST.BBOX_AUG.ENABLED", True, "DATASETS.SHAPES.NUM_VAL_IMAGES", 3,
                   *FLIPS_AND_SCALES)
    results = run_test(cfg, tiny_model(cfg), distributed=False)["shapes_val"]
    assert list(results) == ["bbox", "segm"]
    predictions = torch.load(tmp_path / "out" / "inference" / "shapes_val" / "predictions.pth", weights_only=False)
    assert len(predictions) == 3
    assert all(p.size == (64, 64) and len(p) > 0 and p.get_field("mask").shape[0] == len(p) for p in predictions)
