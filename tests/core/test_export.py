"""learn.export / load_learner on core learners: round trip, fresh process, and files that must be refused.

The toy task below (a registered DataLoaders with fitted normalisation stats and a vocab, and a registered
model builder) stands in for the task packages; tests/core/test_export_tasks.py covers the real ones.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import (CrossEntropyLossFlat, DataLoaders, ExportError, Learner, MSELossFlat, accuracy, load_learner,
                      register_dls, register_model)
from learnkit.core import safefile
from learnkit.core.export import FORMAT_VERSION, pack_tree, read_export_config, unpack_tree

HERE = Path(__file__).resolve()


# --- a toy task --------------------------------------------------------------------------------------------
@register_model("test_export.mlp")
def toy_mlp(n_in: int = 3, n_out: int = 2, hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(hidden, n_out))


class Tied(nn.Module):
    def __init__(self, n: int = 4):
        super().__init__()
        self.enc = nn.Linear(n, n, bias=False)
        self.dec = nn.Linear(n, n)
        self.dec.weight = self.enc.weight  # tied, as in text language models

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


@register_model("test_export.tied")
def toy_tied(n: int = 4) -> nn.Module:
    return Tied(n)


@register_dls
class ToyExportDls(DataLoaders):
    """Rows of floats, normalised on the device with stats fitted on the training set."""

    def __init__(self, train, valid=None, device=None, vocab=None, mean=None, std=None):
        super().__init__(train, valid, device=device, vocab=vocab)
        self.mean = torch.tensor(mean if mean is not None else [0.0])
        self.std = torch.tensor(std if std is not None else [1.0])
        self.loss_func = CrossEntropyLossFlat() if vocab is not None else MSELossFlat()

    @classmethod
    def from_tensors(cls, x, y, vocab=None, bs=16):
        n = len(x) // 5
        mean, std = x[n:].mean(0), x[n:].std(0)
        base = DataLoaders.from_dsets(TensorDataset(x[n:], y[n:]), TensorDataset(x[:n], y[:n]), bs=bs, device="cpu")
        return cls(base.train, base.valid, "cpu", vocab, mean.tolist(), std.tolist())

    def on_device(self, batch, training):
        return ((batch[0] - self.mean.to(batch[0].device)) / self.std.to(batch[0].device), *batch[1:])

    def export_config(self):
        return {"vocab": self.vocab, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config, device=None):
        return cls(None, None, device, config["vocab"], config["mean"], config["std"])

    def test_dl(self, items, with_labels=False, bs=None):
        x = torch.tensor([list(map(float, it)) for it in items], dtype=torch.float32)
        bs = bs or 7
        return [(x[i: i + bs],) for i in range(0, len(x), bs)]


def toy_data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.0])
    y = ((x[:, 0] - 2) + (x[:, 1] + 1) / 5 > 0).long()
    return x, y


def toy_learner(tmp_path=None, epochs=2) -> Learner:
    x, y = toy_data()
    dls = ToyExportDls.from_tensors(x, y, vocab=["no", "yes"])
    learn = Learner(dls, toy_mlp(), metrics=accuracy, progress=False, path=tmp_path)
    learn.model_spec = {"builder": "test_export.mlp", "kwargs": {"n_in": 3, "n_out": 2, "hidden": 16}}
    if epochs:
        learn.fit_one_cycle(epochs, 1e-2)
    return learn


ITEMS = [[2.5, 0.0, 0.1], [1.0, -3.0, 0.0], [2.0, -1.0, 0.05], [0.0, 9.0, -0.2], [3.3, 2.2, 0.01],
         [1.9, -6.0, 0.0], [2.1, 4.0, 0.0], [-1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]


# --- round trips ---------------------------------------------------------------------------------------------
def test_export_round_trip_same_process(tmp_path):
    learn = toy_learner(tmp_path)
    path = learn.export()
    assert path == tmp_path / "export.safetensors" and path.is_file()
    new = load_learner(path, device="cpu")
    assert isinstance(new.dls, ToyExportDls) and new.dls.vocab == ["no", "yes"]
    assert new.dls.train is None and not new.model.training
    for a, b in zip(learn.model.state_dict().values(), new.model.state_dict().values()):
        assert torch.equal(a, b)
    p1, _ = learn.get_preds(dl=learn.dls.test_dl(ITEMS))
    p2, _ = new.get_preds(dl=new.dls.test_dl(ITEMS))
    assert p1.shape == (len(ITEMS), 2) and torch.allclose(p1, p2, atol=1e-5)
    label, idx, probs = new.predict(ITEMS[0])
    assert (label, idx) == learn.predict(ITEMS[0])[:2] and label == ["no", "yes"][idx]
    assert torch.allclose(probs, p1[0], atol=1e-5)
    assert new.export(tmp_path / "again.safetensors").is_file()  # a loaded learner exports again


def test_export_file_is_one_safetensors_with_the_json_config(tmp_path):
    path = toy_learner(tmp_path, epochs=0).export("sub/model.safetensors")
    assert path == tmp_path / "sub" / "model.safetensors"
    head = path.read_bytes()[:8]
    assert head[:2] != b"PK" and head[:1] != b"\x80"  # neither a zip (torch.save) nor a pickle
    with safe_open(str(path), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    cfg = json.loads(meta["learnkit"])
    assert cfg["format"] == "learnkit-export" and cfg["format_version"] == FORMAT_VERSION
    assert cfg["torch_version"] == torch.__version__ and cfg["learnkit_version"]
    assert cfg["dls"]["type"] == "ToyExportDls" and cfg["dls"]["config"]["vocab"] == ["no", "yes"]
    assert cfg["model"] == {"builder": "test_export.mlp", "module": toy_mlp.__module__,
                            "kwargs": {"n_in": 3, "n_out": 2, "hidden": 16}}
    assert cfg["loss"]["type"] == "CrossEntropyLossFlat" and cfg["loss"]["module"] == "learnkit.core.losses"
    assert "1.running_mean" in keys and "0.weight" in keys
    assert read_export_config(path)["dls"]["config"]["mean"] == pytest.approx(cfg["dls"]["config"]["mean"])


@pytest.mark.slow  # starts fresh Python processes
def test_load_in_a_fresh_process_without_the_data(tmp_path):
    learn = toy_learner(tmp_path)
    path = learn.export()
    expected, _ = learn.get_preds(dl=learn.dls.test_dl(ITEMS))
    torch.save(expected, tmp_path / "expected.pt")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        spec = importlib.util.spec_from_file_location("toy_task", {str(HERE)!r})
        toy = importlib.util.module_from_spec(spec); spec.loader.exec_module(toy)   # registers the toy task
        from learnkit import load_learner
        learn = load_learner({str(path)!r}, device="cpu")
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(toy.ITEMS))
        exp = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=True)
        assert torch.allclose(probs, exp, atol=1e-5), (probs, exp)
        label, idx, p = learn.predict(toy.ITEMS[3])
        assert torch.allclose(p, exp[3], atol=1e-5) and label == learn.dls.vocab[idx]
        print("OK", label)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LEARNKIT_DATA": str(tmp_path / "no-data-here")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK")


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path):
    x = torch.randn(40, 4)
    dls = ToyExportDls.from_tensors(x, x.clone())
    learn = Learner(dls, toy_tied(), progress=False, path=tmp_path)
    learn.model_spec = {"builder": "test_export.tied", "kwargs": {"n": 4}}
    learn.fit(1, lr=1e-2)
    path = learn.export()
    with safe_open(str(path), "pt") as f:
        assert len([k for k in f.keys() if k.endswith("weight")]) == 1
    new = load_learner(path, device="cpu")
    assert new.model.dec.weight is new.model.enc.weight
    assert torch.equal(new.model.enc.weight, learn.model.enc.weight)


def test_pack_tree_round_trips_optimizer_state_and_odd_values():
    m = nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    tree = {"opt": opt.state_dict(), "inf": float("inf"), "t": (1, [2, None]), "view": m.weight[0],
            "k": {3: "int key"}}
    skel, tensors = pack_tree(tree)
    json.dumps(skel)  # the skeleton is plain JSON
    back = unpack_tree(json.loads(json.dumps(skel)), tensors)
    assert back["inf"] == float("inf") and back["t"] == (1, [2, None]) and back["k"] == {3: "int key"}
    assert torch.equal(back["view"], m.weight[0].detach())
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    opt2.load_state_dict(back["opt"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(TypeError, match="cannot store a object at 'bad'"):
        pack_tree({"bad": object()})


# --- files that must be refused ------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker`` (what an attacker's file would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned.txt"
    raw = tmp_path / "export.pkl"
    raw.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    zipped = tmp_path / "zipped_export.pkl"
    torch.save({"model": _Payload(marker)}, zipped)  # a torch.save/fastai-style file
    disguised = tmp_path / "export.safetensors"
    disguised.write_bytes(raw.read_bytes())
    assert not marker.exists()
    for f in (raw, zipped, disguised):
        with pytest.raises(ExportError, match="never unpickles"):
            load_learner(f, device="cpu")
        assert not marker.exists(), f"loading {f.name} ran the pickle payload"


def _craft(path: Path, header: dict, tensors: dict | None = None) -> Path:
    save_file(tensors or {"w": torch.zeros(1)}, str(path), metadata={"learnkit": json.dumps(header)})
    return path


def _valid_header(tmp_path) -> dict:
    path = toy_learner(tmp_path, epochs=0).export("base.safetensors")
    return read_export_config(path)


def test_config_naming_a_non_learnkit_module_is_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_module_lk.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    header = _valid_header(tmp_path)
    header["dls"] = {"type": "EvilDls", "module": "evil_module_lk", "config": {}}
    with pytest.raises(ExportError, match="not registered.*import the module that defines it"):
        load_learner(_craft(tmp_path / "evil.safetensors", header), device="cpu")
    header["dls"] = {"type": "system", "module": "os", "config": {}}
    with pytest.raises(ExportError, match="'system', which is not registered"):
        load_learner(_craft(tmp_path / "os.safetensors", header), device="cpu")
    assert not marker.exists() and "evil_module_lk" not in sys.modules


def test_truncated_empty_and_foreign_files_are_clear(tmp_path):
    good = toy_learner(tmp_path, epochs=0).export()
    data = good.read_bytes()
    for n, cut in enumerate((len(data) - 1, len(data) // 2, 40, 5)):
        bad = tmp_path / f"cut{n}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ExportError, match="truncated|not a safetensors"):
            load_learner(bad, device="cpu")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ExportError, match="is not a learnkit export: it is not a safetensors file"):
        load_learner(empty, device="cpu")
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n" * 10)
    with pytest.raises(ExportError, match="not a safetensors file"):
        load_learner(text, device="cpu")
    plain = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(ExportError, match="safetensors file but not a learnkit"):
        load_learner(plain, device="cpu")
    with pytest.raises(FileNotFoundError, match="no learnkit export at"):
        load_learner(tmp_path / "missing.safetensors")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_learner(tmp_path)


def test_incompatible_versions_and_damaged_configs_are_clear(tmp_path):
    header = _valid_header(tmp_path)
    for version, hint in ((FORMAT_VERSION + 1, "upgrade learnkit"), (0, "export it again"), ("1", "export it again")):
        with pytest.raises(ExportError, match=f"format version .*{hint}"):
            load_learner(_craft(tmp_path / "v.safetensors", {**header, "format_version": version}), device="cpu")
    with pytest.raises(ExportError, match="not an export"):
        load_learner(_craft(tmp_path / "ck.safetensors", {**header, "format": "learnkit-checkpoint"}), device="cpu")
    no_model = {k: v for k, v in header.items() if k != "model"}
    with pytest.raises(ExportError, match="no 'model' section"):
        load_learner(_craft(tmp_path / "nm.safetensors", no_model), device="cpu")
    with pytest.raises(ExportError, match="ToyExportDls.from_config could not rebuild .*KeyError"):
        load_learner(_craft(tmp_path / "dc.safetensors", {**header, "dls": {**header["dls"], "config": {}}}),
                     device="cpu")
    with pytest.raises(ExportError, match="structure described in the file is damaged"):
        load_learner(_craft(tmp_path / "tr.safetensors", {**header, "tree": {"@items": [[[1], 2]]}}), device="cpu")
    with pytest.raises(ExportError, match="not a mapping of names to tensors"):
        load_learner(_craft(tmp_path / "tm.safetensors", {**header, "tree": [1, 2]}), device="cpu")
    bad_json = tmp_path / "bad_json.safetensors"
    save_file({"w": torch.zeros(1)}, str(bad_json), metadata={"learnkit": "{not json"})
    with pytest.raises(ExportError, match="not valid JSON"):
        load_learner(bad_json, device="cpu")


def test_unknown_names_are_clear(tmp_path):
    header = _valid_header(tmp_path)
    h = {**header, "model": {**header["model"], "builder": "vision.no_such_net", "module": "learnkit.core.export"}}
    with pytest.raises(ExportError, match="model builder 'vision.no_such_net'.*not registered"):
        load_learner(_craft(tmp_path / "m.safetensors", h), device="cpu")
    h = {**header, "dls": {**header["dls"], "type": "GoneDls", "module": "learnkit.no_such_task"}}
    with pytest.raises(ExportError, match="needs learnkit.no_such_task, which this learnkit cannot import"):
        load_learner(_craft(tmp_path / "d.safetensors", h), device="cpu")
    h = {**header, "loss": {"type": "FancyLoss", "module": "learnkit.core.losses", "config": {}}}
    with pytest.raises(ExportError, match="loss function 'FancyLoss'"):
        load_learner(_craft(tmp_path / "l.safetensors", h), device="cpu")


def test_weights_that_do_not_fit_the_architecture_are_clear(tmp_path):
    header = _valid_header(tmp_path)
    header["model"]["kwargs"]["hidden"] = 8
    path = tmp_path / "base.safetensors"  # same tensors, config edited to another architecture
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with pytest.raises(ExportError, match=r"(?s)do not fit the architecture test_export.mlp.*0.weight is \[16, 3\] in the file but "
                                          r"\[8, 3\] from the config \(model.kwargs\['hidden'\] = 8\?\)"):
        load_learner(_craft(tmp_path / "mismatch.safetensors", {**header, "tree": {k: {"@t": k} for k in tensors}},
                            tensors), device="cpu")


def test_export_refuses_what_it_could_not_load(tmp_path):
    learn = toy_learner(tmp_path, epochs=0)
    del learn.model_spec  # an unregistered model: exported as weights + class name (tests/core/test_export_custom.py)
    custom = learn.export(tmp_path / "custom.safetensors")
    with pytest.raises(ExportError, match="custom model.*load_learner\\(path, model=.*@register_model"):
        load_learner(custom)
    learn.model_spec = {"builder": "test_export.mlp", "kwargs": {"hidden": torch.tensor(16)}}
    with pytest.raises(TypeError, match=r"model_spec\['kwargs'\]\['hidden'\] is a Tensor"):
        learn.export()
    learn.model_spec = {"builder": "nobody.registered", "kwargs": {}}
    with pytest.raises(ValueError, match="'nobody.registered' is not registered"):
        learn.export()
    learn.model_spec = {"builder": "test_export.mlp", "kwargs": {}}
    learn.loss_func = lambda p, t: nn.functional.cross_entropy(p, t)
    with pytest.raises(ValueError, match="loss function function is not registered.*@register_loss"):
        learn.export()
    plain = Learner(DataLoaders.from_dsets(TensorDataset(torch.randn(8, 3), torch.zeros(8).long()), bs=4,
                                           device="cpu"), toy_mlp(), loss_func=CrossEntropyLossFlat(), progress=False)
    plain.model_spec = {"builder": "test_export.mlp", "kwargs": {}}
    with pytest.raises(ValueError, match="DataLoaders type DataLoaders is not registered.*@register_dls"):
        plain.export(tmp_path / "plain.safetensors")
    learn.loss_func = CrossEntropyLossFlat()
    learn.dls.mean = torch.tensor([1.0])
    learn.dls.export_config = lambda: {"mean": learn.dls.mean}  # a task bug: a tensor in the config
    with pytest.raises(TypeError, match=r"ToyExportDls.export_config\(\)\['mean'\] is a Tensor"):
        learn.export()


def test_a_full_disk_during_export_keeps_the_previous_file(tmp_path, monkeypatch):
    learn = toy_learner(tmp_path, epochs=0)
    path = learn.export()
    before = path.read_bytes()

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safefile, "save_file", full_disk)  # where save_tree writes
    learn.fit(1, lr=1e-2)
    with pytest.raises(OSError, match="no space left on the device.*previous file .* is intact"):
        learn.export()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    load_learner(path, device="cpu")


def test_bf16_export_loads_in_fp32_on_a_cpu(tmp_path):
    """Mixed precision is restored only where it pays (CUDA): on a CPU a bf16-trained export runs in fp32."""
    learn = toy_learner(tmp_path, epochs=1)
    learn.to_bf16()
    new = load_learner(learn.export(), device="cpu")
    assert new.precision == "fp32"
    with new.autocast():
        assert new.model(torch.randn(2, 3)).dtype == torch.float32
