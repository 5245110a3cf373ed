"""A training run killed with SIGKILL after a checkpoint and restarted with the same command ends
bit-identical (weights and optimizer state) to an uninterrupted run, with random resizing and
flips on, and with loader worker processes in the interrupted run only."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskrcnn.utils.metrics_json import read_metrics

from train_opts import TINY_TRAIN, TRAIN_NET

RUN = ["SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "3",
       "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", "0.5"]


def _command(output_dir, *opts):
    return [sys.executable, TRAIN_NET, "--skip-test"] + TINY_TRAIN + RUN + list(opts) + [
        "OUTPUT_DIR", str(output_dir)]


def _env(data_dir):
    env = dict(os.environ, MASKRCNN_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def _trained_iterations(output_dir):
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(path):
        return []
    return [r["iteration"] for r in read_metrics(path) if "lr" in r]


def _run(command, env, log):
    with open(log, "w") as f:
        result = subprocess.run(command, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, open(log).read()[-3000:]


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(data_dir, tmp_path):
    env = _env(data_dir)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(_command(straight, "DATALOADER.NUM_WORKERS", "0"), env, tmp_path / "straight.log")

    command = _command(killed, "DATALOADER.NUM_WORKERS", "1")
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            # kill once iteration 4 is logged: past the checkpoint of iteration 3
            while max(_trained_iterations(killed), default=0) < 4:
                assert process.poll() is None, open(tmp_path / "killed.log").read()[-3000:]
                assert time.time() < deadline
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model_final.pth").exists()
    assert (killed / "model_0000003.pth").exists()

    _run(command, env, tmp_path / "resumed.log")
    resumed_log = open(tmp_path / "resumed.log").read()
    assert "Resuming from iteration" in resumed_log

    a = torch.load(straight / "model_final.pth", weights_only=True)
    b = torch.load(killed / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 8
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert different == []
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b, strict=True))
    assert a["scheduler"] == b["scheduler"]
    # training after the checkpoint moved the weights, and metrics.json has each iteration once
    early = torch.load(killed / "model_0000003.pth", weights_only=True)["model"]
    assert not torch.equal(early["roi_heads.box.predictor.cls_score.weight"],
                           b["model"]["roi_heads.box.predictor.cls_score.weight"])
    assert _trained_iterations(killed) == list(range(1, 9))
