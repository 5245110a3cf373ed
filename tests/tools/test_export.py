"""tools/export.py: a tiny R-18-FPN Mask R-CNN exported with torch.export and to ONNX, run at two
image sizes with one file each, against the eager model; and the tool's argument errors.

The model keeps its seeded random initialisation (small weights: scores stay well inside (0, 1), so
no two detections tie at a saturated score that runtimes could order differently), with the
classifier's bias tilted so that it detects mostly class 1 but several classes, on a smooth random
image; the assertions check that it does.
"""
import numpy as np
import pytest
import torch

from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.export import ExportableDetector, check_exportable
from maskrcnn.structures.box_convention import set_legacy_plus_one
from tests.tiny_models import CPU_4_CLASSES, MASK_FPN, R18_FPN, make_cfg, seeded_model
from tests.tool_modules import load_script

# the tiny R-18-FPN Mask R-CNN keeping more proposals and detections, on 128 px test images
TINY_MASK_RCNN = CPU_4_CLASSES + R18_FPN + MASK_FPN + [
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 200,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 20,
    "INPUT.MIN_SIZE_TEST", 128,
]
SIZES = ((128, 160), (192, 128))  # the traced size, then another one


def _load_tool():
    return load_script("tools/export.py", "export_tool")


@pytest.fixture(autouse=True)
def _restore_box_convention():
    yield
    set_legacy_plus_one(True)


def _decisive_weights(model):
    """Tilt the classifier towards class 1 (see the module docstring); the weights keep their
    small initial scale, so no score saturates at 1 (saturated scores tie, and ties may be
    ordered differently by different runtimes)."""
    with torch.no_grad():
        model.roi_heads.box.predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.4, 0.1, 0.0]))


def _image(height, width, seed):
    """A smooth random image (blobs rather than pixel noise), as the preprocessing leaves it."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, height // 16, width // 16, generator=generator) * 60
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(eager ExportableDetector, .pt2 path, .onnx path), both written by tools/export.py."""
    folder = tmp_path_factory.mktemp("export")
    cfg = make_cfg(*TINY_MASK_RCNN)
    model = seeded_model(cfg)
    _decisive_weights(model)
    ckpt = str(folder / "model.pth")
    torch.save({"model": model.state_dict()}, ckpt)
    config_file = str(folder / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(cfg.dump())
    tool = _load_tool()
    paths = {}
    for fmt, suffix in (("export", "pt2"), ("onnx", "onnx")):
        paths[fmt] = str(folder / f"tiny.{suffix}")
        argv = ["--config-file", config_file, "--ckpt", ckpt, "--format", fmt, "--output", paths[fmt],
                "--height", str(SIZES[0][0]), "--width", str(SIZES[0][1])]
        assert tool.main(argv) == 0
    # the eager reference: the same weights, unfolded batch norms
    model.eval()
    set_legacy_plus_one(True)
    return ExportableDetector(model).eval(), paths["export"], paths["onnx"]


def _eager(detector, image):
    with torch.no_grad():
        return [t.numpy() for t in detector(image)]


def _assert_same_detections(expected, actual, box_atol):
    boxes, scores, labels, masks = expected
    assert len(boxes) > 0, "the test model should detect something"
    assert len(set(labels.tolist())) > 1, "the test model should detect several classes"
    assert scores.max() < 0.999 and len(np.unique(scores)) == len(scores), "scores should not tie"
    assert actual[0].shape == boxes.shape
    np.testing.assert_allclose(actual[0], boxes, rtol=0, atol=box_atol)
    np.testing.assert_allclose(actual[1], scores, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(actual[2], labels)
    assert actual[3].shape == masks.shape == (len(boxes), 1, 14, 14)
    np.testing.assert_allclose(actual[3], masks, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_torch_export_program_matches_eager(exported, size):
    detector, program_path, _ = exported
    module = torch.export.load(program_path).module()
    image = _image(*size, seed=size[0])
    with torch.no_grad():
        actual = [t.numpy() for t in module(image)]
    _assert_same_detections(_eager(detector, image), actual, box_atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_onnxruntime_matches_eager(exported, size):
    onnxruntime = pytest.importorskip("onnxruntime")
    detector, _, onnx_path = exported
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels", "masks"]
    image = _image(*size, seed=size[0])
    actual = session.run(None, {"image": image.numpy()})
    _assert_same_detections(_eager(detector, image), actual, box_atol=1e-3)


def test_exportable_detector_equals_model_output():
    model = seeded_model(make_cfg(*TINY_MASK_RCNN)).eval()
    _decisive_weights(model)
    image = _image(128, 160, seed=3)
    with torch.no_grad():
        boxes, scores, labels, masks = ExportableDetector(model)(image)
        expected = model(image)[0]
    assert torch.equal(boxes, expected.bbox)
    assert torch.equal(labels, expected.get_field("labels"))
    assert torch.equal(masks, expected.get_field("mask"))
    with pytest.raises(ValueError, match="multiples of 32"):
        ExportableDetector(model)(_image(128, 150, seed=3))


def test_unsupported_models_are_refused():
    cfg = make_cfg(*TINY_MASK_RCNN, "MODEL.MASK_ON", False, "MODEL.RPN_ONLY", True)
    with pytest.raises(ValueError, match="RPN-only"):
        check_exportable(build_detection_model(cfg))
    cfg = make_cfg(*TINY_MASK_RCNN, "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS", True)
    with pytest.raises(ValueError, match="POSTPROCESS_MASKS"):
        check_exportable(build_detection_model(cfg))


def test_help_documents_the_interface(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--format", "--ckpt", "--height", "--width", "PIXEL_MEAN", "SIZE_DIVISIBILITY", "masks"):
        assert word in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "tflite", "--output", "x.onnx"], "invalid choice: 'tflite'"),
        (["--format", "onnx", "--output", "x.onnx", "--ckpt", "missing.pth"], "--ckpt missing.pth: no such checkpoint file"),
        (["--format", "onnx", "--output", "no/such/dir/x.onnx"], "--output no/such/dir/x.onnx: directory"),
        (["--format", "onnx", "--output", "x.onnx", "--min-size", "512", "--max-size", "256"], "exceeds --max-size"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(make_cfg(*TINY_MASK_RCNN).dump())
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(["--config-file", str(config_file)] + extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_config_file_gives_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_tool().main(["--config-file", str(tmp_path / "none.yaml"), "--format", "onnx", "--output", "x.onnx"])
    assert exit_info.value.code == 2
    assert "none.yaml: no such file" in capsys.readouterr().err
