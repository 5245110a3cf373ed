"""Loads the compiled ops (maskrcnn._C) and checks that the build matches the sources and torch.

After `load_ops()` the kernels are registered as `torch.ops.maskrcnn.*`. A missing build, one made
for another torch, or one older than the files under csrc/ raises an ImportError that says how to
rebuild, instead of failing later with an unknown-operator or undefined-symbol error.
"""
import hashlib
import os

import torch

_REBUILD_HINT = (
    "Rebuild it from the repository root with `pip install --no-build-isolation -e .` "
    "(or `make build`), using the same Python environment that imports maskrcnn."
)
_CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
_loaded = None


def _sources_digest(csrc_dir):
    """The same digest setup.py bakes into the build: every file under csrc/, by relative path."""
    digest = hashlib.sha1()
    paths = []
    for folder, _, files in os.walk(csrc_dir):
        paths.extend(os.path.join(folder, name) for name in files)
    for path in sorted(paths):
        digest.update(os.path.relpath(path, csrc_dir).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def load_ops():
    """Import maskrcnn._C once and return it, raising ImportError with a rebuild hint on problems."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        from maskrcnn import _C
    except ImportError as error:
        raise ImportError(
            f"maskrcnn's compiled ops (maskrcnn._C) could not be imported: {error}. {_REBUILD_HINT}"
        ) from error
    if _C.torch_version != torch.__version__:
        raise ImportError(
            f"maskrcnn._C was built against torch {_C.torch_version} but torch {torch.__version__} "
            f"is imported. {_REBUILD_HINT}"
        )
    if os.path.isdir(_CSRC) and os.environ.get("MASKRCNN_SKIP_STALE_CHECK", "0") != "1":
        if _sources_digest(_CSRC) != _C.sources_digest:
            raise ImportError(
                f"maskrcnn._C is stale: the sources under {_CSRC} changed since it was built. "
                f"{_REBUILD_HINT} (set MASKRCNN_SKIP_STALE_CHECK=1 to use the old build anyway)"
            )
    _loaded = _C
    return _C
