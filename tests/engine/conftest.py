"""Fixtures of the training tests: tools/train_net.py as a module, tiny training configs."""
import os
import sys

import pytest

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.launch import resolve_seed
from maskrcnn.structures.box_convention import set_legacy_plus_one

sys.path.insert(0, os.path.dirname(__file__))
from train_opts import TINY_TRAIN, load_train_net  # noqa: E402


@pytest.fixture(scope="session")
def train_net():
    """tools/train_net.py imported as a module."""
    return load_train_net()


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    """MASKRCNN_DATA_DIR in a folder shared by the tests of this session (the shapes data is
    generated once)."""
    folder = tmp_path_factory.getbasetemp() / "engine_data"
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def make_cfg(data_dir, tmp_path):
    """make_cfg(*KEY_VALUE) -> frozen tiny training config with OUTPUT_DIR tmp_path/out."""

    def make(*opts):
        c = default_cfg.clone()
        c.merge_from_list(TINY_TRAIN + ["OUTPUT_DIR", str(tmp_path / "out")] + list(opts))
        resolve_seed(c)
        c.freeze()
        return c

    return make


@pytest.fixture(autouse=True)
def _restore_box_convention():
    """build_detection_model sets the process-wide box convention; put the default back."""
    yield
    set_legacy_plus_one(True)
