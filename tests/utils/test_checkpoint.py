import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.solver import WarmupMultiStepLR
from maskrcnn.utils.checkpoint import (
    Checkpointer,
    DetectronCheckpointer,
    get_rng_states,
    set_rng_states,
)


def _build(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = WarmupMultiStepLR(opt, [3, 6], warmup_iters=2)
    return model, opt, sched


def _train(model, opt, sched, steps):
    for _ in range(steps):
        loss = model(torch.randn(5, 4)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _next_numbers():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(2).tolist(),
            torch.rand(3).tolist())


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _build(0)
    _train(model, opt, sched, 4)
    scaler_state = {"scale": 1024.0, "growth_factor": 2.0, "_growth_tracker": 3}
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gauss_next in Python's state
    np.random.randn(1)  # leaves a cached gaussian in NumPy's state
    ckpt = Checkpointer(model, opt, sched, save_dir=str(tmp_path), save_to_disk=True)
    path = ckpt.save("model_0000004", iteration=4, scaler=scaler_state, rng=get_rng_states())
    assert path == os.path.join(str(tmp_path), "model_0000004.pth")
    expected_numbers = _next_numbers()
    _train(model, opt, sched, 3)  # continue the original run
    expected_params = [p.detach().clone() for p in model.state_dict().values()]

    model2, opt2, sched2 = _build(123)  # different init
    ckpt2 = Checkpointer(model2, opt2, sched2, save_dir=str(tmp_path), save_to_disk=True)
    assert ckpt2.has_checkpoint()
    extra = ckpt2.load()
    assert extra["iteration"] == 4 and extra["scaler"] == scaler_state
    assert sched2.last_epoch == 4
    set_rng_states(extra["rng"])
    assert _next_numbers() == expected_numbers
    set_rng_states(extra["rng"])
    _next_numbers()
    _train(model2, opt2, sched2, 3)  # resumed run must match the original bit for bit
    for a, b in zip(expected_params, model2.state_dict().values()):
        assert torch.equal(a, b)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_last_checkpoint_pointer(tmp_path):
    model, opt, sched = _build(0)
    ckpt = Checkpointer(model, opt, sched, save_dir=str(tmp_path), save_to_disk=True)
    assert not ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == ""
    assert ckpt.load() == {}  # nothing to resume from
    ckpt.save("model_a", iteration=1)
    ckpt.save("model_b", iteration=2)
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "model_b.pth")
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_b.pth")
    assert ckpt.load()["iteration"] == 2
    # use_latest=False loads the given file
    assert ckpt.load(str(tmp_path / "model_a.pth"), use_latest=False)["iteration"] == 1
    # no stray temporary files
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_a.pth", "model_b.pth"]


def test_not_saving_when_save_to_disk_false(tmp_path):
    model, _, _ = _build(0)
    assert Checkpointer(model, save_dir=str(tmp_path), save_to_disk=False).save("m") is None
    assert os.listdir(tmp_path) == []


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = _build(0)
    ckpt = Checkpointer(model, opt, sched, save_dir=str(tmp_path), save_to_disk=True)
    ckpt.save("model_final", iteration=7)
    before = (tmp_path / "model_final.pth").read_bytes()
    saved_weight = model[0].weight.detach().clone()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", crashing_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final", iteration=8)  # same name: would overwrite in place
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_next", iteration=9)
    monkeypatch.undo()

    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    model2, _, _ = _build(5)
    extra = Checkpointer(model2, save_dir=str(tmp_path)).load()
    assert extra["iteration"] == 7
    assert torch.equal(model2[0].weight, saved_weight)


