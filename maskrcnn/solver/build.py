"""Optimizer, LR scheduler and gradient clipping built from cfg.SOLVER."""
import torch

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR


def make_optimizer(cfg, model):
    """SGD (with SOLVER.MOMENTUM) or AdamW (with SOLVER.BETAS) over the trainable parameters.

    One parameter group per parameter, as maskrcnn-benchmark (so its optimizer states load):
    biases get lr = BASE_LR * BIAS_LR_FACTOR and weight decay WEIGHT_DECAY_BIAS, other parameters
    BASE_LR and WEIGHT_DECAY. Parameters with requires_grad=False (frozen stages) are left out.
    """
    solver = cfg.SOLVER
    params = []
    for key, value in model.named_parameters():
        if not value.requires_grad:
            continue
        lr = solver.BASE_LR
        weight_decay = solver.WEIGHT_DECAY
        if "bias" in key:
            lr = solver.BASE_LR * solver.BIAS_LR_FACTOR
            weight_decay = solver.WEIGHT_DECAY_BIAS
        params.append({"params": [value], "lr": lr, "weight_decay": weight_decay})
    if not params:
        raise ValueError("make_optimizer: the model has no parameter with requires_grad=True")
    if solver.OPTIMIZER == "SGD":
        return torch.optim.SGD(params, lr=solver.BASE_LR, momentum=solver.MOMENTUM)
    if solver.OPTIMIZER == "AdamW":
        return torch.optim.AdamW(params, lr=solver.BASE_LR, betas=tuple(solver.BETAS))
    raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {solver.OPTIMIZER!r}")


def make_lr_scheduler(cfg, optimizer):
    """WarmupMultiStepLR or WarmupCosineLR per SOLVER.LR_SCHEDULER."""
    solver = cfg.SOLVER
    warmup = dict(
        warmup_factor=solver.WARMUP_FACTOR,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_method=solver.WARMUP_METHOD,
    )
    if solver.LR_SCHEDULER == "WarmupMultiStepLR":
        return WarmupMultiStepLR(optimizer, solver.STEPS, solver.GAMMA, **warmup)
    if solver.LR_SCHEDULER == "WarmupCosineLR":
        if solver.BASE_LR <= 0:
            raise ValueError(f"SOLVER.BASE_LR must be positive for WarmupCosineLR, got {solver.BASE_LR}")
        return WarmupCosineLR(
            optimizer, solver.MAX_ITER, end_factor=solver.BASE_LR_END / solver.BASE_LR, **warmup
        )
    raise ValueError(
        "SOLVER.LR_SCHEDULER must be 'WarmupMultiStepLR' or 'WarmupCosineLR', "
        f"got {solver.LR_SCHEDULER!r}"
    )


def make_gradient_clipper(cfg):
    """A function `clip(parameters) -> total_norm` clipping the global L2 gradient norm to
    SOLVER.CLIP_GRADIENTS.MAX_NORM, or None when SOLVER.CLIP_GRADIENTS.ENABLED is False.

    Call it after backward (and after `GradScaler.unscale_(optimizer)` under mixed precision),
    before `optimizer.step()`.
    """
    clip_cfg = cfg.SOLVER.CLIP_GRADIENTS
    if not clip_cfg.ENABLED:
        return None
    max_norm = float(clip_cfg.MAX_NORM)
    if max_norm <= 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.MAX_NORM must be positive, got {max_norm}")

    def clip(parameters):
        params = [p for p in parameters if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    return clip
