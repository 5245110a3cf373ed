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
