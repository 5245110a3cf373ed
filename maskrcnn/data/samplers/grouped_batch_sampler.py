"""Batches whose images all share a group (e.g. landscape vs portrait aspect ratio)."""
from collections import defaultdict

from torch.utils.data.sampler import BatchSampler, Sampler


class GroupedBatchSampler(BatchSampler):
    """Wraps `sampler` into mini-batches whose elements all have the same `group_ids[index]`.

    Within a batch, elements keep the sampler's order. Batches are emitted in the order in
    which their first element appears in the sampler's output, so the sampler order is followed
    as closely as grouping allows. Each group's last batch may be smaller than `batch_size`; with
    `drop_uneven=True` those short batches are dropped.

    Arguments:
        sampler: yields dataset indices.
        group_ids: sequence, group id of each dataset index.
        batch_size: int.
        drop_uneven: bool.
    """

    def __init__(self, sampler, group_ids, batch_size, drop_uneven=False):
        if not isinstance(sampler, Sampler) and not hasattr(sampler, "__iter__"):
            raise ValueError("GroupedBatchSampler: sampler must be iterable, got %r" % (sampler,))
        if batch_size < 1:
            raise ValueError("GroupedBatchSampler: batch_size must be >= 1, got %r" % (batch_size,))
        self.sampler = sampler
        self.group_ids = [int(g) for g in group_ids]
        self.batch_size = batch_size
        self.drop_uneven = drop_uneven
        self._cached = None  # (epoch key, batches) so that len() and iter() agree

    def _epoch_key(self):
        return getattr(self.sampler, "epoch", None)

    def _prepare_batches(self):
        per_group = defaultdict(list)  # group id -> list of (position in sampler order, index)
        for position, index in enumerate(self.sampler):
            per_group[self.group_ids[index]].append((position, index))
        batches = []
        for members in per_group.values():
            for start in range(0, len(members), self.batch_size):
                batches.append(members[start : start + self.batch_size])
        batches.sort(key=lambda batch: batch[0][0])
        if self.drop_uneven:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [[index for _, index in batch] for batch in batches]

    def _batches(self):
        key = self._epoch_key()
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._prepare_batches())
        return self._cached[1]

    def __iter__(self):
        batches = self._batches()
        self._cached = None  # the next pass re-reads the sampler (it may reshuffle)
        return iter(batches)

    def __len__(self):
        return len(self._batches())

