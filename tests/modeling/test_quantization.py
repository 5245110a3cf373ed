"""Int8 backbone (maskrcnn.modeling.quantization): the quantized ResNet-FPN and FBNet backbones
compute nearly what the float ones do with int8 convolutions, the detector built around one runs
end to end, TEST.INT8 drives it through optimize_for_inference_from_cfg / the Predictor, and a
model off the CPU is refused."""
import copy
import logging

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic import quantized as intrinsic_quantized
from torch.ao.nn import quantized as nn_quantized

from maskrcnn.engine.predictor import Predictor
from maskrcnn.layers import DFConv2d, FrozenBatchNorm2d
from maskrcnn.modeling import registry
from maskrcnn.modeling.backbone import build_backbone
from maskrcnn.modeling.backbone.fbnet_builder import ChannelShuffle
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.modeling.quantization import (
    QuantizedBackbone, calibration_batches, quantize_backbone, quantize_backbone_from_cfg, quantize_backbone_module,
)
from maskrcnn.structures.image_list import ImageList, to_image_list
from tests.tiny_models import MASK_FPN, R18_FPN, SMALL, make_cfg, randomize_norms, seeded_model

MASK_R18_FPN = SMALL + ["MODEL.ROI_HEADS.SCORE_THRESH", 0.0] + R18_FPN + MASK_FPN
QUANTIZED_CONVS = (nn_quantized.Conv2d, intrinsic_quantized.ConvReLU2d)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(count, seed, height=64, width=96):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, height, width, generator=gen) for _ in range(count)]


def _relative_error(got, want):
    return ((got - want).norm() / want.norm()).item()


@pytest.fixture(scope="module")
def float_and_int8():
    """(float Mask R-CNN R-18-FPN with random batch norms, eval mode; its int8-backbone copy
    calibrated on 4 random images; the float model's state dict from before quantizing)."""
    model = randomize_norms(seeded_model(make_cfg(*MASK_R18_FPN))).eval()
    state_before = copy.deepcopy(model.state_dict())
    calibration = [_images(2, seed) for seed in (1, 2)]
    return model, quantize_backbone(model, calibration), state_before


def test_int8_backbone_features_match_the_float_ones(float_and_int8):
    model, quantized, _ = float_and_int8
    x = to_image_list(_images(1, 3), 32).tensors
    other = to_image_list(_images(1, 4), 32).tensors
    with torch.no_grad():
        want, got, got_other = model.backbone(x), quantized.backbone(x), quantized.backbone(other)
    assert isinstance(got, tuple) and len(got) == len(want) == 5
    for level, (w, g, o) in enumerate(zip(want, got, got_other)):
        assert g.dtype == torch.float32 and g.shape == w.shape, level
        # about 0.05-0.08 (int8 activations and weights), where the features of another image are
        # 0.27-0.38 away: the bound fails for features that are not this image's
        assert _relative_error(g, w) < 0.12, (level, _relative_error(g, w))
        assert _relative_error(o, w) > 0.2, (level, _relative_error(o, w))


def test_every_backbone_convolution_is_int8_with_per_channel_weights(float_and_int8):
    model, quantized, _ = float_and_int8
    float_convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    int8_convs = [m for m in quantized.backbone.modules() if isinstance(m, QUANTIZED_CONVS)]
    assert len(int8_convs) == len(float_convs) > 0
    assert not [m for m in quantized.backbone.modules() if type(m) in (nn.Conv2d, FrozenBatchNorm2d)]
    assert any(isinstance(m, intrinsic_quantized.ConvReLU2d) for m in int8_convs), "conv + ReLU did not fuse"
    for conv in int8_convs:
        weight = conv.weight()
        # symmetric per-channel int8 (stored as per_channel_affine with zero points 0)
        assert weight.dtype == torch.qint8
        assert weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        assert weight.q_per_channel_scales().shape == (conv.out_channels,)
        assert (weight.q_per_channel_zero_points() == 0).all()
    # RPN and heads stay float; the original model is untouched
    assert not [m for m in quantized.rpn.modules() if isinstance(m, QUANTIZED_CONVS)]
    assert isinstance(quantized.backbone, QuantizedBackbone) and isinstance(model.backbone, nn.Sequential)
    assert quantized.backbone.out_channels == model.backbone.out_channels


def test_int8_detector_returns_detections_of_the_right_shapes(float_and_int8):
    _, quantized, _ = float_and_int8
    with torch.no_grad():
        detections = quantized(_images(2, 5, 64, 80))
    assert len(detections) == 2
    for result in detections:
        n = len(result)
        assert n > 0 and result.size == (80, 64)
        assert result.bbox.shape == (n, 4) and result.bbox.dtype == torch.float32
        assert result.get_field("scores").shape == (n,) and result.get_field("labels").shape == (n,)
        assert result.get_field("mask").shape == (n, 1, 14, 14)
        assert torch.isfinite(result.bbox).all()


def _fbnet_a_backbone():
    """FBNet-A's trunk: its shuffled group convolutions have a ChannelShuffle, which FX cannot trace."""
    cfg = make_cfg("MODEL.BACKBONE.CONV_BODY", "FBNet", "MODEL.FBNET.ARCH", "fbnet_a")
    return registry.BACKBONES["FBNet"](cfg), ChannelShuffle


def _deformable_r18_fpn_backbone():
    """R-18-FPN with deformable convolutions in res5, which have no int8 kernel."""
    cfg = make_cfg(*R18_FPN, "MODEL.RESNETS.STAGE_WITH_DCN", (False, False, False, True))
    return build_backbone(cfg), DFConv2d


