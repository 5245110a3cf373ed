"""Loading state dicts written by other runs or other projects into a model.

A loaded key fills every model key it is a dotted suffix of (longest match wins), as in
maskrcnn-benchmark: `layer1.0.conv1.weight` (a Caffe2 conversion) and
`module.backbone.body.layer1.0.conv1.weight` (a DistributedDataParallel save, after stripping
`module.`) both reach `backbone.body.layer1.0.conv1.weight`, and one loaded `layer4...` key can
fill both a backbone's and a C4 box head's res5 copies. Matching is on whole dotted components
(`conv1.weight` never fills `fpn_conv1.weight`).

Shape mismatches: the class-dependent output layers (box `cls_score` / `bbox_pred`,
`mask_fcn_logits`, `kps_score_lowres`, RetinaNet's `cls_logits`) are dropped with a warning, so a
checkpoint trained with another number of classes serves for fine-tuning; any other mismatch is an
error listing every mismatched key with both shapes.
"""
import logging
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import torch

__all__ = [
    "strip_prefix_if_present",
    "align_and_update_state_dicts",
    "load_state_dict",
    "LoadResult",
    "CLASS_DEPENDENT_LAYERS",
]

logger = logging.getLogger(__name__)

# Output layers whose shape follows the number of classes (module attribute names).
CLASS_DEPENDENT_LAYERS = ("cls_score", "bbox_pred", "mask_fcn_logits", "kps_score_lowres")
# RetinaNet's classification output; RPN heads use the same name for their (class-free)
# objectness, so it is class-dependent only beside a `cls_tower` (the RetinaNet head).
_RETINANET_CLS_LAYER = "cls_logits"

LoadResult = namedtuple("LoadResult", ["matched", "dropped", "missing", "unused"])
LoadResult.__doc__ = """What a load did.

matched: dict model key -> loaded key that filled it.
dropped: list of (model key, model shape, loaded shape) of class-dependent layers left as they were.
missing: model keys no loaded key filled (they keep their current values).
unused: loaded keys that filled no model key.
"""


def strip_prefix_if_present(state_dict, prefix):
    """Return `state_dict` with `prefix` removed from every key, if every key starts with it.

    Otherwise (or for an empty dict) the keys are returned unchanged, in a new OrderedDict.
    """
    keys = list(state_dict.keys())
    if not keys or not all(k.startswith(prefix) for k in keys):
        return OrderedDict(state_dict)
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())


def _dotted_suffixes(key):
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`] (longest first)."""
    parts = key.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def _is_class_dependent(key, model_keys):
    parts = key.split(".")
    if len(parts) < 2:
        return False
    layer = parts[-2]
    if layer in CLASS_DEPENDENT_LAYERS:
        # bbox_pred of the RPN / RetinaNet head (anchors x 4) is class-agnostic.
        return not key.startswith("rpn.")
    if layer == _RETINANET_CLS_LAYER:
        return _beside_cls_tower(parts, model_keys)
    return False


def _beside_cls_tower(parts, model_keys):
    tower = ".".join(parts[:-2] + ["cls_tower"]) + "."
    return any(k.startswith(tower) for k in model_keys)


def _as_tensor(key, value):
    if isinstance(value, torch.Tensor):
        return value
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise TypeError(
        f"load_state_dict: value of loaded key '{key}' must be a tensor or numpy array, "
        f"got {type(value).__name__}"
    )


def align_and_update_state_dicts(model_state_dict, loaded_state_dict):
    """Copy the loaded tensors into `model_state_dict` (in place) by dotted-suffix matching.

    model_state_dict: the model's `state_dict()` (an OrderedDict; updated in place).
    loaded_state_dict: mapping key -> Tensor (or numpy array).

    Each model key takes the value of the longest loaded key that equals it or is a dotted
    suffix of it; every match is logged. Returns a `LoadResult`. Raises `RuntimeError` listing
    every mismatched key (model and loaded shapes) when shapes differ outside the
    class-dependent output layers (those are dropped with a warning, keeping the model's values).
    """
    loaded = OrderedDict((k, _as_tensor(k, v)) for k, v in loaded_state_dict.items())
    model_keys = list(model_state_dict.keys())
    matched, dropped, mismatched, missing = OrderedDict(), [], [], []
    for key in model_keys:
        source = next((s for s in _dotted_suffixes(key) if s in loaded), None)
        if source is None:
            missing.append(key)
            continue
        value = loaded[source]
        target_shape = tuple(model_state_dict[key].shape)
        if tuple(value.shape) != target_shape:
            entry = (key, target_shape, tuple(value.shape))
            (dropped if _is_class_dependent(key, model_keys) else mismatched).append(entry)
            continue
        model_state_dict[key] = value
        matched[key] = source
    if mismatched:
        lines = "\n".join(
            f"  {key}: model {list(ms)} vs loaded {list(ls)}" for key, ms, ls in mismatched
        )
        raise RuntimeError(
            f"load_state_dict: {len(mismatched)} key(s) have a shape that differs from the "
            f"model's:\n{lines}"
        )
    if dropped:
        lines = "\n".join(f"  {key}: model {list(ms)} vs loaded {list(ls)}" for key, ms, ls in dropped)
        logger.warning(
            "Not loading %d class-dependent layer tensor(s) whose shape differs (another number "
            "of classes?); they keep their initial values:\n%s",
            len(dropped),
            lines,
        )
    width = max((len(k) for k in matched), default=0)
    for key, source in matched.items():
        logger.info(
            "%s loaded from %s of shape %s", key.ljust(width), source, tuple(loaded[source].shape)
        )
    used = set(matched.values()) | {
        s for key, _, _ in dropped for s in _dotted_suffixes(key) if s in loaded
    }
    unused = [k for k in loaded if k not in used]
    if missing:
        logger.info("Model keys not in the loaded state dict (kept as they are): %s", missing)
    if unused:
        logger.info("Loaded keys that match no model key: %s", unused)
    return LoadResult(dict(matched), dropped, missing, unused)


def _unwrap(loaded):
    if not isinstance(loaded, Mapping):
        raise TypeError(
            f"load_state_dict: loaded_state_dict must be a mapping, got {type(loaded).__name__}"
        )
    if "model" in loaded and isinstance(loaded["model"], Mapping):
        return loaded["model"]  # a checkpoint {"model": ..., "optimizer": ..., ...}
    return loaded


def load_state_dict(model, loaded_state_dict):
    """Load a state dict of this or another project into `model` (an nn.Module).

    `loaded_state_dict` may carry a `module.` prefix (DistributedDataParallel) or be a whole
    checkpoint `{"model": state_dict, ...}`. See `align_and_update_state_dicts` for the key
    matching and shape rules. Returns a `LoadResult`.
    """
    loaded = strip_prefix_if_present(_unwrap(loaded_state_dict), prefix="module.")
    model_state_dict = model.state_dict()
    result = align_and_update_state_dicts(model_state_dict, loaded)
    model.load_state_dict(model_state_dict)
    return result