class _MakesADirectory:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_weights_only_refuses_code(tmp_path):
    model, _, _ = _build(0)
    evil = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "payload": _MakesADirectory(str(tmp_path / "pwned"))}, evil)
    # the payload is real: an unrestricted load runs it
    torch.save({"payload": _MakesADirectory(str(tmp_path / "control"))}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert (tmp_path / "control").is_dir()

    with pytest.raises(RuntimeError, match="evil.pth"):
        Checkpointer(model, save_dir="").load(str(evil))
    assert not (tmp_path / "pwned").exists()


def test_missing_and_corrupt_files_are_named(tmp_path):
    model, _, _ = _build(0)
    ckpt = Checkpointer(model, save_dir="")
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ckpt.load(missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint at all")
    with pytest.raises(RuntimeError, match="corrupt.pth"):
        ckpt.load(str(corrupt))
    # a last_checkpoint pointing at a vanished file names it
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match="gone.pth"):
        Checkpointer(model, save_dir=str(tmp_path)).load()


def test_moved_output_folder_still_resumes(tmp_path):
    model, _, _ = _build(0)
    a = tmp_path / "a"
    Checkpointer(model, save_dir=str(a), save_to_disk=True).save("model_x", iteration=3)
    b = tmp_path / "b"
    os.rename(a, b)
    assert Checkpointer(model, save_dir=str(b)).load()["iteration"] == 3


def test_detectron_checkpointer_bare_state_dict_and_catalog(tmp_path):
    model, _, _ = _build(0)
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    model2, _, _ = _build(9)
    ckpt = DetectronCheckpointer(default_cfg, model2, save_dir="")
    assert ckpt.load(str(bare)) == {}
    for p, q in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(p, q)
    with pytest.raises(KeyError, match="ModelCatalog"):
        ckpt.load("catalog://ImageNetPretrained/not-a-model")


def test_saved_file_has_umask_mode(tmp_path):
    model, _, _ = _build(0)
    path = Checkpointer(model, save_dir=str(tmp_path), save_to_disk=True).save("m")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_state_round_trip(tmp_path):
    torch.cuda.manual_seed_all(4)
    model, _, _ = _build(0)
    Checkpointer(model, save_dir=str(tmp_path), save_to_disk=True).save("m", rng=get_rng_states())
    expected = torch.rand(4, device="cuda").tolist()
    extra = Checkpointer(model, save_dir=str(tmp_path)).load()
    set_rng_states(extra["rng"])
    assert torch.rand(4, device="cuda").tolist() == expected


def test_catalog_and_url_resolve_to_cached_file_without_download(tmp_path, monkeypatch):
    from maskrcnn.config.paths_catalog import ModelCatalog
    from maskrcnn.utils import model_zoo

    def no_download(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    model, _, _ = _build(0)
    name = "Caffe2Detectron/COCO/35857345/e2e_faster_rcnn_R-50-FPN_1x"
    url = ModelCatalog.get(name)
    assert url.endswith("model_final.pkl")
    # Detectron's model_final.pkl files are cached under their whole URL path
    cache_dir = tmp_path / "torch_home" / "models"
    cache_dir.mkdir(parents=True)
    pth_url = "https://example.invalid/weights/my_model.pth"
    torch.save({"model": model.state_dict(), "iteration": 11}, cache_dir / "my_model.pth")
    assert model_zoo.cache_url(pth_url) == str(cache_dir / "my_model.pth")

    model2, _, _ = _build(3)
    extra = DetectronCheckpointer(default_cfg, model2, save_dir="").load(pth_url)
    assert extra == {"iteration": 11}
    assert torch.equal(model2[0].weight, model[0].weight)

    # catalog:// goes through ModelCatalog then the cache: see which file it asks for
    seen = []
    monkeypatch.setattr(model_zoo, "cache_url", lambda u: seen.append(u) or str(cache_dir / "my_model.pth"))
    monkeypatch.setattr(ModelCatalog, "get", staticmethod(lambda n: pth_url if n == "mine" else url))
    DetectronCheckpointer(default_cfg, model2, save_dir="").load("catalog://mine")
    assert seen == [pth_url]


def test_cache_url_names_detectron_files_by_url_path(tmp_path, monkeypatch):
    from maskrcnn.utils import model_zoo

    fetched = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda u, dst, progress=True: fetched.append((u, dst)))
    url = "https://dl.example.invalid/detectron/35857345/12_2017_baselines/x.yaml/output/model_final.pkl"
    path = model_zoo.cache_url(url, model_dir=str(tmp_path))
    assert os.path.basename(path) == "detectron_35857345_12_2017_baselines_x.yaml_output_model_final.pkl"
    assert fetched == [(url, path)]
