"""A model laid out channels-last (MODEL.CHANNELS_LAST, as tools/train_net.py and test_net.py lay
it out) computes what the NCHW model computes: the same training losses and gradients, and the same
detections, up to float rounding, for ResNet-FPN, FBNet and GroupNorm bodies and heads."""
import copy

import pytest
import torch

from maskrcnn.modeling.memory_format import channels_last_from_cfg, to_channels_last
from tests.modeling.test_detector_recipes import empty_ground_truth, ground_truth
from tests.modeling.test_detector_recipes import make_cfg as recipe_cfg
from tests.tiny_models import MASK_FPN, R18_FPN, SMALL, make_cfg, seeded_model

CASES = {
    "r18_fpn_mask": lambda: make_cfg(*(SMALL + R18_FPN + MASK_FPN + ["MODEL.ROI_HEADS.SCORE_THRESH", 0.0])),
    "fbnet_mask": lambda: recipe_cfg("fbnet_mask"),
    "gn_mask_xconv1fc": lambda: recipe_cfg("gn_mask_xconv1fc"),
}


def _train_step(model):
    """Losses {name: Tensor[]} and gradients {name: Tensor} of one step on two images (one empty)."""
    model.train()
    images = [torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(1)),
              torch.randn(3, 56, 80, generator=torch.Generator().manual_seed(2))]
    torch.manual_seed(3)
    losses = model(images, [ground_truth(), empty_ground_truth()])
    sum(losses.values()).backward()
    return losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(CASES))
def test_channels_last_model_trains_and_infers_like_the_nchw_model(name):
    cfg = CASES[name]()
    nchw = seeded_model(cfg)
    nhwc = to_channels_last(copy.deepcopy(nchw))
    stem = next(p for p in nhwc.backbone.parameters() if p.dim() == 4)
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()

    losses_nchw, grads_nchw = _train_step(nchw)
    losses_nhwc, grads_nhwc = _train_step(nhwc)
    assert set(losses_nchw) == set(losses_nhwc)
    for key in losses_nchw:
        torch.testing.assert_close(losses_nhwc[key], losses_nchw[key], rtol=1e-4, atol=1e-5, msg=key)
    assert set(grads_nchw) == set(grads_nhwc)
    # relative to each gradient's norm (plus a small share of the whole gradient's, for gradients
    # that cancel to nearly 0, e.g. a shift right before a normalisation): about 1e-6 with frozen
    # batch norms; normalising with the statistics of two tiny images (FBNet's trainable batch
    # norms, GroupNorm) amplifies the rounding differences to about 0.7 % in a few layers
    total = torch.cat([g.flatten() for g in grads_nchw.values()]).norm()
    tolerance = 1e-4 if name == "r18_fpn_mask" else 2e-2
    for key in grads_nchw:
        error = (grads_nhwc[key] - grads_nchw[key]).norm() / (grads_nchw[key].norm() + 1e-3 * total)
        assert error < tolerance, (key, error.item())

    nchw.eval()
    nhwc.eval()
    image = torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want, got = nchw([image])[0], nhwc([image])[0]
    assert len(want) > 0 and len(got) == len(want)
    torch.testing.assert_close(got.bbox, want.bbox, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.get_field("labels"), want.get_field("labels"))
    torch.testing.assert_close(got.get_field("mask"), want.get_field("mask"), rtol=0, atol=1e-4)


def test_channels_last_follows_the_config_key():
    cfg = make_cfg(*(SMALL + R18_FPN))
    weight = lambda model: model.backbone.body.stem.conv1.weight  # noqa: E731
    assert weight(channels_last_from_cfg(cfg, seeded_model(cfg))).is_contiguous(memory_format=torch.channels_last)
    cfg.MODEL.CHANNELS_LAST = False
    assert weight(channels_last_from_cfg(cfg, seeded_model(cfg))).is_contiguous()
