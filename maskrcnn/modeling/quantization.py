"""Int8 backbone for CPU inference: post-training static quantization with torch.ao's FX mode.

The backbone (ResNet body + FPN, or an FBNet trunk) does most of a detector's arithmetic, and its
convolutions have int8 kernels on x86 CPUs (fbgemm / oneDNN; with AVX-512 VNNI the int8 dot
products run at several times the float rate). ``quantize_backbone`` replaces a detector's
``backbone`` by an int8 one and leaves the RPN and the RoI heads in float, so the rest of the model
is unchanged: the quantized backbone takes the float image batch and returns float feature maps.

How the backbone is quantized (``quantize_backbone_module``):

1. batch norms are folded into the convolutions (``maskrcnn.modeling.fold_batch_norm``), so each
   quantized convolution carries its norm;
2. our empty-batch-safe ``maskrcnn.layers.Conv2d`` become plain ``nn.Conv2d`` (sharing the
   parameters), the modules FX's quantization recognises;
3. the backbone is traced with ``torch.fx``, with the modules it cannot trace or that have no int8
   kernel (``FLOAT_MODULE_CLASSES``: FBNet's channel shuffle and shift, deformable convolutions
   and the norms that could not be folded) as leaves that stay float; in the graph the
   ``nn.Identity`` left by folding are dropped and the in-place ops (``relu_``, the residual
   ``+=``, the FPN's ``add_``) become out-of-place ones, so convolution + ReLU and addition
   (+ ReLU) become single int8 kernels;
4. ``prepare_fx`` inserts observers (the engine's default QConfigMapping: histogram observers on
   activations, per-channel symmetric int8 weights), the calibration batches run through it, and
   ``convert_fx`` produces the int8 graph.

The int8 model is for inference only (no gradients, no checkpoints: save and load the float one)
and runs on the CPU only. Outputs differ from the float model's by the quantization error (5-8 %
relative error of the feature maps of the tests' random models; the AP change of a trained model
is measured in benchmarks/README.md, "int8 CPU inference").

torch.ao.quantization is marked deprecated in favour of torchao's pt2e flow, which needs torchao
and torch.compile; its FX mode still works in torch 2.13 and needs nothing else. Its deprecation
warnings are silenced while quantizing (``quantize_backbone_module``).

Config: TEST.INT8 (default False) and TEST.INT8_CALIBRATION_IMAGES, read by
``quantize_backbone_from_cfg``, which ``optimize_for_inference_from_cfg`` (the Predictor) and
tools/test_net.py call.
"""
import contextlib
import copy
import itertools
import logging
import operator
import warnings

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from maskrcnn.layers.misc import Conv2d as EmptySafeConv2d
from maskrcnn.modeling.fold_batch_norm import fold_batch_norms
from maskrcnn.structures.image_list import ImageList, to_image_list

__all__ = [
    "DEFAULT_ENGINE",
    "FLOAT_MODULE_CLASSES",
    "QuantizedBackbone",
    "calibration_batches",
    "calibration_loader_from_cfg",
    "check_cpu_model",
    "quantize_backbone",
    "quantize_backbone_from_cfg",
    "quantize_backbone_module",
]

logger = logging.getLogger("maskrcnn.quantization")

DEFAULT_ENGINE = "x86"  # fbgemm or oneDNN per operator, chosen by torch


def _float_module_classes():
    from maskrcnn.layers import BatchNorm2d, DeformConv, DFConv2d, FrozenBatchNorm2d, ModulatedDeformConv
    from maskrcnn.modeling.backbone.fbnet_builder import ChannelShuffle, Shift

    return (ChannelShuffle, Shift, DFConv2d, DeformConv, ModulatedDeformConv, FrozenBatchNorm2d, BatchNorm2d)


# Modules kept float inside a quantized backbone: FX cannot trace them (ChannelShuffle unpacks
# x.shape; our norms check their input's shape), torch has no int8 kernel for them (deformable
# convolutions) or they would gain nothing from one (Shift: a fixed 0/1 depthwise kernel). Norms
# only remain where they could not be folded (after a deformable convolution).
FLOAT_MODULE_CLASSES = _float_module_classes()

