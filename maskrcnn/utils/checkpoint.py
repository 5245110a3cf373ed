"""Checkpoints that survive crashes and cannot run code when loaded.

`Checkpointer.save(name, **extra)` writes ``<save_dir>/<name>.pth`` holding the model, optimizer
and scheduler state dicts plus every keyword in `extra` (iteration, grad-scaler state, RNG
states...), then points ``<save_dir>/last_checkpoint`` at it. Both files are written atomically
(temporary file in the same folder, fsync, os.replace), so a process killed while saving leaves
the previous checkpoint and pointer intact.

Loading uses ``torch.load(..., weights_only=True)``: only tensors and plain containers/numbers/
strings are accepted, so a checkpoint can never execute code. Store extras in those types
(`get_rng_states` converts the Python / NumPy RNG states accordingly).
"""
import logging
import os
import random
import tempfile

import numpy as np
import torch

from .comm import is_main_process

try:  # written on branch `interop`; interface: load_state_dict(model, state_dict)
    from .model_serialization import load_state_dict as _load_state_dict
except ImportError:  # pragma: no cover - used until model_serialization lands
    _load_state_dict = None

LAST_CHECKPOINT = "last_checkpoint"


# ----------------------------------------------------------------------------- atomic files
def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write_fn, binary=True):
    """Call `write_fn(fileobj)` on a temporary file beside `path`, fsync it, then rename it over
    `path`. If anything fails the temporary file is removed and `path` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


# ----------------------------------------------------------------------------- RNG states
def get_rng_states():
    """Python, NumPy, torch CPU and (if available) CUDA RNG states, as weights_only-loadable types."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states = {
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    """Restore what `get_rng_states` returned (the CUDA states only if CUDA is available)."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    n = states["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ----------------------------------------------------------------------------- loading
def load_checkpoint_file(path):
    """torch.load(path, weights_only=True) on CPU, with errors that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"Could not load checkpoint {path} (corrupt, truncated, or holding objects other than "
            f"tensors and plain containers, which weights_only=True refuses): {e}"
        ) from e


def _strip_module_prefix(state_dict):
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _fallback_load_state_dict(model, state_dict, logger):
    result = model.load_state_dict(_strip_module_prefix(state_dict), strict=False)
    if result.missing_keys:
        logger.info("Keys not found in the checkpoint: %s", ", ".join(result.missing_keys))
    if result.unexpected_keys:
        logger.info("Checkpoint keys not in the model: %s", ", ".join(result.unexpected_keys))


