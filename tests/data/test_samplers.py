import pytest
from torch.utils.data.sampler import BatchSampler, SequentialSampler

from maskrcnn.data.samplers import DistributedSampler, GroupedBatchSampler, IterationBasedBatchSampler


def test_distributed_sampler_shares_and_epochs():
    data = list(range(10))
    shares = [list(DistributedSampler(data, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    s = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True)
    e0 = list(s)
    assert sorted(e0) == data and len(s) == 10
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0 and sorted(e1) == data
    s.set_epoch(0)
    assert list(s) == e0
    with pytest.raises(RuntimeError, match="num_replicas and rank"):
        DistributedSampler(data)


def test_grouped_batch_sampler_order_and_groups():
    sampler = SequentialSampler(range(10))
    groups = [0, 0, 1, 0, 1, 1, 0, 1, 1, 0]
    batches = list(GroupedBatchSampler(sampler, groups, 3))
    assert batches == [[0, 1, 3], [2, 4, 5], [6, 9], [7, 8]]
    assert len(GroupedBatchSampler(sampler, groups, 3)) == 4
    assert list(GroupedBatchSampler(sampler, groups, 3, drop_uneven=True)) == [[0, 1, 3], [2, 4, 5]]
    shuffled = DistributedSampler(range(10), 1, 0, shuffle=True)
    for batch in GroupedBatchSampler(shuffled, groups, 2):
        assert len({groups[i] for i in batch}) == 1
    flat = sum(GroupedBatchSampler(shuffled, groups, 2), [])
    assert sorted(flat) == list(range(10))


def test_iteration_based_length_and_resume():
    dataset = range(11)
    groups = [i % 3 == 0 for i in dataset]
    sampler = DistributedSampler(dataset, 1, 0, shuffle=True, seed=5)
    full = list(IterationBasedBatchSampler(GroupedBatchSampler(sampler, groups, 2), 23))
    assert len(full) == 23 and len(IterationBasedBatchSampler(BatchSampler(sampler, 2, False), 23)) == 23
    # passes differ (the order depends on the pass number)
    per_pass = len(GroupedBatchSampler(sampler, groups, 2))
    assert full[:per_pass] != full[per_pass : 2 * per_pass]
    for start in (1, per_pass - 1, per_pass, per_pass + 3, 22):
        sampler2 = DistributedSampler(dataset, 1, 0, shuffle=True, seed=5)
        resumed = list(IterationBasedBatchSampler(GroupedBatchSampler(sampler2, groups, 2), 23, start_iter=start))
        assert resumed == full[start:]
    plain = list(IterationBasedBatchSampler(BatchSampler(SequentialSampler(range(5)), 2, False), 4, start_iter=2))
    assert plain == [[4], [0, 1]]