# In-place ops of the float model (ReLUs, the residual `out += shortcut`, the FPN's top-down
# `add_`) and the out-of-place functions they become in the traced graph: FX's quantization
# patterns (conv + relu, add + relu, add) match only those.
_OUT_OF_PLACE_FUNCTIONS = {torch.relu_: F.relu, F.relu_: F.relu, operator.iadd: operator.add}
_OUT_OF_PLACE_METHODS = {"relu_": F.relu, "add_": operator.add}

# Deprecation notices torch gives for every use of torch.ao.quantization and quantized tensors
_DEPRECATION_MESSAGES = (
    r"torch\.ao\.quantization is deprecated",
    r"Please use quant_min and quant_max",
    r".*quantized tensor creation functions.*deprecated",
)


@contextlib.contextmanager
def _quiet_deprecations():
    with warnings.catch_warnings():
        for message in _DEPRECATION_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        yield


@contextlib.contextmanager
def _quantized_engine(engine):
    """torch.backends.quantized.engine set to ``engine`` inside the block (weights are packed for
    the engine in use when ``convert_fx`` runs), restored after."""
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"quantized engine {engine!r} is not supported by this torch build; "
                         f"supported: {torch.backends.quantized.supported_engines}")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def check_cpu_model(model, what="the int8 backbone"):
    """Raises ValueError unless every parameter and buffer of ``model`` is on the CPU (int8
    kernels exist for the CPU only)."""
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    others = sorted(str(device) for device in devices if device.type != "cpu")
    if others:
        raise ValueError(
            f"{what} runs on the CPU only (int8 kernels of the x86 / fbgemm / onednn engines), but the model "
            f"is on {', '.join(others)}: set TEST.INT8 False to run this device in float, or MODEL.DEVICE cpu "
            "for int8 inference")


def _plain_convolutions(module):
    """Replaces, in place, every maskrcnn.layers.Conv2d under ``module`` by an nn.Conv2d sharing
    its parameters (the class FX's quantization patterns match). Returns ``module``."""
    for name, child in module.named_children():
        if type(child) is EmptySafeConv2d:
            plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                              child.padding, child.dilation, child.groups, child.bias is not None,
                              child.padding_mode, device="meta")
            plain.weight, plain.bias = child.weight, child.bias
            setattr(module, name, plain)
        else:
            _plain_convolutions(child)
    return module


class _LeafTracer(torch.fx.Tracer):
    """torch.fx tracer that keeps instances of ``leaf_classes`` as opaque calls."""

    def __init__(self, leaf_classes):
        super().__init__()
        self.leaf_classes = tuple(leaf_classes)

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, self.leaf_classes) or super().is_leaf_module(module, qualified_name)


def _traced_for_quantization(backbone, float_classes):
    """torch.fx.GraphModule of ``backbone`` (its own submodules under the same names) with the
    nn.Identity calls removed and in-place ReLUs and additions made out-of-place (the quantized
    patterns match only those)."""
    tracer = _LeafTracer(float_classes)
    graph = tracer.trace(backbone)
    traced = torch.fx.GraphModule(backbone, graph, type(backbone).__name__)
    for node in list(traced.graph.nodes):
        if node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            traced.graph.erase_node(node)
        elif node.op == "call_function" and node.target in _OUT_OF_PLACE_FUNCTIONS:
            node.target = _OUT_OF_PLACE_FUNCTIONS[node.target]
        elif node.op == "call_method" and node.target in _OUT_OF_PLACE_METHODS:
            node.op, node.target = "call_function", _OUT_OF_PLACE_METHODS[node.target]
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


class QuantizedBackbone(nn.Module):
    """An int8 backbone with a float interface.

    forward(x: Tensor[N, 3, H, W] float32, on the CPU) -> what the float backbone returns, with
    float32 tensors: e.g. for R-*-FPN a tuple (P2, ..., P6) of Tensor[N, out_channels, H / s, W / s]
    (s = 4 ... 64), channels-last. The input is quantized (per tensor, uint8) at the first
    convolution and the outputs dequantized at the end.

    Attributes: ``graph_module`` (the converted torch.fx.GraphModule), ``out_channels`` (as the
    float backbone's), ``engine`` (the quantized engine its weights were packed for).
    """

    def __init__(self, graph_module, out_channels, engine):
        super().__init__()
        self.graph_module = graph_module
        self.out_channels = out_channels
        self.engine = engine

    def forward(self, x):
        if x.device.type != "cpu":
            raise ValueError(f"QuantizedBackbone: int8 inference runs on the CPU; the input is on {x.device}")
        return self.graph_module(x)