class Checkpointer(object):
    """Save / resume model, optimizer, scheduler and arbitrary extra state in `save_dir`.

    save_to_disk: whether this process writes files (default: only the main process).
    """

    def __init__(
        self, model, optimizer=None, scheduler=None, save_dir="", save_to_disk=None, logger=None
    ):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.save_dir = save_dir
        self.save_to_disk = is_main_process() if save_to_disk is None else save_to_disk
        self.logger = logger or logging.getLogger(__name__)

    # ---- saving
    def save(self, name, **kwargs):
        """Write <save_dir>/<name>.pth with model/optimizer/scheduler + kwargs; returns its path."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data = {"model": self.model.state_dict()}
        if self.optimizer is not None:
            data["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            data["scheduler"] = self.scheduler.state_dict()
        data.update(kwargs)
        os.makedirs(self.save_dir, exist_ok=True)
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(save_file)
        return save_file

    def tag_last_checkpoint(self, last_filename):
        """Point <save_dir>/last_checkpoint at `last_filename` (written atomically)."""
        path = os.path.join(self.save_dir, LAST_CHECKPOINT)
        atomic_write(path, lambda f: f.write(str(last_filename)), binary=False)

    # ---- locating
    def has_checkpoint(self):
        return bool(self.save_dir) and os.path.exists(os.path.join(self.save_dir, LAST_CHECKPOINT))

    def get_checkpoint_file(self):
        """The file named in last_checkpoint ("" if there is none). A recorded path that no longer
        exists (e.g. the output folder was moved) is looked up by file name in save_dir."""
        pointer = os.path.join(self.save_dir, LAST_CHECKPOINT)
        try:
            with open(pointer) as f:
                last = f.read().strip()
        except OSError:
            return ""
        if last and not os.path.isabs(last):
            last = os.path.join(self.save_dir, last)
        if last and not os.path.exists(last):
            moved = os.path.join(self.save_dir, os.path.basename(last))
            if os.path.exists(moved):
                return moved
            raise FileNotFoundError(f"{pointer} names checkpoint {last}, which does not exist")
        return last

    # ---- loading
    def load(self, f=None, use_latest=True):
        """Restore from the latest checkpoint in save_dir (if `use_latest` and one exists), else
        from `f`. Returns the remaining saved entries (the `extra` given to `save`), or {} when
        there is nothing to load."""
        if use_latest and self.has_checkpoint():
            f = self.get_checkpoint_file()
        if not f:
            self.logger.info("No checkpoint found. Initializing model from scratch")
            return {}
        self.logger.info("Loading checkpoint from %s", f)
        checkpoint = self._load_file(f)
        self._load_model(checkpoint)
        if "optimizer" in checkpoint and self.optimizer is not None:
            self.logger.info("Loading optimizer from %s", f)
            self.optimizer.load_state_dict(checkpoint.pop("optimizer"))
        if "scheduler" in checkpoint and self.scheduler is not None:
            self.logger.info("Loading scheduler from %s", f)
            self.scheduler.load_state_dict(checkpoint.pop("scheduler"))
        return checkpoint

    def _load_file(self, f):
        checkpoint = load_checkpoint_file(f)
        if not isinstance(checkpoint, dict):
            raise RuntimeError(f"Checkpoint {f} holds a {type(checkpoint).__name__}, expected a dict")
        return checkpoint

    def _load_model(self, checkpoint):
        if "model" not in checkpoint:
            raise KeyError(f"Checkpoint has no 'model' entry (keys: {sorted(checkpoint)})")
        state_dict = checkpoint.pop("model")
        if _load_state_dict is not None:
            _load_state_dict(self.model, state_dict)
        else:
            _fallback_load_state_dict(self.model, state_dict, self.logger)


class DetectronCheckpointer(Checkpointer):
    """Checkpointer that also resolves MODEL.WEIGHT-style names: ``catalog://<name>``
    (maskrcnn.config.paths_catalog.ModelCatalog), http(s) URLs (downloaded once into a cache
    folder) and Detectron Caffe2 ``.pkl`` files (maskrcnn.utils.c2_model_loading)."""

    def __init__(
        self, cfg, model, optimizer=None, scheduler=None, save_dir="", save_to_disk=None, logger=None
    ):
        super().__init__(model, optimizer, scheduler, save_dir, save_to_disk, logger)
        self.cfg = cfg.clone()

    def _load_file(self, f):
        if f.startswith("catalog://"):
            from maskrcnn.config.paths_catalog import ModelCatalog

            url = ModelCatalog.get(f[len("catalog://"):])
            self.logger.info("%s points to %s", f, url)
            f = url
        if f.startswith("http://") or f.startswith("https://"):
            from .model_zoo import cache_url

            cached = cache_url(f)
            self.logger.info("url %s cached in %s", f, cached)
            f = cached
        if f.endswith(".pkl"):
            try:
                from .c2_model_loading import load_c2_format
            except ImportError as e:
                raise RuntimeError(
                    f"Loading Detectron (Caffe2) weights {f} needs maskrcnn.utils.c2_model_loading"
                ) from e
            return load_c2_format(self.cfg, f)
        loaded = super()._load_file(f)
        if "model" not in loaded:  # a bare state dict
            loaded = dict(model=loaded)
        return loaded
