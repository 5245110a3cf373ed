"""Layers and the Python side of the compiled ops (maskrcnn-benchmark's maskrcnn_benchmark.layers)."""
from .batch_norm import FrozenBatchNorm2d
from .misc import BatchNorm2d, Conv2d, ConvTranspose2d, interpolate
from .smooth_l1_loss import smooth_l1_loss
