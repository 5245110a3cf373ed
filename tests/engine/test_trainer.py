"""do_train and tools/train_net.py in this process: outputs (metrics.json, TensorBoard,
checkpoints), periodic evaluation, the NaN stop, mixed precision, seeds, fine-tuning weights."""
import json
import logging
import math
import os
import subprocess
import sys
import types

import pytest
import torch

from maskrcnn.engine.trainer import autocast_context, check_losses_finite, make_grad_scaler
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.utils.checkpoint import Checkpointer
from maskrcnn.utils.metrics_json import MetricsWriter, read_metrics, replace_record

from train_opts import TRAIN_NET

LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
TRAIN_KEYS = {"iteration", "lr", "loss", "time", "data_time", "eta_seconds", "max_mem_mb"} | LOSSES
EVAL = {"shapes_val": {"bbox": {"AP": 0.25, "AP50": 0.5}, "segm": {"AP": 0.125}}}


@pytest.fixture
def fake_inference(monkeypatch):
    """maskrcnn.engine.inference replaced by a recorder honouring engine-infer's contract."""
    calls = []

    def run_test(cfg, model, distributed, output_dir=None):
        calls.append(dict(distributed=distributed, output_dir=output_dir))
        model.eval()  # as inference does; the trainer must switch back
        return EVAL

    module = types.SimpleNamespace(run_test=run_test, format_results_table=lambda r: json.dumps(r))
    monkeypatch.setitem(sys.modules, "maskrcnn.engine.inference", module)
    return calls


def _train(train_net, c):
    return train_net.train(c, 0, False, logging.getLogger("maskrcnn"))


@pytest.mark.slow
def test_outputs_metrics_and_periodic_evaluation(train_net, make_cfg, fake_inference):
    c = make_cfg("SOLVER.MAX_ITER", 4, "SOLVER.TEST_PERIOD", 2, "SOLVER.LOG_PERIOD", 1)
    model = _train(train_net, c)
    out = c.OUTPUT_DIR
    records = read_metrics(os.path.join(out, "metrics.json"))
    train_lines = [r for r in records if "lr" in r]
    assert [r["iteration"] for r in train_lines] == [1, 2, 3, 4]
    for r in train_lines:
        assert set(r) == TRAIN_KEYS
        assert all(isinstance(v, float) and math.isfinite(v) for k, v in r.items() if k != "iteration")
        assert r["max_mem_mb"] > 0 and r["time"] > 0
    assert train_lines[-1]["eta_seconds"] == 0
    # warm-up over 2 iterations from BASE_LR / 3, then BASE_LR (the lr each step used)
    assert [r["lr"] for r in train_lines[:3]] == pytest.approx([0.002 / 3, 0.002 * 2 / 3, 0.002])
    # evaluation at 2 only: the one after the last iteration is train_net's final test
    eval_lines = [r for r in records if "shapes_val/bbox/AP" in r]
    assert eval_lines == [{"iteration": 2, "shapes_val/bbox/AP": 0.25, "shapes_val/bbox/AP50": 0.5,
                           "shapes_val/segm/AP": 0.125}]
    assert fake_inference == [dict(distributed=False, output_dir=os.path.join(out, "iter_0000002"))]
    (val,) = [r for r in records if "val/loss" in r]
    assert set(val) == {"iteration", "val/loss"} | {f"val/{k}" for k in LOSSES}
    assert val["iteration"] == 2
    assert val["val/loss"] == pytest.approx(sum(val[f"val/{k}"] for k in LOSSES), rel=1e-5)
    assert model.training  # back in training mode after the evaluation

    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == ["model_0000003.pth", "model_final.pth"]
    assert Checkpointer(model, save_dir=out).get_checkpoint_file().endswith("model_final.pth")
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == 4 and final["seed"] == 7
    assert len(final["rng_states"]) == 1 and "torch" in final["rng_states"][0]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(out, "tensorboard")))

    # the final test adds one evaluation line at MAX_ITER, also when run again
    for _ in range(2):
        train_net.run_final_test(c, model, False, logging.getLogger("maskrcnn"))
    records = read_metrics(os.path.join(out, "metrics.json"))
    assert [r["iteration"] for r in records if "shapes_val/segm/AP" in r] == [2, 4]


