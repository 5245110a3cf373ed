"""engine/inference.py in one process: run_test on a small shapes subset with a tiny Mask R-CNN, an
oracle model that must score AP 1.0, the gathering checks and the results table."""
import json

import pytest
import torch

from maskrcnn.data import make_data_loader
from maskrcnn.data.transforms import build_transforms
from maskrcnn.engine import inference as inference_module
from maskrcnn.engine.inference import (
    compute_on_dataset, format_results_table, inference, iou_types_from_cfg, results_to_dict, run_test,
)
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.box_convention import set_legacy_plus_one

from inference_helpers import OracleDetector, tiny_cfg, tiny_model

AP_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


@pytest.fixture(autouse=True)
def _shapes_data(tmp_path_factory, monkeypatch):
    """One small generated shapes set for the whole module (generation is deterministic)."""
    monkeypatch.setenv("MASKRCNN_DATA_DIR", str(tmp_path_factory.getbasetemp() / "shapes_data"))
    yield
    set_legacy_plus_one(True)  # build_detection_model sets the process-wide box convention


def test_run_test_mask_rcnn_writes_results_and_restores_train_mode(tmp_path):
    cfg = tiny_cfg(tmp_path / "out")
    model = tiny_model(cfg).train()
    results = run_test(cfg, model, distributed=False)

    assert model.training, "run_test must put the model back in train mode"
    assert list(results) == ["shapes_val"]
    assert list(results["shapes_val"]) == ["bbox", "segm"]
    for metrics in results["shapes_val"].values():
        assert list(metrics) == AP_METRICS
        assert all(isinstance(v, float) and (v == -1.0 or 0.0 <= v <= 1.0) for v in metrics.values())

    folder = tmp_path / "out" / "inference" / "shapes_val"
    predictions = torch.load(folder / "predictions.pth", weights_only=False)
    assert len(predictions) == cfg.DATASETS.SHAPES.NUM_VAL_IMAGES
    assert all(isinstance(p, BoxList) for p in predictions)
    assert sum(len(p) for p in predictions) > 0
    assert all(p.has_field("mask") and p.has_field("scores") and p.has_field("labels") for p in predictions)
    written = json.loads((folder / "coco_results.json").read_text())
    assert written["results"] == results["shapes_val"]
    assert (folder / "bbox.json").is_file() and (folder / "segm.json").is_file()



def test_oracle_predictions_score_ap_one(tmp_path):
    """Ground truth answered per image must evaluate to AP 1.0: predictions are keyed, ordered and
    evaluated against the right images."""
    cfg = tiny_cfg(tmp_path / "out", "TEST.IMS_PER_BATCH", 4)  # 5 images: batches of 4 and 1
    (loader,) = make_data_loader(cfg, is_train=False)
    oracle = OracleDetector(loader.dataset)
    oracle.eval()
    results = run_test(cfg, oracle, distributed=False, output_dir=str(tmp_path / "elsewhere"))["shapes_val"]
    assert not oracle.training, "a model in eval mode stays in eval mode"
    assert (tmp_path / "elsewhere" / "inference" / "shapes_val" / "predictions.pth").is_file()
    assert results["bbox"]["AP"] == pytest.approx(1.0)
    assert results["segm"]["AP50"] == pytest.approx(1.0)
    assert results["segm"]["AP"] > 0.9  # rasterised polygons vs. COCO's own rasterisation


def test_compute_on_dataset_keys_by_index_and_times(tmp_path):
    from maskrcnn.utils.timer import Timer

    cfg = tiny_cfg(tmp_path / "out", "TEST.IMS_PER_BATCH", 4)
    (loader,) = make_data_loader(cfg, is_train=False)
    oracle = OracleDetector(loader.dataset)
    timer = Timer()
    predictions = compute_on_dataset(oracle, loader, "cpu", timer=timer, progress=False)
    assert sorted(predictions) == list(range(len(loader.dataset)))
    assert timer.calls == len(loader) == 2
    for index, prediction in predictions.items():
        image, target, _ = loader.dataset[index]
        torch.testing.assert_close(prediction.bbox, target.bbox)


def test_predictions_can_be_changed_in_place(tmp_path):
    """(inference_mode tensors could not be: BoxList.clip_to_image clamps in place.)"""
    cfg = tiny_cfg(tmp_path / "out", "DATASETS.SHAPES.NUM_VAL_IMAGES", 2)
    (loader,) = make_data_loader(cfg, is_train=False)
    predictions = compute_on_dataset(tiny_model(cfg).eval(), loader, "cpu", progress=False)
    prediction = predictions[0]
    assert len(prediction) > 0
    prediction.bbox[:, 2:] += 1000
    clipped = prediction.clip_to_image(remove_empty=False)
    assert clipped.bbox[:, 2].max() <= 63 and clipped.bbox[:, 3].max() <= 63


