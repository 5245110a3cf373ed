from .backbone import build_backbone  # noqa: F401
from . import fbnet  # noqa: F401  (registers FBNet in BACKBONES, RPN_HEADS and ROI_*_FEATURE_EXTRACTORS)
