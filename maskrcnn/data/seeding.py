"""Per-sample random streams for the training data path, so that exact resume is possible.

A training loader draws its augmentation randomness (random resize choice, flips, colour jitter:
every transform uses torch's RNG) from a stream seeded by (SEED, rank, iteration, position in the
batch) instead of the process-global stream. The images of iteration `k` are then the same whether
the run started at 0 or resumed at `k`, whatever DATALOADER.NUM_WORKERS is, and loading data never
moves the global RNG that the model's own sampling uses.

`PerSampleSeedBatchSampler` wraps the (iteration-based) batch sampler and turns each index into an
`(index, sample_seed)` pair; `SeededDataset` wraps the dataset and, for such a pair, loads the
sample with torch, NumPy and Python's `random` seeded by `sample_seed` (restoring the previous
states afterwards). Plain integer indices pass through unchanged.
"""
import random

import numpy as np
import torch
from torch.utils.data.sampler import BatchSampler

__all__ = ["sample_seed", "PerSampleSeedBatchSampler", "SeededDataset"]


def sample_seed(seed, rank, iteration, position):
    """A 63-bit seed mixing (seed, rank, iteration, position) through NumPy's SeedSequence."""
    mixed = np.random.SeedSequence([int(seed), int(rank), int(iteration), int(position)])
    return int(mixed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class PerSampleSeedBatchSampler(BatchSampler):
    """Yields the batches of `batch_sampler` with each index `i` replaced by `(i, seed_i)`.

    batch_sampler: yields lists of dataset indices, the first being iteration `start_iter`
        (an IterationBasedBatchSampler built with the same `start_iter`).
    seed, rank: the run's seed (>= 0) and this process's rank.
    """

    def __init__(self, batch_sampler, seed, rank=0, start_iter=0):
        self.batch_sampler = batch_sampler
        self.seed = int(seed)
        self.rank = int(rank)
        self.start_iter = int(start_iter)

    def __iter__(self):
        for iteration, batch in enumerate(self.batch_sampler, self.start_iter):
            yield [(index, sample_seed(self.seed, self.rank, iteration, position))
                   for position, index in enumerate(batch)]

    def __len__(self):
        return len(self.batch_sampler)


class SeededDataset(torch.utils.data.Dataset):
    """`dataset[(index, seed)]` is `dataset[index]` loaded under RNGs seeded by `seed`; the
    global torch / NumPy / Python RNG states are left as they were. Other attributes (e.g.
    `get_img_info`) are those of the wrapped dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % (2 ** 32))
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
