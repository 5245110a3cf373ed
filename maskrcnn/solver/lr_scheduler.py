"""Iteration-based learning-rate schedules with a warm-up phase.

Both schedulers are stepped once per training iteration; ``last_epoch`` counts iterations.
"""
import math
from bisect import bisect_right

import torch

_WARMUP_METHODS = ("constant", "linear")


def _check_warmup_method(warmup_method):
    if warmup_method not in _WARMUP_METHODS:
        raise ValueError(
            f"warmup_method must be one of {_WARMUP_METHODS}, got {warmup_method!r}"
        )


def warmup_multiplier(iteration, warmup_iters, warmup_factor, warmup_method):
    """LR multiplier of the warm-up phase at `iteration` (1.0 once warm-up is over).

    "constant": warmup_factor throughout warm-up; "linear": ramps from warmup_factor at iteration 0
    towards 1 at iteration warmup_iters.
    """
    if iteration >= warmup_iters:
        return 1.0
    if warmup_method == "constant":
        return warmup_factor
    alpha = iteration / warmup_iters
    return warmup_factor * (1 - alpha) + alpha


class WarmupMultiStepLR(torch.optim.lr_scheduler.LRScheduler):
    """lr = base_lr * warmup(it) * gamma ** (number of milestones <= it).

    milestones: increasing iteration numbers at which the LR is multiplied by `gamma`.
    """

    def __init__(
        self,
        optimizer,
        milestones,
        gamma=0.1,
        warmup_factor=1.0 / 3,
        warmup_iters=500,
        warmup_method="linear",
        last_epoch=-1,
    ):
        milestones = list(milestones)
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be a list of increasing integers, got {milestones}")
        _check_warmup_method(warmup_method)
        self.milestones = milestones
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        it = self.last_epoch
        factor = warmup_multiplier(it, self.warmup_iters, self.warmup_factor, self.warmup_method)
        decay = self.gamma ** bisect_right(self.milestones, it)
        return [base_lr * factor * decay for base_lr in self.base_lrs]


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Warm-up, then a half cosine from base_lr (at the end of warm-up) to
    base_lr * end_factor (at `max_iters`, and after it).

    end_factor: final LR as a fraction of each group's base LR (the builder passes
    SOLVER.BASE_LR_END / SOLVER.BASE_LR, so groups with BIAS_LR_FACTOR keep their ratio).
    """

    def __init__(
        self,
        optimizer,
        max_iters,
        end_factor=0.0,
        warmup_factor=1.0 / 3,
        warmup_iters=500,
        warmup_method="linear",
        last_epoch=-1,
    ):
        _check_warmup_method(warmup_method)
        if max_iters <= warmup_iters:
            raise ValueError(
                f"max_iters ({max_iters}) must be larger than warmup_iters ({warmup_iters})"
            )
        self.max_iters = max_iters
        self.end_factor = end_factor
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def _factor(self, it):
        if it < self.warmup_iters:
            return warmup_multiplier(it, self.warmup_iters, self.warmup_factor, self.warmup_method)
        progress = min(1.0, (it - self.warmup_iters) / (self.max_iters - self.warmup_iters))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.end_factor + (1.0 - self.end_factor) * cosine

    def get_lr(self):
        factor = self._factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]
