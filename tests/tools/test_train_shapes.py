"""`make train`'s pipeline (tools/train_shapes.py) end to end at a tiny schedule: train_net.py on a
few generated shapes images, evaluation, the loss/AP plot, the detections picture, the summary."""
import datetime
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "train_shapes.py"

sys.path.insert(0, str(ROOT / "tools"))
import train_shapes  # noqa: E402


def test_new_output_dir_is_fresh_each_time(tmp_path):
    now = datetime.datetime(2024, 5, 6, 7, 8, 9)
    first = train_shapes.new_output_dir("configs/shapes/a.yaml", str(tmp_path), now)
    assert first == str(tmp_path / "a-20240506-070809")
    os.makedirs(first)
    second = train_shapes.new_output_dir("configs/shapes/a.yaml", str(tmp_path), now)
    assert second == first + "-2"  # same second: a new folder all the same, never the old one


def test_latest_link_follows_the_newest_run(tmp_path):
    for name in ("run-1", "run-2"):
        (tmp_path / name).mkdir()
        train_shapes.point_latest_link(str(tmp_path / name))
        assert os.path.realpath(tmp_path / "latest") == str(tmp_path / name)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(SystemExit, match="--config-file nope.yaml: no such file"):
        train_shapes.main(["--config-file", "nope.yaml", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--num-images must be >= 1"):
        train_shapes.main(["--num-images", "0", "--output-dir", str(tmp_path)])


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, MASKRCNN_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    command = [
        sys.executable, str(SCRIPT), "--output-dir", str(out), "--device", "cpu", "--num-images", "2",
        "DATASETS.SHAPES.NUM_TRAIN_IMAGES", "6", "DATASETS.SHAPES.NUM_VAL_IMAGES", "3",
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "3", "TEST.IMS_PER_BATCH", "3",
        "DATALOADER.NUM_WORKERS", "0",
    ]
    result = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("model_final.pth", "last_checkpoint", "metrics.json", "config.yml", "log.txt",
                 "metrics.png", "detections.png", "inference/shapes_val/predictions.pth",
                 "inference/shapes_val/coco_results.json"):
        assert (out / name).is_file(), name
    for name in ("metrics.png", "detections.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    stdout = result.stdout
    summary = stdout[stdout.index("Finished. Files in"):]
    assert str(out / "model_final.pth") in summary and str(out / "detections.png") in summary
    assert "(missing)" not in summary
    # the AP table: one row per iou type of the mask model, with the AP columns
    table_lines = [line for line in summary.splitlines() if "shapes_val" in line and "AP" not in line]
    assert any("bbox" in line for line in table_lines) and any("segm" in line for line in table_lines)
    assert "AP50" in summary
    assert "train + evaluation:" in summary and "s CPU" in summary
    # the data went where MASKRCNN_DATA_DIR says, not into the repository
    assert any((tmp_path / "data" / "shapes").iterdir())
