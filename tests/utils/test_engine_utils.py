import logging

import pytest
import torch
import yaml

from maskrcnn.config import cfg as default_cfg
from maskrcnn.utils.collect_env import collect_env_info
from maskrcnn.utils.logger import setup_logger
from maskrcnn.utils.metric_logger import MetricLogger, SmoothedValue
from maskrcnn.utils.miscellaneous import mkdir, save_config


def test_smoothed_value_window_and_global():
    v = SmoothedValue(window_size=3)
    for x in [10.0, 1.0, 2.0, 3.0, 100.0]:
        v.update(x)
    assert v.median == 3.0  # window holds 2, 3, 100
    assert v.avg == pytest.approx(35.0)
    assert v.global_avg == pytest.approx(116.0 / 5)
    assert v.count == 5


def test_metric_logger():
    m = MetricLogger(delimiter="  ")
    m.update(loss=torch.tensor(2.0), time=0.5)
    m.update(loss=4.0, time=1.5)
    assert m.loss is m.meters["loss"]
    assert m.loss.global_avg == 3.0
    # median of an even-sized window is the lower middle value (torch.median)
    assert str(m) == "loss: 2.0000 (3.0000)  time: 0.5000 (1.0000)"
    with pytest.raises(AttributeError, match="nope"):
        m.nope
    with pytest.raises(TypeError, match="loss"):
        m.update(loss="x")


def test_setup_logger_rank0_file_and_no_duplicates(tmp_path, capsys):
    name = "maskrcnn.test_setup_logger"
    logger = setup_logger(name, str(tmp_path), 0)
    logger = setup_logger(name, str(tmp_path), 0)  # again: handlers replaced, not added
    logger.info("hello %d", 7)
    for h in logger.handlers:
        h.flush()
    assert capsys.readouterr().out.count("hello 7") == 1
    text = (tmp_path / "log.txt").read_text()
    assert text.count("hello 7") == 1 and "INFO" in text and name in text
    other = setup_logger(name, str(tmp_path / "r1"), 1)  # non-main ranks: no handlers
    assert other.handlers == [] and not (tmp_path / "r1").exists()
    logging.getLogger(name).handlers.clear()


def test_collect_env_info():
    info = collect_env_info()
    assert torch.__version__ in info
    assert "CUDA available" in info
    from maskrcnn._ext import load_ops

    assert f"compiled_with_cuda={bool(load_ops().compiled_with_cuda())}" in info


def test_mkdir_and_save_config_round_trip(tmp_path):
    d = tmp_path / "a" / "b"
    mkdir(str(d))
    mkdir(str(d))  # existing is fine
    assert d.is_dir()
    cfg = default_cfg.clone()
    cfg.SOLVER.BASE_LR = 0.123
    cfg.SOLVER.STEPS = (7, 9)
    save_config(cfg, str(d / "config.yml"))
    loaded = default_cfg.clone()
    loaded.merge_from_file(str(d / "config.yml"))
    assert loaded.SOLVER.BASE_LR == 0.123
    assert tuple(loaded.SOLVER.STEPS) == (7, 9)
    text = (d / "config.yml").read_text()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(loaded.dump()) == yaml.safe_load(cfg.dump())
