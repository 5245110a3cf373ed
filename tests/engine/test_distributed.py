"""Two processes (torchrun, gloo on the CPU) train the tiny detector on the shapes data and end
with the same weights on both ranks, equal to the checkpoint the main process wrote."""
import os
import subprocess
import sys

import pytest
import torch

from maskrcnn.config import cfg
from maskrcnn.engine.launch import seed_all_rngs
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.utils.metrics_json import read_metrics

from train_opts import TINY_TRAIN

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_train_worker.py")


@pytest.mark.slow
def test_two_processes_gloo_end_with_identical_weights(data_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, MASKRCNN_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               WORKER, "--skip-test"] + TINY_TRAIN + [
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4", "OUTPUT_DIR", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Using 2 process(es)" in result.stdout

    rank0 = torch.load(out / "rank0.pth", weights_only=True)
    rank1 = torch.load(out / "rank1.pth", weights_only=True)
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert rank0.keys() == rank1.keys() == final["model"].keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    assert all(torch.equal(rank0[k], final["model"][k]) for k in rank0)
    # both ranks' RNG states are in the checkpoint, and they differ (seeded SEED + rank)
    states = final["rng_states"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])
    assert [r["iteration"] for r in read_metrics(out / "metrics.json")] == [1, 2, 3]
    # training moved the weights away from rank 0's initialisation (seeded with SEED + 0)
    c = cfg.clone()
    c.merge_from_list(TINY_TRAIN)
    seed_all_rngs(c.SEED)
    initial = build_detection_model(c).state_dict()
    assert torch.equal(initial["backbone.body.stem.conv1.weight"], rank0["backbone.body.stem.conv1.weight"])  # frozen
    moved = [k for k in rank0 if not torch.equal(initial[k], rank0[k])]
    assert "roi_heads.box.predictor.cls_score.weight" in moved and "rpn.head.conv.weight" in moved
