"""The configs/shapes/ recipes (what `make train` trains): each builds its detector on the CPU and
runs one training step on the generated shapes data (a tiny copy in a temporary data folder)."""
import math
import pathlib

import pytest
import torch

from maskrcnn.config import cfg as default_cfg

SHAPES_CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs" / "shapes").glob("*.yaml"))
SHAPES_IDS = [path.name for path in SHAPES_CONFIGS]


def test_the_three_recipes_exist():
    assert {"e2e_mask_rcnn_R_18_FPN_shapes.yaml", "e2e_faster_rcnn_R_18_FPN_shapes.yaml",
            "e2e_keypoint_rcnn_R_18_FPN_shapes.yaml"} <= set(SHAPES_IDS)


def load(path, *opts):
    cfg = default_cfg.clone()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"] + list(opts))
    return cfg


@pytest.mark.parametrize("path", SHAPES_CONFIGS, ids=SHAPES_IDS)
def test_recipe_is_self_contained(path):
    """Trained from scratch on the embedded data, at the data's own image size, evaluated."""
    cfg = load(path)
    assert cfg.MODEL.WEIGHT == ""  # nothing to download
    assert cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT == 0  # from scratch: every stage trains
    assert all("shapes" in name for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)
    assert cfg.DATASETS.TEST, "the recipe must name its evaluation data"
    size = cfg.DATASETS.SHAPES.IMAGE_SIZE
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (size,) and cfg.INPUT.MIN_SIZE_TEST == size
    assert cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES == 4  # background + circle, square, triangle
    assert cfg.MODEL.RPN.ANCHOR_SIZES[0] <= 16  # the smallest shapes are ~15 px across
    text = path.read_text()
    assert text.startswith("#") and "train_net.py" in text.split("\nMODEL:")[0], \
        "header comment: what it is, the command, the measured AP and time"


@pytest.mark.parametrize("path", SHAPES_CONFIGS, ids=SHAPES_IDS)
def test_one_training_step(path, tmp_path, monkeypatch):
    from maskrcnn.data import make_data_loader
    from maskrcnn.modeling.detector import build_detection_model
    from maskrcnn.solver import make_lr_scheduler, make_optimizer

    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path))
    cfg = load(path, "DATASETS.SHAPES.NUM_TRAIN_IMAGES", 4, "SOLVER.IMS_PER_BATCH", 2,
               "SOLVER.MAX_ITER", 2, "SOLVER.WARMUP_ITERS", 1, "DATALOADER.NUM_WORKERS", 0)
    torch.manual_seed(0)
    model = build_detection_model(cfg).train()
    optimizer = make_optimizer(cfg, model)
    scheduler = make_lr_scheduler(cfg, optimizer)
    images, targets, _ = next(iter(make_data_loader(cfg, is_train=True)))
    assert images.tensors.shape[-2:] == (128, 128)
    losses = model(images, list(targets))
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    expected |= {"loss_mask"} if cfg.MODEL.MASK_ON else set()
    expected |= {"loss_kp"} if cfg.MODEL.KEYPOINT_ON else set()
    assert set(losses) == expected
    total = sum(losses.values())
    assert math.isfinite(total.item())
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    scheduler.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    changed = sum(not torch.equal(a, b) for a, b in zip(before, after))
    assert changed > 0.9 * len(before), "most trainable tensors should move after one step"
