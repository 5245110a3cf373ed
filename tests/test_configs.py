"""Every YAML under configs/ merges into the default config tree and its backbone builds.

Parametrised over the files found on disk, so a new config is covered as soon as it is added.
Only constructors run here (no forward passes of full-size models).
"""
import pathlib

import pytest
import torch

from maskrcnn.config import cfg as default_cfg

CONFIG_ROOT = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIG_ROOT.rglob("*.yaml"))
CONFIG_IDS = [str(path.relative_to(CONFIG_ROOT)) for path in CONFIG_FILES]


def load_config(path):
    cfg = default_cfg.clone()
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_config_tree_is_found():
    # the top-level recipes and every sub-folder of the model zoo are present
    assert len(CONFIG_FILES) >= 70
    folders = {path.parent.name for path in CONFIG_FILES}
    for folder in ("retinanet", "quick_schedules", "gn_baselines", "dcn", "caffe2", "cityscapes",
                   "pascal_voc", "test_time_aug"):
        assert folder in folders, folder


@pytest.mark.parametrize("path", CONFIG_FILES, ids=CONFIG_IDS)
def test_config_merges(path):
    cfg = load_config(path)
    # a merged recipe is internally consistent in the ways builders rely on
    if cfg.MODEL.RPN.USE_FPN and not cfg.MODEL.RETINANET_ON:
        assert len(cfg.MODEL.RPN.ANCHOR_STRIDE) == len(cfg.MODEL.RPN.ANCHOR_SIZES)
    if cfg.MODEL.ROI_HEADS.USE_FPN:
        assert len(cfg.MODEL.ROI_BOX_HEAD.POOLER_SCALES) == 4
        assert cfg.DATALOADER.SIZE_DIVISIBILITY == 32
    if "FPN" in cfg.MODEL.BACKBONE.CONV_BODY:
        assert cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS == 256
    if cfg.MODEL.WEIGHT:
        assert cfg.MODEL.WEIGHT.startswith("catalog://"), cfg.MODEL.WEIGHT
    assert len(cfg.SOLVER.STEPS) >= 1 and max(cfg.SOLVER.STEPS) < cfg.SOLVER.MAX_ITER


def test_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  RPN:\n    ANCHOR_STRIDES: (4, 8)\n")
    with pytest.raises(KeyError, match="MODEL.RPN.ANCHOR_STRIDES"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=CONFIG_IDS)
def test_backbone_builds(path):
    from maskrcnn.modeling.backbone import build_backbone

    cfg = load_config(path)
    with torch.device("meta"):
        backbone = build_backbone(cfg)
    assert backbone.out_channels == (
        cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
        if cfg.MODEL.BACKBONE.CONV_BODY != "FBNet" else backbone.out_channels
    )
    assert sum(p.numel() for p in backbone.parameters()) > 0