@pytest.mark.parametrize("make_backbone", [_fbnet_a_backbone, _deformable_r18_fpn_backbone])
def test_blocks_without_int8_kernels_stay_float_inside_the_int8_backbone(make_backbone):
    torch.manual_seed(0)
    backbone, float_class = make_backbone()
    backbone = randomize_norms(backbone).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    quantized = quantize_backbone_module(backbone, [torch.randn(2, 3, 64, 64)])
    with torch.no_grad():
        want, got = backbone(x), quantized(x)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g.shape == w.shape and _relative_error(g, w) < 0.12, _relative_error(g, w)
    assert any(isinstance(m, float_class) for m in quantized.modules())
    assert sum(isinstance(m, QUANTIZED_CONVS) for m in quantized.modules()) > 10


def test_calibration_batches_stop_after_the_requested_images():
    batches = [_images(2, seed) for seed in range(3)]
    taken = list(calibration_batches(batches, 3))
    assert [len(b) for b in taken] == [2, 1]
    image_lists = [to_image_list(b, 32) for b in batches]
    taken = list(calibration_batches(image_lists, 5))
    assert [len(b.image_sizes) for b in taken] == [2, 2, 1] and isinstance(taken[-1], ImageList)
    assert taken[-1].tensors.shape[0] == 1
    with pytest.raises(ValueError, match="TEST.INT8_CALIBRATION_IMAGES"):
        list(calibration_batches(batches, 0))
    with pytest.raises(ValueError, match="no calibration images"):
        quantize_backbone(seeded_model(make_cfg(*MASK_R18_FPN)).eval(), [])


def test_cfg_switch_leaves_the_float_model_alone_when_off():
    cfg = make_cfg(*MASK_R18_FPN)
    model = seeded_model(cfg).eval()
    assert quantize_backbone_from_cfg(cfg, model, [_images(1, 0)]) is model
    assert isinstance(optimize_for_inference_from_cfg(cfg, model).backbone, nn.Sequential)


def test_predictor_with_test_int8_calibrates_on_the_test_set(tmp_path, monkeypatch, caplog):
    # TEST.INT8 through optimize_for_inference_from_cfg: calibration images from DATASETS.TEST[0]
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path / "data"))
    cfg = make_cfg(*MASK_R18_FPN, "TEST.INT8", True, "TEST.INT8_CALIBRATION_IMAGES", 3,
                   "DATASETS.TEST", ("shapes_val",), "DATASETS.SHAPES.IMAGE_SIZE", 64,
                   "DATASETS.SHAPES.NUM_VAL_IMAGES", 4, "DATALOADER.NUM_WORKERS", 0, "TEST.IMS_PER_BATCH", 2,
                   "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 64, "OUTPUT_DIR", str(tmp_path / "out"))
    with caplog.at_level(logging.INFO, logger="maskrcnn.quantization"):
        predictor = Predictor(cfg)
    assert any("calibrated on 3 images" in record.getMessage() for record in caplog.records)
    assert isinstance(predictor.model.backbone, QuantizedBackbone)
    prediction = predictor(torch.randint(0, 255, (48, 72, 3), dtype=torch.uint8).numpy())
    assert prediction.size == (72, 48) and len(prediction) > 0
    assert prediction.get_field("mask").shape == (len(prediction), 1, 48, 72)


def test_int8_refuses_a_model_off_the_cpu_naming_the_switch():
    cfg = make_cfg(*MASK_R18_FPN, "TEST.INT8", True)
    model = seeded_model(cfg).eval().to("meta")
    with pytest.raises(ValueError, match=r"TEST\.INT8 True.*CPU only.*meta"):
        quantize_backbone_from_cfg(cfg, model, [_images(1, 0)])
    with pytest.raises(ValueError, match="CPU only"):
        quantize_backbone(model, [_images(1, 0)])


@needs_cuda
def test_int8_refuses_a_cuda_model():
    cfg = make_cfg(*MASK_R18_FPN, "TEST.INT8", True, "MODEL.DEVICE", "cuda")
    model = seeded_model(cfg).eval().cuda()
    with pytest.raises(ValueError, match=r"TEST\.INT8 True.*CPU only.*cuda"):
        optimize_for_inference_from_cfg(cfg, model, calibration_images=[_images(1, 0)])


def test_an_int8_model_refuses_inputs_off_the_cpu_and_a_second_quantization(float_and_int8):
    _, quantized, _ = float_and_int8
    with pytest.raises(ValueError, match="CPU"):
        quantized.backbone(torch.empty(1, 3, 64, 64, device="meta"))
    with pytest.raises(ValueError, match="already int8"):
        quantize_backbone(quantized, [_images(1, 0)])


def test_quantizing_a_copy_leaves_the_float_weights_untouched(float_and_int8):
    model, _, before = float_and_int8
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(after[key], value) for key, value in before.items())
    assert not [m for m in model.backbone.modules() if isinstance(m, QUANTIZED_CONVS)]


def test_residual_and_top_down_additions_run_as_int8_kernels(float_and_int8):
    """The in-place residual `out +=` / `add_` of the float model are rewritten so the quantized
    add (+ ReLU) kernels replace them; left in place they would run in float between dequantize
    and quantize."""
    _, quantized, _ = float_and_int8
    targets = [str(node.target) for node in quantized.backbone.graph_module.graph.nodes
               if node.op == "call_function"]
    assert any("quantized.add_relu" in t for t in targets), targets
    assert any(t.endswith("quantized.add") for t in targets), targets
    assert not [t for t in targets if "iadd" in t or t == "add_"], targets
