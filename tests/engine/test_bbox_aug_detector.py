"""Test-time augmentation through a real (tiny, randomly initialised) R-18-FPN Faster R-CNN."""
import numpy as np
import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.bbox_aug import im_detect_bbox_aug
from maskrcnn.modeling.detector import build_detection_model


def tiny_cfg(bbox_aug):
    cfg = default_cfg.clone()
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
        "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithFixedBatchNorm",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 64,
        "MODEL.RPN.USE_FPN", True,
        "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
        "MODEL.RPN.PRE_NMS_TOP_N_TEST", 200,
        "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
        "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50,
        "MODEL.ROI_HEADS.USE_FPN", True,
        "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
        "MODEL.ROI_BOX_HEAD.POOLER_SCALES", (0.25, 0.125, 0.0625, 0.03125),
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
        "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 64,
        "INPUT.MIN_SIZE_TEST", 64,
        "INPUT.MAX_SIZE_TEST", 96,
        "DATALOADER.SIZE_DIVISIBILITY", 32,
        "TEST.BBOX_AUG.ENABLED", bbox_aug,
    ])
    return cfg


def tiny_model(cfg):
    torch.manual_seed(0)
    model = build_detection_model(cfg).eval()
    # random heads score every class alike; a larger spread gives distinct, non-tied scores
    with torch.no_grad():
        model.roi_heads.box.predictor.cls_score.weight.normal_(0, 0.5)
    return model


def image(seed=0, height=48, width=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_single_view_equals_plain_inference():
    """With no extra view the merge must reproduce the box head's own filtering."""
    from maskrcnn.data.transforms.transforms import Compose, Normalize, Resize, ToTensor
    from maskrcnn.structures.image_list import to_image_list

    plain_cfg = tiny_cfg(False)
    aug_cfg = tiny_cfg(True)
    plain_model, aug_model = tiny_model(plain_cfg), tiny_model(aug_cfg)
    aug_model.load_state_dict(plain_model.state_dict())

    images = [image(0), image(1, 40, 72)]
    transform = Compose([Resize(64, 96), ToTensor(), Normalize(plain_cfg.INPUT.PIXEL_MEAN, plain_cfg.INPUT.PIXEL_STD)])
    batch = to_image_list([transform(im)[0] for im in images], 32)
    with torch.no_grad():
        expected = plain_model(batch)
    got = im_detect_bbox_aug(aug_model, images, "cpu", cfg=aug_cfg)
    for want, have in zip(expected, got):
        assert have.size == want.size
        assert len(want) > 0 and len(have) == len(want)
        torch.testing.assert_close(have.get_field("scores"), want.get_field("scores"))
        torch.testing.assert_close(have.get_field("labels"), want.get_field("labels"))
        torch.testing.assert_close(have.bbox, want.bbox)


def test_flip_and_scales_run_and_stay_in_frame():
    cfg = tiny_cfg(True)
    cfg.merge_from_list(["TEST.BBOX_AUG.H_FLIP", True, "TEST.BBOX_AUG.SCALES", (48, 80),
                         "TEST.BBOX_AUG.MAX_SIZE", 120, "TEST.BBOX_AUG.SCALE_H_FLIP", True])
    model = tiny_model(cfg)
    results = im_detect_bbox_aug(model, [image(2)], "cpu", cfg=cfg)
    result = results[0]
    width, height = result.size
    assert (width, height) == (85, 64)  # the plain view: shorter side 64
    assert 0 < len(result) <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG
    scores = result.get_field("scores")
    assert torch.all(scores[:-1] >= scores[1:])
    labels = result.get_field("labels")
    assert labels.min() >= 1 and labels.max() < cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES
    assert result.bbox[:, 0::2].min() >= 0 and result.bbox[:, 0::2].max() <= width
    assert result.bbox[:, 1::2].min() >= 0 and result.bbox[:, 1::2].max() <= height
