"""EMACallback (issue 27): the average matches a hand-computed one, validation and export use it, it follows
parameters that fine_tune unfreezes, and a checkpoint keeps it through a resume."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import (CheckpointCallback, CrossEntropyLossFlat, DataLoaders, EMACallback, Learner, load_learner,
                      SaveModelCallback)
from learnkit.core.callback import Callback


class RawAfterStep(Callback):
    """The trained weights after every real optimizer step (runs after the EMA's update)."""
    order = 80

    def before_fit(self):
        self.snaps = []

    def after_step(self):
        self.snaps.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})


class ValidWeights(Callback):
    order = 90

    def before_validate(self):
        self.seen = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}


def _learner(path, cbs=(), seed=0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 3, generator=g)
    y = (x[:, 0] > x[:, 1]).long()
    dls = DataLoaders.from_dsets(TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]), bs=8, device="cpu",
                                 vocab=["a", "b"])
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=path, progress=False,
                   opt_func=torch.optim.SGD, lr=0.1, cbs=list(cbs), splitter=lambda m: [list(m[:2].parameters()),
                                                                                        list(m[3].parameters())])


def test_average_equals_hand_computed_and_validation_uses_it(tmp_path):
    raw, seen = RawAfterStep(), ValidWeights()
    learn = _learner(tmp_path, [raw, seen])
    start = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    ema = EMACallback(decay=0.8, every=2)
    learn.fit(1, cbs=ema)
    names = [n for n, _ in learn.model.named_parameters()]
    hand = {k: start[k].clone() for k in names}
    for i, snap in enumerate(raw.snaps):
        if (i + 1) % 2 == 0:
            for k in names:
                hand[k] = 0.8 * hand[k] + 0.2 * snap[k]
    assert ema.n_updates == len(raw.snaps) // 2 == 4
    for k in names:
        torch.testing.assert_close(ema.averages[k], hand[k], rtol=0, atol=1e-6)
        torch.testing.assert_close(seen.seen[k], hand[k], rtol=0, atol=1e-6)  # validation ran on the average
    assert not torch.allclose(raw.snaps[-1]["3.weight"], hand["3.weight"])  # ...not on the trained weights
    # BN statistics are copied, not averaged
    assert torch.equal(ema.averages["1.running_mean"], raw.snaps[-1]["1.running_mean"])
    # the fit ends with the average in the model: get_preds and export use it
    assert all(torch.equal(learn.model.state_dict()[k], ema.averages[k]) for k in names)
    assert not torch.equal(ema.raw_state["0.weight"], ema.averages["0.weight"])
    with pytest.raises(ValueError, match="decay"):
        EMACallback(decay=1.0)


def test_follows_parameters_that_fine_tune_unfreezes(tmp_path):
    learn = _learner(tmp_path)
    ema = EMACallback(decay=0.5)
    learn.add_cb(ema)
    learn.freeze()
    learn.fit(1)
    body0 = ema.averages["0.weight"].clone()
    assert torch.equal(body0, learn.model[0].weight)  # frozen: its average is the weight itself
    learn.unfreeze()
    learn.fit(1)
    assert not torch.equal(ema.averages["0.weight"], body0) and ema.n_updates == 16  # it went on averaging


def test_checkpoint_keeps_both_and_resume_continues_the_average(tmp_path):
    class Crash(Exception):
        pass

    class CrashAt(Callback):
        def before_batch(self):
            if self.learn.training and (self.learn.epoch, self.learn.iter) == (1, 5):
                raise Crash()

    def cbs():
        return [EMACallback(decay=0.7), CheckpointCallback(every_batches=2)]
    ref = _learner(tmp_path / "ref", cbs())
    ref.fit(2, resume="auto")
    with pytest.raises(Crash):
        _learner(tmp_path / "run", cbs() + [CrashAt()]).fit(2, resume="auto")
    from learnkit.core.export import load_tree
    _, tree = load_tree(tmp_path / "run" / "models" / "checkpoint.safetensors", "checkpoint")
    state = dict(tree["callbacks"])["ema"]
    assert not torch.equal(state["averages"]["0.weight"], tree["model"]["0.weight"])  # both kept
    resumed = _learner(tmp_path / "run", cbs(), seed=3)
    resumed.fit(2, resume="auto")
    assert resumed.checkpoint.resumed_at == (1, 4)
    for k, v in ref.ema.averages.items():
        assert torch.equal(v, resumed.ema.averages[k]), k
    assert resumed.recorder.values == ref.recorder.values


def test_save_model_keeps_the_best_averaged_weights(tmp_path):
    learn = _learner(tmp_path)
    ema, save = EMACallback(decay=0.5), SaveModelCallback(fname="best")
    learn.fit(3, cbs=[ema, save])
    best = torch.load(tmp_path / "models" / "best.pth", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in learn.model.state_dict().items())
    assert ema.raw_state is None  # the tracker's best weights were loaded, not overwritten


@pytest.mark.integration
def test_mnist_tiny_validates_exports_and_predicts_with_the_average(data_path, tmp_path):
    from learnkit.vision import ImageDataLoaders, Resize, accuracy, vision_learner
    dls = ImageDataLoaders.from_folder(data_path / "mnist_tiny", train="train", valid="valid", item_tfms=Resize(28),
                                       bs=64)
    torch.manual_seed(0)
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=accuracy, path=tmp_path, progress=False)
    seen = ValidWeights()
    ema = EMACallback(decay=0.9)
    learn.fit_one_cycle(1, 1e-2, cbs=[ema, seen])
    assert all(torch.equal(seen.seen[k], ema.averages[k]) for k, _ in learn.model.named_parameters())
    assert learn.validate()[1] == pytest.approx(learn.recorder.values[-1][2])  # the model now holds the average
    exported = load_learner(learn.export(tmp_path / "ema.safetensors"))
    for k, v in exported.model.state_dict().items():
        assert torch.equal(v, ema.averages[k].cpu()), k


def test_lr_find_and_profile_leave_the_average_alone(tmp_path):
    learn = _learner(tmp_path)
    ema = EMACallback(decay=0.5)
    learn.add_cb(ema)
    learn.fit(1)
    before = {k: v.clone() for k, v in ema.averages.items()}
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.lr_find(num_it=5, show_plot=False)
    learn.profile(n_batches=3, skip=1, show=False)
    assert all(torch.equal(before[k], ema.averages[k]) for k in before)
    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())
