"""tools/plot_metrics.py and maskrcnn/utils/metrics_plot.py on synthetic metrics.json files."""
import json

import cv2
import pytest

from maskrcnn.utils.metrics_plot import MetricsFormatError, load_metrics, plot_metrics
from tests.tool_modules import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/plot_metrics.py", "plot_metrics_tool")


def training_line(iteration, loss):
    return {"iteration": iteration, "lr": 0.001 * min(1.0, iteration / 40), "loss": loss,
            "loss_classifier": loss * 0.4, "loss_box_reg": loss * 0.3, "loss_mask": loss * 0.2,
            "loss_objectness": loss * 0.1, "time": 0.6, "data_time": 0.01, "eta_seconds": 100.0,
            "max_mem_mb": 512.0}


def write_lines(path, records):
    with open(path, "w") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return str(path)


def full_metrics(path):
    records = []
    for iteration in range(20, 201, 20):
        records.append(training_line(iteration, 2.0 / (1 + iteration / 50)))
        if iteration % 100 == 0:
            records.append({"iteration": iteration, "shapes_val/bbox/AP": iteration / 400, "shapes_val/bbox/APl": -1.0,
                            "shapes_val/bbox/AP50": iteration / 300, "shapes_val/segm/AP": iteration / 450})
            records.append({"iteration": iteration, "val/loss": 1.0 / (1 + iteration / 50)})
    # a resumed run writes iteration 200 again: the later line wins
    records.append(training_line(200, 0.25))
    return write_lines(path, records)


def test_plot_all_kinds_of_lines(tool, tmp_path, capsys):
    metrics_file = full_metrics(tmp_path / "metrics.json")
    output = tmp_path / "plot.png"
    assert tool.main([metrics_file, "--output", str(output)]) == 0
    image = cv2.imread(str(output))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600
    assert "5 loss curves" in capsys.readouterr().out
    metrics = load_metrics(metrics_file)
    assert metrics.loss_names()[0] == "loss"
    assert set(metrics.loss_names()) == {"loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness"}
    assert set(metrics.evaluation) == {"shapes_val/bbox/AP", "shapes_val/bbox/AP50", "shapes_val/segm/AP"}
    assert metrics.evaluation["shapes_val/bbox/AP"] == [(100, 0.25), (200, 0.5)]
    assert list(metrics.validation) == ["val/loss"]
    assert metrics.train["loss"][-1] == (200, 0.25)
    assert [i for i, _ in metrics.train["loss"]] == list(range(20, 201, 20))


def test_missing_kinds_of_lines(tmp_path):
    only_training = write_lines(tmp_path / "train.json", [training_line(i, 1.0) for i in (10, 20)])
    plot_metrics(only_training, str(tmp_path / "train.png"))
    assert cv2.imread(str(tmp_path / "train.png")) is not None
    only_eval = write_lines(tmp_path / "eval.json", [{"iteration": 50, "shapes_val/bbox/AP": 0.3}, ""])
    metrics = plot_metrics(only_eval, str(tmp_path / "eval.png"))
    assert metrics.loss_names() == [] and cv2.imread(str(tmp_path / "eval.png")) is not None


def test_malformed_line_names_file_and_line(tool, tmp_path, capsys):
    path = write_lines(tmp_path / "metrics.json", [training_line(10, 1.0), training_line(20, 0.9), '{"iteration": 30, "loss"'])
    with pytest.raises(MetricsFormatError, match=r"metrics\.json, line 3: not valid JSON"):
        load_metrics(path)
    with pytest.raises(SystemExit) as exit_info:
        tool.main([path, "--output", str(tmp_path / "p.png")])
    assert exit_info.value.code == 1
    assert "line 3" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
    no_iteration = write_lines(tmp_path / "bad.json", [{"loss": 1.0}])
    with pytest.raises(MetricsFormatError, match=r"bad\.json, line 1: needs an integer \"iteration\""):
        load_metrics(no_iteration)
    not_object = write_lines(tmp_path / "list.json", ["[1, 2]"])
    with pytest.raises(MetricsFormatError, match="line 1: expected a JSON object"):
        load_metrics(not_object)


def test_empty_and_missing_files(tool, tmp_path):
    empty = write_lines(tmp_path / "empty.json", [])
    with pytest.raises(ValueError, match="no metrics to plot"):
        plot_metrics(empty, str(tmp_path / "empty.png"))
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(tmp_path / "absent.json")])
    assert exit_info.value.code == 2
