"""Inference parts compiled by torch.compile (inductor) with their weights frozen.

``compile_for_inference(model)`` replaces the parts of a detector that do most of its arithmetic
(the backbone, the RPN / RetinaNet head and the box head's feature extractor and predictor) by
``FrozenCompiledModule`` wrappers. On its first call under ``torch.no_grad`` /
``torch.inference_mode`` a wrapper compiles its part with inductor's *freezing*: the weights become
constants of the graph, so they are laid out once for the convolution / matmul kernels (oneDNN's
blocked formats on the CPU) instead of at every call, and inductor can fuse the ReLUs and residual
additions into the convolutions. The RoI poolers, box decoding, NMS, the mask / keypoint heads and
mask pasting stay eager: most are our own ops already, and their shapes depend on the data.

What it costs and what it gives (benchmarks/README.md, "Compiled inference"):

* compiling takes tens of seconds at the first image; a new image size recompiles once with
  dynamic shapes (torch.compile's automatic dynamic shapes), later sizes reuse that graph;
* the inductor C++ backend needs a C++ compiler (g++) at run time on the CPU;
* outputs equal the eager model's up to float rounding (different convolution algorithms).

The frozen weights are copies taken at compilation: change the weights (load a checkpoint, train)
before compiling, never after. With gradients enabled, or in training mode, a wrapper runs its part
eagerly, so a compiled model can never silently train a stale copy.

Config: TEST.COMPILE (default False), read by ``compile_for_inference_from_cfg``, which
``optimize_for_inference_from_cfg`` (the Predictor, demo/webcam.py) and tools/test_net.py call.
"""
import torch
from torch import nn

__all__ = [
    "COMPILED_PARTS", "EagerModule", "FrozenCompiledModule", "compile_for_inference", "compile_for_inference_from_cfg",
]

# Attribute paths, relative to a GeneralizedRCNN, of the parts that are compiled when present.
# The mask head is left out: compiled (its RoI count a dynamic dimension) it measured slower than
# eager, 3.11 against 2.99 s for the whole R-50-FPN Mask R-CNN eval forward at 800x1216 on 2 cores;
# the backbone with the RPN head gained 0.16 s there and the box head 0.06 s.
COMPILED_PARTS = (
    "backbone",
    "rpn.head",
    "roi_heads.box.feature_extractor",
    "roi_heads.box.predictor",
)


class EagerModule(nn.Module):
    """``module`` kept out of torch.compile: a compiled caller breaks its graph around it.

    The RoI feature extractors' poolers go through it: their per-level RoI assignment has
    data-dependent shapes (``nonzero``), which would otherwise recompile for every count of RoIs.
    """

    def __init__(self, module):
        super().__init__()
        self.module = module

    @torch.compiler.disable
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class FrozenCompiledModule(nn.Module):
    """``module`` compiled for inference with its weights frozen into the graph.

    Arguments:
        module (nn.Module): the part to compile; it stays reachable as ``.module`` and runs eagerly
            when gradients are enabled or the wrapper is in training mode.
        dynamic (bool or None): torch.compile's ``dynamic`` (None: static first, dynamic after a
            shape change).
    """

    def __init__(self, module, dynamic=None):
        super().__init__()
        self.module = module
        self._compiled = torch.compile(module, dynamic=dynamic)

    def forward(self, *args, **kwargs):
        if self.training or torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self._compiled(*args, **kwargs)


def compile_for_inference(model, parts=COMPILED_PARTS, dynamic=None):
    """Wrap the ``parts`` of ``model`` that exist in ``FrozenCompiledModule`` (in place).

    Arguments:
        model (nn.Module): an inference-ready detector (weights loaded, BN folded, eval mode).
        parts: dotted attribute paths below ``model``; the ones it lacks are skipped, a part
            compiled already is left as it is.
        dynamic: passed to torch.compile.
    Returns:
        ``model``.
    """
    compiled = 0
    for path in parts:
        try:
            module = model.get_submodule(path)
        except AttributeError:  # the model has no such part (e.g. no mask head)
            continue
        if isinstance(module, FrozenCompiledModule):
            continue
        pooler = getattr(module, "pooler", None)
        if isinstance(pooler, nn.Module) and not isinstance(pooler, EagerModule):
            module.pooler = EagerModule(pooler)
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        setattr(parent, name, FrozenCompiledModule(module, dynamic=dynamic).train(module.training))
        compiled += 1
    if compiled == 0:
        raise ValueError(
            f"compile_for_inference: {type(model).__name__} has none of the parts {list(parts)}"
        )
    return model


def compile_for_inference_from_cfg(cfg, model):
    """``compile_for_inference(model)`` when TEST.COMPILE, else ``model`` unchanged (in place)."""
    if not cfg.TEST.COMPILE:
        return model
    if cfg.TEST.INT8:
        raise ValueError(
            "TEST.COMPILE and TEST.INT8 are both True: the int8 backbone is an FX-quantized graph that "
            "inductor does not compile; set one of them to False"
        )
    return compile_for_inference(model)
