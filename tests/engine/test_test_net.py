"""tools/test_net.py: --help, a missing --ckpt, which weights it picks, and (as a subprocess, on a
checkpoint written by Checkpointer) the same APs and predictions that run_test gives in-process."""
import json
import os
import subprocess
import sys

import pytest
import torch

from maskrcnn.engine.inference import format_results_table, run_test
from maskrcnn.modeling.memory_format import channels_last_from_cfg
from maskrcnn.structures.box_convention import set_legacy_plus_one
from maskrcnn.utils.checkpoint import Checkpointer
from maskrcnn.utils.miscellaneous import save_config

from inference_helpers import assert_same_predictions, tiny_cfg, tiny_model
from tests.tool_modules import REPO_ROOT, load_script, repo_path

TEST_NET = repo_path("tools/test_net.py")


def _load_tool():
    return load_script("tools/test_net.py", "test_net_tool")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _restore_box_convention():
    yield
    set_legacy_plus_one(True)


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for word in ("--config-file", "--ckpt", "torchrun", "last_checkpoint", "MODEL.WEIGHT", "KEY VALUE",
                 "inference/<dataset>", "TEST.BBOX_AUG.ENABLED"):
        assert word in shown, word


def test_missing_ckpt_is_an_error_naming_it(tmp_path, capsys):
    missing = str(tmp_path / "no_such_model.pth")
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(["--ckpt", missing, "OUTPUT_DIR", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--ckpt %s: no such checkpoint file" % missing in capsys.readouterr().err


def test_weights_come_from_ckpt_then_last_checkpoint_then_model_weight(tmp_path):
    import logging

    tool = _load_tool()
    logger = logging.getLogger("test_test_net")
    cfg = tiny_cfg(tmp_path / "run")
    trained = tiny_model(cfg, seed=1)
    Checkpointer(trained, save_dir=str(tmp_path / "run")).save("model_final")
    other = tiny_model(cfg, seed=2)
    Checkpointer(other, save_dir=str(tmp_path / "elsewhere")).save("other")
    weight_file = str(tmp_path / "elsewhere" / "other.pth")

    def loaded(cfg, ckpt):
        model = tiny_model(cfg, seed=3)
        source = tool.load_weights(cfg, model, ckpt, logger)
        return source, model.state_dict()["rpn.head.conv.weight"]

    source, weight = loaded(cfg, None)  # OUTPUT_DIR has a last_checkpoint
    assert source.endswith("model_final.pth") and torch.equal(weight, trained.state_dict()["rpn.head.conv.weight"])
    source, weight = loaded(cfg, weight_file)  # --ckpt wins
    assert source == weight_file and torch.equal(weight, other.state_dict()["rpn.head.conv.weight"])
    no_run = tiny_cfg(tmp_path / "empty", "MODEL.WEIGHT", weight_file)  # no last_checkpoint: MODEL.WEIGHT
    source, weight = loaded(no_run, None)
    assert source == weight_file and torch.equal(weight, other.state_dict()["rpn.head.conv.weight"])
    source, _ = loaded(tiny_cfg(tmp_path / "empty"), None)
    assert source == ""


@pytest.mark.slow
def test_test_net_reproduces_run_test_on_a_saved_checkpoint(tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    monkeypatch.setenv("MASKRCNN_DATA_DIR", data_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): identical float results
    try:
        cfg = tiny_cfg(tmp_path / "train", "DATASETS.SHAPES.NUM_VAL_IMAGES", 4)
        # channels-last as tools/train_net.py leaves a model (MODEL.CHANNELS_LAST): test_net does the same
        model = channels_last_from_cfg(cfg, tiny_model(cfg, seed=5))
        checkpoint = Checkpointer(model, save_dir=str(tmp_path / "train")).save("model_0000010")
        in_process = run_test(cfg, model, distributed=False)
    finally:
        torch.set_num_threads(threads)
    config_file = str(tmp_path / "tiny.yaml")
    save_config(cfg, config_file)

    out = tmp_path / "test"
    done = subprocess.run(
        [sys.executable, TEST_NET, "--config-file", config_file, "--ckpt", checkpoint, "OUTPUT_DIR", str(out)],
        capture_output=True, text=True, env=_env(MASKRCNN_DATA_DIR=data_dir), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    written = json.loads((out / "inference" / "shapes_val" / "coco_results.json").read_text())
    assert written["results"] == in_process["shapes_val"]
    for line in format_results_table(in_process).splitlines():
        assert line in done.stdout
    assert_same_predictions(
        torch.load(out / "inference" / "shapes_val" / "predictions.pth", weights_only=False),
        torch.load(tmp_path / "train" / "inference" / "shapes_val" / "predictions.pth", weights_only=False))
    assert (out / "inference" / "log.txt").is_file() and (out / "inference" / "config.yml").is_file()


def test_test_net_evaluates_an_int8_backbone_with_test_int8(tmp_path):
    data_dir = str(tmp_path / "data")
    cfg = tiny_cfg(tmp_path / "train", "DATASETS.SHAPES.NUM_VAL_IMAGES", 4)
    checkpoint = Checkpointer(tiny_model(cfg, seed=5), save_dir=str(tmp_path / "train")).save("model_0000010")
    config_file = str(tmp_path / "tiny.yaml")
    save_config(cfg, config_file)

    out = tmp_path / "test"
    done = subprocess.run(
        [sys.executable, TEST_NET, "--config-file", config_file, "--ckpt", checkpoint, "OUTPUT_DIR", str(out),
         "TEST.INT8", "True", "TEST.INT8_CALIBRATION_IMAGES", "3"],
        capture_output=True, text=True, env=_env(MASKRCNN_DATA_DIR=data_dir), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "inference" / "log.txt").read_text()
    assert "Quantized the backbone to int8 (x86 engine), calibrated on 3 images" in log
    written = json.loads((out / "inference" / "shapes_val" / "coco_results.json").read_text())
    assert {"bbox", "segm"} <= set(written["results"])
    assert len(torch.load(out / "inference" / "shapes_val" / "predictions.pth", weights_only=False)) == 4