def _default_qconfig_mapping(engine):
    from torch.ao.quantization import get_default_qconfig_mapping

    return get_default_qconfig_mapping(engine)


@torch.no_grad()
def quantize_backbone_module(backbone, calibration_inputs, engine=DEFAULT_ENGINE, qconfig_mapping=None,
                             float_module_classes=FLOAT_MODULE_CLASSES, inplace=False):
    """Post-training static int8 quantization of a backbone (see the module docstring).

    Arguments:
        backbone (nn.Module): e.g. ``build_backbone(cfg)``: Tensor[N, 3, H, W] -> feature maps; on
            the CPU, with an ``out_channels`` attribute.
        calibration_inputs (iterable of Tensor[N, 3, H, W]): preprocessed image batches (as the
            detector hands its backbone: ``ImageList.tensors``); the activation ranges are
            observed on them. At least one.
        engine (str): torch.backends.quantized engine the weights are packed for: "x86"
            (default), "fbgemm" or "onednn".
        qconfig_mapping (QConfigMapping or None): observers per op; None is the engine's default
            (torch.ao.quantization.get_default_qconfig_mapping(engine)).
        float_module_classes (tuple of classes): modules left float (and untraced).
        inplace (bool): fold and rewrite ``backbone`` itself (it is then no longer the float
            model it was) rather than a deep copy.
    Returns:
        QuantizedBackbone, in eval mode.
    """
    check_cpu_model(backbone)
    backbone = backbone if inplace else copy.deepcopy(backbone)
    backbone.eval()
    out_channels = getattr(backbone, "out_channels", None)
    fold_batch_norms(backbone, inplace=True)
    _plain_convolutions(backbone)
    qconfig_mapping = _default_qconfig_mapping(engine) if qconfig_mapping is None else copy.deepcopy(qconfig_mapping)
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    float_module_classes = tuple(float_module_classes)
    for cls in float_module_classes:
        qconfig_mapping.set_object_type(cls, None)
    prepare_config = PrepareCustomConfig().set_non_traceable_module_classes(list(float_module_classes))
    traced = _traced_for_quantization(backbone, float_module_classes)

    batches = iter(calibration_inputs)
    first = next(batches, None)
    if first is None:
        raise ValueError("quantize_backbone: no calibration images (calibration_inputs is empty)")
    with _quiet_deprecations(), _quantized_engine(engine):
        prepared = prepare_fx(traced, qconfig_mapping, example_inputs=(first,),
                              prepare_custom_config=prepare_config)
        count = 0
        for batch in itertools.chain([first], batches):
            prepared(batch)
            count += batch.shape[0]
        converted = convert_fx(prepared)
    logger.info("Quantized the backbone to int8 (%s engine), calibrated on %d images", engine, count)
    return QuantizedBackbone(converted, out_channels, engine).eval()


def _backbone_inputs(images, size_divisibility):
    """Tensor[N, 3, H, W] of a batch of images: an ImageList, a Tensor[N, 3, H, W] / [3, H, W] or a
    list of Tensor[3, H, W] (padded as GeneralizedRCNN pads them)."""
    if not isinstance(images, (ImageList, torch.Tensor, list, tuple)):
        raise TypeError(f"calibration images: expected ImageLists or image tensors, got {type(images).__name__}")
    return to_image_list(images, size_divisibility).tensors


