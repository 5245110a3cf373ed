"""Fold batch normalisation into the preceding convolution, for inference.

A frozen (or eval-mode) batch norm after a convolution is a per-channel affine map
y = conv(x) * s + t, so it can be merged into the convolution: weight' = weight * s (per output
channel) and bias' = bias * s + t (bias = 0 when the convolution has none). The batch norm is then
replaced by ``nn.Identity``, which saves one pass over every backbone feature map.

Which pairs are folded (all of maskrcnn's backbones use these two layouts):

* in an ``nn.Sequential`` (FBNet's ``ConvBNRelu``, ``CascadeConv3x3``, the ResNet ``downsample``),
  a convolution immediately followed by a batch norm;
* in any other module, children named ``conv<suffix>`` and ``bn<suffix>`` (ResNet stems and blocks:
  ``conv1``/``bn1``, ...), which by maskrcnn-benchmark's naming convention means the module applies
  ``bn<suffix>`` straight to the output of ``conv<suffix>``.

A pair folds only when the convolution is an ``nn.Conv2d`` (incl. ``maskrcnn.layers.Conv2d``) with
``out_channels`` equal to the batch norm's channels, and the norm is a ``FrozenBatchNorm2d`` or an
``nn.BatchNorm2d`` in eval mode with running statistics (a training-mode BN normalises with batch
statistics and is left alone). GroupNorm is never folded.

The folded model has different parameters and state-dict keys (no ``bn*`` buffers), so fold only
in inference-only contexts: ``fold_batch_norms`` works on a deep copy unless ``inplace=True``, and
checkpoints should be saved from, and loaded into, the unfolded model. ``TEST.FOLD_BN`` (default
True) is the config switch that inference entry points read through ``fold_batch_norms_from_cfg``.
"""
import copy

import torch
from torch import nn

from maskrcnn.layers.batch_norm import FrozenBatchNorm2d

__all__ = ["fold_batch_norms", "fold_batch_norms_from_cfg", "fold_conv_bn", "is_foldable_norm"]


def is_foldable_norm(module):
    """Whether ``module`` is a fixed per-channel affine map: a FrozenBatchNorm2d, or an
    nn.BatchNorm2d in eval mode that tracks running statistics."""
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return (
        isinstance(module, nn.BatchNorm2d)
        and not module.training
        and module.track_running_stats
        and module.running_mean is not None
    )


def _norm_scale_and_shift(norm):
    """(scale, shift) float64 Tensor[C] with norm(x) = x * scale + shift per channel."""
    if isinstance(norm, FrozenBatchNorm2d):
        weight, bias = norm.weight, norm.bias
    else:
        ones = torch.ones_like(norm.running_mean)
        weight = norm.weight if norm.weight is not None else ones
        bias = norm.bias if norm.bias is not None else torch.zeros_like(ones)
    scale = weight.detach().double() * (norm.running_var.double() + norm.eps).rsqrt()
    shift = bias.detach().double() - norm.running_mean.double() * scale
    return scale, shift


def _can_fold(conv, norm):
    return (
        isinstance(conv, nn.Conv2d)
        and is_foldable_norm(norm)
        and conv.out_channels == norm.num_features
    )


@torch.no_grad()
def fold_conv_bn(conv, norm):
    """Merges ``norm`` into ``conv`` in place (conv gains a bias if it had none); returns conv.

    conv: nn.Conv2d with C output channels; norm: FrozenBatchNorm2d or eval-mode nn.BatchNorm2d
    over C channels. Afterwards conv(x) equals norm(conv(x)) of before, up to rounding.
    """
    if not _can_fold(conv, norm):
        raise ValueError(
            f"fold_conv_bn: cannot fold {type(norm).__name__} (training={norm.training}) into "
            f"{type(conv).__name__}; need an nn.Conv2d whose out_channels equal the norm's channels "
            "and a FrozenBatchNorm2d or an eval-mode nn.BatchNorm2d with running statistics"
        )
    scale, shift = _norm_scale_and_shift(norm)
    weight = conv.weight
    folded_weight = weight.double() * scale.to(weight.device).reshape(-1, 1, 1, 1)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale).to(weight.device)
    folded_bias = bias * scale.to(weight.device) + shift.to(weight.device)
    conv.weight = nn.Parameter(folded_weight.to(weight.dtype), requires_grad=weight.requires_grad)
    conv.bias = nn.Parameter(folded_bias.to(weight.dtype), requires_grad=weight.requires_grad)
    return conv


def _fold_sequential(sequence):
    count = 0
    names = list(sequence._modules.keys())
    for conv_name, norm_name in zip(names, names[1:]):
        conv, norm = sequence._modules[conv_name], sequence._modules[norm_name]
        if _can_fold(conv, norm):
            fold_conv_bn(conv, norm)
            sequence._modules[norm_name] = nn.Identity()
            count += 1
    return count


def _fold_named_pairs(module):
    count = 0
    for name, norm in list(module.named_children()):
        if not name.startswith("bn"):
            continue
        conv = getattr(module, "conv" + name[2:], None)
        if conv is not None and _can_fold(conv, norm):
            fold_conv_bn(conv, norm)
            setattr(module, name, nn.Identity())
            count += 1
    return count


def _fold_recursive(module):
    count = _fold_sequential(module) if isinstance(module, nn.Sequential) else _fold_named_pairs(module)
    for child in module.children():
        count += _fold_recursive(child)
    return count


def fold_batch_norms(model, inplace=False):
    """Folds every foldable (convolution, batch norm) pair of ``model`` (see the module docstring).

    Arguments:
        model (nn.Module): e.g. a GeneralizedRCNN in eval mode.
        inplace (bool): fold ``model`` itself; by default a deep copy is folded and ``model`` is
            left untouched (so its state dict can still be saved or loaded).
    Returns:
        nn.Module: the folded model; ``folded_batch_norms`` on it holds how many pairs were folded.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_batch_norms: model must be an nn.Module, got {type(model).__name__}")
    folded = model if inplace else copy.deepcopy(model)
    folded.folded_batch_norms = _fold_recursive(folded)
    return folded


def fold_batch_norms_from_cfg(cfg, model, inplace=False):
    """``fold_batch_norms(model)`` when ``cfg.TEST.FOLD_BN`` is set, else ``model`` unchanged."""
    if not cfg.TEST.FOLD_BN:
        return model
    return fold_batch_norms(model, inplace=inplace)
