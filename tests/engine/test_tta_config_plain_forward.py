"""A model built from a config with TEST.BBOX_AUG.ENABLED: its plain forward gives normal detections
(the box head's TTA mode, every (RoI, class) box unfiltered, is switched on only while
im_detect_bbox_aug runs its views), and the Predictor runs it without TTA, saying so."""
import logging

import numpy as np
import torch

from maskrcnn.engine.bbox_aug import im_detect_bbox_aug, unfiltered_box_detections
from maskrcnn.engine.predictor import Predictor
from maskrcnn.structures.image_list import to_image_list

from inference_helpers import tiny_cfg, tiny_model


def _batch(cfg):
    torch.manual_seed(1)
    return to_image_list([torch.randn(3, 64, 64), torch.randn(3, 48, 64)], cfg.DATALOADER.SIZE_DIVISIBILITY)


def test_plain_forward_of_a_tta_model_filters_like_a_plain_model(tmp_path):
    tta_cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True)
    model = tiny_model(tta_cfg).eval()
    plain = tiny_model(tiny_cfg(tmp_path)).eval()
    plain.load_state_dict(model.state_dict())
    batch = _batch(tta_cfg)
    with torch.no_grad():
        got, want = model(batch), plain(batch)
    per_image = tta_cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG
    for have, expected in zip(got, want):
        # 20 proposals x 4 classes would be 80 unfiltered rows
        assert 0 < len(have) <= per_image
        assert have.get_field("labels").min() >= 1
        assert have.get_field("mask").shape[0] == len(have)
        torch.testing.assert_close(have.bbox, expected.bbox, rtol=0, atol=0)
        torch.testing.assert_close(have.get_field("scores"), expected.get_field("scores"), rtol=0, atol=0)
        torch.testing.assert_close(have.get_field("mask"), expected.get_field("mask"), rtol=0, atol=0)


def test_tta_mode_is_on_only_during_the_views(tmp_path):
    cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True, "TEST.BBOX_AUG.H_FLIP", True)
    model = tiny_model(cfg).eval()
    post_processor = model.roi_heads.box.post_processor
    assert not post_processor.bbox_aug_enabled
    batch = _batch(cfg)
    with unfiltered_box_detections(model), torch.no_grad():
        assert post_processor.bbox_aug_enabled
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        _, unfiltered, _ = model.roi_heads.box(features, proposals)
    # every (RoI, class) box, no labels
    assert [len(b) for b in unfiltered] == [len(p) * cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES for p in proposals]
    assert not unfiltered[0].has_field("labels")
    assert not post_processor.bbox_aug_enabled
    image = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    merged = im_detect_bbox_aug(model, [image], "cpu", cfg=cfg)[0]
    assert 0 < len(merged) <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG and merged.has_field("mask")
    assert not post_processor.bbox_aug_enabled


def test_predictor_runs_a_tta_config_without_tta_and_says_so(tmp_path, caplog):
    cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True)
    model = tiny_model(cfg)
    with caplog.at_level(logging.WARNING, logger="maskrcnn.predictor"):
        predictor = Predictor(cfg, model=model)
    assert any("TEST.BBOX_AUG.ENABLED" in record.getMessage() for record in caplog.records)
    image = np.random.default_rng(2).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    prediction = predictor(image)
    assert prediction.size == (80, 48)
    assert 0 < len(prediction) <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG
    assert prediction.get_field("mask").shape == (len(prediction), 1, 48, 80)
