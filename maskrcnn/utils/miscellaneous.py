"""Small filesystem helpers."""
import os

import yaml

from .comm import is_main_process


def mkdir(path):
    """Create `path` and its parents; no error if it already exists."""
    os.makedirs(path, exist_ok=True)


class _NoAliasSafeDumper(yaml.SafeDumper):
    # defaults that share one tuple object would otherwise be written as "&id001" / "*id001"
    def ignore_aliases(self, data):
        return True


def save_config(cfg, path):
    """Write `cfg` as plain YAML (no anchors/aliases) to `path`, from the main process only.
    The file merges back with cfg.merge_from_file(path)."""
    if is_main_process():
        as_dict = yaml.safe_load(cfg.dump())
        with open(path, "w") as f:
            yaml.dump(as_dict, f, Dumper=_NoAliasSafeDumper, default_flow_style=False)
