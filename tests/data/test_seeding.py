"""Per-sample augmentation streams (maskrcnn.data.seeding): batch k of a training loader does not
depend on where the loader started, on worker processes, or on the global RNG."""
import random

import numpy as np
import pytest
import torch

from maskrcnn.config import cfg
from maskrcnn.data import make_data_loader
from maskrcnn.data.seeding import PerSampleSeedBatchSampler, SeededDataset, sample_seed


def _cfg(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path))
    c = cfg.clone()
    c.DATASETS.TRAIN = ("shapes_train",)
    c.DATASETS.SHAPES.NUM_TRAIN_IMAGES = 6
    c.DATASETS.SHAPES.IMAGE_SIZE = 64
    c.INPUT.MIN_SIZE_TRAIN = (64, 96)  # random resize choice
    c.INPUT.MAX_SIZE_TRAIN = 128
    c.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5
    c.INPUT.VERTICAL_FLIP_PROB_TRAIN = 0.5
    c.INPUT.BRIGHTNESS = 0.3
    c.DATALOADER.NUM_WORKERS = 0
    c.DATALOADER.SIZE_DIVISIBILITY = 32
    c.SOLVER.IMS_PER_BATCH = 2
    c.SOLVER.MAX_ITER = 6
    c.SEED = 3
    return c


def _batches(c, start_iter=0):
    return [(images.tensors.clone(), [t.bbox.clone() for t in targets], ids)
            for images, targets, ids in make_data_loader(c, is_train=True, start_iter=start_iter)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for (ia, ta, ida), (ib, tb, idb) in zip(a, b):
        assert ida == idb
        assert torch.equal(ia, ib)
        assert all(torch.equal(x, y) for x, y in zip(ta, tb))


def test_resumed_loader_replays_augmentation(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    full = _batches(c)
    # the augmentation really is random: batch sizes differ
    assert len({tuple(b[0].shape) for b in full}) > 1
    torch.manual_seed(123)  # the global stream must not matter
    _assert_same(_batches(c, start_iter=4), full[4:])


def test_workers_give_the_same_batches(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    c.SOLVER.MAX_ITER = 3
    without = _batches(c)
    c.DATALOADER.NUM_WORKERS = 2
    _assert_same(_batches(c), without)


def test_seed_changes_augmentation(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    first = _batches(c)
    c.SEED = 4
    second = _batches(c)
    assert any(not torch.equal(a[0], b[0]) if a[0].shape == b[0].shape else True
               for a, b in zip(first, second))


def test_loading_leaves_global_rng_untouched(monkeypatch, tmp_path):
    c = _cfg(monkeypatch, tmp_path)
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    _batches(c)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


class _Draw(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index, float(torch.rand(())), random.random(), float(np.random.rand())


def test_seeded_dataset_and_batch_sampler():
    data = SeededDataset(_Draw())
    assert len(data) == 4 and data[2][0] == 2  # plain indices pass through
    assert data[(1, 99)] == data[(1, 99)]
    assert data[(1, 99)][1:] != data[(1, 98)][1:]
    sampler = PerSampleSeedBatchSampler([[0, 1], [2, 3]], seed=7, rank=1, start_iter=5)
    assert len(sampler) == 2
    assert list(sampler) == [[(0, sample_seed(7, 1, 5, 0)), (1, sample_seed(7, 1, 5, 1))],
                             [(2, sample_seed(7, 1, 6, 0)), (3, sample_seed(7, 1, 6, 1))]]
    seeds = {sample_seed(s, r, i, p) for s in (0, 1) for r in (0, 1) for i in (0, 1) for p in (0, 1)}
    assert len(seeds) == 16 and all(0 <= s < 2 ** 63 for s in seeds)


@pytest.mark.parametrize("attr", ["get_img_info"])
def test_seeded_dataset_forwards_attributes(monkeypatch, tmp_path, attr):
    c = _cfg(monkeypatch, tmp_path)
    loader = make_data_loader(c, is_train=True)
    assert isinstance(loader.dataset, SeededDataset)
    assert getattr(loader.dataset, attr)(0)["width"] == 64
