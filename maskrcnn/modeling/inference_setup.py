"""Turn a trained detector into an inference-only one: BN folded, convolutions channels-last.

Both change only how the model computes, not what (outputs equal up to float rounding), and both
change the parameters (folding) or their strides (channels-last), so apply them to a copy, or to a
model that is only used for inference, never to the model being trained or checkpointed.

Measured on the shared 2-core CPU (benchmarks/README.md, "CPU inference path"): the R-50-FPN
backbone at 512x768 takes 0.75-0.86x of its as-built time with BN folded and 0.52-0.55x with BN
folded and channels-last weights (the first convolution then returns channels-last features, and
every later convolution, upsampling and addition keeps that layout); the whole Mask R-CNN eval
forward with 100 detections 0.65-0.82x.

TEST.INT8 adds a third step for the CPU: the backbone quantized to int8
(``maskrcnn.modeling.quantization``; benchmarks/README.md, "int8 CPU inference"). TEST.COMPILE
instead compiles the backbone, RPN head and box head with their weights frozen
(``maskrcnn.modeling.compiled_inference``; benchmarks/README.md, "Compiled inference").
"""
import copy

from maskrcnn.modeling.compiled_inference import compile_for_inference_from_cfg
from maskrcnn.modeling.fold_batch_norm import fold_batch_norms
from maskrcnn.modeling.memory_format import to_channels_last
from maskrcnn.modeling.quantization import quantize_backbone_from_cfg

__all__ = ["optimize_for_inference", "optimize_for_inference_from_cfg"]


def optimize_for_inference(model, fold_bn=True, channels_last=True, inplace=False):
    """
    Arguments:
        model (nn.Module): e.g. a GeneralizedRCNN (put in eval mode here).
        fold_bn (bool): fold frozen / eval-mode batch norms into the preceding convolutions.
        channels_last (bool): store 4-D parameters channels-last (torch.channels_last).
        inplace (bool): change ``model`` itself instead of a deep copy.
    Returns:
        nn.Module in eval mode.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    if fold_bn:
        model = fold_batch_norms(model, inplace=True)
    return to_channels_last(model, channels_last)


def optimize_for_inference_from_cfg(cfg, model, inplace=False, calibration_images=None):
    """``optimize_for_inference`` with TEST.FOLD_BN and TEST.CHANNELS_LAST, then, when TEST.INT8,
    the backbone quantized to int8 (``maskrcnn.modeling.quantization.quantize_backbone_from_cfg``;
    CPU only), calibrated on ``calibration_images`` (a data loader or image batches; None: the
    test data loader of DATASETS.TEST[0]); when TEST.COMPILE, the backbone, RPN head and box head
    compiled with frozen weights (``maskrcnn.modeling.compiled_inference``)."""
    model = optimize_for_inference(model, fold_bn=cfg.TEST.FOLD_BN, channels_last=cfg.TEST.CHANNELS_LAST,
                                   inplace=inplace)
    model = quantize_backbone_from_cfg(cfg, model, calibration_images, inplace=True)
    return compile_for_inference_from_cfg(cfg, model)
