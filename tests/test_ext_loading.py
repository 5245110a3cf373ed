"""maskrcnn._ext.load_ops: the compiled ops load, and a stale or mismatched build is refused with a
rebuild hint instead of failing later with an unknown-operator error."""
import os
import shutil

import pytest
import torch

from maskrcnn import _ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ops_are_registered_under_the_maskrcnn_namespace():
    module = _ext.load_ops()
    assert module.sources_digest == _ext._sources_digest(os.path.join(ROOT, "csrc"))
    assert module.torch_version == torch.__version__
    for op in ("nms", "batched_nms", "roi_align", "roi_pool", "sigmoid_focal_loss_forward", "deform_conv2d"):
        assert hasattr(torch.ops.maskrcnn, op), op


def test_edited_sources_make_the_build_stale(tmp_path, monkeypatch):
    csrc_copy = tmp_path / "csrc"
    shutil.copytree(os.path.join(ROOT, "csrc"), csrc_copy)
    (csrc_copy / "nms" / "nms.cpp").write_text("// edited\n", encoding="utf-8")
    monkeypatch.setattr(_ext, "_CSRC", str(csrc_copy))
    monkeypatch.setattr(_ext, "_loaded", None)
    with pytest.raises(ImportError, match=r"stale.*pip install --no-build-isolation -e \."):
        _ext.load_ops()
    monkeypatch.setenv("MASKRCNN_SKIP_STALE_CHECK", "1")
    assert _ext.load_ops() is not None


def test_build_for_another_torch_is_refused(monkeypatch):
    from maskrcnn import _C

    monkeypatch.setattr(_ext, "_loaded", None)
    monkeypatch.setattr(_C, "torch_version", "0.0.0-other")
    with pytest.raises(ImportError, match=r"built against torch 0\.0\.0-other"):
        _ext.load_ops()
