"""Compiled inference (maskrcnn.modeling.compiled_inference): TEST.COMPILE wraps the backbone, RPN
head and box head in torch.compile with frozen weights; the detections equal the eager model's up
to float rounding, the parts run eagerly with gradients on or in training mode, and the config switches
are checked. One module-scoped compiled model keeps the suite's compile time to one compilation
(about 20 s on 2 cores: inductor generates and builds C++ for every graph)."""
import copy

import pytest
import torch

from maskrcnn.modeling.compiled_inference import (
    COMPILED_PARTS, EagerModule, FrozenCompiledModule, compile_for_inference, compile_for_inference_from_cfg,
)
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.structures.bounding_box import BoxList
from tests.tiny_models import MASK_FPN, R18_FPN, SMALL, make_cfg, randomize_norms, seeded_model

MASK_R18_FPN = SMALL + ["MODEL.ROI_HEADS.SCORE_THRESH", 0.0] + R18_FPN + MASK_FPN


def _images(seed, height=64, width=96):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, height, width, generator=gen)]


@pytest.fixture(scope="module")
def eager_and_compiled():
    """(eager inference model, its TEST.COMPILE copy): Mask R-CNN R-18-FPN with random norms,
    BN folded and channels-last as optimize_for_inference_from_cfg leaves it."""
    cfg = make_cfg(*MASK_R18_FPN)
    model = randomize_norms(seeded_model(cfg)).eval()
    eager = optimize_for_inference_from_cfg(cfg, copy.deepcopy(model))
    compiled = optimize_for_inference_from_cfg(make_cfg(*MASK_R18_FPN, "TEST.COMPILE", True), model)
    return eager, compiled


def _detect(model, images):
    with torch.inference_mode():
        return model(images)[0]


def test_compile_wraps_every_part_the_model_has(eager_and_compiled):
    _, compiled = eager_and_compiled
    wrapped = [name for name, module in compiled.named_modules() if isinstance(module, FrozenCompiledModule)]
    assert sorted(wrapped) == sorted(COMPILED_PARTS)
    # the box head's pooler stays out of the compiled graph (data-dependent shapes)
    assert isinstance(compiled.roi_heads.box.feature_extractor.module.pooler, EagerModule)


def test_compiled_detections_match_eager_ones(eager_and_compiled):
    eager, compiled = eager_and_compiled
    for seed, size in ((1, (64, 96)), (2, (64, 96)), (3, (96, 64))):  # a new size recompiles
        want = _detect(eager, _images(seed, *size))
        got = _detect(compiled, _images(seed, *size))
        assert len(want) == len(got) > 0, seed
        torch.testing.assert_close(got.bbox, want.bbox, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(got.get_field("scores"), want.get_field("scores"), atol=1e-4, rtol=1e-4)
        assert torch.equal(got.get_field("labels"), want.get_field("labels"))
        torch.testing.assert_close(got.get_field("mask"), want.get_field("mask"), atol=1e-4, rtol=1e-4)


def test_compiled_parts_run_eagerly_with_gradients(eager_and_compiled):
    _, compiled = eager_and_compiled
    backbone = compiled.backbone
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        frozen = backbone(x)
    # with gradients on, the wrapper runs the module itself: the result has a graph back to the
    # weights, which the frozen (compiled) graph could not have
    weight = next(backbone.module.parameters())
    weight.requires_grad_(True)
    live = backbone(x)
    assert live[0].requires_grad
    for level, (a, b) in enumerate(zip(live, frozen)):
        torch.testing.assert_close(a.detach(), b, atol=1e-4, rtol=1e-4, msg=f"level {level}")


def test_compile_for_inference_rejects_a_model_without_the_parts():
    with pytest.raises(ValueError, match="has none of the parts"):
        compile_for_inference(torch.nn.Linear(2, 2))


def test_compile_is_off_by_default_and_exclusive_with_int8():
    model = torch.nn.Linear(2, 2)
    assert compile_for_inference_from_cfg(make_cfg(*SMALL), model) is model
    with pytest.raises(ValueError, match="TEST.COMPILE and TEST.INT8"):
        compile_for_inference_from_cfg(make_cfg(*SMALL, "TEST.COMPILE", True, "TEST.INT8", True), model)


def test_compiled_box_head_takes_zero_and_one_rois(eager_and_compiled):
    # RoI counts of 0 and 1 are specialised by torch.compile: each must still give the eager result
    eager, compiled = eager_and_compiled
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        features = eager.backbone(x)
        for count in (0, 1, 3):
            boxes = [BoxList(torch.tensor([[1.0, 2.0, 30.0, 40.0]]).repeat(count, 1), (96, 64))]
            want = eager.roi_heads.box.predictor(eager.roi_heads.box.feature_extractor(features, boxes))
            got = compiled.roi_heads.box.predictor(compiled.roi_heads.box.feature_extractor(features, boxes))
            for w, g in zip(want, got):
                assert g.shape == w.shape == (count, w.shape[1]), count
                torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
