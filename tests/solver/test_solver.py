import math
from bisect import bisect_right

import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.solver import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    make_gradient_clipper,
    make_lr_scheduler,
    make_optimizer,
)


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        for p in self.frozen.parameters():
            p.requires_grad_(False)


def _cfg(**solver):
    cfg = default_cfg.clone()
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.BIAS_LR_FACTOR = 2
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 0.0
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


@pytest.mark.parametrize("name,cls", [("SGD", torch.optim.SGD), ("AdamW", torch.optim.AdamW)])
def test_param_groups(name, cls):
    model = TinyModel()
    opt = make_optimizer(_cfg(OPTIMIZER=name, BETAS=(0.8, 0.95), MOMENTUM=0.7), model)
    assert isinstance(opt, cls)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert trained == {id(model.head.weight), id(model.head.bias)}
    by_param = {id(g["params"][0]): g for g in opt.param_groups}
    w, b = by_param[id(model.head.weight)], by_param[id(model.head.bias)]
    assert w["lr"] == pytest.approx(0.02) and w["weight_decay"] == pytest.approx(1e-4)
    assert b["lr"] == pytest.approx(0.04) and b["weight_decay"] == 0.0
    if name == "SGD":
        assert w["momentum"] == 0.7
    else:
        assert w["betas"] == (0.8, 0.95)


def test_all_frozen_is_an_error():
    model = TinyModel()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        make_optimizer(_cfg(), model)


def _warm(it, warmup_iters, warmup_factor, method):
    if it >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    a = it / warmup_iters
    return warmup_factor * (1 - a) + a


def _lrs_over(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("method", ["linear", "constant"])
def test_multistep_curve_matches_formula(method):
    model = TinyModel()
    cfg = _cfg(STEPS=(30, 45), GAMMA=0.1, WARMUP_ITERS=10, WARMUP_FACTOR=0.25, WARMUP_METHOD=method)
    opt = make_optimizer(cfg, model)
    sched = make_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupMultiStepLR)
    base = [g["initial_lr"] for g in opt.param_groups]
    for it, lrs in enumerate(_lrs_over(sched, opt, 60)):
        expected = _warm(it, 10, 0.25, method) * 0.1 ** bisect_right([30, 45], it)
        assert lrs == pytest.approx([b * expected for b in base], rel=1e-12), it


@pytest.mark.parametrize("method", ["linear", "constant"])
def test_cosine_curve_matches_formula(method):
    model = TinyModel()
    cfg = _cfg(
        LR_SCHEDULER="WarmupCosineLR", MAX_ITER=50, BASE_LR_END=0.002,
        WARMUP_ITERS=10, WARMUP_FACTOR=0.1, WARMUP_METHOD=method,
    )
    opt = make_optimizer(cfg, model)
    sched = make_lr_scheduler(cfg, opt)
    assert isinstance(sched, WarmupCosineLR)
    base = [g["initial_lr"] for g in opt.param_groups]
    end = 0.002 / 0.02
    lrs_all = _lrs_over(sched, opt, 55)
    for it, lrs in enumerate(lrs_all):
        if it < 10:
            f = _warm(it, 10, 0.1, method)
        else:
            p = min(1.0, (it - 10) / 40)
            f = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * p))
        assert lrs == pytest.approx([b * f for b in base], rel=1e-12), it
    # weight group ends at BASE_LR_END exactly; bias group keeps its BIAS_LR_FACTOR ratio
    assert lrs_all[50][0] == pytest.approx(0.002)
    assert lrs_all[10][0] == pytest.approx(0.02)


def test_scheduler_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="milestones"):
        WarmupMultiStepLR(opt, [20, 10])
    with pytest.raises(ValueError, match="warmup_method"):
        WarmupMultiStepLR(opt, [10], warmup_method="exp")
    with pytest.raises(ValueError, match="warmup_method"):
        WarmupCosineLR(opt, 100, warmup_method="exp")
    with pytest.raises(ValueError, match="max_iters"):
        WarmupCosineLR(opt, 10, warmup_iters=20)


def test_scheduler_state_dict_resumes():
    def build():
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        return opt, WarmupMultiStepLR(opt, [5, 8], warmup_iters=3)

    opt, sched = build()
    for _ in range(6):
        opt.step()
        sched.step()
    opt2, sched2 = build()
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert _lrs_over(sched2, opt2, 5) == _lrs_over(sched, opt, 5)


def test_gradient_clipper():
    assert make_gradient_clipper(_cfg()) is None
    cfg = _cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.MAX_NORM = 1.0
    clip = make_gradient_clipper(cfg)
    a, b, c = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad = torch.tensor([3.0, 0.0])
    b.grad = torch.tensor([0.0, 4.0])  # c has no grad
    total = clip([a, b, c])
    assert float(total) == pytest.approx(5.0)
    assert torch.cat([a.grad, b.grad]).norm().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.0]), atol=1e-6)
    cfg.SOLVER.CLIP_GRADIENTS.MAX_NORM = 0.0
    with pytest.raises(ValueError, match="MAX_NORM"):
        make_gradient_clipper(cfg)
