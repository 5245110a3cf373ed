"""Channels-last (NHWC) convolution weights for a whole model.

With its 4-D weights stored channels-last, every convolution of a model returns channels-last
activations from a contiguous (NCHW) image batch onwards, and the layers between them (ReLU,
residual additions, upsampling, our RoIAlign on the CPU) keep that layout. On the CPU this is the
layout oneDNN's convolutions use natively, forward and backward, so no reorders happen per call
(benchmarks/README.md: the R-50-FPN backbone's inference time drops by about a third, a Mask R-CNN
training step by about a tenth). Outputs equal the NCHW model's up to float rounding.
"""
import torch

__all__ = ["to_channels_last", "channels_last_from_cfg"]


def to_channels_last(model, enabled=True):
    """Stores the 4-D parameters and buffers of `model` channels-last, in place (when `enabled`).
    Returns `model`. Loading a state dict into it afterwards keeps the layout (values are copied)."""
    if enabled:
        model.to(memory_format=torch.channels_last)
    return model


def channels_last_from_cfg(cfg, model):
    """``to_channels_last`` as MODEL.CHANNELS_LAST says (training and tools/test_net.py)."""
    return to_channels_last(model, cfg.MODEL.CHANNELS_LAST)
