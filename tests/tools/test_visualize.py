"""tools/visualize.py on a tiny generated shapes dataset (a private MASKRCNN_DATA_DIR): ground
truth and saved predictions drawn into a grid PNG or a folder of PNGs."""
import os

import cv2
import numpy as np
import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.visualization import build_plain_dataset, load_predictions
from maskrcnn.structures.bounding_box import BoxList
from tests.tool_modules import load_script

TINY_SHAPES = ["DATASETS.SHAPES.NUM_VAL_IMAGES", "3", "DATASETS.SHAPES.IMAGE_SIZE", "64"]
DISPLAY_FACTOR = 5  # 64-pixel images are enlarged to 320 for drawing


@pytest.fixture(scope="module")
def tool():
    return load_script("tools/visualize.py", "visualize_tool")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def raw_images(dataset_name):
    cfg = default_cfg.clone()
    cfg.merge_from_list(TINY_SHAPES)
    dataset = build_plain_dataset(cfg, dataset_name)
    return [dataset[i][0] for i in range(len(dataset))]


def enlarged(image):
    return cv2.resize(image, None, fx=DISPLAY_FACTOR, fy=DISPLAY_FACTOR, interpolation=cv2.INTER_NEAREST)


def test_ground_truth_grid_and_folder(tool, data_dir, tmp_path, capsys):
    grid = tmp_path / "gt.png"
    assert tool.main(["--dataset", "keypoints_shapes_val", "--source", "gt", "--num-images", "3",
                      "--output", str(grid)] + TINY_SHAPES) == 0
    assert "3 images of keypoints_shapes_val" in capsys.readouterr().out
    picture = cv2.imread(str(grid))
    # 2 x 2 cells of 320 pixels and 4-pixel gaps
    assert picture.shape == (2 * 320 + 3 * 4, 2 * 320 + 3 * 4, 3)
    folder = tmp_path / "gt"
    assert tool.main(["--dataset", "shapes_val", "--num-images", "5", "--output", str(folder)] + TINY_SHAPES) == 0
    assert sorted(os.listdir(folder)) == ["000000.png", "000001.png", "000002.png"]
    for index, image in enumerate(raw_images("shapes_val")):
        drawn = cv2.imread(str(folder / ("%06d.png" % index)))
        assert drawn.shape == (320, 320, 3)
        assert (drawn != enlarged(image)).any(axis=2).mean() > 0.02, "annotations drawn over the image"


def test_saved_predictions(tool, data_dir, tmp_path):
    images = raw_images("shapes_val")
    predictions = []
    for _ in images:
        # in the network's input size (96 for 64-pixel images): boxes and masks are mapped back
        prediction = BoxList(torch.tensor([[15.0, 15.0, 60.0, 60.0], [0.0, 0.0, 30.0, 30.0]]), (96, 96))
        prediction.add_field("scores", torch.tensor([0.9, 0.2]))
        prediction.add_field("labels", torch.tensor([2, 1]))
        prediction.add_field("mask", torch.ones(2, 1, 14, 14))
        predictions.append(prediction)
    path = tmp_path / "inference" / "shapes_val" / "predictions.pth"
    path.parent.mkdir(parents=True)
    torch.save(predictions, path)
    assert len(load_predictions(str(path))) == 3
    folder = tmp_path / "pred"
    assert tool.main(["--dataset", "shapes_val", "--source", "predictions", "--predictions", str(path),
                      "--output", str(folder), "--confidence-threshold", "0.5"] + TINY_SHAPES) == 0
    drawn = cv2.imread(str(folder / "000000.png"))
    raw = enlarged(images[0])
    box = slice(10 * DISPLAY_FACTOR, 40 * DISPLAY_FACTOR)  # [15, 60] / 1.5 = [10, 40] in the image
    assert (drawn[box, box] != raw[box, box]).any(axis=2).mean() > 0.9, "mask fill over the whole box"
    corner = slice(45 * DISPLAY_FACTOR, 64 * DISPLAY_FACTOR)
    assert np.array_equal(drawn[corner, corner], raw[corner, corner]), "nothing drawn outside the detection"
    # the 0.2-score detection at the top-left is below the threshold
    assert np.array_equal(drawn[0:8, 0:8], raw[0:8, 0:8])


def test_bad_arguments(tool, data_dir, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--dataset", "shapes_val", "--source", "predictions", "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--dataset", "shapes_val", "--source", "predictions", "--predictions",
                   str(tmp_path / "absent.pth"), "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    wrong_count = tmp_path / "two.pth"
    torch.save([BoxList(torch.zeros(0, 4), (64, 64))] * 2, wrong_count)
    with pytest.raises(ValueError, match="2 predictions for a dataset of 3 images"):
        tool.main(["--dataset", "shapes_val", "--source", "predictions", "--predictions", str(wrong_count),
                   "--output", str(tmp_path / "x.png")] + TINY_SHAPES)
