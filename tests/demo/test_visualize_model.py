"""A model's detections on the first validation images in one PNG: render_model_predictions (what
`make train` calls) and tools/visualize.py --source model, on a tiny generated shapes split."""
import os

import cv2

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.visualization import build_plain_dataset, render_model_predictions
from tests.tool_modules import load_script
from tiny_detector import detecting_config_file, detecting_model, tiny_cfg  # noqa: F401 (fixture)

TINY_SHAPES = ["DATASETS.SHAPES.NUM_VAL_IMAGES", 3, "DATASETS.SHAPES.IMAGE_SIZE", 64]


def test_render_model_predictions(shapes_data_dir, tmp_path):
    cfg = tiny_cfg(tmp_path / "output", *TINY_SHAPES)
    cfg.freeze()  # as tools/train_net.py hands it over
    output = str(tmp_path / "pictures" / "detections.png")
    assert render_model_predictions(cfg, output, num_images=2, model=detecting_model(cfg),
                                    confidence_threshold=0.5) == output
    grid = cv2.imread(output)
    # two cells side by side, each ground truth | detections of a 64-pixel image enlarged to 320
    assert grid.shape == (320 + 2 * 4, 2 * (2 * 320 + 4) + 3 * 4, 3)


def test_visualize_tool_runs_the_trained_model(shapes_data_dir, detecting_config_file, tmp_path, capsys):
    config_file, _ = detecting_config_file
    tool = load_script("tools/visualize.py", "visualize_tool")
    folder = tmp_path / "detections"
    code = tool.main(["--config-file", config_file, "--source", "model", "--num-images", "2",
                      "--output", str(folder)] + [str(v) for v in TINY_SHAPES])
    assert code == 0
    assert sorted(os.listdir(folder)) == ["000000.png", "000001.png"]
    assert "2 images of shapes_val" in capsys.readouterr().out
    # the weights of MODEL.WEIGHT were loaded: a random model scores no box above 0.5
    cfg = default_cfg.clone()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(TINY_SHAPES)
    raw = build_plain_dataset(cfg, "shapes_val")[0][0]
    raw = cv2.resize(raw, None, fx=5, fy=5, interpolation=cv2.INTER_NEAREST)
    drawn = cv2.imread(str(folder / "000000.png"))
    assert drawn.shape == raw.shape and (drawn != raw).any(axis=2).mean() > 0.01
