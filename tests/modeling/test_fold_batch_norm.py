"""BN folding: folded models compute what the unfolded ones do, and only foldable pairs fold."""
import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.layers import Conv2d, FrozenBatchNorm2d
from maskrcnn.modeling.backbone import build_backbone
from maskrcnn.modeling.backbone import fbnet_builder as fb
from maskrcnn.modeling.fold_batch_norm import fold_batch_norms, fold_batch_norms_from_cfg, fold_conv_bn
from maskrcnn.modeling.inference_setup import optimize_for_inference, optimize_for_inference_from_cfg
from maskrcnn.modeling.detector import build_detection_model
from tests.tiny_models import MASK_FPN, R18_FPN, SMALL, SMALL_TEST_IMAGES, make_cfg, randomize_norms, seeded_model

# test_detector's R-18-FPN Faster R-CNN, and test_mask_keypoint_rcnn's Mask R-CNN keeping every detection
FASTER_R18_FPN = SMALL + SMALL_TEST_IMAGES + R18_FPN
MASK_R18_FPN = SMALL + ["MODEL.ROI_HEADS.SCORE_THRESH", 0.0] + R18_FPN + MASK_FPN


def _norms(model):
    return [m for m in model.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]


def _detections_before_and_after(cfg, transform):
    """(model, transform(cfg, model), the detections of each on one random 64 x 96 image): the model
    is cfg's (seed 0) with randomized batch norms, in eval mode."""
    model = randomize_norms(seeded_model(cfg)).eval()
    image = torch.randn(3, 64, 96)
    with torch.no_grad():
        expected = model([image])[0]
        transformed = transform(cfg, model)
        actual = transformed([image])[0]
    return model, transformed, expected, actual


@pytest.mark.parametrize("body, trans_func", [
    ("R-18-FPN", "BasicBlockWithFixedBatchNorm"),
    pytest.param("R-50-C4", "BottleneckWithFixedBatchNorm", marks=pytest.mark.slow),
])
def test_resnet_body_folds_every_frozen_bn_and_keeps_outputs(body, trans_func):
    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.BACKBONE.CONV_BODY", body, "MODEL.RESNETS.TRANS_FUNC", trans_func,
                         "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 32, "MODEL.RESNETS.RES2_OUT_CHANNELS",
                         64 if body.startswith("R-18") else 256])
    torch.manual_seed(0)
    model = randomize_norms(build_backbone(cfg)).eval()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batch_norms(model)
        actual = folded(x)
    assert folded is not model
    assert not _norms(folded), "a frozen batch norm was left unfolded"
    assert folded.folded_batch_norms == len(_norms(model)) > 0
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
    # the original (and so its checkpoints) is untouched
    assert set(model.state_dict()) == set(state_before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_before[key]), key


@pytest.mark.parametrize("bn_type", ["bn", "af"])
@pytest.mark.parametrize("name", ["ir_k3", "ir_k33_e3", "basic_block", "shift_5x5", "ir_k3_sep"])
def test_fbnet_blocks_fold(name, bn_type):
    torch.manual_seed(0)
    block = fb.PRIMITIVES[name](8, 16, expansion=2, stride=2, bn_type=bn_type, width_divisor=1,
                                dw_skip_bn=False, dw_skip_relu=False)
    block = randomize_norms(block).eval()
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        expected = block(x)
        folded = fold_batch_norms(block)
        actual = folded(x)
    assert folded.folded_batch_norms == len(_norms(block)) > 0
    assert not _norms(folded)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_training_mode_batch_norm_and_group_norm_are_left_alone():
    model = nn.Sequential(Conv2d(3, 4, 3), nn.BatchNorm2d(4), Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
    folded = fold_batch_norms(model.train())
    assert folded.folded_batch_norms == 0
    assert isinstance(folded[1], nn.BatchNorm2d) and isinstance(folded[3], nn.GroupNorm)
    folded = fold_batch_norms(model.eval())
    assert folded.folded_batch_norms == 1 and isinstance(folded[1], nn.Identity)


def test_norm_not_after_a_convolution_is_not_folded():
    # a batch norm whose sibling conv has other channels, and one after a ReLU
    model = nn.Sequential(Conv2d(3, 4, 1), nn.ReLU(), FrozenBatchNorm2d(4))
    assert fold_batch_norms(model).folded_batch_norms == 0


def test_fold_conv_bn_with_bias_and_double_and_errors():
    torch.manual_seed(0)
    conv = Conv2d(3, 5, 3, padding=1, bias=True).double()
    norm = randomize_norms(nn.Sequential(nn.BatchNorm2d(5))).double().eval()[0]
    x = torch.randn(2, 3, 7, 7, dtype=torch.double)
    with torch.no_grad():
        expected = norm(conv(x))
        actual = fold_conv_bn(conv, norm)(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="fold_conv_bn: cannot fold FrozenBatchNorm2d"):
        fold_conv_bn(Conv2d(3, 4, 1), FrozenBatchNorm2d(5))
    with pytest.raises(ValueError, match="training=True"):
        fold_conv_bn(Conv2d(3, 4, 1), nn.BatchNorm2d(4).train())
    with pytest.raises(TypeError, match="fold_batch_norms: model must be an nn.Module"):
        fold_batch_norms(torch.zeros(1))


def test_detector_eval_outputs_match_after_folding_and_cfg_switch():
    cfg = make_cfg(*FASTER_R18_FPN)
    model, folded, expected, actual = _detections_before_and_after(cfg, fold_batch_norms_from_cfg)
    assert folded.folded_batch_norms > 0 and not _norms(folded.backbone)
    assert len(actual) == len(expected)
    torch.testing.assert_close(actual.bbox, expected.bbox, rtol=1e-3, atol=1e-3)
    assert torch.equal(actual.get_field("labels"), expected.get_field("labels"))
    cfg.merge_from_list(["TEST.FOLD_BN", False])
    assert fold_batch_norms_from_cfg(cfg, model) is model
    assert default_cfg.TEST.FOLD_BN is True


def test_channels_last_inference_model_matches_and_leaves_the_original_alone():
    model, optimized, expected, actual = _detections_before_and_after(make_cfg(*MASK_R18_FPN),
                                                                      optimize_for_inference_from_cfg)
    stem = optimized.backbone.body.stem.conv1.weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    assert model.backbone.body.stem.conv1.weight.is_contiguous() and _norms(model.backbone)
    assert not _norms(optimized.backbone) and not optimized.training
    assert len(actual) == len(expected) > 0
    torch.testing.assert_close(actual.bbox, expected.bbox, rtol=1e-3, atol=1e-3)
    assert torch.equal(actual.get_field("labels"), expected.get_field("labels"))
    torch.testing.assert_close(actual.get_field("mask"), expected.get_field("mask"), rtol=0, atol=1e-4)
    plain = optimize_for_inference(model, fold_bn=False, channels_last=False)
    assert plain is not model and _norms(plain.backbone) and plain.backbone.body.stem.conv1.weight.is_contiguous()


@pytest.mark.parametrize("fold", [True, False])
def test_predictor_folds_the_model_it_builds(tmp_path, fold):
    from maskrcnn.engine.predictor import Predictor

    cfg = make_cfg(*FASTER_R18_FPN, "OUTPUT_DIR", str(tmp_path), "TEST.FOLD_BN", fold)
    predictor = Predictor(cfg)
    assert bool(_norms(predictor.model.backbone)) is not fold
    assert predictor.model.backbone.body.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    given = build_detection_model(cfg)
    assert Predictor(cfg, model=given).model is given  # a caller's model is used as it is
