import pytest

from maskrcnn.structures.box_convention import set_legacy_plus_one


@pytest.fixture(autouse=True)
def _restore_box_convention():
    """build_detection_model sets the process-wide box convention; put the default back."""
    yield
    set_legacy_plus_one(True)


@pytest.fixture
def shapes_data_dir(tmp_path, monkeypatch):
    """A private MASKRCNN_DATA_DIR (the shapes splits are generated there on first use)."""
    data_dir = tmp_path / "datasets"
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(data_dir))
    return str(data_dir)