def quantize_backbone(model, calibration_images, engine=DEFAULT_ENGINE, qconfig_mapping=None, inplace=False):
    """A detector whose backbone is int8 (``quantize_backbone_module``); RPN and heads stay float.

    Arguments:
        model (GeneralizedRCNN): on the CPU; put in eval mode.
        calibration_images (iterable): batches as GeneralizedRCNN takes them: ImageLists,
            Tensor[N, 3, H, W] or lists of Tensor[3, H, W], preprocessed (resized, normalised) as
            the test transforms do, e.g. the images of a test data loader
            (``calibration_batches``). A few images (8) are enough.
        engine, qconfig_mapping: see ``quantize_backbone_module``.
        inplace (bool): change ``model`` itself instead of a deep copy.
    Returns:
        the model (eval mode) with ``model.backbone`` a QuantizedBackbone; called with images it
        returns the same structures as before (list[BoxList]).
    """
    check_cpu_model(model)
    if isinstance(model.backbone, QuantizedBackbone):
        raise ValueError("quantize_backbone: the model's backbone is already int8 (a QuantizedBackbone); "
                         "quantize the float model")
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    size_divisibility = getattr(model, "size_divisibility", 0)
    inputs = (_backbone_inputs(images, size_divisibility) for images in calibration_images)
    model.backbone = quantize_backbone_module(model.backbone, inputs, engine=engine,
                                              qconfig_mapping=qconfig_mapping, inplace=True)
    return model


def calibration_batches(data_loader_or_images, num_images):
    """The first ``num_images`` images of ``data_loader_or_images`` as batches.

    Arguments:
        data_loader_or_images: a data loader yielding (images, targets, indices) as
            ``make_data_loader(cfg, is_train=False)`` does (images: an ImageList), or an iterable
            of image batches (ImageList, Tensor[N, 3, H, W] or list of Tensor[3, H, W]).
        num_images (int): at least 1; the last batch is cut to reach it exactly.
    Yields:
        ImageList / Tensor[n, 3, H, W] / list of Tensor[3, H, W] batches, num_images images in all
        (fewer when the source has fewer).
    """
    if num_images < 1:
        raise ValueError(f"TEST.INT8_CALIBRATION_IMAGES must be at least 1, got {num_images}")
    is_loader = isinstance(data_loader_or_images, torch.utils.data.DataLoader)
    remaining = num_images
    for batch in data_loader_or_images:
        images = batch[0] if is_loader else batch
        if is_loader and not isinstance(images, ImageList):
            raise TypeError("calibration: the data loader must yield preprocessed ImageList batches (a test loader "
                            f"without TEST.BBOX_AUG), got {type(images).__name__}")
        count = _num_images(images)
        if count > remaining:
            images = _first_images(images, remaining)
            count = remaining
        yield images
        remaining -= count
        if remaining == 0:
            return


def _num_images(images):
    if isinstance(images, ImageList):
        return len(images.image_sizes)
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        return 1
    return len(images)


def _first_images(images, n):
    if isinstance(images, ImageList):
        return ImageList(images.tensors[:n], images.image_sizes[:n])
    return images[:n]


def calibration_loader_from_cfg(cfg):
    """The test data loader of DATASETS.TEST[0] in this process (not split between processes, so
    every process calibrates on the same images), without test-time augmentation."""
    from maskrcnn.data import make_data_loader

    if not cfg.DATASETS.TEST:
        raise ValueError("TEST.INT8 True: calibration images come from DATASETS.TEST[0], but DATASETS.TEST is empty")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.BBOX_AUG.ENABLED = False
    cfg.DATASETS.TEST = cfg.DATASETS.TEST[:1]
    cfg.freeze()
    return make_data_loader(cfg, is_train=False, is_distributed=False)[0]


def quantize_backbone_from_cfg(cfg, model, data_loader_or_images=None, inplace=False):
    """``quantize_backbone`` when TEST.INT8 is set (``model`` unchanged otherwise), calibrated on the
    first TEST.INT8_CALIBRATION_IMAGES images of ``data_loader_or_images`` (None: the test data
    loader of DATASETS.TEST[0]). Raises ValueError when the model is not on the CPU."""
    if not cfg.TEST.INT8:
        return model
    check_cpu_model(model, what="TEST.INT8 True: the int8 backbone")
    if data_loader_or_images is None:
        data_loader_or_images = calibration_loader_from_cfg(cfg)
    images = calibration_batches(data_loader_or_images, cfg.TEST.INT8_CALIBRATION_IMAGES)
    return quantize_backbone(model, images, inplace=inplace)
