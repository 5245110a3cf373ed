"""Smoke test of benchmarks/int8.py on the shapes model at 64 px (random weights saved as a
checkpoint, 4 validation images): the latency rows and the float / int8 AP rows come out. No
timing is asserted."""
import os
import subprocess
import sys

import pytest

from maskrcnn.config import cfg as default_cfg
from maskrcnn.utils.checkpoint import Checkpointer
from tests.tiny_models import seeded_model
from tests.tool_modules import REPO_ROOT as REPO

CONFIG = os.path.join(REPO, "configs", "shapes", "e2e_mask_rcnn_R_18_FPN_shapes.yaml")
SMALL_SHAPES = ["DATASETS.SHAPES.IMAGE_SIZE", "64", "DATASETS.SHAPES.NUM_VAL_IMAGES", "4",
                "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0",
                "TEST.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.SCORE_THRESH", "0.0"]


def table_rows(output):
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.mark.slow
def test_int8_script_latency_and_ap_rows(tmp_path):
    cfg = default_cfg.clone()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"])
    checkpoint = Checkpointer(seeded_model(cfg), save_dir=str(tmp_path)).save("random")
    env = dict(os.environ, PYTHONPATH=REPO, MASKRCNN_DATA_DIR=str(tmp_path / "data"))
    command = [sys.executable, os.path.join(REPO, "benchmarks", "int8.py"), "--config-file", CONFIG,
               "--weights", checkpoint, "--repeats", "1", "--warmup", "0", "--threads", "1",
               "--calibration-images", "2", "--opts", *SMALL_SHAPES]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    latency = [row for row in rows if row[0] in ("backbone", "eval forward")]
    assert [row[0] for row in latency] == ["backbone", "eval forward"]
    for row in latency:
        assert float(row[1]) > 0 and float(row[2]) > 0 and float(row[3]) > 0
    ap = {(row[1], row[2]): row for row in rows if row[0] == "shapes_val"}
    assert set(ap) == {(t, m) for t in ("bbox", "segm") for m in ("AP", "AP50", "AP75")}
    for row in ap.values():
        assert 0 <= float(row[3]) <= 1 and 0 <= float(row[4]) <= 1
    assert "one 64x64 image" in result.stdout and "2 calibration images" in result.stdout
