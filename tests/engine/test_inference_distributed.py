"""run_test over two gloo processes: the predictions gathered on the main process equal a
single-process run's, and an oracle detector still scores AP 1.0 (no image lost or mixed up, the
distributed sampler's padding included: 5 images over 2 processes)."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from maskrcnn.data import make_data_loader
from maskrcnn.engine.inference import run_test
from maskrcnn.structures.box_convention import set_legacy_plus_one

from inference_helpers import OracleDetector, assert_same_predictions, free_port, tiny_cfg, tiny_model

WORLD_SIZE = 2


def _worker(rank, port, output_dir, report_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=WORLD_SIZE)
    try:
        # TEST.IMS_PER_BATCH counts all processes: one image per process per batch
        cfg = tiny_cfg(output_dir, "TEST.IMS_PER_BATCH", WORLD_SIZE)
        model = tiny_model(cfg).train()
        results = run_test(cfg, model, distributed=True)
        (loader,) = make_data_loader(cfg, is_train=False, is_distributed=True)
        oracle_results = run_test(cfg, OracleDetector(loader.dataset), distributed=True,
                                  output_dir=os.path.join(output_dir, "oracle"))
        torch.save({"results": results, "oracle": oracle_results, "training": model.training,
                    "images_here": len(loader.batch_sampler.sampler)},
                   os.path.join(report_dir, "%d.pt" % rank))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_gather_what_one_process_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path / "data"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same intra-op setting as the workers: identical float results
    try:
        single_cfg = tiny_cfg(tmp_path / "single", "TEST.IMS_PER_BATCH", 1)  # also generates the data
        single = run_test(single_cfg, tiny_model(single_cfg), distributed=False)
    finally:
        torch.set_num_threads(threads)
        set_legacy_plus_one(True)

    mp.spawn(_worker, args=(free_port(), str(tmp_path / "multi"), str(tmp_path)), nprocs=WORLD_SIZE)
    reports = [torch.load(tmp_path / ("%d.pt" % rank), weights_only=False) for rank in range(WORLD_SIZE)]

    assert reports[0]["results"] == single
    assert reports[1]["results"] == {} and reports[1]["oracle"] == {}
    assert all(report["training"] for report in reports)
    assert [report["images_here"] for report in reports] == [3, 3]  # 5 images, one repeated as padding
    assert reports[0]["oracle"]["shapes_val"]["bbox"]["AP"] == pytest.approx(1.0)

    gathered = torch.load(tmp_path / "multi" / "inference" / "shapes_val" / "predictions.pth", weights_only=False)
    expected = torch.load(tmp_path / "single" / "inference" / "shapes_val" / "predictions.pth", weights_only=False)
    assert len(gathered) == 5
    assert_same_predictions(gathered, expected)
