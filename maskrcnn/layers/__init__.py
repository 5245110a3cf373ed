from .nms import batched_nms, nms
from .sigmoid_focal_loss import SigmoidFocalLoss, sigmoid_focal_loss