def test_progress_bar_when_asked(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path / "out", "DATASETS.SHAPES.NUM_VAL_IMAGES", 2)
    (loader,) = make_data_loader(cfg, is_train=False)
    compute_on_dataset(OracleDetector(loader.dataset), loader, "cpu", progress=True)
    assert "inference" in capsys.readouterr().err  # tqdm writes to stderr


def test_inference_without_output_folder_writes_nothing(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path / "out", "DATASETS.SHAPES.NUM_VAL_IMAGES", 2)
    (loader,) = make_data_loader(cfg, is_train=False)
    monkeypatch.chdir(tmp_path)
    result = inference(OracleDetector(loader.dataset), loader, "shapes_val", iou_types=("bbox",),
                       output_folder=None, progress=False)
    assert results_to_dict(result)["bbox"]["AP"] == pytest.approx(1.0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "predictions.pth").exists()


def test_missing_images_after_gathering_are_an_error():
    boxlist = BoxList(torch.zeros(0, 4), (10, 10))
    with pytest.raises(RuntimeError, match=r"missing indices \[1, 3\]"):
        inference_module._accumulate_predictions_from_multiple_gpus({0: boxlist, 2: boxlist}, 4)
    with pytest.raises(RuntimeError, match=r"unexpected indices \[5\]"):
        inference_module._accumulate_predictions_from_multiple_gpus({0: boxlist, 5: boxlist}, 1)
    ordered = inference_module._accumulate_predictions_from_multiple_gpus({1: "b", 0: "a"}, 2)
    assert ordered == ["a", "b"]


def test_iou_types_from_cfg(tmp_path):
    cfg = tiny_cfg(tmp_path)
    assert iou_types_from_cfg(cfg) == (("bbox", "segm"), False)
    cfg.merge_from_list(["MODEL.KEYPOINT_ON", True])
    assert iou_types_from_cfg(cfg) == (("bbox", "segm", "keypoints"), False)
    cfg.merge_from_list(["MODEL.MASK_ON", False, "MODEL.KEYPOINT_ON", False, "MODEL.RPN_ONLY", True])
    assert iou_types_from_cfg(cfg) == (("box_proposal",), True)
    cfg.merge_from_list(["MODEL.RETINANET_ON", True])
    assert iou_types_from_cfg(cfg) == (("bbox",), False)


def test_tta_refused_for_rpn_only_models(tmp_path):
    cfg = tiny_cfg(tmp_path, "MODEL.MASK_ON", False, "MODEL.RPN_ONLY", True, "TEST.BBOX_AUG.ENABLED", True)
    with pytest.raises(ValueError, match="TEST.BBOX_AUG.ENABLED.*MODEL.RPN_ONLY"):
        run_test(cfg, torch.nn.Linear(1, 1), distributed=False)


def test_format_results_table():
    results = {
        "shapes_val": {
            "bbox": dict(zip(AP_METRICS, [0.5, 0.75, 0.25, -1.0, 0.125, 0.0625])),
            "keypoints": {"AP": 0.3, "AP50": 0.6, "AP75": 0.1, "APm": 0.2, "APl": 0.4},
        },
        "proposals_val": {"box_proposal": {"AR@100": 0.42, "AR@1000": 0.5}},
    }
    table = format_results_table(results)
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "iou", "type"] + AP_METRICS
    assert lines[2].split() == ["shapes_val", "bbox", "0.5000", "0.7500", "0.2500", "n/a", "0.1250", "0.0625"]
    assert lines[3].split() == ["shapes_val", "keypoints", "0.3000", "0.6000", "0.1000", "-", "0.2000", "0.4000"]
    proposals = table.split("\n\n")[1].splitlines()
    assert proposals[0].split() == ["dataset", "iou", "type", "AR@100", "AR@1000"]
    assert proposals[2].split() == ["proposals_val", "box_proposal", "0.4200", "0.5000"]
    assert format_results_table({}) == "(no results)"


def test_results_to_dict_reads_voc_and_rejects_unknown():
    assert results_to_dict({"map": 0.5, "ap": [0.5]}) == {"bbox": {"mAP": 0.5}}
    with pytest.raises(TypeError, match="int"):
        results_to_dict(3)


def test_tta_loader_hands_raw_images(tmp_path):
    import numpy as np

    cfg = tiny_cfg(tmp_path, "TEST.BBOX_AUG.ENABLED", True, "DATASETS.SHAPES.NUM_VAL_IMAGES", 3)
    (loader,) = make_data_loader(cfg, is_train=False)
    images, targets, indices = next(iter(loader))
    assert indices == (0, 1)
    assert all(isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.shape == (64, 64, 3) for im in images)
    # the plain loader's first image is the same picture, transformed
    transformed, _ = build_transforms(cfg, is_train=False)(images[0], None)
    assert transformed.shape == (3, 64, 64)
