"""maskrcnn: modular object detection and segmentation in PyTorch (maskrcnn-benchmark's API)."""

__version__ = "0.1.0"
