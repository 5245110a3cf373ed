"""Sigmoid focal loss (compiled ops `torch.ops.maskrcnn.sigmoid_focal_loss_forward` / `_backward`).

logits: Tensor[N, K]; targets: Tensor[N] int64 in 0..K, 0 = background, c = column c - 1 (the
foreground class c). With p = sigmoid(logits):
    positive entry  -alpha * (1 - p)^gamma * log(p)
    negative entry  -(1 - alpha) * p^gamma * log(1 - p)
"""
import torch
from torch import nn

from maskrcnn._ext import load_ops

load_ops()

__all__ = ["sigmoid_focal_loss", "SigmoidFocalLoss"]


def sigmoid_focal_loss(logits, targets, gamma, alpha):
    """Sum over all N x K entries of the elementwise focal loss (a 0-dim tensor)."""
    return torch.ops.maskrcnn.sigmoid_focal_loss_forward(logits, targets, float(gamma), float(alpha)).sum()


class SigmoidFocalLoss(nn.Module):
    """Module form of `sigmoid_focal_loss`: forward(logits [N, K], targets [N]) -> summed loss."""

    def __init__(self, gamma, alpha):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits, targets):
        return sigmoid_focal_loss(logits, targets, self.gamma, self.alpha)

    def __repr__(self):
        return f"{self.__class__.__name__}(gamma={self.gamma}, alpha={self.alpha})"


def _check_fake_inputs(op, logits, targets):
    torch._check(logits.dim() == 2, lambda: f"{op}: logits must be a 2-D tensor of shape [N, K], got {list(logits.shape)}")
    torch._check(targets.dim() == 1 and targets.size(0) == logits.size(0),
                 lambda: f"{op}: targets must be a 1-D tensor of shape [N] matching logits [N, K]")


@torch.library.register_fake("maskrcnn::sigmoid_focal_loss_forward")
def _forward_fake(logits, targets, gamma, alpha):
    _check_fake_inputs("sigmoid_focal_loss_forward", logits, targets)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("maskrcnn::sigmoid_focal_loss_backward")
def _backward_fake(logits, targets, grad_loss, gamma, alpha):
    _check_fake_inputs("sigmoid_focal_loss_backward", logits, targets)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    logits, targets, gamma, alpha = inputs
    ctx.save_for_backward(logits, targets)
    ctx.gamma = gamma
    ctx.alpha = alpha


def _backward(ctx, grad_loss):
    logits, targets = ctx.saved_tensors
    grad_logits = None
    if ctx.needs_input_grad[0]:
        grad_logits = torch.ops.maskrcnn.sigmoid_focal_loss_backward(
            logits, targets, grad_loss, ctx.gamma, ctx.alpha)
    return grad_logits, None, None, None


torch.library.register_autograd(
    "maskrcnn::sigmoid_focal_loss_forward", _backward, setup_context=_setup_context)

# Under autocast the loss is computed in float32, as torch does for its own losses.
for _device in ("cpu", "cuda"):
    torch.library.register_autocast("maskrcnn::sigmoid_focal_loss_forward", _device, torch.float32)
