"""Test-wide settings.

Under pytest-xdist each worker is its own process; with 2 workers on a 2-core machine one intra-op
thread per worker avoids oversubscription (OpenMP threads spinning against each other).
"""
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state, so failures reproduce."""
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_box_convention():
    """build_detection_model sets the process-wide box convention from the config (a
    configs/torchvision/ model switches it to the modern one): put the default back after each test."""
    yield
    from maskrcnn.structures.box_convention import set_legacy_plus_one

    set_legacy_plus_one(True)