def test_metrics_writer_resume_drops_later_and_partial_lines(tmp_path):
    path = str(tmp_path / "metrics.json")
    writer = MetricsWriter(path)
    for it in (1, 2, 3, 4):
        writer.write(it, {"loss": it / 2})
    writer.close()
    with open(path, "a") as f:
        f.write('{"iteration": 5, "lo')  # killed in the middle of a line
    writer = MetricsWriter(path, resume_iteration=2)
    writer.write(3, {"loss": 9.0, "ap": float("nan")})
    writer.close()
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert lines == [{"iteration": 1, "loss": 0.5}, {"iteration": 2, "loss": 1.0},
                     {"iteration": 3, "loss": 9.0, "ap": None}]
    replace_record(path, 3, {"ap": 1.0})
    replace_record(path, 3, {"ap": 2.0})
    assert read_metrics(path)[-2:] == [{"iteration": 3, "loss": 9.0, "ap": None}, {"iteration": 3, "ap": 2.0}]


def test_nan_loss_stops_and_leaves_a_loadable_checkpoint(train_net, make_cfg, monkeypatch):
    def build_with_nan(cfg):
        model = build_detection_model(cfg)
        calls = []

        def poison(module, inputs, losses):
            calls.append(1)
            if len(calls) == 5:
                losses = dict(losses)
                losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
            return losses

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(train_net, "build_detection_model", build_with_nan)
    c = make_cfg("SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 3)
    with pytest.raises(FloatingPointError) as info:
        _train(train_net, c)
    message = str(info.value)
    assert "iteration 5" in message and "loss_box_reg=nan" in message
    for name in LOSSES - {"loss_box_reg"}:
        assert f"{name}=" in message
    checkpoint = os.path.join(c.OUTPUT_DIR, "model_0000003.pth")
    assert f"Last good checkpoint: {checkpoint}" in message
    assert sorted(f for f in os.listdir(c.OUTPUT_DIR) if f.endswith(".pth")) == ["model_0000003.pth"]
    model = build_detection_model(c)
    extra = Checkpointer(model, save_dir=c.OUTPUT_DIR).load()
    assert extra["iteration"] == 3
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    assert [r["iteration"] for r in read_metrics(os.path.join(c.OUTPUT_DIR, "metrics.json"))] == [1, 2, 3, 4]


def test_check_losses_finite_names_every_term():
    check_losses_finite({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, 3, None)
    with pytest.raises(FloatingPointError, match=r"iteration 3 .*a=1.0, b=inf\. Last good checkpoint: "
                                                 r"none written yet"):
        check_losses_finite({"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))}, 3, None)


def test_bfloat16_autocast_train_steps_on_cpu(train_net, make_cfg, monkeypatch):
    seen = []

    def build_recording(cfg):
        model = build_detection_model(cfg)
        model.backbone.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
        return model

    monkeypatch.setattr(train_net, "build_detection_model", build_recording)
    c = make_cfg("DTYPE", "bfloat16", "SOLVER.MAX_ITER", 2, "SOLVER.CHECKPOINT_PERIOD", 0)
    torch.manual_seed(7)
    initial = {k: v.clone() for k, v in build_detection_model(c).state_dict().items()}
    model = _train(train_net, c)
    assert seen == [torch.bfloat16, torch.bfloat16]
    state = model.state_dict()
    assert all(v.dtype == initial[k].dtype for k, v in state.items())  # weights stay float32
    assert all(torch.isfinite(v).all() for v in state.values())
    changed = [k for k in state if not torch.equal(state[k], initial[k])]
    assert "roi_heads.box.predictor.cls_score.weight" in changed
    records = read_metrics(os.path.join(c.OUTPUT_DIR, "metrics.json"))
    assert [r["iteration"] for r in records] == [1, 2]


def test_float16_uses_a_grad_scaler_that_is_checkpointed(train_net, make_cfg):
    assert make_grad_scaler("float16", "cpu").is_enabled()
    assert not make_grad_scaler("bfloat16", "cpu").is_enabled()
    assert not make_grad_scaler("float32", "cpu").is_enabled()
    with autocast_context("float16", "cpu"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float16
    with pytest.raises(ValueError, match="DTYPE"):
        autocast_context("float64", "cpu")
    c = make_cfg("DTYPE", "float16", "SOLVER.MAX_ITER", 1, "SOLVER.CHECKPOINT_PERIOD", 0)
    _train(train_net, c)
    final = torch.load(os.path.join(c.OUTPUT_DIR, "model_final.pth"), weights_only=True)
    assert final["grad_scaler"]["scale"] > 0 and "_growth_tracker" in final["grad_scaler"]


def test_seed_minus_one_is_picked_then_reused(make_cfg):
    c = make_cfg("SEED", -1)
    assert 0 <= c.SEED < 2 ** 31 and c.is_frozen()
    os.makedirs(c.OUTPUT_DIR, exist_ok=True)
    Checkpointer(torch.nn.Linear(1, 1), save_dir=c.OUTPUT_DIR).save("model_0000001", iteration=1, seed=1234)
    again = make_cfg("SEED", -1)
    assert again.SEED == 1234
    assert make_cfg("SEED", 5).SEED == 5


def test_model_weight_initialises_a_fresh_run_with_other_classes(train_net, make_cfg, tmp_path, caplog):
    source = make_cfg("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 6)
    donor = build_detection_model(source)
    weights = str(tmp_path / "donor.pth")
    Checkpointer(donor, torch.optim.SGD(donor.parameters(), lr=0.1), save_dir=str(tmp_path)).save(
        "donor", iteration=6)
    c = make_cfg("MODEL.WEIGHT", weights, "SOLVER.MAX_ITER", 1, "SOLVER.CHECKPOINT_PERIOD", 0)
    with caplog.at_level(logging.WARNING):
        model = _train(train_net, c)
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "roi_heads.box.predictor.cls_score.weight" in warning
    assert "roi_heads.box.predictor.bbox_pred.weight" in warning
    # a fresh run: the donor's iteration and optimizer are not taken over
    assert torch.load(os.path.join(c.OUTPUT_DIR, "model_final.pth"), weights_only=True)["iteration"] == 1
    assert model.roi_heads.box.predictor.cls_score.weight.shape[0] == 4
    # other weights came from the donor (FrozenBatchNorm statistics are never trained)
    key = "backbone.body.stem.bn1.weight"
    assert torch.equal(model.state_dict()[key], donor.state_dict()[key])


def test_model_weight_with_other_backbone_shapes_is_an_error(train_net, make_cfg, tmp_path):
    donor = build_detection_model(make_cfg("MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 16))
    weights = str(tmp_path / "donor.pth")
    Checkpointer(donor, save_dir=str(tmp_path)).save("donor")
    c = make_cfg("MODEL.WEIGHT", weights, "SOLVER.MAX_ITER", 1)
    with pytest.raises(RuntimeError, match="backbone.fpn"):
        _train(train_net, c)


def test_parser_accepts_maskrcnn_benchmark_arguments(train_net):
    args = train_net.build_parser().parse_args(
        ["--config-file", "x.yaml", "--local_rank", "1", "--skip-test", "SOLVER.MAX_ITER", "2"])
    assert (args.config_file, args.local_rank, args.skip_test, args.opts) == (
        "x.yaml", 1, True, ["SOLVER.MAX_ITER", "2"])
    assert not train_net.build_parser().parse_args([]).skip_test


def test_help_exits_0_and_documents_torchrun():
    result = subprocess.run([sys.executable, TRAIN_NET, "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for text in ("--config-file", "--skip-test", "--local_rank", "torchrun", "--nnodes",
                 "--node_rank", "MODEL.DEVICE", "DTYPE", "last_checkpoint", "metrics.json"):
        assert text in result.stdout
