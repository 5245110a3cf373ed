import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from maskrcnn.utils import comm


def test_single_process_defaults():
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.is_main_process()
    comm.synchronize()
    obj = {"a": [1, 2], "b": "x"}
    assert comm.all_gather(obj) == [obj]
    d = {"loss": torch.tensor(2.0)}
    assert comm.reduce_dict(d) is d
    t = torch.tensor([1.0, 2.0])
    assert comm.all_reduce_sum(t) is t


def _worker(rank, world_size, init_file, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        # objects of different pickled sizes on each rank
        gathered = comm.all_gather({"rank": rank, "payload": "x" * (10 + 1000 * rank)})
        reduced = comm.reduce_dict({"b": torch.tensor(float(rank + 1)), "a": torch.tensor(10.0 * rank)})
        summed = comm.reduce_dict({"a": torch.tensor(10.0 * rank)}, average=False)
        all_summed = comm.all_reduce_sum(torch.tensor([rank + 1.0, 2.0]))
        comm.synchronize()
        torch.save(
            {
                "world": comm.get_world_size(),
                "rank": comm.get_rank(),
                "main": comm.is_main_process(),
                "gathered": gathered,
                "reduced": {k: float(v) for k, v in reduced.items()},
                "summed": {k: float(v) for k, v in summed.items()},
                "all_summed": all_summed.tolist(),
            },
            os.path.join(result_dir, f"{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_process_gloo(tmp_path):
    world_size = 2
    mp.spawn(_worker, args=(world_size, str(tmp_path / "init"), str(tmp_path)), nprocs=world_size)
    results = [torch.load(tmp_path / f"{r}.pt") for r in range(world_size)]
    for r, res in enumerate(results):
        assert res["world"] == 2 and res["rank"] == r and res["main"] == (r == 0)
        assert [g["rank"] for g in res["gathered"]] == [0, 1]
        assert [len(g["payload"]) for g in res["gathered"]] == [10, 1010]
    # reduce_dict reduces to rank 0: average of (1, 2) and (0, 10); sum of (0, 10)
    assert results[0]["reduced"] == {"a": 5.0, "b": 1.5}
    assert results[0]["summed"] == {"a": 10.0}
    # all_reduce_sum: every rank gets the sum
    assert [res["all_summed"] for res in results] == [[3.0, 4.0], [3.0, 4.0]]
