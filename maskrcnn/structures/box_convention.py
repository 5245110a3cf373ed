"""The pixel convention that box geometry follows (DESIGN.md section 3).

Two conventions exist for a box (x1, y1, x2, y2):

* legacy "+1" (maskrcnn-benchmark / Detectron): coordinates index pixels and both ends are
  inclusive, so width = x2 - x1 + 1, a horizontal flip maps x to W - 1 - x and clipping keeps
  x <= W - 1. This is the default, so maskrcnn-benchmark configs and checkpoints reproduce exactly.
* modern (torchvision / Detectron2): coordinates are continuous, width = x2 - x1, a flip maps x to
  W - x and clipping keeps x <= W.

How the convention reaches the code:

* Every structure whose geometry depends on it (``BoxList``, ``Keypoints``, ``SegmentationMask``
  and its polygon classes) takes ``legacy_plus_one=None`` in its constructor and stores the
  resolved flag as ``.legacy_plus_one``; every copy it makes (convert, resize, crop, transpose,
  indexing, ``to``) carries that flag over. Functions on those structures (``boxlist_iou``,
  ``remove_small_boxes``, ``boxlist_nms``) read the flag from their arguments.
* ``None`` resolves to the process-wide default below, read in exactly one place:
  ``resolve_legacy_plus_one``. The config key ``MODEL.BOX_CONVENTION_LEGACY`` is applied by the
  builders with ``set_legacy_plus_one(cfg.MODEL.BOX_CONVENTION_LEGACY)``; tests and scripts can
  switch it temporarily with ``with use_legacy_plus_one(False): ...``.
"""
import contextlib

_legacy_plus_one_default = True


def legacy_plus_one():
    """The process-wide default: True for the legacy "+1" convention, False for the modern one."""
    return _legacy_plus_one_default


def set_legacy_plus_one(flag):
    """Set the process-wide default used by structures built with ``legacy_plus_one=None``."""
    global _legacy_plus_one_default
    if not isinstance(flag, bool):
        raise TypeError(f"set_legacy_plus_one: flag must be a bool, got {flag!r}")
    _legacy_plus_one_default = flag


@contextlib.contextmanager
def use_legacy_plus_one(flag):
    """Context manager that sets the default convention and restores the previous one on exit."""
    previous = legacy_plus_one()
    set_legacy_plus_one(flag)
    try:
        yield
    finally:
        set_legacy_plus_one(previous)


def resolve_legacy_plus_one(flag):
    """``flag`` itself when given, else the process-wide default (the one place it is read)."""
    if flag is None:
        return _legacy_plus_one_default
    if not isinstance(flag, bool):
        raise TypeError(f"legacy_plus_one must be a bool or None, got {flag!r}")
    return flag


def pixel_offset(flag):
    """The "TO_REMOVE" term of the formulas: 1 under the legacy convention, 0 under the modern one."""
    return 1 if flag else 0
