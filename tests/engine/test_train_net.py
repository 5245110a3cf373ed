"""tools/train_net.py end to end as a user runs it: training with periodic evaluation, the final
evaluation with its AP table, then tools/test_net.py on the saved checkpoint reproducing it."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from maskrcnn.utils.metrics_json import read_metrics

from train_opts import TINY_TRAIN, TRAIN_NET
from tests.tool_modules import REPO_ROOT


def _run(command, env):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


@pytest.mark.slow
def test_train_evaluate_then_test_net_reproduces(data_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, MASKRCNN_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    stdout = _run([sys.executable, TRAIN_NET] + TINY_TRAIN + [
        "SEED", "-1", "SOLVER.MAX_ITER", "2", "SOLVER.TEST_PERIOD", "1",
        "MODEL.ROI_HEADS.SCORE_THRESH", "0.0", "OUTPUT_DIR", str(out)], env)
    assert "Final evaluation:" in stdout and "AP50" in stdout
    for name in ("config.yml", "log.txt", "metrics.json", "model_final.pth", "last_checkpoint"):
        assert (out / name).exists(), name
    with open(out / "config.yml") as f:
        seed = yaml.safe_load(f)["SEED"]
    assert seed >= 0  # SEED -1 was replaced by the seed picked

    records = read_metrics(out / "metrics.json")
    evaluations = [r for r in records if "shapes_val/bbox/AP" in r]
    assert [r["iteration"] for r in evaluations] == [1, 2]  # periodic at 1, final at 2
    assert [r["iteration"] for r in records if "val/loss" in r] == [1]
    assert (out / "iter_0000001" / "inference" / "shapes_val" / "coco_results.json").exists()
    with open(out / "inference" / "shapes_val" / "coco_results.json") as f:
        trained = json.load(f)

    stdout = _run([sys.executable, os.path.join(REPO_ROOT, "tools", "test_net.py"),
                   "--config-file", str(out / "config.yml")], env)
    assert "model_final.pth" in stdout
    with open(out / "inference" / "shapes_val" / "coco_results.json") as f:
        assert json.load(f) == trained
    # the final metrics.json line holds the numbers of that evaluation
    for metric, value in trained["results"]["bbox"].items():
        assert evaluations[-1][f"shapes_val/bbox/{metric}"] == pytest.approx(value, abs=1e-12)
