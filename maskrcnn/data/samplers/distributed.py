"""A sampler that gives each process its own share of a dataset, reshuffled per epoch.

Unlike `torch.utils.data.RandomSampler`, the order depends only on (seed, epoch), never on the
global RNG, so a training run that resumes at an iteration can replay exactly the same order.
With `num_replicas=1, rank=0` it is the single-process shuffling sampler of `make_data_sampler`.
"""
import math

import torch
from torch.utils.data import Sampler


def _default_world():
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "DistributedSampler: num_replicas and rank were not given and no torch.distributed "
            "process group is initialized; pass num_replicas= and rank= explicitly"
        )
    return dist.get_world_size(), dist.get_rank()


class DistributedSampler(Sampler):
    """Indices of `dataset` for process `rank` of `num_replicas`.

    The shuffled (or natural) order of all indices is padded by wrapping around to a multiple of
    `num_replicas`, then process `rank` takes every `num_replicas`-th index starting at `rank`,
    so all processes see the same number of samples. Call `set_epoch(e)` before each pass to
    draw a new order; the order is a function of `seed + epoch` only.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0):
        if num_replicas is None or rank is None:
            world, this_rank = _default_world()
            num_replicas = world if num_replicas is None else num_replicas
            rank = this_rank if rank is None else rank
        if num_replicas < 1:
            raise ValueError("DistributedSampler: num_replicas must be >= 1, got %d" % num_replicas)
        if not 0 <= rank < num_replicas:
            raise ValueError(
                "DistributedSampler: rank must be in [0, %d), got %d" % (num_replicas, rank)
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_samples = int(math.ceil(len(dataset) / num_replicas))
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator).tolist()
        else:
            indices = list(range(n))
        if n > 0:
            while len(indices) < self.total_size:
                indices += indices[: self.total_size - len(indices)]
        own = indices[self.rank : self.total_size : self.num_replicas]
        assert len(own) == self.num_samples
        return iter(own)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
