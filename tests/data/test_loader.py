import pytest
import torch

from maskrcnn.config import cfg
from maskrcnn.data import make_data_loader
from maskrcnn.data.collate_batch import BatchCollator
from maskrcnn.data.datasets.evaluation.coco.coco_eval import paste_masks_in_image


def _cfg(monkeypatch, tmp_path, **solver):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path))
    c = cfg.clone()
    c.DATASETS.TRAIN = ("shapes_train",)
    c.DATASETS.TEST = ("shapes_val",)
    c.DATASETS.SHAPES.NUM_TRAIN_IMAGES = 12
    c.DATASETS.SHAPES.NUM_VAL_IMAGES = 5
    c.DATASETS.SHAPES.IMAGE_SIZE = 64
    c.INPUT.MIN_SIZE_TRAIN = (64, 80)
    c.INPUT.MAX_SIZE_TRAIN = 100
    c.INPUT.MIN_SIZE_TEST = 64
    c.DATALOADER.NUM_WORKERS = 0
    c.DATALOADER.SIZE_DIVISIBILITY = 32
    c.SOLVER.IMS_PER_BATCH = 4
    c.SOLVER.MAX_ITER = 7
    c.TEST.IMS_PER_BATCH = 2
    return c


def test_train_and_test_loaders(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    loader = make_data_loader(c, is_train=True)
    assert len(loader) == 7
    batches = list(loader)
    assert len(batches) == 7
    images, targets, ids = batches[0]
    assert images.tensors.shape[0] == len(targets) == len(ids) <= 4
    assert images.tensors.shape[-1] % 32 == 0 and images.tensors.shape[-2] % 32 == 0
    assert all(len(t) > 0 and t.has_field("masks") for t in targets)
    resumed = [b[2] for b in make_data_loader(c, is_train=True, start_iter=3)]
    assert resumed == [b[2] for b in batches[3:]]
    (test_loader,) = make_data_loader(c, is_train=False)
    assert [list(b[2]) for b in test_loader] == [[0, 1], [2, 3], [4]]


def test_worker_processes(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    c.DATALOADER.NUM_WORKERS = 2
    c.SOLVER.MAX_ITER = 3
    c.INPUT.MIN_SIZE_TRAIN = (64,)
    c.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.0
    with_workers = [b[2] for b in make_data_loader(c)]
    c.DATALOADER.NUM_WORKERS = 0
    assert with_workers == [b[2] for b in make_data_loader(c)]


def test_unknown_dataset_lists_registered(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    c.DATASETS.TRAIN = ("no_such_set",)
    with pytest.raises(KeyError, match="no_such_set.*shapes_train"):
        make_data_loader(c)


def test_batch_collator_pads():
    batch = [(torch.ones(3, 10, 20), "t0", 5), (torch.ones(3, 17, 9), "t1", 2)]
    images, targets, ids = BatchCollator(16)(batch)
    assert images.tensors.shape == (2, 3, 32, 32)
    assert images.image_sizes == [(10, 20), (17, 9)]
    assert targets == ("t0", "t1") and ids == (5, 2)


def test_paste_small_masks_into_boxes():
    masks = torch.ones(1, 1, 28, 28)
    boxes = torch.tensor([[10.0, 20.0, 39.0, 29.0]])
    out = paste_masks_in_image(masks, boxes, 50, 60)
    ys, xs = torch.nonzero(out[0], as_tuple=True)
    assert out.shape == (1, 50, 60)
    assert abs(int(xs.min()) - 10) <= 1 and abs(int(xs.max()) - 39) <= 1
    assert abs(int(ys.min()) - 20) <= 1 and abs(int(ys.max()) - 29) <= 1


def test_keep_empty_images(monkeypatch, tmp_path):
    from maskrcnn.config.paths_catalog import DatasetCatalog
    from maskrcnn.data.build import build_dataset
    from maskrcnn.data.transforms import build_transforms

    c = _cfg(monkeypatch, tmp_path)
    c.DATASETS.SHAPES.MIN_SHAPES_PER_IMAGE = 0
    c.DATASETS.SHAPES.MAX_SHAPES_PER_IMAGE = 1
    (dropped,) = build_dataset(["shapes_train"], build_transforms(c, True), DatasetCatalog, True, cfg=c)
    c.DATALOADER.KEEP_EMPTY_IMAGES = True
    (kept,) = build_dataset(["shapes_train"], build_transforms(c, True), DatasetCatalog, True, cfg=c)
    assert len(kept) == 12 and 0 < len(dropped) < 12
