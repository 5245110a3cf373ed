"""FrozenBatchNorm2d: batch normalisation with fixed statistics and affine parameters."""
import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d"]


class FrozenBatchNorm2d(nn.Module):
    """Per-channel affine map y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    All four tensors are buffers (not parameters): nothing here is trained and the statistics never
    update. The default `eps=0.0` matches maskrcnn-benchmark (its Caffe2-converted ImageNet models
    already fold eps into `running_var`); pass `eps=1e-5` for torchvision-style checkpoints.

    x: Tensor[N, n, H, W] (any N, also 0; any floating dtype, incl. float16/bfloat16).
    The scale and shift are computed in float32 and cast to x's dtype, so a float32 module runs on
    half-precision inputs without promoting them. State dicts lacking `running_mean` / `running_var`
    (e.g. models saved with only weight and bias) load with the identity statistics (0 and 1);
    a `num_batches_tracked` entry from an `nn.BatchNorm2d` state dict is ignored.
    """

    def __init__(self, n, eps=0.0):
        super().__init__()
        if n <= 0:
            raise ValueError(f"FrozenBatchNorm2d: n (number of channels) must be positive, got {n}")
        self.num_features = n
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)
        for name, fill in (("running_mean", torch.zeros_like), ("running_var", torch.ones_like)):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = fill(getattr(self, name))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def scale_and_shift(self):
        """(scale, shift): float32 Tensor[n] each, with y = x * scale + shift."""
        scale = self.weight.float() * (self.running_var.float() + self.eps).rsqrt()
        shift = self.bias.float() - self.running_mean.float() * scale
        return scale, shift

    def forward(self, x):
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"FrozenBatchNorm2d: x must be Tensor[N, {self.num_features}, ...], "
                f"got shape {list(x.shape)}"
            )
        scale, shift = self.scale_and_shift()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        # one pass over x (x * scale + shift as two operations reads and writes it twice)
        return torch.addcmul(shift.to(x.dtype).reshape(shape), x, scale.to(x.dtype).reshape(shape))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module):
        """Returns `module` with every nn.BatchNorm2d / SyncBatchNorm replaced (recursively) by a
        FrozenBatchNorm2d holding the same statistics, affine values and eps."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            frozen = cls(module.num_features, eps=module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            converted = cls.convert_frozen_batchnorm(child)
            if converted is not child:
                setattr(module, name, converted)
        return module
