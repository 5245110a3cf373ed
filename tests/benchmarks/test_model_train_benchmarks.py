"""Smoke tests of benchmarks/model.py and benchmarks/train.py (our side only, tiny sizes), so the
scripts keep running as the library changes; and of the peak-memory helper they share. No timing
is asserted."""
import os
import subprocess
import sys

import pytest
import torch

from tests.tool_modules import REPO_ROOT as REPO

BENCHMARKS = os.path.join(REPO, "benchmarks")

# R-50-FPN kept, but few proposals, RoIs and detections, so a step takes well under a second
SMALL = [
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", "100", "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", "100", "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", "50",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", "5",
]


def run_script(name, *arguments):
    env = dict(os.environ, PYTHONPATH=REPO)
    command = [sys.executable, os.path.join(BENCHMARKS, name), "--repeats", "1", "--warmup", "0",
               "--threads", "1", "--no-peer", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(output):
    """Data rows of the markdown table in a script's output, as lists of cells."""
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


@pytest.mark.slow
def test_model_script_eval_and_train_rows():
    output = run_script("model.py", "--models", "mask", "--size", "64x96", "--batch", "1",
                        "--train-batch", "1", "--opts", *SMALL)
    rows = table_rows(output)
    assert [row[:3] for row in rows] == [["mask R-50-FPN", "eval b1", "fp32"],
                                         ["mask R-50-FPN", "train b1", "fp32"]]
    eval_row, train_row = rows
    assert float(eval_row[3]) > 0 and float(train_row[3]) > 0
    assert eval_row[4] == "-" and eval_row[5] == "-"  # no peer column without torchvision
    assert float(eval_row[6]) > 0 and eval_row[8] == "-"
    assert eval_row[11] == "5"  # score threshold 0: every allowed detection is kept
    assert "ours: own random init" in output


@pytest.mark.slow
def test_train_script_case_list_and_yaml_case():
    yaml = os.path.join(REPO, "configs", "e2e_faster_rcnn_R_50_FPN_1x.yaml")
    output = run_script("train.py", "--cases", f"faster@64x64,{yaml}@64x96", "--batch", "1",
                        "--shapes-config", "/nonexistent.yaml", "--opts", *SMALL)
    rows = table_rows(output)
    assert [row[:3] for row in rows] == [["faster R-50-FPN 64x64", "1", "fp32"],
                                         ["e2e_faster_rcnn_R_50_FPN_1x 64x96", "1", "fp32"]]
    for row in rows:
        seconds, images_per_second = float(row[3]), float(row[9])
        assert seconds > 0 and images_per_second == pytest.approx(1 / seconds, rel=0.05)


def test_train_script_skips_a_missing_shapes_config():
    output = run_script("train.py", "--cases", "shapes", "--shapes-config", "/nonexistent.yaml")
    assert "shapes: /nonexistent.yaml not found, case skipped" in output
    assert table_rows(output) == []


def test_peak_memory_sees_an_allocation():
    sys.path.insert(0, BENCHMARKS)
    try:
        from common import PeakMemory
    finally:
        sys.path.remove(BENCHMARKS)
    tracker = PeakMemory("cpu")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    peak = tracker.peak_bytes()
    del block
    assert 48 * 2**20 < peak < 512 * 2**20
